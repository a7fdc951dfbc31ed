"""Per-stride and per-side analysis of one session.

Definitions (also in docs/report_schema.md):
- Stance side S, swing (contralateral) side C. Single support of S = FC_C .. IC_C.
- stance GMed = GMed of S; ES ipsi = ES of S; ES contra = ES of C.
- Activation in single support: mean and peak of the envelope, normalised to the reference
  (MVC, or peak dynamic when an MVC is missing), in percent.
- gmed_es_ratio_ipsi = mean stance GMed / mean ES ipsi; _contra likewise.
- pelvic_drop_deg: the largest swing-side drop of the pelvis during single support relative to
  the standing calibration. Positive = the swing side (C) is lower than when standing. With
  obliquity positive when the right side drops: left stance drop = obliquity - standing;
  right stance drop = -(obliquity - standing).
- gmed_onset_ms: stance GMed onset relative to IC of S (negative = before IC), threshold
  mean + ONSET_K_SD * SD of the standing (rest) envelope held for ONSET_MIN_DURATION_S
  (Hodges & Bui 1996), minus the device's stated envelope delay.
"""

from __future__ import annotations

import re
import warnings as _warnings
from dataclasses import dataclass, field

import numpy as np

from hipwire import quality as q

from ..session import EMG_CHANNELS, TASK_WALK, Calibration, SessionData
from ..store.errors import NoGaitData
from . import exam as _exam
from . import rules
from .calibration import RestBaseline, resolve_calibration, rest_baseline
from .gait import SIDES, Strides, find_strides

CURVE_POINTS = 101  # 0..100 % of the stance side's gait cycle
CH = {name: i for i, name in enumerate(EMG_CHANNELS)}
PER_STRIDE_METRICS = ("stance_gmed_pct_mvc", "stance_gmed_peak_pct_mvc", "stance_es_ipsi_pct_mvc",
                      "stance_es_ipsi_peak_pct_mvc", "stance_es_contra_pct_mvc",
                      "stance_es_contra_peak_pct_mvc", "gmed_es_ratio_ipsi",
                      "gmed_es_ratio_contra", "pelvic_drop_deg", "gmed_onset_ms", "stride_time_s",
                      "single_support_pct")


