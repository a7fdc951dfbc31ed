"""The clinical exam, repetition by repetition: single-leg stance, step-down, single-leg squat and
weight-bearing hip abduction, each stance side (hipsync.exam_tasks).

A task side is the stored task `<task>_<left|right>`; its repetitions are the device's (session.reps,
REP_DTYPE) that start inside that task's window. A repetition the device did not find is counted
as missing against the task's expected count; it is never reconstructed from the signals.

Per repetition (stance side S, swing side C):
- loading phase = start .. lowest point (single-leg stance: the whole hold, start .. end);
- stance_gmed_pct_mvc, es_ipsi_pct_mvc, es_contra_pct_mvc: mean %MVC of GMed S, ES S, ES C over the
  loading phase (`*_peak_pct_mvc`: the peak); gmed_es_ratio_ipsi/_contra: the ratios of the means;
- gmed_onset_ms, es_ipsi_onset_ms, es_contra_onset_ms relative to the repetition's start (negative =
  before): first crossing of baseline mean + ONSET_K_SD SD held ONSET_MIN_DURATION_S (Hodges & Bui
  1996), the baseline being the resting envelope raised to the repetition's own pre-start level when
  that is higher (rules.py), minus the envelope delay; es_onset_ms = the earlier erector;
  first_onset = "gmed" | "es" | "together" | None;
- pelvic_drop_deg: the largest swing-side drop over the repetition relative to the standing
  calibration (+ = swing side lower), as in walking;
- quality: electrode flags on a needed channel (EMG left out), envelope coverage below
  rules.MIN_WINDOW_COVERAGE (EMG left out), the device's REP flags (truncated: left out).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hipwire import frames

from ..exam_tasks import BY_NAME, EXAM_TASKS, REDONE, SIDES, SKIPPED, ExamTask, parse_stored_name
from ..session import EMG_CHANNELS, Calibration, SessionData
from . import rules
from .calibration import RestBaseline

CURVE_POINTS = 101  # 0..100 % of each repetition, start -> end
CH = {name: i for i, name in enumerate(EMG_CHANNELS)}
ACTIVATION = ("stance_gmed", "es_ipsi", "es_contra")  # roles, in channel order of _channels()
PER_REP_METRICS = ("stance_gmed_pct_mvc", "stance_gmed_peak_pct_mvc", "es_ipsi_pct_mvc",
                   "es_ipsi_peak_pct_mvc", "es_contra_pct_mvc", "es_contra_peak_pct_mvc",
                   "gmed_es_ratio_ipsi", "gmed_es_ratio_contra", "gmed_onset_ms",
                   "es_ipsi_onset_ms", "es_contra_onset_ms", "es_onset_ms", "pelvic_drop_deg",
                   "duration_s", "loading_s")
SUMMARY_METRICS = tuple(m for m in PER_REP_METRICS if m not in ("es_ipsi_onset_ms",
                                                                "es_contra_onset_ms"))
TASK_LABEL = {"single_leg_stance": "single-leg stance", "step_down": "step-down",
              "single_leg_squat": "single-leg squat",
              "hip_abduction_wb": "weight-bearing hip abduction"}
REP_FLAG_NAMES = dict(frames.REP_FLAGS)


@dataclass
class ExamSide:
    task: str
    side: str  # "left" | "right" (stance side)
    status: str  # "analysed" | "skipped"
    t_start_s: float | None
    t_end_s: float | None
    reps: list[dict]  # one dict per repetition found (PER_REP_METRICS and quality)
    summaries: dict[str, dict]
    counts: dict
    curves: dict
    onset_order: dict
    epochs: dict  # single-leg stance: ratios per hold epoch; other tasks: {}
    flags: list[rules.Flag] = field(default_factory=list)
    sentence: str = ""


@dataclass
class ExamAnalysis:
    tasks: dict[str, dict[str, ExamSide]]  # task name -> side -> result
    left_vs_right: dict[str, dict]  # task name -> symmetry of the medians

    @property
    def flags(self) -> list[rules.Flag]:
        return [f for sides in self.tasks.values() for r in sides.values() for f in r.flags]


def has_exam(session: SessionData) -> bool:
    return any(parse_stored_name(t.name) is not None for t in session.tasks)


def _slice(t: np.ndarray, a: float, b: float) -> tuple[int, int]:
    return int(np.searchsorted(t, a, side="left")), int(np.searchsorted(t, b, side="right"))


def _onset_ms(t, x, t0, search_a, search_b, threshold, min_samples) -> float:
    i0, i1 = _slice(t, search_a, search_b)
    seg = x[i0:i1] > threshold
    if len(seg) < min_samples + 1 or seg[0]:
        return float("nan")  # active from the search start: no onset for this repetition
    run = np.convolve(seg.astype(int), np.ones(min_samples, int), mode="valid") == min_samples
    hits = np.flatnonzero(run)
    return float("nan") if hits.size == 0 else (t[i0 + hits[0]] - t0) * 1000.0


def _mean_sd(m: np.ndarray) -> dict:
    ok = np.all(np.isfinite(m), axis=1) if m.size else np.zeros(0, bool)
    m = m[ok]
    if len(m) == 0:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": m.mean(axis=0), "sd": m.std(axis=0), "n": len(m)}


def _resample(t, x, a, b, dt) -> np.ndarray | None:
    i0, i1 = _slice(t, a - dt, b + dt)
    if i1 - i0 < 2 or (i1 - i0) < rules.MIN_WINDOW_COVERAGE * (b - a) / dt:
        return None
    return np.interp(np.linspace(a, b, CURVE_POINTS), t[i0:i1], x[i0:i1])


def _summary(values) -> dict:
    from .core import summary  # core imports this module

    return summary(values)


class _Context:
    """What every task side needs: normalised envelopes, obliquity, quality, thresholds."""

    def __init__(self, session: SessionData, cal: Calibration, reference_uv: dict[str, float],
                 rest: RestBaseline | None, envelope_delay_ms: float):
        self.session = session
        ref = np.array([reference_uv[ch] for ch in EMG_CHANNELS])
        self.pct = session.envelope_uv * (100.0 / ref)
        self.et, self.pt = session.envelope_t_s, session.pelvis_t_s
        self.rate = session.metadata.envelope_rate_hz
        self.pelvis_rate = session.metadata.pelvis_rate_hz
        self.obl_rel = session.pelvis_deg[:, 0] - cal.standing_deg[0]
        self.qt, self.qf = session.status.quality()
        self.rest_thr = None if rest is None else rest.mean_uv + rules.ONSET_K_SD * rest.sd_uv
        self.delay_ms = envelope_delay_ms
        self.min_samples = max(1, round(rules.ONSET_MIN_DURATION_S * self.rate))

    def bad_channels(self, chans: list[int], a: float, b: float) -> list[str]:
        if len(self.qt) == 0:
            return []
        j0 = max(0, int(np.searchsorted(self.qt, a, side="right")) - 1)  # status in force at a
        j1 = int(np.searchsorted(self.qt, b, side="right"))
        bad = (self.qf[j0:j1][:, chans] & rules.BAD_QUALITY_BITS).any(axis=0)
        return [EMG_CHANNELS[c] for c, b_ in zip(chans, bad) if b_]


def _channels(side: str) -> list[int]:
    s, c = ("l", "r") if side == "left" else ("r", "l")
    return [CH[f"{s}_gmed"], CH[f"{s}_es"], CH[f"{c}_es"]]


def _windows(session: SessionData):
    """(task, side) -> (window or None, status, redone attempts)."""
    out: dict[tuple[str, str], dict] = {}
    for t in session.tasks:
        base, _, suffix = t.name.partition(":")
        parsed = parse_stored_name(base)
        if parsed is None:
            continue
        key = (parsed[0].name, parsed[1])
        entry = out.setdefault(key, {"window": None, "redone": 0, "skipped": False})
        if suffix == REDONE:
            entry["redone"] += 1
        elif suffix == SKIPPED:
            entry["skipped"] = True
        elif not suffix:
            entry["window"] = (t.t_start_s, t.t_end_s)  # the last stored attempt counts
    return out


def _device_reps(session: SessionData, task: ExamTask, side: str, a: float, b: float) -> np.ndarray:
    r = session.reps
    letter = side[0].upper()
    sel = (r["task"] == task.name) & (r["side"] == letter) & (r["t_start_s"] >= a) & \
        (r["t_start_s"] <= b)
    found = np.sort(r[sel], order="t_start_s", kind="stable")
    # a frame re-sent after a reconnect is the same repetition: keep one per device index
    _, first = np.unique(found["index"], return_index=True)
    return found[np.sort(first)]


def _rep(ctx: _Context, task: ExamTask, side: str, row, prev_end_s: float) -> dict:
    chans = _channels(side)
    hold = task.hold_s > 0
    a, low, b = float(row["t_start_s"]), float(row["t_low_s"]), float(row["t_end_s"])
    load_end = b if hold else max(low, a + 1.0 / ctx.rate)
    rep = {"index": int(row["index"]), "t_start_s": a, "t_low_s": low, "t_end_s": b,
           "duration_s": b - a, "loading_s": load_end - a,
           "depth": float(row["depth"]),
           "depth_unit": frames.REP_DEPTH_UNITS[BY_NAME[task.name].code - 1],
           "device_flags": [name for bit, name in frames.REP_FLAGS if int(row["flags"]) & bit]}
    rep.update({m: float("nan") for m in PER_REP_METRICS if m not in ("duration_s", "loading_s")})
    bad = ctx.bad_channels(chans, a, b)
    i0, i1 = _slice(ctx.et, a, load_end)
    coverage = (i1 - i0) / max(1.0, (load_end - a) * ctx.rate)
    j0, j1 = _slice(ctx.pt, a, b)
    p_cov = (j1 - j0) / max(1.0, (b - a) * ctx.pelvis_rate)
    rep["quality"] = {"electrode_problem_channels": bad, "envelope_coverage": min(1.0, coverage),
                      "pelvis_coverage": min(1.0, p_cov)}
    excluded = None
    if "truncated" in rep["device_flags"]:
        excluded = "truncated"
    elif bad:
        excluded = "electrode problem"
    elif i1 - i0 < 2 or coverage < rules.MIN_WINDOW_COVERAGE:
        excluded = "data gap"
    rep["excluded"] = excluded
    rep["emg_valid"] = excluded is None
    if excluded is None:
        w = ctx.pct[i0:i1][:, chans]
        means, peaks = w.mean(axis=0), w.max(axis=0)
        for role, m, p in zip(ACTIVATION, means, peaks):
            rep[f"{role}_pct_mvc"], rep[f"{role}_peak_pct_mvc"] = float(m), float(p)
        if means[1] > 0:
            rep["gmed_es_ratio_ipsi"] = float(means[0] / means[1])
        if means[2] > 0:
            rep["gmed_es_ratio_contra"] = float(means[0] / means[2])
        if ctx.rest_thr is not None:
            search_a = a - rules.EXAM_ONSET_SEARCH_BEFORE_S
            search_b = a + rules.EXAM_HOLD_ONSET_SEARCH_S if hold else load_end
            k0, k1 = _slice(ctx.et, max(prev_end_s, search_a - rules.EXAM_ONSET_BASELINE_S),
                            search_a)
            env = ctx.session.envelope_uv
            for role, ch in zip(("gmed", "es_ipsi", "es_contra"), chans):
                thr = ctx.rest_thr[ch]
                if k1 - k0 >= 5:  # the muscle may already hold the stance: rise from there
                    base = env[k0:k1, ch]
                    thr = max(thr, float(base.mean() + rules.ONSET_K_SD * base.std()))
                rep[f"{role}_onset_ms"] = _onset_ms(ctx.et, env[:, ch], a, search_a, search_b,
                                                    thr, ctx.min_samples) - ctx.delay_ms
            es = [v for v in (rep["es_ipsi_onset_ms"], rep["es_contra_onset_ms"]) if np.isfinite(v)]
            rep["es_onset_ms"] = min(es) if es else float("nan")
    g, e = rep["gmed_onset_ms"], rep["es_onset_ms"]
    if np.isfinite(g) and np.isfinite(e):
        rep["first_onset"] = ("together" if abs(g - e) <= rules.EXAM_ONSET_TIE_MS else
                              "es" if e < g else "gmed")
    else:
        rep["first_onset"] = None
    sign = 1.0 if side == "left" else -1.0  # positive obliquity = right side lower
    if j1 - j0 >= max(2, rules.MIN_WINDOW_COVERAGE * (b - a) * ctx.pelvis_rate):
        rep["pelvic_drop_deg"] = float(np.max(sign * ctx.obl_rel[j0:j1]))
    return rep


def _epochs(ctx: _Context, side: str, reps: list[dict]) -> dict:
    """Single-leg stance: GMed/ES ratios per EXAM_HOLD_EPOCH_S epoch of each valid hold."""
    chans = _channels(side)
    ri, rc = [], []
    for rep in reps:
        if not rep["emg_valid"]:
            continue
        n = int((rep["t_end_s"] - rep["t_start_s"]) // rules.EXAM_HOLD_EPOCH_S)
        for k in range(n):
            a = rep["t_start_s"] + k * rules.EXAM_HOLD_EPOCH_S
            i0, i1 = _slice(ctx.et, a, a + rules.EXAM_HOLD_EPOCH_S)
            if i1 - i0 < rules.MIN_WINDOW_COVERAGE * rules.EXAM_HOLD_EPOCH_S * ctx.rate:
                continue
            m = ctx.pct[i0:i1][:, chans].mean(axis=0)
            ri.append(m[0] / m[1] if m[1] > 0 else np.nan)
            rc.append(m[0] / m[2] if m[2] > 0 else np.nan)
    return {"epoch_s": rules.EXAM_HOLD_EPOCH_S, "gmed_es_ratio_ipsi": np.asarray(ri, float),
            "gmed_es_ratio_contra": np.asarray(rc, float)}


def _curves(ctx: _Context, side: str, reps: list[dict]) -> dict:
    chans = _channels(side)
    dt_e = 1.0 / ctx.rate
    dt_p = 1.0 / ctx.pelvis_rate
    sign = 1.0 if side == "left" else -1.0
    out = {"phase_pct": np.linspace(0, 100, CURVE_POINTS)}
    valid = [r for r in reps if r["emg_valid"]]
    for role, ch in zip(ACTIVATION, chans):
        rows = [_resample(ctx.et, ctx.pct[:, ch], r["t_start_s"], r["t_end_s"], dt_e) for r in valid]
        out[role] = _mean_sd(np.array([x for x in rows if x is not None]).reshape(-1, CURVE_POINTS))
    rows = [_resample(ctx.pt, sign * ctx.obl_rel, r["t_start_s"], r["t_end_s"], dt_p) for r in reps
            if r["excluded"] != "truncated"]
    out["pelvic_drop_deg"] = _mean_sd(np.array([x for x in rows if x is not None])
                                      .reshape(-1, CURVE_POINTS))
    lows = [100.0 * (r["t_low_s"] - r["t_start_s"]) / r["duration_s"] for r in reps
            if r["duration_s"] > 0]
    out["low_phase_pct"] = float(np.median(lows)) if lows else None
    return out


def analyse_task_side(ctx: _Context, task: ExamTask, side: str, window, meta: dict) -> ExamSide:
    if window is None:
        counts = {"expected": task.reps, "found": 0, "missing": task.reps, "excluded": 0,
                  "valid": 0, "pelvis_valid": 0, "excluded_quality": 0, "excluded_data_gap": 0,
                  "excluded_truncated": 0, "redone_attempts": meta["redone"]}
        empty = {m: _summary([]) for m in SUMMARY_METRICS}
        return ExamSide(task.name, side, "skipped", None, None, [], empty, counts,
                        _curves(ctx, side, []), {"es_first": 0, "gmed_first": 0, "together": 0,
                                                 "n": 0}, {})
    a, b = window
    rows = _device_reps(ctx.session, task, side, a, b)
    reps, prev_end = [], a - 10.0
    for row in rows:
        reps.append(_rep(ctx, task, side, row, prev_end))
        prev_end = float(row["t_end_s"])
    valid = [r for r in reps if r["emg_valid"]]
    summaries = {}
    for m in SUMMARY_METRICS:
        # pelvis and timing do not need the electrodes; a truncated repetition is incomplete
        src = ([r for r in reps if r["excluded"] != "truncated"]
               if m in ("pelvic_drop_deg", "duration_s", "loading_s") else valid)
        summaries[m] = _summary([r[m] for r in src])
    order = {"es_first": sum(r["first_onset"] == "es" for r in valid),
             "gmed_first": sum(r["first_onset"] == "gmed" for r in valid),
             "together": sum(r["first_onset"] == "together" for r in valid)}
    order["n"] = sum(order.values())
    reasons = [r["excluded"] for r in reps]
    counts = {"expected": task.reps, "found": len(reps),
              "missing": max(0, task.reps - len(reps)),
              "excluded": sum(x is not None for x in reasons), "valid": len(valid),
              "pelvis_valid": summaries["pelvic_drop_deg"]["n"],
              "excluded_quality": reasons.count("electrode problem"),
              "excluded_data_gap": reasons.count("data gap"),
              "excluded_truncated": reasons.count("truncated"), "redone_attempts": meta["redone"]}
    epochs = _epochs(ctx, side, reps) if task.hold_s > 0 else {}
    return ExamSide(task.name, side, "analysed", a, b, reps, summaries, counts,
                    _curves(ctx, side, reps), order, epochs)


def judge(res: ExamSide, other: ExamSide | None, mvc_normalised: bool) -> None:
    """Flags and the sentence of one task side; PELVIC_DROP compares it with the other side."""
    if res.status != "analysed":
        res.sentence = (f"{TASK_LABEL[res.task].capitalize()}, {res.side} stance: skipped, "
                        f"not judged.")
        return
    label = f"{TASK_LABEL[res.task]}, {res.side} stance"
    boundary = rules.GMED_ES_RATIO_BOUNDARY
    if res.epochs:
        ri, rc = res.epochs["gmed_es_ratio_ipsi"], res.epochs["gmed_es_ratio_contra"]
        unit = f"{rules.EXAM_HOLD_EPOCH_S:g} s epochs of the hold"
    else:
        ri = np.array([r["gmed_es_ratio_ipsi"] for r in res.reps if r["emg_valid"]], float)
        rc = np.array([r["gmed_es_ratio_contra"] for r in res.reps if r["emg_valid"]], float)
        unit = "repetitions"
    ri, rc = ri[np.isfinite(ri)], rc[np.isfinite(rc)]
    other_drop = None
    if other is not None and other.status == "analysed":
        other_drop = other.summaries["pelvic_drop_deg"]["median"]
    res.flags = rules.exam_flags(
        res.side, label, below_ipsi=int(np.sum(ri < boundary)), below_contra=int(np.sum(rc < boundary)),
        n_ratio=min(len(ri), len(rc)), es_first=res.onset_order["es_first"],
        n_onsets=res.onset_order["n"], onsets_judged=not res.epochs,
        drop_median_deg=res.summaries["pelvic_drop_deg"]["median"],
        drop_other_median_deg=other_drop, n_pelvis_valid=res.counts["pelvis_valid"],
        n_quality_bad=res.counts["excluded_quality"], n_found=res.counts["found"],
        mvc_normalised=mvc_normalised, unit=unit)
    res.sentence = _sentence(res, label, ri, rc, unit, other_drop, mvc_normalised)


def _sentence(res: ExamSide, label: str, ri, rc, unit, other_drop, mvc_normalised) -> str:
    c = res.counts
    what = "hold" if res.epochs else "repetitions"
    head = (f"{label.capitalize()}: {c['found']} of {c['expected']} {what} found by the device"
            + (f" ({c['missing']} missing)" if c["missing"] else "")
            + (f", {c['excluded']} left out" if c["excluded"] else ""))
    codes = {f.code for f in res.flags}
    parts = []
    n = min(len(ri), len(rc))
    bi, bc = int(np.sum(ri < rules.GMED_ES_RATIO_BOUNDARY)), int(np.sum(rc < rules.GMED_ES_RATIO_BOUNDARY))
    if c["found"] == 0:
        return head + "; nothing can be said."
    if not mvc_normalised:
        parts.append("GMed and ES cannot be compared because no MVC was recorded")
    elif "FEW_REPS" in codes:
        parts.append(f"too few valid {unit} ({n}) to judge the muscles")
    elif "ES_DOMINANT_IPSI" in codes or "ES_DOMINANT_CONTRA" in codes:
        which = []
        if "ES_DOMINANT_IPSI" in codes:
            which.append(f"stance-side erectors above the stance GMed in {bi} of {n} {unit}")
        if "ES_DOMINANT_CONTRA" in codes:
            which.append(f"opposite-side erectors above the stance GMed in {bc} of {n} {unit}")
        parts.append("pattern consistent with erector-dominant stabilisation ("
                     + "; ".join(which) + ")")
    else:
        parts.append(f"no erector-dominant pattern: the stance GMed was at or above the "
                     f"stance-side erectors in {n - bi} of {n} {unit} and the opposite-side "
                     f"erectors in {n - bc} of {n}")
    o = res.onset_order
    if o["n"] and not res.epochs:
        verdict = ("consistently" if "ES_FIRST" in codes else "not consistently")
        parts.append(f"an erector rose before the GMed in {o['es_first']} of {o['n']} repetitions "
                     f"({verdict}; GMed first in {o['gmed_first']}, together in {o['together']})")
    drop = res.summaries["pelvic_drop_deg"]["median"]
    if drop is not None:
        vs = "" if other_drop is None else f", other side {other_drop:.1f} deg"
        if "PELVIC_DROP" in codes:
            verdict = "more than the clinical 2 cm and the detectable change"
        else:
            verdict = "within the clinical limit or the detectable change"
        parts.append(f"median swing-side pelvic drop {drop:.1f} deg beyond standing{vs} "
                     f"({verdict})")
    return head + "; " + "; ".join(parts) + "."


def analyse_exam(session: SessionData, cal: Calibration, reference_uv: dict[str, float],
                 rest: RestBaseline | None, envelope_delay_ms: float,
                 mvc_normalised: bool) -> ExamAnalysis:
    """Every exam task side stored in the session (empty when there is none)."""
    from .core import symmetry_index

    windows = _windows(session)
    ctx = _Context(session, cal, reference_uv, rest, envelope_delay_ms)
    out: dict[str, dict[str, ExamSide]] = {}
    for task in EXAM_TASKS:
        for side in SIDES:
            meta = windows.get((task.name, side))
            if meta is None or (meta["window"] is None and not meta["skipped"]):
                continue
            out.setdefault(task.name, {})[side] = analyse_task_side(ctx, task, side,
                                                                    meta["window"], meta)
    lvr = {}
    for name, sides in out.items():
        for side, res in sides.items():
            judge(res, sides.get("right" if side == "left" else "left"), mvc_normalised)
        if all(s in sides and sides[s].status == "analysed" for s in SIDES):
            med = {s: {m: sides[s].summaries[m]["median"] for m in SUMMARY_METRICS} for s in SIDES}
            sym = {m: symmetry_index(med["left"][m], med["right"][m])
                   for m in ("stance_gmed_pct_mvc", "es_ipsi_pct_mvc", "es_contra_pct_mvc",
                             "gmed_es_ratio_ipsi", "gmed_es_ratio_contra")}
            dl, dr = med["left"]["pelvic_drop_deg"], med["right"]["pelvic_drop_deg"]
            sym["pelvic_drop_deg_left_minus_right"] = None if dl is None or dr is None else dl - dr
            lvr[name] = sym
    return ExamAnalysis(out, lvr)
