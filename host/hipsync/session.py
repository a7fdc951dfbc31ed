"""The in-memory model of one recorded session: what the store loads and what analysis, report and
exports read.

Time axis: every `*_t_s` array is device time in seconds, `unwrapped clock ticks / units.CLOCK_HZ`
(the device sample clock, not host wall time). Arrays may have gaps where frames were lost; they
are never filled in. Channel order is `units.EMG_CHANNELS`, angle order `units.PELVIS_ANGLES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hipwire import units

EMG_CHANNELS: tuple[str, ...] = tuple(units.EMG_CHANNELS)
PELVIS_ANGLES: tuple[str, ...] = tuple(units.PELVIS_ANGLES)

# Gait events: one row per event, sorted by time.
EVENT_DTYPE = np.dtype([("t_s", "f8"), ("kind", "U2"), ("side", "U1"), ("stride", "i4")])

# Exam repetitions the device found (hipwire.frames.REP): one row per repetition, sorted by start.
# task: a name of hipwire.commands.EXAM_TASKS; side: stance side "L"/"R"; index: the device's count
# within the task (from 0); flags: frames.REP_* bits; depth: frames.REP_DEPTH_UNITS of the task
# (mm of descent, or centidegrees of swing-side obliquity change), as the device measured it.
REP_DTYPE = np.dtype([("t_start_s", "f8"), ("t_low_s", "f8"), ("t_end_s", "f8"), ("task", "U20"),
                      ("side", "U1"), ("index", "i4"), ("flags", "i4"), ("depth", "f8")])

# Task names the report understands. Other names are kept and listed but not analysed.
TASK_STANDING = "standing"
# Names accepted for the quiet-standing calibration task (the simulator says "standing_calibration").
STANDING_TASK_NAMES = ("standing", "standing_calibration")
TASK_WALK = "walk"
MVC_TASKS = {ch: f"mvc_{ch}" for ch in EMG_CHANNELS}  # e.g. "mvc_l_gmed"
KNOWN_TASKS = (TASK_STANDING, *MVC_TASKS.values(), TASK_WALK, "step_down", "single_leg_squat",
               "hip_abduction")

# What is recorded about electrodes when the caller does not say otherwise: the SENIAM
# recommendation the device is designed for (Hermens et al. 2000; docs/REFERENCES.md). Printed in the
# report as "as designed", so a therapist knows it was not entered for this session.
DEFAULT_ELECTRODES = {
    "type": "Ag/AgCl surface electrodes, bipolar",
    "diameter_mm": 10,
    "inter_electrode_distance_mm": 20,
    "detection_mode": "bipolar (differential)",
    "source": "device design default (SENIAM); not entered for this session",
}
DEFAULT_PLACEMENT = {
    "l_gmed": "left GMed, half-way between iliac crest and greater trochanter (SENIAM)",
    "r_gmed": "right GMed, half-way between iliac crest and greater trochanter (SENIAM)",
    "l_es": "left lumbar ES (longissimus), about 2 finger widths lateral to L1 spinous process",
    "r_es": "right lumbar ES (longissimus), about 2 finger widths lateral to L1 spinous process",
}


@dataclass
class Task:
    name: str
    t_start_s: float
    t_end_s: float

    @property
    def duration_s(self) -> float:
        return self.t_end_s - self.t_start_s


@dataclass
class Calibration:
    """Standing baseline angles (deg, PELVIS_ANGLES order) and MVC amplitude per muscle (envelope
    uV, None when no MVC was recorded for that muscle)."""

    standing_deg: np.ndarray | None = None
    mvc_uv: dict[str, float | None] = field(default_factory=lambda: {c: None for c in EMG_CHANNELS})
    source: str = "entered"  # "entered" | "derived from tasks"

    @property
    def has_standing(self) -> bool:
        return self.standing_deg is not None and bool(np.all(np.isfinite(self.standing_deg)))


@dataclass
class StatusLog:
    """STATUS samples: t_s (n,) and the decoded fields of each (pages may be split over frames,
    so a row holds only the fields its frame carried)."""

    t_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    fields: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.fields)

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(t_s, values) of the rows that carry `name` (values (m,) or (m,k) for list fields)."""
        idx = [i for i, f in enumerate(self.fields) if name in f]
        if not idx:
            return np.zeros(0), np.zeros(0)
        return self.t_s[idx], np.asarray([self.fields[i][name] for i in idx])

    def quality(self) -> tuple[np.ndarray, np.ndarray]:
        """(t_s (m,), flags (m,4) uint8): per-channel quality bitmasks (hipwire.quality)."""
        t, q = self.series("quality")
        if q.size == 0:
            return t, np.zeros((0, len(EMG_CHANNELS)), dtype=np.uint8)
        return t, q.astype(np.uint8).reshape(-1, len(EMG_CHANNELS))


