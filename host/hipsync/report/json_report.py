"""The report as a JSON-ready dict (schema: docs/report_schema.md, docs/report.schema.json)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np

from ..analysis import exam as _exam
from ..analysis import rules
from ..analysis.core import (
    CURVE_POINTS,
    PER_STRIDE_METRICS,
    SessionAnalysis,
    SideResult,
)
from ..analysis.mvc_check import MvcCheck, session_mvc_checks
from ..session import EMG_CHANNELS, PELVIS_ANGLES
from . import provenance

SCHEMA_VERSION = "1.2"  # 1.1: simulated, first_screen, units, normalisation.mvc_checks,
# calibration.copied_from; 1.2: exam, walking_recorded
FLOAT_DECIMALS = 4

# The line under the flags on the first screen: the two limits a reader must not miss.
FIRST_SCREEN_CAVEAT = "Patterns, not a diagnosis; trunk lean not assessed."
MUSCLE_LABEL = {"l_gmed": "left GMed", "r_gmed": "right GMed", "l_es": "left ES",
                "r_es": "right ES"}
# Units of the per-stride metrics and their summaries. Activation is "%MVC" only when
# session.normalisation.used is "MVC"; otherwise ACTIVATION_UNIT_PEAK_DYNAMIC.
ACTIVATION_UNIT_MVC = "%MVC"
ACTIVATION_UNIT_PEAK_DYNAMIC = "% walking peak"
_OTHER_UNITS = {"gmed_es_ratio_ipsi": "ratio", "gmed_es_ratio_contra": "ratio",
                "pelvic_drop_deg": "deg", "gmed_onset_ms": "ms", "stride_time_s": "s",
                "single_support_pct": "% of stride", "t_ic_s": "s", "t_ss_start_s": "s",
                "t_ss_end_s": "s", "t_next_ic_s": "s"}


def metric_units(normalisation_used: str) -> dict[str, str]:
    """Unit of every per-stride metric (and of its summary)."""
    act = ACTIVATION_UNIT_MVC if normalisation_used == "MVC" else ACTIVATION_UNIT_PEAK_DYNAMIC
    return {**{m: act for m in PER_STRIDE_METRICS if "pct_mvc" in m}, **_OTHER_UNITS}

CAVEATS = [
    ("No study has validated a GMed:ES ratio cut-off. Flags describe a pattern seen stride by "
    "stride; they are not a diagnosis (Penney et al. 2014; Kendall et al. 2010; docs/REFERENCES.md)."),
    ("A weak gluteus medius can show higher, not lower, activation in %MVC (Penney et al., Arch "
    "Phys Med Rehabil 2014): a high stance GMed %MVC does not mean a strong muscle."),
    "Hip-abductor strength and pelvic drop correlate poorly (Kendall et al. 2010).",
    ("Trunk lean is not assessed: a sensor on the sacrum cannot see a lean of the trunk toward the "
    "stance side, which can keep the pelvis level without the hip abductors."),
    ("Pelvic angles from a single sacrum IMU differ from optical motion capture by about 2.7-4.5 "
    "deg RMS (Bolink et al. 2016); drops are reported against this person's standing posture."),
    ("Amplitude varies about 40 % between days and about 14 % within a session; compare sessions "
    "only after normalising each one (here: to its own MVC when recorded)."),
    ("Walking speed, step width (GMed +47 % when wide, -24 % when narrow), fatigue and electrode "
    "placement change the activation; note them when comparing sessions."),
]

DEFINITIONS = {
    "time": "device time in s (unwrapped clock ticks / 1000)",
    "single_support": "of stance side S: from the contralateral final contact (FC) to the "
                      "contralateral initial contact (IC)",
    "stance_gmed_pct_mvc": "mean envelope of the stance-side GMed during single support, % of "
                           "the normalisation reference (MVC unless session.normalisation.used "
                           "says peak_dynamic)",
    "stance_es_ipsi_pct_mvc": "same for the stance-side lumbar erector spinae",
    "stance_es_contra_pct_mvc": "same for the opposite (swing-side) lumbar erector spinae",
    "gmed_es_ratio_ipsi": "stance GMed mean / stance-side ES mean in single support (per stride)",
    "gmed_es_ratio_contra": "stance GMed mean / contralateral ES mean in single support",
    "pelvic_drop_deg": "largest swing-side drop of the pelvis (frontal plane) during single "
                       "support relative to the standing calibration; positive = the swing side "
                       "is lower than when standing. Left stance: obliquity - standing; right "
                       "stance: -(obliquity - standing); obliquity is positive when the right "
                       "side is lower",
    "gmed_onset_ms": "stance GMed onset relative to IC (negative = before IC): first crossing of "
                     f"resting mean + {rules.ONSET_K_SD:g} SD held {rules.ONSET_MIN_DURATION_S*1000:g} "
                     "ms (Hodges & Bui 1996), minus the stated envelope delay",
    "symmetry_index": "100 * (L - R) / (0.5 * (L + R)) of the side medians (Robinson et al. 1987)",
    "summary": "{median, iqr (q3 - q1), q1, q3, n} over valid strides",
}


def generator_name() -> str:
    try:
        from importlib.metadata import version
        return f"hipsync {version('hipsync')}"
    except Exception:  # noqa: BLE001 - any failure: not installed as a distribution
        return "hipsync"


def _clean(x):
    """JSON-safe: numpy to Python, NaN/inf to None, floats rounded."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_clean(v) for v in x.tolist()]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        return round(v, FLOAT_DECIMALS) if math.isfinite(v) else None
    return x


