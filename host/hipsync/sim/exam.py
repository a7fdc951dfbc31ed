"""The clinical exam as a person does it: each repetition its own duration, depth and pause, and the
truth of every repetition.

A task is planned first (`plan_task`: when each repetition starts, reaches its low point and ends,
how deep it goes, whether it is compensated), from the patient's own random stream, so its length
is known before it is laid out; the movement, the pelvis, the trunk and the muscles then all follow
the same plan, and `truth_rows` measures what the recording really holds at the planned times.

Repetition (step-down, single-leg squat, weight-bearing hip abduction): the movement envelope of
repetition k is a raised-cosine rise from 0 at its onset to its depth at its low point and a
raised-cosine fall back to 0, then a pause at exactly 0 (standing on the stance leg). Its truth
start and end are where the envelope crosses 10 % of its own peak (the contract's definition), its
low the peak. Single-leg stance: start = foot off (weight fully on the stance leg), end = foot
down, low = the moment the swing side is lowest in the real pelvis truth (sway included).
Assumptions and their sources: ASSUMPTIONS.md, "The exam".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hipwire import units

from .config import PatientConfig
from .emg_model import ES, GMED
from .tasks import NOMINAL_REP_S, WEIGHT_SHIFT_S, Task

# One row per repetition, times in seconds from the recording's first sample (like segments and
# events); side = stance side "L"/"R"; index from 0 within the task; depth in the units of
# hipwire.frames.REP_DEPTH_UNITS (mm of sacrum descent: step_down, single_leg_squat; centidegrees
# of swing-side drop (+) or hike (-): single_leg_stance, hip_abduction_wb); drop_deg = swing-side
# pelvic drop relative to quiet standing (standing_pose_deg) at t_low_s; the %MVC columns are the
# true activation of the stance GMed, the stance-side ES and the opposite ES over the loading
# phase t_start_s..t_end_s (mean and peak).
REP_TRUTH_DTYPE = np.dtype([
    ("task", "U20"), ("side", "U1"), ("index", "i4"),
    ("t_start_s", "f8"), ("t_low_s", "f8"), ("t_end_s", "f8"),
    ("compensated", "?"), ("shallow", "?"), ("depth", "f8"), ("drop_deg", "f8"),
    ("stance_gmed_pct_mvc", "f8"), ("es_ipsi_pct_mvc", "f8"), ("es_contra_pct_mvc", "f8"),
    ("stance_gmed_peak_pct_mvc", "f8"), ("es_ipsi_peak_pct_mvc", "f8"),
    ("es_contra_peak_pct_mvc", "f8"),
])

# The 10 % crossings of a raised-cosine rise (fall) lie at this fraction of the rise (fall).
_U10 = float(np.arccos(0.8) / np.pi)

# %MVC: (level while the weight is on the stance leg, added at the movement's peak); see
# ASSUMPTIONS.md "The exam" for the sources (stance GMed peaks: step-ups 61-63 %, MacAskill et al.
# 2014; single-limb squat among the highest, Distefano et al. 2009) and the estimates.
LEVELS = {
    "single_leg_stance": {"st_gmed": (8, 17), "sw_gmed": (4, 0), "st_es": (4, 2), "co_es": (4, 2)},
    "step_down": {"st_gmed": (15, 40), "sw_gmed": (5, 0), "st_es": (6, 4), "co_es": (5, 3)},
    "single_leg_squat": {"st_gmed": (15, 45), "sw_gmed": (6, 0), "st_es": (8, 10), "co_es": (8, 10)},
    "hip_abduction_wb": {"st_gmed": (15, 25), "sw_gmed": (5, 30), "st_es": (6, 4), "co_es": (6, 8)},
}
# ES %MVC added at the peak of a compensated repetition (at es_compensation_factor 2.5), and the
# share of the stance GMed's movement activity it takes over (estimates: the compensated
# repetition's ES ends above the weak GMed, ASSUMPTIONS.md).
COMPENSATION_PCT = {"single_leg_stance": 16.0, "step_down": 38.0, "single_leg_squat": 36.0,
                    "hip_abduction_wb": 30.0}
GMED_OFFLOAD = 0.3
# Pelvis and trunk per task: swing-side drop while standing on the leg (deg), swing-side drop at the
# movement's peak (deg; negative: the swing side hikes), anterior tilt at the peak (deg), sacrum
# descent at the peak (m), trunk toward the stance side at the peak (m).
POSE = {
    "single_leg_stance": {"hold_drop_deg": 0.5, "drop_deg": 0.5, "tilt_deg": 0.0, "down_m": 0.0, "lean_m": 0.01},
    "step_down": {"hold_drop_deg": 1.0, "drop_deg": 2.5, "tilt_deg": 4.0, "down_m": 0.12, "lean_m": 0.0},
    "single_leg_squat": {"hold_drop_deg": 1.0, "drop_deg": 2.0, "tilt_deg": 10.0, "down_m": 0.15, "lean_m": 0.0},
    "hip_abduction_wb": {"hold_drop_deg": 0.5, "drop_deg": -2.0, "tilt_deg": 2.0, "down_m": 0.0, "lean_m": 0.02},
}
WEIGHT_SHIFT_M = 0.06  # trunk over the stance foot
# Pauses and timing (s, at tempo 1)
SETTLE_S = 0.6  # weight on the leg before the first repetition
PAUSE_S = 1.0  # between repetitions; never below MIN_PAUSE_S
MIN_PAUSE_S = 0.5
MIN_PHASE_S = 0.5  # shortest descent or return
SHALLOW_DEPTH = (0.35, 0.6)  # a repetition done badly: this fraction of the usual depth ...
HURRIED = 0.7  # ... in this fraction of the usual time
# Single-leg stance: foot off after the weight shift and a short settle; the swing foot takes
# LIFT_S to rise (the pelvis takes up the new support) and LIFT_S to come down.
STANCE_SETTLE_S = 0.3
LIFT_S = 0.4
STANCE_SWAY_DEG = 0.4  # obliquity sway RMS on one leg (healthy); a weak stance side sways 2x
STANCE_SWAY_M = 0.005  # trunk sway RMS per horizontal axis on one leg
WEAK_DROP_START = 0.6  # a weak side's extra drop: this fraction at foot off, all of it by the end
MIN_HOLD_S = 2 * LIFT_S + 0.2  # told to stop as the foot goes up: it still goes up and comes down
SLOPPY_HOLD_S = (6.0, 10.0)  # a stance done badly: the foot comes down after this long
REP_GAIN_SD = 0.10  # repetition-to-repetition amplitude of each muscle


@dataclass
class RepPlan:
    """One exam task as this person does it (times in s from the task's start)."""

    task: Task
    duration_s: float
    onset_s: np.ndarray  # movement leaves 0 (stance: foot off)
    low_s: np.ndarray  # movement peak (stance: filled in from the pelvis truth)
    end_s: np.ndarray  # movement back at 0 (stance: foot down)
    depth: np.ndarray  # fraction of the usual depth
    shallow: np.ndarray  # bool
    compensated: np.ndarray  # bool
    gains: np.ndarray  # (reps, 4) activation gain of each muscle's movement part
    # single-leg stance: sway sinusoids (frequency Hz, phase rad, amplitude) per axis
    sway: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.onset_s)

    def t_start_s(self) -> np.ndarray:
        if self.task.kind == "single_leg_stance":
            return self.onset_s.copy()
        return self.onset_s + _U10 * (self.low_s - self.onset_s)

    def t_end_s(self) -> np.ndarray:
        if self.task.kind == "single_leg_stance":
            return self.end_s.copy()
        return self.low_s + (1.0 - _U10) * (self.end_s - self.low_s)