@dataclass
class Metadata:
    session_id: int | None = None
    patient_id: str = ""
    device_id: str = ""
    firmware_version: str = ""
    started_at: str = ""  # ISO 8601 host wall time of session creation
    emg_rate_hz: float = float(units.EMG_RATE_HZ)
    envelope_rate_hz: float = float(units.ENVELOPE_RATE_HZ)
    pelvis_rate_hz: float = float(units.PELVIS_RATE_HZ)
    # Filter description as the device reports it, e.g. {"highpass_hz": 20, "lowpass_hz": 450,
    # "notch_hz": 50, "envelope": "rectify + 2nd-order 6 Hz low-pass", "envelope_delay_ms": 38}.
    filters: dict = field(default_factory=dict)
    electrodes: dict = field(default_factory=lambda: dict(DEFAULT_ELECTRODES))
    placement: dict = field(default_factory=lambda: dict(DEFAULT_PLACEMENT))
    normalisation: str = "MVC"  # requested method; the analysis reports what it actually used
    link_stats: dict = field(default_factory=dict)
    notes: str = ""
    # synced from a damaged device log: what was salvaged and lost (hipsync.sync.salvage_records)
    flash_damage: dict | None = None


@dataclass
class SessionData:
    envelope_t_s: np.ndarray
    envelope_uv: np.ndarray  # (n,4)
    pelvis_t_s: np.ndarray
    pelvis_deg: np.ndarray  # (m,3) absolute obliquity, tilt, rotation
    events: np.ndarray  # EVENT_DTYPE
    status: StatusLog = field(default_factory=StatusLog)
    tasks: list[Task] = field(default_factory=list)
    calibration: Calibration = field(default_factory=Calibration)
    metadata: Metadata = field(default_factory=Metadata)
    reps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=REP_DTYPE))

    def __post_init__(self) -> None:
        self.envelope_t_s = np.asarray(self.envelope_t_s, dtype=float)
        self.envelope_uv = np.asarray(self.envelope_uv, dtype=float).reshape(-1, len(EMG_CHANNELS))
        self.pelvis_t_s = np.asarray(self.pelvis_t_s, dtype=float)
        self.pelvis_deg = np.asarray(self.pelvis_deg, dtype=float).reshape(-1, len(PELVIS_ANGLES))
        if self.events.dtype != EVENT_DTYPE:
            self.events = np.asarray(self.events, dtype=EVENT_DTYPE)
        if self.reps.dtype != REP_DTYPE:
            self.reps = np.asarray(self.reps, dtype=REP_DTYPE)
        if len(self.envelope_t_s) != len(self.envelope_uv):
            raise ValueError("envelope_t_s and envelope_uv differ in length")
        if len(self.pelvis_t_s) != len(self.pelvis_deg):
            raise ValueError("pelvis_t_s and pelvis_deg differ in length")

    def tasks_named(self, name: str) -> list[Task]:
        names = STANDING_TASK_NAMES if name == TASK_STANDING else (name,)
        return [t for t in self.tasks if t.name in names]

    @property
    def duration_s(self) -> float:
        ts = [a for a in (self.envelope_t_s, self.pelvis_t_s) if len(a)]
        if not ts:
            return 0.0
        return float(max(a[-1] for a in ts) - min(a[0] for a in ts))


def make_events(rows) -> np.ndarray:
    """Events array from (t_s, kind, side, stride) tuples, sorted by time."""
    ev = np.array(list(rows), dtype=EVENT_DTYPE) if rows is not None else np.zeros(0, EVENT_DTYPE)
    return np.sort(ev, order="t_s", kind="stable")