def _side(r: SideResult) -> dict:
    st = r.strides
    per_stride = {"stride": st.stride, "t_ic_s": st.t_ic_s, "t_ss_start_s": st.t_ss_start_s,
                  "t_ss_end_s": st.t_ss_end_s, "t_next_ic_s": st.t_next_ic_s,
                  "emg_valid": r.emg_valid.tolist(), "quality_excluded": r.quality_bad.tolist()}
    per_stride.update({m: r.per_stride[m] for m in PER_STRIDE_METRICS})
    curves = {"phase_pct": np.linspace(0, 100, CURVE_POINTS),
              "single_support_phase_pct": list(r.single_support_phase_pct)}
    for name, c in r.curves.items():
        curves[name] = c
    out = {"stance_side": r.side[0].upper(), "strides": r.counts["emg_valid"],
           "strides_detected": r.counts["detected"], "counts": r.counts}
    out.update({m: r.summaries[m] for m in PER_STRIDE_METRICS})
    out["flags"] = [f.code for f in r.flags]
    out["flag_details"] = [f.as_dict() for f in r.flags]
    out["summary"] = r.sentence
    out["quality"] = {"strides_with_electrode_problems": int(r.quality_bad.sum()),
                      "strides_with_data_gaps": r.counts["excluded_data_gap"],
                      "fraction_excluded": (float(r.quality_bad.sum()) / len(st)) if len(st) else None}
    out["per_stride"] = per_stride
    out["curves"] = curves
    return out


EXAM_DEFINITIONS = {
    "exam_repetition": "a repetition the device found (REP frame): start, lowest point (or peak; "
                       "single-leg stance: largest drop) and end, device time in s; one that was "
                       "not found is counted in counts.missing, never reconstructed",
    "exam_loading_phase": "start .. lowest point of a repetition; single-leg stance: the whole "
                          "hold (start .. end)",
    "exam_pct_mvc": "stance_gmed_pct_mvc, es_ipsi_pct_mvc, es_contra_pct_mvc: mean envelope of "
                    "the stance GMed, the stance-side ES and the opposite ES over the loading "
                    "phase, % of the normalisation reference (*_peak_pct_mvc: the peak)",
    "exam_onset_ms": "gmed_onset_ms, es_ipsi_onset_ms, es_contra_onset_ms relative to the "
                     f"repetition's start (negative = before): first crossing of baseline mean + "
                     f"{rules.ONSET_K_SD:g} SD held {rules.ONSET_MIN_DURATION_S * 1000:g} ms "
                     "(Hodges & Bui 1996); baseline = resting (standing) envelope, raised to the "
                     f"{rules.EXAM_ONSET_BASELINE_S:g} s before the search start when higher; "
                     f"search from {rules.EXAM_ONSET_SEARCH_BEFORE_S:g} s before the start to the "
                     f"lowest point (single-leg stance: {rules.EXAM_HOLD_ONSET_SEARCH_S:g} s after "
                     "the start); minus the envelope delay. es_onset_ms = the earlier erector; "
                     f"first_onset: 'gmed', 'es' or 'together' (within {rules.EXAM_ONSET_TIE_MS:g} ms)",
    "exam_pelvic_drop_deg": "largest swing-side drop over the repetition (single-leg stance: the "
                            "hold) relative to the standing calibration, + = swing side lower",
}