def summary(values) -> dict:
    """{median, iqr, q1, q3, n} of the finite values; None entries when there are none."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"median": None, "iqr": None, "q1": None, "q3": None, "n": 0}
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {"median": float(med), "iqr": float(q3 - q1), "q1": float(q1), "q3": float(q3),
            "n": int(v.size)}


def symmetry_index(left: float | None, right: float | None) -> float | None:
    """Robinson symmetry index, %: 100 * (L - R) / (0.5 * (L + R)); None when undefined."""
    if left is None or right is None or not (left + right) > 0:
        return None
    return 100.0 * (left - right) / (0.5 * (left + right))


@dataclass
class Normalisation:
    method: str  # "MVC" | "peak_dynamic"
    reference_uv: dict[str, float]
    mvc_uv: dict[str, float | None]
    note: str


@dataclass
class SideResult:
    side: str
    strides: Strides
    per_stride: dict[str, np.ndarray]
    quality_bad: np.ndarray  # bool per detected stride: a needed channel had a bad quality bit
    emg_valid: np.ndarray  # bool per stride: EMG metrics computed
    summaries: dict[str, dict]
    curves: dict[str, dict]  # signal -> {"mean": (101,), "sd": (101,), "n": int}
    single_support_phase_pct: tuple[float | None, float | None]
    flags: list[rules.Flag] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    sentence: str = ""


@dataclass
class SessionAnalysis:
    session: SessionData
    calibration: Calibration
    normalisation: Normalisation
    rest: RestBaseline | None
    sides: dict[str, SideResult]
    symmetry: dict[str, float | None]
    tasks: list[dict]
    quality: dict
    flags: list[rules.Flag]
    warnings: list[str]
    # the clinical exam's task sides (analysis/exam.py); empty when the session has none
    exam: _exam.ExamAnalysis = field(default_factory=lambda: _exam.ExamAnalysis({}, {}))
    walking_recorded: bool = True  # False: an exam-only session, `sides` hold no strides


# ------------------------------------------------------------------ helpers
def _slice(t: np.ndarray, a: float, b: float) -> tuple[int, int]:
    return int(np.searchsorted(t, a, side="left")), int(np.searchsorted(t, b, side="right"))


def _walk_windows(session: SessionData) -> list[tuple[float, float]] | None:
    w = [(t.t_start_s, t.t_end_s) for t in session.tasks if t.name == TASK_WALK]
    return w or None


def _normalisation(session: SessionData, cal: Calibration, strides_by_side: dict[str, Strides],
                   warns: list[str]) -> Normalisation:
    mvc = {c: (float(v) if v is not None and v > 0 else None) for c, v in cal.mvc_uv.items()}
    if all(mvc[c] is not None for c in EMG_CHANNELS):
        return Normalisation("MVC", dict(mvc), mvc, "each channel divided by its MVC recorded in "
                             "this session (highest 500 ms mean envelope of the MVC task, or entered)")
    missing = [c for c in EMG_CHANNELS if mvc[c] is None]
    # Peak dynamic (Yang & Winter 1984): peak of the mean gait-cycle envelope of each channel over
    # the strides of its own side. Applied to every channel, so that all channels share one method.
    ref: dict[str, float] = {}
    for c in EMG_CHANNELS:
        side = "left" if c.startswith("l_") else "right"
        st = strides_by_side[side]
        curves = _cycle_curves(session.envelope_t_s, session.envelope_uv[:, CH[c]], st.t_ic_s,
                               st.t_next_ic_s)
        peak = float(np.nanmax(np.nanmean(curves, axis=0))) if len(curves) else float("nan")
        if not np.isfinite(peak) or peak <= 0:
            i0, i1 = 0, len(session.envelope_t_s)
            peak = float(np.max(session.envelope_uv[i0:i1, CH[c]])) if i1 > i0 else 1.0
        ref[c] = max(peak, 1e-6)
    warns.append(f"No MVC recorded for {', '.join(missing)}: every channel is normalised to its "
                 f"own walking peak (peak dynamic method) instead of MVC. Values are % of walking "
                 f"peak, not %MVC, and GMed-versus-ES comparisons (ratios, ES_DOMINANT flags) are "
                 f"not meaningful; those flags are not evaluated. Record MVCs to compare muscles.")
    return Normalisation("peak_dynamic", ref, mvc, "each channel divided by the peak of its mean "
                         "walking gait-cycle envelope (peak dynamic method); MVC missing for "
                         + ", ".join(missing))


def _cycle_curves(t: np.ndarray, x: np.ndarray, t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
    """(n_strides, CURVE_POINTS) of x resampled over each [t0, t1]; NaN rows for strides with a
    data gap."""
    out = np.full((len(t0), CURVE_POINTS), np.nan)
    if len(t) < 2:
        return out
    phase = np.linspace(0.0, 1.0, CURVE_POINTS)
    dt = np.median(np.diff(t)) if len(t) > 1 else 0.01
    for k, (a, b) in enumerate(zip(t0, t1)):
        i0, i1 = _slice(t, a - dt, b + dt)
        if i1 - i0 < 2 or (i1 - i0) < rules.MIN_WINDOW_COVERAGE * (b - a) / dt:
            continue
        out[k] = np.interp(a + phase * (b - a), t[i0:i1], x[i0:i1])
    return out


def _quality_bad(session: SessionData, st: Strides, channels: list[int]) -> np.ndarray:
    qt, qf = session.status.quality()
    bad = np.zeros(len(st), bool)
    if len(qt) == 0:
        return bad
    needed = (qf[:, channels] & rules.BAD_QUALITY_BITS).any(axis=1)
    for k, (a, b) in enumerate(zip(st.t_ic_s, st.t_next_ic_s)):
        j0 = max(0, int(np.searchsorted(qt, a, side="right")) - 1)  # status in force at a
        j1 = int(np.searchsorted(qt, b, side="right"))
        bad[k] = bool(needed[j0:j1].any())
    return bad


def _onset_ms(t: np.ndarray, x: np.ndarray, ic: float, stride_s: float, threshold: float,
              min_samples: int) -> float:
    i0, i1 = _slice(t, ic - rules.ONSET_SEARCH_BEFORE_FRACTION * stride_s,
                    ic + rules.ONSET_SEARCH_AFTER_FRACTION * stride_s)
    seg = x[i0:i1] > threshold
    if len(seg) < min_samples + 1 or seg[0]:
        return float("nan")  # active from the window start: no onset in this stride
    run = np.convolve(seg.astype(int), np.ones(min_samples, int), mode="valid") == min_samples
    hits = np.flatnonzero(run)
    if hits.size == 0:
        return float("nan")
    return (t[i0 + hits[0]] - ic) * 1000.0


# ------------------------------------------------------------------ the analysis
def analyse_side(session: SessionData, st: Strides, cal: Calibration, norm: Normalisation,
                 rest: RestBaseline | None, envelope_delay_ms: float) -> SideResult:
    name, s, c = next(x for x in SIDES if x[0] == st.side)
    side_l = s.lower()
    ch_gmed, ch_es_i, ch_es_c = CH[f"{side_l}_gmed"], CH[f"{side_l}_es"], CH[f"{c.lower()}_es"]
    chans = [ch_gmed, ch_es_i, ch_es_c]
    ref = np.array([norm.reference_uv[ch] for ch in EMG_CHANNELS])
    pct = session.envelope_uv * (100.0 / ref)
    et, pt = session.envelope_t_s, session.pelvis_t_s
    rate = session.metadata.envelope_rate_hz
    obl_rel = session.pelvis_deg[:, 0] - cal.standing_deg[0]
    drop_sign = 1.0 if s == "L" else -1.0  # positive obliquity = right side lower
    n = len(st)
    ps = {m: np.full(n, np.nan) for m in PER_STRIDE_METRICS}
    quality_bad = _quality_bad(session, st, chans)
    emg_valid = np.zeros(n, bool)
    threshold = None
    if rest is not None:
        threshold = rest.mean_uv[ch_gmed] + rules.ONSET_K_SD * rest.sd_uv[ch_gmed]
    min_samples = max(1, round(rules.ONSET_MIN_DURATION_S * rate))
    gaps = 0
    for k in range(n):
        a, b = st.t_ss_start_s[k], st.t_ss_end_s[k]
        stride_s = st.t_next_ic_s[k] - st.t_ic_s[k]
        ps["stride_time_s"][k] = stride_s
        ps["single_support_pct"][k] = 100.0 * (b - a) / stride_s
        i0, i1 = _slice(et, a, b)
        expected = (b - a) * rate
        if i1 - i0 >= max(2, rules.MIN_WINDOW_COVERAGE * expected) and not quality_bad[k]:
            w = pct[i0:i1]
            means = w[:, chans].mean(axis=0)
            peaks = w[:, chans].max(axis=0)
            ps["stance_gmed_pct_mvc"][k], ps["stance_es_ipsi_pct_mvc"][k], \
                ps["stance_es_contra_pct_mvc"][k] = means
            ps["stance_gmed_peak_pct_mvc"][k], ps["stance_es_ipsi_peak_pct_mvc"][k], \
                ps["stance_es_contra_peak_pct_mvc"][k] = peaks
            if means[1] > 0:
                ps["gmed_es_ratio_ipsi"][k] = means[0] / means[1]
            if means[2] > 0:
                ps["gmed_es_ratio_contra"][k] = means[0] / means[2]
            emg_valid[k] = True
            if threshold is not None:
                ps["gmed_onset_ms"][k] = _onset_ms(et, session.envelope_uv[:, ch_gmed],
                                                   st.t_ic_s[k], stride_s, threshold,
                                                   min_samples) - envelope_delay_ms
        elif not quality_bad[k]:
            gaps += 1
        j0, j1 = _slice(pt, a, b)
        if j1 - j0 >= max(2, rules.MIN_WINDOW_COVERAGE * (b - a) * session.metadata.pelvis_rate_hz):
            ps["pelvic_drop_deg"][k] = float(np.max(drop_sign * obl_rel[j0:j1]))
    curves = {}
    for ch in EMG_CHANNELS:
        m = _cycle_curves(et, pct[:, CH[ch]], st.t_ic_s[emg_valid], st.t_next_ic_s[emg_valid])
        curves[ch] = _mean_sd(m)
    curves["obliquity_rel_deg"] = _mean_sd(_cycle_curves(pt, obl_rel, st.t_ic_s, st.t_next_ic_s))
    if n:
        ss_on = float(np.median((st.t_ss_start_s - st.t_ic_s) / (st.t_next_ic_s - st.t_ic_s))) * 100
        ss_off = float(np.median((st.t_ss_end_s - st.t_ic_s) / (st.t_next_ic_s - st.t_ic_s))) * 100
        ss_phase = (ss_on, ss_off)
    else:
        ss_phase = (None, None)
    summaries = {m: summary(ps[m]) for m in PER_STRIDE_METRICS}
    counts = {"detected": n, "emg_valid": int(emg_valid.sum()),
              "excluded_quality": int(quality_bad.sum()), "excluded_data_gap": gaps,
              "pelvis_valid": int(np.isfinite(ps["pelvic_drop_deg"]).sum()),
              "candidates_excluded": dict(st.excluded)}
    return SideResult(name, st, ps, quality_bad, emg_valid, summaries, curves, ss_phase,
                      counts=counts)


def judge_side(res: SideResult, other: SideResult | None, norm: Normalisation) -> None:
    """Flags and the plain-language sentence of one side. The PELVIC_DROP rule compares the side
    with the other stance side (rules.py), so this runs once both sides are analysed."""
    other_drop = None if other is None else other.summaries["pelvic_drop_deg"]["median"]
    res.flags = rules.side_flags(
        res.side, ratio_ipsi=res.per_stride["gmed_es_ratio_ipsi"][res.emg_valid],
        ratio_contra=res.per_stride["gmed_es_ratio_contra"][res.emg_valid],
        drop_median_deg=res.summaries["pelvic_drop_deg"]["median"],
        drop_other_median_deg=other_drop, n_valid=int(res.emg_valid.sum()),
        n_pelvis_valid=res.counts["pelvis_valid"], n_quality_bad=int(res.quality_bad.sum()),
        n_detected=res.counts["detected"], mvc_normalised=norm.method == "MVC")
    res.sentence = _sentence(res, norm, other_drop)


def _mean_sd(m: np.ndarray) -> dict:
    ok = np.all(np.isfinite(m), axis=1) if m.size else np.zeros(0, bool)
    m = m[ok]
    if len(m) == 0:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": m.mean(axis=0), "sd": m.std(axis=0), "n": len(m)}


def _sentence(r: SideResult, norm: Normalisation, other_drop: float | None = None) -> str:
    stance = f"{r.side.capitalize()} stance"
    n = r.counts["emg_valid"]
    if r.counts["detected"] == 0:
        return f"{stance}: no complete strides were found, so nothing can be said."
    parts = []
    if norm.method != "MVC":
        parts.append("GMed and ES cannot be compared because no MVC was recorded")
    elif n == 0:
        parts.append("no stride had usable EMG")
    else:
        ri = r.per_stride["gmed_es_ratio_ipsi"][r.emg_valid]
        rc = r.per_stride["gmed_es_ratio_contra"][r.emg_valid]
        bi, bc = int(np.sum(ri < rules.GMED_ES_RATIO_BOUNDARY)), int(np.sum(rc < rules.GMED_ES_RATIO_BOUNDARY))
        codes = {f.code for f in r.flags}
        if "ES_DOMINANT_IPSI" in codes or "ES_DOMINANT_CONTRA" in codes:
            which = []
            if "ES_DOMINANT_IPSI" in codes:
                which.append(f"stance-side erectors above the stance GMed in {bi} of {n} strides")
            if "ES_DOMINANT_CONTRA" in codes:
                which.append(f"opposite-side erectors above the stance GMed in {bc} of {n} strides")
            parts.append("pattern consistent with erector-dominant stabilisation on "
                         f"{r.side} stance ({'; '.join(which)})")
        else:
            parts.append(f"no erector-dominant pattern: the stance GMed was at or above the "
                         f"stance-side erectors in {n - bi} of {n} strides and above the "
                         f"opposite-side erectors in {n - bc} of {n}")
    drop = r.summaries["pelvic_drop_deg"]["median"]
    if drop is not None:
        if "PELVIC_DROP" in {f.code for f in r.flags}:
            verdict = "more than normal walking and more than the detectable change"
        elif rules.pelvic_drop_excess(drop, other_drop) is not None:
            verdict = "too few strides to judge"
        else:
            verdict = "within normal walking or the detectable change"
        vs = "" if other_drop is None else f", other side {other_drop:.1f} deg"
        parts.append(f"median swing-side pelvic drop {drop:.1f} deg beyond standing{vs} "
                     f"({verdict})")
    excl = r.counts["excluded_quality"]
    tail = f" {excl} strides were left out for electrode problems." if excl else ""
    return f"{stance}: " + "; ".join(parts) + "." + tail


def _task_side(name: str) -> str | None:
    m = re.search(r"_(l|r|left|right)$", name, flags=re.IGNORECASE)
    if not m:
        return None
    return "left" if m.group(1).lower().startswith("l") else "right"


def _task_summaries(session: SessionData, cal: Calibration, norm: Normalisation,
                    sides: dict[str, SideResult]) -> list[dict]:
    out = []
    ref = np.array([norm.reference_uv[ch] for ch in EMG_CHANNELS])
    for task in session.tasks:
        entry: dict = {"name": task.name, "t_start_s": task.t_start_s, "t_end_s": task.t_end_s,
                       "side": _task_side(task.name)}
        if task.name == TASK_WALK:
            per_side = {}
            for name, r in sides.items():
                inside = (r.strides.t_ic_s >= task.t_start_s) & (r.strides.t_next_ic_s <= task.t_end_s)
                v = inside & r.emg_valid
                per_side[name] = {"strides": int(inside.sum()),
                                  **{m: summary(r.per_stride[m][v if "pct" in m or "ratio" in m
                                                                or "onset" in m else inside])
                                     for m in ("stance_gmed_pct_mvc", "stance_es_ipsi_pct_mvc",
                                               "stance_es_contra_pct_mvc", "gmed_es_ratio_ipsi",
                                               "gmed_es_ratio_contra", "pelvic_drop_deg")}}
            entry["sides"] = per_side
        else:
            i0, i1 = _slice(session.envelope_t_s, task.t_start_s, task.t_end_s)
            if i1 > i0:
                pct = session.envelope_uv[i0:i1] * (100.0 / ref)
                entry["channels_pct_mvc"] = {ch: summary(pct[:, i]) for i, ch in enumerate(EMG_CHANNELS)}
            j0, j1 = _slice(session.pelvis_t_s, task.t_start_s, task.t_end_s)
            if j1 > j0:
                entry["obliquity_rel_deg"] = summary(session.pelvis_deg[j0:j1, 0] - cal.standing_deg[0])
        out.append(entry)
    return out


def _session_quality(session: SessionData, sides: dict[str, SideResult]) -> dict:
    qt, qf = session.status.quality()
    per_channel = {}
    for i, ch in enumerate(EMG_CHANNELS):
        if len(qt):
            fl = qf[:, i]
            per_channel[ch] = {name: float(np.mean((fl & bit) != 0)) for bit, name in q.NAMES}
        else:
            per_channel[ch] = None
    link = dict(session.metadata.link_stats)
    et = session.envelope_t_s
    rate = session.metadata.envelope_rate_hz
    if len(et) > 1:
        expected = round((et[-1] - et[0]) * rate) + 1
        env_loss = max(0.0, 1.0 - len(et) / expected)
    else:
        expected, env_loss = len(et), 0.0
    loss = link.get("loss_fraction")
    loss_fraction = float(loss) if loss is not None else env_loss
    # packet loss over time: missing envelope samples per minute
    per_min = []
    if len(et) > 1:
        edges = np.arange(et[0], et[-1] + 60.0, 60.0)
        counts, _ = np.histogram(et, bins=edges)
        widths = np.minimum(edges[1:], et[-1] + 1.0 / rate) - edges[:-1]
        per_min = [float(max(0.0, 1.0 - c / max(1.0, w * rate))) for c, w in zip(counts, widths)]
    return {"loss_fraction": loss_fraction, "envelope_samples_expected": expected,
            "envelope_samples_received": len(et), "envelope_loss_fraction": env_loss,
            "envelope_loss_per_minute": per_min, "link": link, "channel_flag_fraction": per_channel,
            "status_samples": len(session.status),
            "flash_damage": session.metadata.flash_damage}


def analyse(session: SessionData) -> SessionAnalysis:
    """Everything the report shows, the clinical exam included (`exam`). Raises
    MissingCalibration (no standing baseline) and NoGaitData (no gait events and no exam task)."""
    warns: list[str] = []
    cal = resolve_calibration(session)
    exam_only = False
    windows = _walk_windows(session)
    if _exam.has_exam(session):
        # an exam session: walking is only what its walk tasks hold (the single-leg tasks are no
        # strides), and an exam without a walk is still a session to report
        strides = {name: find_strides(session.events, name, windows or []) for name, _, _ in SIDES}
        if all(len(s) == 0 for s in strides.values()):
            exam_only = True
            warns.append("No walking in this session (exam only): the walking part of the "
                         "report is empty.")
    else:
        if len(session.events) == 0:
            raise NoGaitData(session.metadata.session_id, "it holds no gait events (IC/FC); "
                             "record a walking task with the device streaming or logging events")
        if windows is None:
            warns.append("No 'walk' task marked: every stride in the session was analysed, "
                         "including any outside walking (turns, other tasks).")
        strides = {name: find_strides(session.events, name, windows) for name, _, _ in SIDES}
        if all(len(s) == 0 for s in strides.values()):
            raise NoGaitData(session.metadata.session_id, "no complete stride (IC, contralateral "
                             "FC and IC, FC, next IC) inside a walking task")
    damage = session.metadata.flash_damage
    if damage:
        places = len(damage["lost"])
        warns.append(f"Recovered from damaged device flash: {damage['bytes_lost']} bytes in "
                     f"{places} place{'' if places == 1 else 's'} could not be read; the data "
                     f"there is missing (counted as lost), everything else was verified.")
    norm = _normalisation(session, cal, strides, warns)
    rest = rest_baseline(session)
    if rest is None:
        warns.append("No standing (rest) EMG: GMed onset cannot be detected (needs a resting "
                     "baseline, Hodges & Bui 1996).")
    delay = session.metadata.filters.get("envelope_delay_ms")
    if delay is None:
        warns.append("The device did not state its envelope delay: onsets are not corrected for it.")
        delay = 0.0
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", RuntimeWarning)
        sides = {name: analyse_side(session, st, cal, norm, rest, float(delay))
                 for name, st in strides.items()}
        exam = _exam.analyse_exam(session, cal, norm.reference_uv, rest, float(delay),
                                  norm.method == "MVC")
    for name, res in sides.items():
        if exam_only:
            res.sentence = (f"{name.capitalize()} stance: no walking was recorded in this "
                            f"session.")
        else:
            judge_side(res, next((r for n, r in sides.items() if n != name), None), norm)
    sym = {m: symmetry_index(sides["left"].summaries[m]["median"], sides["right"].summaries[m]["median"])
           for m in ("stance_gmed_pct_mvc", "stance_es_ipsi_pct_mvc", "stance_es_contra_pct_mvc",
                     "gmed_es_ratio_ipsi", "gmed_es_ratio_contra", "stride_time_s")}
    dl, dr = sides["left"].summaries["pelvic_drop_deg"]["median"], sides["right"].summaries["pelvic_drop_deg"]["median"]
    sym["pelvic_drop_deg_left_minus_right"] = None if dl is None or dr is None else dl - dr
    quality = _session_quality(session, sides)
    flags = [f for r in sides.values() for f in r.flags] + rules.session_flags(quality["loss_fraction"])
    if not session.metadata.filters:
        warns.append("Filter settings were not recorded for this session (ISEK reporting asks for "
                     "filter types and cut-offs).")
    return SessionAnalysis(session, cal, norm, rest, sides, sym,
                           _task_summaries(session, cal, norm, sides), quality, flags, warns,
                           exam, not exam_only)
