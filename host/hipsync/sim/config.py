"""The simulated patient's knobs: one plain dataclass plus the lead-off description.

Every default and every estimate is explained, with its source, in ASSUMPTIONS.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hipwire import units

SIDES = ("L", "R")
# Default extra swing-side drop of a weak side (deg): a clear Trendelenburg gait, beyond the 4 deg
# smallest detectable change (estimate; ASSUMPTIONS.md, "Pelvis angles in walking").
WEAK_SIDE_DROP_DEG = 6.0
# A weak GMed whose %MVC reads HIGHER than the healthy side's (its MVC is lower, so the same task is
# a larger fraction of it; Penney et al. 2014): `weak_gmed_pct_factor` for that case (estimate).
PENNEY_HIGHER_PCT_FACTOR = 1.3
# Names `compensated_tasks` may hold: the exam tasks and the walk.
COMPENSABLE_TASKS = ("single_leg_stance", "step_down", "single_leg_squat", "hip_abduction_wb", "walk")
_SIDE_ALIASES = {"l": "L", "left": "L", "r": "R", "right": "R"}


def side_letter(side: str | None) -> str | None:
    """'left'/'L'/'l' -> 'L', 'right'/'R'/'r' -> 'R', None -> None."""
    if side is None:
        return None
    try:
        return _SIDE_ALIASES[str(side).lower()]
    except KeyError:
        raise ValueError(f"side must be 'left'/'right' (or 'L'/'R'), got {side!r}") from None


@dataclass(frozen=True)
class LeadOff:
    """One electrode lifting off `channel` (a name from units.EMG_CHANNELS) between two times."""

    channel: str
    t_start_s: float
    t_end_s: float

    def __post_init__(self) -> None:
        if self.channel not in units.EMG_CHANNELS:
            raise ValueError(f"lead-off channel must be one of {units.EMG_CHANNELS}, got {self.channel!r}")
        if not self.t_end_s > self.t_start_s >= 0:
            raise ValueError(f"lead-off window must satisfy 0 <= start < end, got {self.t_start_s}..{self.t_end_s}")

    @property
    def channel_index(self) -> int:
        return units.EMG_CHANNELS.index(self.channel)


@dataclass
class PatientConfig:
    # --- gait -----------------------------------------------------------------------------
    cadence_spm: float = 105.0  # steps per minute; stride time = 120 / cadence
    speed_mps: float = 1.2  # scales pelvis rotation and trunk accelerations (1.2 m/s = 1.0x)
    stance_fraction: float = 0.61  # of the gait cycle; double support = stance - 0.5 each (11 %)
    stride_time_cv: float = 0.035  # stride-to-stride coefficient of variation (lab data: ~4 %)
    # --- impairment and compensation ---------------------------------------------------------
    weak_side: str | None = None  # "left" / "right" / None
    es_compensation: str | None = None  # "stance" / "contra" / None (needs weak_side)
    # Extra contralateral pelvic drop (deg) while the weak side is in single support.
    # None -> WEAK_SIDE_DROP_DEG when weak_side is set, else 0.0 (ASSUMPTIONS.md).
    pelvic_drop_deg: float | None = None
    # --- activation levels (%MVC) ------------------------------------------------------------
    gmed_stance_pct_mvc: float = 30.0  # peak stance GMed in walking (healthy side)
    es_ic_pct_mvc: float = 12.0  # ES burst peak at the ipsilateral initial contact
    es_swing_pct_mvc: float = 3.0  # ES floor between bursts (walking)
    tonic_pct_mvc: float = 2.0  # quiet standing, every muscle
    # weak GMed's %MVC relative to the healthy side, in walking and in every exam task alike: < 1
    # it does less (default), > 1 it reads higher because its MVC is lower (Penney et al. 2014;
    # PENNEY_HIGHER_PCT_FACTOR)
    weak_gmed_pct_factor: float = 0.8
    weak_gmed_mvc_uv_factor: float = 0.6  # weak GMed's uV at 100 %MVC relative to healthy (less force)
    # ES in the weak side's single support reaches ~ this multiple of its heel-strike burst.
    es_compensation_factor: float = 2.5
    # Where the ES compensation shows: names from COMPENSABLE_TASKS (exam tasks and "walk").
    # None: everywhere (every exam task on the weak stance side, and walking).
    compensated_tasks: frozenset[str] | None = None
    # In a compensating exam task, this fraction of the repetitions is compensated (rounded, at
    # least one); which ones is drawn per task.
    compensated_rep_fraction: float = 0.8
    # --- the exam's repetitions ------------------------------------------------------------------
    exam_tempo: float = 1.0  # repetition and pause durations x this (1.5: slow, 0.7: hurried)
    rep_time_cv: float = 0.15  # repetition-to-repetition variation of duration, depth and pause
    bad_rep_fraction: float = 0.1  # chance that a repetition is shallow and hurried
    # sEMG RMS amplitude (uV) at 100 %MVC, channel order units.EMG_CHANNELS.
    mvc_uv_rms: tuple[float, float, float, float] = (300.0, 300.0, 150.0, 150.0)
    # --- pelvis ------------------------------------------------------------------------------
    obliquity_amp_deg: float = 2.5  # swing-side drop in single support (healthy; sacrum IMU data)
    tilt_amp_deg: float = 2.0  # at twice the stride frequency
    rotation_amp_deg: float = 4.0  # at stride frequency, scaled with speed
    # Absolute pelvis pose (obliquity, tilt, rotation) in quiet standing: the device's zero.
    standing_pose_deg: tuple[float, float, float] = (0.5, 4.0, 0.0)
    # --- sEMG noise --------------------------------------------------------------------------
    mains_hz: float = 50.0
    mains_uv: float = 10.0  # peak amplitude of the mains sinusoid at the input
    motion_artefact_uv: float = 60.0  # peak of the heel-strike artefact (0 = none)
    baseline_drift_uv: float = 20.0  # RMS of the slow (< 0.5 Hz) baseline wander
    noise_uv: float = 1.5  # RMS electronic + electrode noise, white
    electrode_offset_mv: float = 20.0  # max |DC electrode offset| per channel (to_sensor_counts)
    lead_off: LeadOff | tuple[LeadOff, ...] | None = None
    # --- IMU sensor --------------------------------------------------------------------------
    gyr_bias_dps: float = 0.5  # max |constant bias| per axis
    gyr_noise_dps: float = 0.05  # RMS white noise
    acc_bias_g: float = 0.01  # max |constant offset| per axis
    acc_noise_g: float = 0.002  # RMS white noise
    seed: int = 0
    _lead_offs: tuple[LeadOff, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.weak_side = {None: None, "L": "left", "R": "right"}[side_letter(self.weak_side)]
        if self.es_compensation not in (None, "stance", "contra"):
            raise ValueError(f"es_compensation must be 'stance', 'contra' or None, got {self.es_compensation!r}")
        if self.es_compensation is not None and self.weak_side is None:
            raise ValueError("es_compensation needs a weak_side (whose single support it compensates)")
        if self.compensated_tasks is not None:
            self.compensated_tasks = frozenset(
                {"hip_abduction": "hip_abduction_wb"}.get(t, t) for t in self.compensated_tasks)
            bad = sorted(self.compensated_tasks - set(COMPENSABLE_TASKS))
            if bad:
                raise ValueError(f"compensated_tasks must be within {COMPENSABLE_TASKS}, got {bad}")
        if not 0.0 <= self.compensated_rep_fraction <= 1.0:
            raise ValueError(f"compensated_rep_fraction must be within 0..1, got {self.compensated_rep_fraction}")
        if not 0.2 <= self.weak_gmed_pct_factor <= 2.0:
            raise ValueError(f"weak_gmed_pct_factor must be within 0.2..2.0, got {self.weak_gmed_pct_factor}")
        if not 0.5 <= self.exam_tempo <= 2.5:
            raise ValueError(f"exam_tempo must be within 0.5..2.5, got {self.exam_tempo}")
        if not 0.0 <= self.rep_time_cv <= 0.4:
            raise ValueError(f"rep_time_cv must be within 0..0.4, got {self.rep_time_cv}")
        if not 0.0 <= self.bad_rep_fraction <= 1.0:
            raise ValueError(f"bad_rep_fraction must be within 0..1, got {self.bad_rep_fraction}")
        if self.pelvic_drop_deg is None:
            self.pelvic_drop_deg = WEAK_SIDE_DROP_DEG if self.weak_side else 0.0
        if not 40.0 <= self.cadence_spm <= 160.0:
            raise ValueError(f"cadence_spm must be within 40..160 steps/min, got {self.cadence_spm}")
        if not 0.52 <= self.stance_fraction <= 0.70:
            raise ValueError(f"stance_fraction must be within 0.52..0.70, got {self.stance_fraction}")
        if self.mains_hz not in (50, 60, 50.0, 60.0):
            raise ValueError(f"mains_hz must be 50 or 60, got {self.mains_hz}")
        if len(self.mvc_uv_rms) != units.N_EMG:
            raise ValueError(f"mvc_uv_rms needs {units.N_EMG} values ({units.EMG_CHANNELS})")
        for name in ("gmed_stance_pct_mvc", "es_ic_pct_mvc", "es_swing_pct_mvc", "tonic_pct_mvc"):
            value = getattr(self, name)
            if not 0.0 <= value <= 100.0:
                raise ValueError(f"{name} must be within 0..100 %MVC, got {value}")
        if self.lead_off is None:
            lead_offs: tuple = ()
        elif isinstance(self.lead_off, LeadOff):
            lead_offs = (self.lead_off,)
        elif len(self.lead_off) == 3 and isinstance(self.lead_off[0], str):
            lead_offs = (LeadOff(*self.lead_off),)  # ("l_es", 30.0, 35.0)
        else:
            lead_offs = tuple(lo if isinstance(lo, LeadOff) else LeadOff(*lo) for lo in self.lead_off)
        self._lead_offs = lead_offs

    @property
    def lead_offs(self) -> tuple[LeadOff, ...]:
        return self._lead_offs

    def compensates_in(self, task: str) -> bool:
        """Whether the ES compensation shows in `task` (an exam task name or "walk"), on the weak
        stance side."""
        if self.es_compensation is None:
            return False
        return self.compensated_tasks is None or task in self.compensated_tasks

    @property
    def weak_side_letter(self) -> str | None:
        return side_letter(self.weak_side)

    @property
    def stride_time_s(self) -> float:
        return 120.0 / self.cadence_spm

    @property
    def speed_scale(self) -> float:
        """Amplitude scale of trunk motion relative to 1.2 m/s, kept within a plausible range."""
        return min(max(self.speed_mps / 1.2, 0.3), 2.0)