def exam_units(normalisation_used: str) -> dict[str, str]:
    act = ACTIVATION_UNIT_MVC if normalisation_used == "MVC" else ACTIVATION_UNIT_PEAK_DYNAMIC
    return {m: (act if "pct_mvc" in m else "ratio" if m.startswith("gmed_es_ratio") else "ms" if m.endswith("_ms")
                else "deg" if m.endswith("_deg") else "s") for m in _exam.PER_REP_METRICS}


def _exam_side(r) -> dict:
    out = {"task": r.task, "side": r.side, "stance_side": r.side[0].upper(), "status": r.status,
           "t_start_s": r.t_start_s, "t_end_s": r.t_end_s, "counts": r.counts,
           "reps": r.reps}
    out.update({m: r.summaries[m] for m in _exam.SUMMARY_METRICS})
    out["onset_order"] = r.onset_order
    out["flags"] = [f.code for f in r.flags]
    out["flag_details"] = [f.as_dict() for f in r.flags]
    out["summary"] = r.sentence
    if r.epochs:
        out["hold_epochs"] = r.epochs
    out["curves"] = r.curves
    return out


def exam_dict(a: SessionAnalysis) -> dict:
    """report["exam"]: task -> {left, right (the stance sides stored), left_vs_right}."""
    out = {}
    for task, sides in a.exam.tasks.items():
        entry = {side: _exam_side(r) for side, r in sides.items()}
        entry["left_vs_right"] = a.exam.left_vs_right.get(task)
        out[task] = entry
    return out


_NO_MVC_SENTENCE = "because no MVC was recorded"  # in hipsync.analysis.core._sentence
_NO_USABLE_MVC_SENTENCE = "because no usable MVC was recorded (see the MVC note below the flags)"


def mvc_notice(checks: dict[str, MvcCheck], used: str) -> str | None:
    """The first-screen sentence on MVCs that were not usable, and what the report used instead;
    None when every MVC was used."""
    bad = [c for c in checks.values() if not c.ok]
    if not bad:
        return None
    missing = [MUSCLE_LABEL[c.channel] for c in bad if c.status == "missing"]
    parts = [f"{MUSCLE_LABEL[c.channel]} ({c.reason})" for c in bad if c.status != "missing"]
    if missing:
        parts.append(f"{', '.join(missing)} (no MVC recorded)")
    if used == "MVC":  # not reached while the report falls back, but never claim what was not done
        instead = ("The report still divided by these MVCs: read their %MVC values and ratios "
                   "with care.")
    else:
        instead = ("Instead every muscle is normalised to its own walking peak (peak dynamic "
                   "method): values are % of walking peak, not %MVC, and GMed-versus-ES ratios "
                   "and the ES_DOMINANT flags are not evaluated. "
                   + ("Record the MVC of each muscle" if missing and len(missing) == len(bad)
                      else "Record the MVC again") + " to compare muscles.")
    return f"MVC not used for {'; '.join(parts)}. {instead}"


def calibration_notice(copied: dict | None) -> str | None:
    if copied is None:
        return None
    return (f"Calibration copied from session {copied['session_id']} of {copied['date']}: "
            f"this session's pelvic drop is measured against that session's standing posture and "
            f"its MVCs (where plausible); electrode placement and posture can differ between "
            f"days.")


