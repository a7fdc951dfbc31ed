"""Synthetic exam sessions with known truth, built directly as SessionData (no firmware, no
simulator): standing, the four MVCs, per side (left, then right) single-leg stance and 5
repetitions of step-down, single-leg squat and weight-bearing hip abduction, then an optional walk
(synthetic.make_session builds standing, MVCs and walk; the exam is laid into the quiet time it
leaves before the walk).

A repetition of a movement task: start a, lowest point a + LOAD_S, end a + REP_S, a pause of
PAUSE_S before the next. Each muscle rises from its holding level (the stance muscles hold the
single-leg stance between repetitions) to its level for the repetition along a RISE_S ramp
starting at its own onset (a + lead), holds to the lowest point and falls back by the end.
Obliquity: a raised-cosine toward the swing side peaking at the lowest point with the repetition's
drop. Single-leg stance: the foot leaves the floor at a, the hold lasts HOLD_S with the muscles at
their levels and the swing side dropped by the drop (its largest point, low, at the middle).
The device's repetitions (session.reps) are the constructed times, minus the ones listed missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from hipwire import quality as q

from ..exam_tasks import EXAM_TASKS, SIDES
from ..session import EMG_CHANNELS, REP_DTYPE, SessionData, Task
from . import synthetic as syn

LOAD_S, REP_S, PAUSE_S, RISE_S = 1.2, 2.4, 1.0, 0.2
HOLD_S = 30.0
TASK_LEAD_S, TASK_TAIL_S = 2.0, 1.5  # task window before the first / after the last repetition
HOLD_GMED_PCT, HOLD_ES_PCT = 8.0, 3.0  # holding single-leg stance between repetitions


@dataclass(frozen=True)
class RepPattern:
    """%MVC levels over the loading phase, the drop (deg beyond standing, + = swing side lower)
    and the onsets (s relative to the repetition's start; negative = before)."""

    gmed_pct: float = 40.0
    es_ipsi_pct: float = 12.0
    es_contra_pct: float = 10.0
    drop_deg: float = 1.5
    gmed_lead_s: float = -0.10
    es_lead_s: float = 0.15


NORMAL = RepPattern()
# erector-dominant: both ES above the stance GMed, ES first, swing side dropping
COMPENSATED = RepPattern(gmed_pct=20.0, es_ipsi_pct=35.0, es_contra_pct=30.0, drop_deg=7.0,
                         gmed_lead_s=0.15, es_lead_s=-0.15)


@dataclass
class ExamSpec:
    seed: int = 11
    walk_s: float = 0.0  # 0: exam only
    # (task, side) -> indices of the compensated repetitions (single-leg stance: (0,) or ())
    compensated: dict = field(default_factory=dict)
    # (task, side) -> indices the device did not report
    missing: dict = field(default_factory=dict)
    normal: RepPattern = NORMAL
    compensation: RepPattern = COMPENSATED
    rep_jitter: float = 0.08  # relative SD of each repetition's levels
    with_mvc: bool = True
    lead_off: tuple | None = None  # (channel, t_start_s, t_end_s)
    noise_rel: float = 0.1
    tasks: tuple = tuple(t.name for t in EXAM_TASKS)


def all_sides(task: str, sides=SIDES, reps=range(5)) -> dict:
    return {(task, s): tuple(reps) for s in sides}


def _ramp(t, t0, rise_s):
    return np.clip((t - t0) / rise_s, 0.0, 1.0)


def _layout(spec: ExamSpec, t0: float):
    """[(task, side, t_start, t_end, [(a, low, b), ...])] from t0."""
    out, t = [], t0
    for side in SIDES:
        for task in EXAM_TASKS:
            if task.name not in spec.tasks:
                continue
            a0 = t + TASK_LEAD_S
            if task.hold_s:
                reps = [(a0, a0 + HOLD_S / 2, a0 + HOLD_S)]
            else:
                reps = [(a0 + k * (REP_S + PAUSE_S), a0 + k * (REP_S + PAUSE_S) + LOAD_S,
                         a0 + k * (REP_S + PAUSE_S) + REP_S) for k in range(task.reps)]
            end = reps[-1][2] + TASK_TAIL_S
            out.append((task, side, t, end, reps))
            t = end + 2.0
    return out, t


def exam_duration_s(spec: ExamSpec) -> float:
    layout, end = _layout(spec, 0.0)
    return end


def make_exam_session(spec: ExamSpec) -> tuple[SessionData, dict]:
    """(session, truth). truth[(task, side)] = list per constructed repetition of
    {index, t_start_s, t_low_s, t_end_s, compensated, pattern (RepPattern with the jittered levels),
    reported (False when the device missed it)}."""
    rng = np.random.default_rng(spec.seed)
    gap = exam_duration_s(spec)
    base = syn.SyntheticSpec(seed=spec.seed, walk_s=max(spec.walk_s, 10.0), with_mvc=spec.with_mvc,
                             noise_rel=spec.noise_rel, walk_offset_s=gap + 2.0,
                             patient_id="P-SYN-EXAM")
    s = syn.make_session(base)
    t_exam0 = next(t.t_end_s for t in reversed(s.tasks) if t.name != "walk") + 2.0
    layout, _ = _layout(spec, t_exam0)
    tt = s.envelope_t_s
    act = np.zeros((len(tt), 4))
    obl = np.zeros(len(tt))
    truth: dict = {}
    rows = []
    for task, side, ta, tb, reps in layout:
        s.tasks.append(Task(task.stored_name(side), ta, tb))
        own, oth = ("l", "r") if side == "left" else ("r", "l")
        ch = [EMG_CHANNELS.index(f"{own}_gmed"), EMG_CHANNELS.index(f"{own}_es"),
              EMG_CHANNELS.index(f"{oth}_es")]
        sign = 1.0 if side == "left" else -1.0
        w = (tt >= ta) & (tt <= tb)
        weight = np.clip(np.minimum(tt - ta, tb - tt) / 1.0, 0.0, 1.0) * w  # weight on the leg
        act[:, ch[0]] += HOLD_GMED_PCT * weight
        act[:, ch[1]] += HOLD_ES_PCT * weight
        act[:, ch[2]] += HOLD_ES_PCT * weight
        comp = set(spec.compensated.get((task.name, side), ()))
        miss = set(spec.missing.get((task.name, side), ()))
        truth[(task.name, side)] = []
        for k, (a, low, b) in enumerate(reps):
            p = spec.compensation if k in comp else spec.normal
            j = np.clip(1 + spec.rep_jitter * rng.standard_normal(4), 0.6, 1.4)
            p = replace(p, gmed_pct=p.gmed_pct * j[0], es_ipsi_pct=p.es_ipsi_pct * j[1],
                        es_contra_pct=p.es_contra_pct * j[2], drop_deg=p.drop_deg * j[3])
            sel = (tt >= a - 0.6) & (tt <= b)
            t = tt[sel]
            fall = np.clip((b - t) / (b - low), 0.0, 1.0) if task.hold_s == 0 else \
                np.clip((b - t) / 0.3, 0.0, 1.0)
            for c, level, lead, hold in ((ch[0], p.gmed_pct, p.gmed_lead_s, HOLD_GMED_PCT),
                                         (ch[1], p.es_ipsi_pct, p.es_lead_s, HOLD_ES_PCT),
                                         (ch[2], p.es_contra_pct, p.es_lead_s, HOLD_ES_PCT)):
                act[sel, c] += (level - hold) * _ramp(t, a + lead, RISE_S) * fall
            if task.hold_s:
                u = np.clip((t - a) / (b - a), 0.0, 1.0)
                shape = np.where((t >= a) & (t <= b), 0.6 + 0.4 * np.sin(np.pi * u), 0.0)
            else:
                u = np.where(t <= low, (t - a) / (low - a), 1 + (t - low) / (b - low))
                shape = np.where((t >= a) & (t <= b), 0.5 - 0.5 * np.cos(np.pi * u), 0.0)
            obl[sel] += sign * p.drop_deg * shape
            truth[(task.name, side)].append({"index": k, "t_start_s": a, "t_low_s": low,
                                             "t_end_s": b, "compensated": k in comp,
                                             "pattern": p, "reported": k not in miss})
            if k not in miss:
                rows.append((a, low, b, task.name, side[0].upper(), k, 0,
                             round(100 * p.drop_deg) if task.hold_s else 120.0))
    mvc = np.array([syn.MVC_UV[c] for c in EMG_CHANNELS])
    noise = spec.noise_rel * rng.standard_normal(act.shape) * act
    s.envelope_uv = s.envelope_uv + np.clip(act + noise, 0, None) / 100.0 * mvc
    s.pelvis_deg[:, 0] += obl
    if spec.lead_off is not None:
        c, a, b = spec.lead_off
        for t_st, f in zip(s.status.t_s, s.status.fields):
            if a <= t_st <= b:
                f["quality"][EMG_CHANNELS.index(c)] = q.LEAD_OFF
    if spec.walk_s <= 0:  # exam only: no walk task, no gait events
        s.tasks = [t for t in s.tasks if t.name != "walk"]
        s.events = s.events[:0]
        end = max(r[2] for r in rows) + 5.0 if rows else tt[-1]
        keep = tt <= end
        s.envelope_t_s, s.envelope_uv = s.envelope_t_s[keep], s.envelope_uv[keep]
        s.pelvis_t_s, s.pelvis_deg = s.pelvis_t_s[keep], s.pelvis_deg[keep]
    s.tasks.sort(key=lambda t: t.t_start_s)
    s.reps = np.sort(np.array(rows, dtype=REP_DTYPE), order="t_start_s")
    return s, truth


def healthy_exam(seed: int = 11, **kw) -> ExamSpec:
    return ExamSpec(seed=seed, **kw)


def weak_left_exam(seed: int = 12, **kw) -> ExamSpec:
    """Compensates on the left stance leg in every repetition of step-down and single-leg squat
    and in single-leg stance; normal in weight-bearing hip abduction and on the right."""
    comp = {**all_sides("step_down", ("left",)), **all_sides("single_leg_squat", ("left",)),
            ("single_leg_stance", "left"): (0,)}
    return ExamSpec(seed=seed, compensated=comp, **kw)