def _compensated_reps(cfg: PatientConfig, task: Task, n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    order = rng.permutation(n)  # drawn always: with or without compensation, the same movement
    if task.side == cfg.weak_side_letter and cfg.compensates_in(task.kind) and n:
        k = int(round(cfg.compensated_rep_fraction * n))
        k = max(1, k) if cfg.compensated_rep_fraction > 0 else 0
        out[order[:k]] = True
    return out


def plan_task(cfg: PatientConfig, task: Task, rng: np.random.Generator) -> RepPlan:
    """Draw how this person does `task`; the draws are the same whatever the hold length (the
    live patient re-plans a hold cut short and must get the same movement up to the cut)."""
    cv, tempo = cfg.rep_time_cv, cfg.exam_tempo
    gains = np.clip(1 + REP_GAIN_SD * rng.standard_normal((max(task.reps, 1), 4)), 0.7, 1.3)
    if task.kind == "single_leg_stance":
        sway = {axis: (rng.uniform(0.15, 1.5, 4), rng.uniform(0, 2 * np.pi, 4),
                       rng.uniform(0.5, 1.5, 4)) for axis in ("obliquity", "x", "y")}
        sloppy_hold = rng.uniform(*SLOPPY_HOLD_S)
        comp = _compensated_reps(cfg, task, 1, rng)
        hold = min(task.hold_s, sloppy_hold) if task.sloppy else task.hold_s
        foot_off = WEIGHT_SHIFT_S + STANCE_SETTLE_S
        if task.stop_s is not None:
            hold = min(hold, task.stop_s - foot_off)
        foot_down = foot_off + max(hold, MIN_HOLD_S)
        duration = foot_down + STANCE_SETTLE_S + WEIGHT_SHIFT_S
        return RepPlan(task, duration, np.array([foot_off]), np.array([np.nan]),
                       np.array([foot_down]), np.ones(1), np.array([task.sloppy]), comp,
                       gains[:1], sway)
    n = max(1, task.reps - 2) if task.sloppy else task.reps
    rep_s = (task.rep_s or NOMINAL_REP_S[task.kind]) * tempo
    bad = (rng.random(task.reps) < cfg.bad_rep_fraction)[:n] | task.sloppy
    lognorm = np.exp(cv * rng.standard_normal((task.reps, 3)))[:n]
    descent_frac = np.clip(0.5 + 0.05 * rng.standard_normal(task.reps), 0.35, 0.65)[:n]
    depth = np.clip(1 + 0.5 * cv * rng.standard_normal(task.reps), 0.8, 1.2)[:n]
    shallow_depth = rng.uniform(*SHALLOW_DEPTH, task.reps)[:n]
    settle = SETTLE_S * tempo * float(np.exp(cv * rng.standard_normal()))
    comp = _compensated_reps(cfg, task, n, rng)
    depth = np.where(bad, shallow_depth, depth)
    move_s = rep_s * lognorm[:, 0] * np.where(bad, HURRIED, 1.0)
    descent = np.maximum(move_s * descent_frac, MIN_PHASE_S)
    ascent = np.maximum(move_s * (1 - descent_frac), MIN_PHASE_S)
    pause = np.maximum(PAUSE_S * tempo * lognorm[:, 1] ** 2, MIN_PAUSE_S)
    onset = np.empty(n)
    t = WEIGHT_SHIFT_S + settle
    for k in range(n):
        if task.stop_s is not None and t >= task.stop_s:  # told to stop: no new repetition
            n = k
            break
        onset[k] = t
        t += descent[k] + ascent[k] + pause[k]
    onset, descent, ascent, depth, bad, comp = (x[:n] for x in (onset, descent, ascent, depth, bad, comp))
    low = onset + descent
    end = low + ascent
    duration = t + WEIGHT_SHIFT_S  # the last pause, then the weight shifts back
    return RepPlan(task, duration, onset, low, end, depth, bad.astype(bool), comp, gains[:n])


# ------------------------------------------------------------------------------------------------
def _shift(plan: RepPlan, t_rel_s: np.ndarray) -> np.ndarray:
    """Weight on the stance leg 0..1: raised-cosine ramps of WEIGHT_SHIFT_S at both ends."""
    up = np.clip(t_rel_s / WEIGHT_SHIFT_S, 0, 1)
    down = np.clip((plan.duration_s - t_rel_s) / WEIGHT_SHIFT_S, 0, 1)
    return 0.25 * (1 - np.cos(np.pi * up)) * (1 - np.cos(np.pi * down))


def rep_envelopes(plan: RepPlan, t_rel_s: np.ndarray) -> np.ndarray:
    """(reps, n) each repetition's movement, 0..1 (not scaled by its depth). Stance: the lift,
    0 before foot off, 1 through the hold, back to 0 at foot down."""
    t = t_rel_s[None, :]
    on, low, end = plan.onset_s[:, None], plan.low_s[:, None], plan.end_s[:, None]
    if plan.task.kind == "single_leg_stance":
        up = np.clip((t - on) / LIFT_S, 0, 1)
        down = np.clip((end - t) / LIFT_S, 0, 1)
        return 0.25 * (1 - np.cos(np.pi * up)) * (1 - np.cos(np.pi * down))
    rise = np.clip((t - on) / (low - on), 0, 1)
    fall = np.clip((t - low) / (end - low), 0, 1)
    env = np.where(t <= low, 0.5 * (1 - np.cos(np.pi * rise)), 0.5 * (1 + np.cos(np.pi * fall)))
    return np.where((t >= on) & (t <= end), env, 0.0)


def _sines(spec, t: np.ndarray, rms: float) -> np.ndarray:
    f, ph, amp = spec
    x = (amp[:, None] * np.sin(2 * np.pi * f[:, None] * t[None, :] + ph[:, None])).sum(axis=0)
    return x * rms / np.sqrt(0.5 * np.sum(amp ** 2))


def kinematics(cfg: PatientConfig, plan: RepPlan, t_rel_s: np.ndarray):
    """Dynamic pelvis angles (deg, n x 3) and trunk displacement (m, n x 3) of one exam task."""
    task = plan.task
    pose = POSE[task.kind]
    shift = _shift(plan, t_rel_s)
    env = rep_envelopes(plan, t_rel_s)
    move = (env * plan.depth[:, None]).sum(axis=0)
    sign = 1.0 if task.side == "L" else -1.0  # left stance: the right side drops -> obliquity +
    weak = task.side == cfg.weak_side_letter
    extra = cfg.pelvic_drop_deg if weak else 0.0
    drop = pose["hold_drop_deg"] * shift + pose["drop_deg"] * move
    disp = np.zeros((len(t_rel_s), 3))
    if task.kind == "single_leg_stance":
        # the extra drop grows over the hold asked for (not the one done: a hold cut short is the
        # same movement up to the cut)
        u = np.clip((t_rel_s - plan.onset_s[0]) / max(task.hold_s, 1e-9), 0, 1)
        drop = drop + extra * (WEAK_DROP_START + (1 - WEAK_DROP_START) * u) * move
        sway_deg = STANCE_SWAY_DEG * (2.0 if weak else 1.0)
        drop = drop + move * _sines(plan.sway["obliquity"], t_rel_s, sway_deg)
        disp[:, 0] = move * _sines(plan.sway["x"], t_rel_s, STANCE_SWAY_M)
        disp[:, 1] = move * _sines(plan.sway["y"], t_rel_s, STANCE_SWAY_M)
    else:
        drop = drop + extra * move
    tilt = pose["tilt_deg"] * move
    angles = np.stack([sign * drop, tilt, np.zeros_like(tilt)], axis=1)
    disp[:, 1] += sign * (WEIGHT_SHIFT_M * shift + pose["lean_m"] * move)  # +y = left
    disp[:, 2] -= pose["down_m"] * move
    return angles, disp


def activation(cfg: PatientConfig, plan: RepPlan, t_rel_s: np.ndarray) -> np.ndarray:
    """(n,4) fraction of MVC of one exam task."""
    task = plan.task
    lv = LEVELS[task.kind]
    st, co = task.side, ("R" if task.side == "L" else "L")
    weak = task.side == cfg.weak_side_letter
    tonic = cfg.tonic_pct_mvc
    shift = _shift(plan, t_rel_s)
    env = rep_envelopes(plan, t_rel_s) * plan.depth[:, None]
    offload = np.where(plan.compensated, 1.0 - GMED_OFFLOAD, 1.0)
    pct = np.empty((len(t_rel_s), 4))
    for ch, key in ((GMED[st], "st_gmed"), (GMED[co], "sw_gmed"), (ES[st], "st_es"), (ES[co], "co_es")):
        hold, peak = lv[key]
        factor = cfg.weak_gmed_pct_factor if (key == "st_gmed" and weak) else 1.0
        per_rep = plan.gains[:, ch] * (offload if key == "st_gmed" else 1.0)
        move = (env * per_rep[:, None]).sum(axis=0)
        pct[:, ch] = tonic + factor * (shift * (hold - tonic) + move * peak)
    if plan.compensated.any() and cfg.es_compensation is not None:
        target = ES[st] if cfg.es_compensation == "stance" else ES[co]
        scale = (cfg.es_compensation_factor - 1.0) / 1.5
        comp = (env * plan.compensated[:, None]).sum(axis=0)
        pct[:, target] += COMPENSATION_PCT[task.kind] * scale * comp
    return np.clip(pct / 100.0, 0.0, 1.0)


# ------------------------------------------------------------------------------------------------
def truth_rows(cfg: PatientConfig, plan: RepPlan, t0_s: float, activation_: np.ndarray,
               pelvis_rel_deg: np.ndarray) -> np.ndarray:
    """The truth of each repetition of one task that starts at t0_s in the recording; activation_
    at the EMG rate and pelvis_rel_deg (relative to quiet standing) at the IMU rate, whole
    recording. Fills plan.low_s of a single-leg stance."""
    task = plan.task
    sign = 1.0 if task.side == "L" else -1.0
    st, co = task.side, ("R" if task.side == "L" else "L")
    swing_drop = sign * pelvis_rel_deg[:, 0]
    fs, fs_imu = units.EMG_RATE_HZ, units.IMU_RATE_HZ
    starts, ends = t0_s + plan.t_start_s(), t0_s + plan.t_end_s()
    rows = np.zeros(plan.n, dtype=REP_TRUTH_DTYPE)
    pose = POSE[task.kind]
    for k in range(plan.n):
        a, b = starts[k], ends[k]
        if task.kind == "single_leg_stance":
            i0, i1 = int(np.ceil(a * fs_imu)), int(np.floor(b * fs_imu)) + 1
            i_low = i0 + int(np.argmax(swing_drop[i0:i1]))
            low = i_low / fs_imu
            plan.low_s[k] = low - t0_s
            depth = 100.0 * (swing_drop[i_low] - swing_drop[i0])
        else:
            low = t0_s + plan.low_s[k]
            i_low = int(round(low * fs_imu))
            if pose["down_m"] > 0:
                depth = 1000.0 * pose["down_m"] * plan.depth[k]
            else:
                extra = cfg.pelvic_drop_deg if task.side == cfg.weak_side_letter else 0.0
                depth = 100.0 * (pose["drop_deg"] + extra) * plan.depth[k]
        act = activation_[int(np.ceil(a * fs)):int(np.floor(b * fs)) + 1] * 100.0
        g, ei, ec = act[:, GMED[st]], act[:, ES[st]], act[:, ES[co]]
        rows[k] = (task.kind, st, k, a, low, b, plan.compensated[k], plan.shallow[k], depth,
                   swing_drop[min(i_low, len(swing_drop) - 1)], g.mean(), ei.mean(), ec.mean(),
                   g.max(), ei.max(), ec.max())
    return rows