def build(a: SessionAnalysis, generated_at: str | None = None, *,
          mvc_checks: dict[str, MvcCheck] | None = None) -> dict:
    """The report dict. mvc_checks: the plausibility of each MVC before the analysis left out the
    unusable ones (hipsync.report.build_report passes them); computed here from what the analysis
    used when not given."""
    s = a.session
    m = s.metadata
    cal = a.calibration
    norm = a.normalisation
    if mvc_checks is None:
        mvc_checks = session_mvc_checks(s, cal.mvc_uv)
    units = metric_units(norm.method)
    simulated = provenance.simulated_reason(m)
    copied = provenance.copied_from(cal.source)
    mvc_text = mvc_notice(mvc_checks, norm.method)
    warnings = list(a.warnings)
    description = norm.note
    if mvc_text is not None:
        # the analysis' own "No MVC recorded" warning is replaced by the notice, which also names
        # the MVCs that were recorded but not plausible
        warnings = [w for w in warnings if not w.startswith("No MVC recorded for")]
        if norm.method != "MVC":
            bad = [c for c in mvc_checks.values() if not c.ok]
            description = (norm.note.split("; MVC missing for")[0] + "; MVC not used for "
                           + ", ".join(f"{c.channel} ({c.status})" for c in bad))
    notices = [t for t in (mvc_text, calibration_notice(copied)) if t]
    report = {
        "schema_version": SCHEMA_VERSION,
        "generated_by": generator_name(),
        "generated_at": generated_at or datetime.now(UTC).isoformat(timespec="seconds"),
        "simulated": simulated is not None,
        "simulated_reason": simulated,
        "first_screen": {"caveat": FIRST_SCREEN_CAVEAT, "notices": notices},
        "session": {
            "session_id": m.session_id, "patient_id": m.patient_id, "device_id": m.device_id,
            "firmware_version": m.firmware_version, "started_at": m.started_at,
            "duration_s": s.duration_s,
            "sampling": {"emg_hz": m.emg_rate_hz, "envelope_hz": m.envelope_rate_hz,
                         "pelvis_hz": m.pelvis_rate_hz},
            "channels": list(EMG_CHANNELS),
            "filters": m.filters, "electrodes": m.electrodes, "placement": m.placement,
            "normalisation": {"requested": m.normalisation, "used": norm.method,
                              "reference_uv": norm.reference_uv, "mvc_uv": norm.mvc_uv,
                              "description": description,
                              "mvc_checks": {ch: c.as_dict() for ch, c in mvc_checks.items()}},
            "calibration": {"standing_deg": dict(zip(PELVIS_ANGLES, cal.standing_deg)),
                            "source": cal.source, "copied_from": copied,
                            "rest_emg_uv": (None if a.rest is None else
                                            {"mean": dict(zip(EMG_CHANNELS, a.rest.mean_uv)),
                                             "sd": dict(zip(EMG_CHANNELS, a.rest.sd_uv))})},
            "tasks": [{"name": t.name, "t_start_s": t.t_start_s, "t_end_s": t.t_end_s}
                      for t in s.tasks],
            "link_stats": m.link_stats,
        },
        "definitions": {**DEFINITIONS, **EXAM_DEFINITIONS},
        "units": units,
        "exam_units": exam_units(norm.method),
        "rules": {"thresholds": {"gmed_es_ratio_boundary": rules.GMED_ES_RATIO_BOUNDARY,
                                 "majority_fraction": rules.MAJORITY_FRACTION,
                                 "min_strides_for_flags": rules.MIN_STRIDES_FOR_FLAGS,
                                 "pelvic_drop_deg": rules.PELVIC_DROP_DEG,
                                 "low_quality_stride_fraction": rules.LOW_QUALITY_STRIDE_FRACTION,
                                 "high_loss_fraction": rules.HIGH_LOSS_FRACTION},
                  "text": rules.RULE_TEXT,
                  "exam_thresholds": {"min_valid_reps": rules.EXAM_MIN_VALID_REPS,
                                      "consistent_fraction": rules.EXAM_CONSISTENT_FRACTION,
                                      "hold_epoch_s": rules.EXAM_HOLD_EPOCH_S,
                                      "onset_tie_ms": rules.EXAM_ONSET_TIE_MS,
                                      "clinical_drop_deg": rules.EXAM_CLINICAL_DROP_DEG,
                                      "pelvic_drop_deg": rules.PELVIC_DROP_DEG},
                  "exam_text": rules.EXAM_RULE_TEXT},
        "walking_recorded": a.walking_recorded,
        "sides": {name: _side(r) for name, r in a.sides.items()},
        "symmetry": a.symmetry,
        "exam": exam_dict(a),
        "tasks": a.tasks,
        "quality": a.quality,
        "flags": [f.as_dict() for f in a.flags],
        "warnings": warnings,
        "caveats": CAVEATS,
    }
    if any(c.status in ("implausible", "refused") for c in mvc_checks.values()):
        # the analysis' sentence knows only "missing"; an MVC was recorded but not used
        for side in report["sides"].values():
            side["summary"] = side["summary"].replace(_NO_MVC_SENTENCE, _NO_USABLE_MVC_SENTENCE)
        for task in report["exam"].values():
            for side in (v for k, v in task.items() if k in ("left", "right")):
                side["summary"] = side["summary"].replace(_NO_MVC_SENTENCE, _NO_USABLE_MVC_SENTENCE)
    return _clean(report)
