"""The findings of a report in one or two plain-text lines, for a terminal (`hipsync demo`,
`hipsync stream`): line 1 the flags per stance side (then the exam's flags per task side),
line 2 (only when there is something to say)
what limits the session as a whole.

    findings_text(report_dict) -> str
    e.g. "Left stance: stance-side erector-dominant in 93 % of 104 strides (ES_DOMINANT_IPSI);
          pelvic drop 8.2 deg vs 2.6 on right stance (PELVIC_DROP). Right stance: no flag."
"""

from __future__ import annotations

SIDES = ("left", "right")


def _share_below(side: dict, metric: str, boundary: float) -> tuple[int, int]:
    """(strides with ratio < boundary, valid strides with a ratio)."""
    ps = side.get("per_stride") or {}
    vals = [v for v, ok in zip(ps.get(metric, []), ps.get("emg_valid", [])) if ok and v is not None]
    return sum(1 for v in vals if v < boundary), len(vals)


def _pct(k: int, n: int) -> str:
    return f"{round(100 * k / n)} %" if n else "? %"


def _side_text(rep: dict, name: str) -> str:
    r = rep["sides"][name]
    other = "right" if name == "left" else "left"
    codes = list(r.get("flags", []))
    boundary = rep.get("rules", {}).get("thresholds", {}).get("gmed_es_ratio_boundary", 1.0)
    items = []
    ipsi, contra = "ES_DOMINANT_IPSI" in codes, "ES_DOMINANT_CONTRA" in codes
    if ipsi or contra:
        ki, ni = _share_below(r, "gmed_es_ratio_ipsi", boundary)
        kc, nc = _share_below(r, "gmed_es_ratio_contra", boundary)
        if ipsi and contra:
            items.append(f"erector-dominant in {_pct(ki, ni)} (stance-side ES) and {_pct(kc, nc)} "
                         f"(opposite ES) of {max(ni, nc)} strides (ES_DOMINANT_IPSI, "
                         f"ES_DOMINANT_CONTRA)")
        elif ipsi:
            items.append(f"stance-side erector-dominant in {_pct(ki, ni)} of {ni} strides "
                         f"(ES_DOMINANT_IPSI)")
        else:
            items.append(f"opposite-side erector-dominant in {_pct(kc, nc)} of {nc} strides "
                         f"(ES_DOMINANT_CONTRA)")
    if "PELVIC_DROP" in codes:
        drop = (r.get("pelvic_drop_deg") or {}).get("median")
        other_drop = (rep["sides"][other].get("pelvic_drop_deg") or {}).get("median")
        vs = "" if other_drop is None else f" vs {other_drop:.1f} on {other} stance"
        items.append(f"pelvic drop {drop:.1f} deg{vs} (PELVIC_DROP)" if drop is not None
                     else "pelvic drop (PELVIC_DROP)")
    if "LOW_QUALITY" in codes:
        q = r.get("quality", {}).get("strides_with_electrode_problems")
        items.append(f"electrode problems in {q} of {r.get('strides_detected')} strides "
                     f"(LOW_QUALITY)")
    if "FEW_STRIDES" in codes:
        items.append(f"only {r.get('strides')} strides with valid EMG, too few to judge the "
                     f"muscles (FEW_STRIDES)")
    known = {"ES_DOMINANT_IPSI", "ES_DOMINANT_CONTRA", "PELVIC_DROP", "LOW_QUALITY", "FEW_STRIDES"}
    items += [c for c in codes if c not in known]
    return f"{name.capitalize()} stance: " + ("; ".join(items) if items else "no flag") + "."


EXAM_LABEL = {"single_leg_stance": "single-leg stance", "step_down": "step-down",
              "single_leg_squat": "single-leg squat",
              "hip_abduction_wb": "weight-bearing hip abduction"}
EXAM_PATTERN_CODES = ("ES_DOMINANT_IPSI", "ES_DOMINANT_CONTRA", "ES_FIRST", "PELVIC_DROP")


def exam_text(report: dict) -> str | None:
    """The exam's flags in one line, e.g. "Exam: step-down left (ES_DOMINANT_IPSI 5 of 5,
    PELVIC_DROP 7.5 deg); single-leg squat left (ES_FIRST); 6 other task sides no flag." None
    when the session has no exam."""
    exam = report.get("exam") or {}
    items, quiet = [], 0
    for task, entry in exam.items():
        for side in SIDES:
            r = entry.get(side)
            if r is None:
                continue
            label = f"{EXAM_LABEL.get(task, task)} {side}"
            if r.get("status") == "skipped":
                items.append(f"{label} skipped")
                continue
            c = r.get("counts", {})
            codes = r.get("flags", [])
            missing = f", {c['missing']} of {c['expected']} reps missing" if c.get("missing") else ""
            if codes:
                items.append(f"{label} ({', '.join(codes)}{missing})")
            elif missing:
                items.append(f"{label} (no flag{missing})")
            else:
                quiet += 1
    if not items and not quiet:
        return None
    if quiet:
        items.append(f"{quiet} other task side{'s' if quiet != 1 else ''} no flag" if items
                     else f"no flag in {quiet} task sides")
    return "Exam: " + "; ".join(items) + "."


def findings_text(report: dict) -> str:
    """One line of flags per stance side (both sides on one line), and a second line only for
    what limits the whole session: simulated data, data loss, MVCs not used, copied calibration.
    `report` is the dict of build_report() or a report JSON file loaded with json.load."""
    if report.get("walking_recorded", True):
        line1 = " ".join(_side_text(report, s) for s in SIDES if s in report.get("sides", {}))
    else:
        line1 = "Walking: not recorded."
    exam = exam_text(report)
    if exam:
        line1 = line1 + " " + exam
    notes = []
    if report.get("simulated"):
        notes.append("Simulated data")
    for f in report.get("flags", []):
        if f.get("side") == "session":
            notes.append(f"{f.get('evidence', '')} ({f['code']})".strip())
    norm = report.get("session", {}).get("normalisation", {})
    bad = [f"{ch} ({c.get('status')})" for ch, c in (norm.get("mvc_checks") or {}).items()
           if c.get("status") != "ok"]
    if norm.get("used") not in (None, "MVC"):
        which = f" for {', '.join(bad)}" if bad else ""
        notes.append(f"GMed and ES not compared: no usable MVC{which}")
    copied = report.get("session", {}).get("calibration", {}).get("copied_from")
    if copied:
        notes.append(f"calibration copied from session {copied['session_id']} of {copied['date']}")
    if not notes:
        return line1
    return line1 + "\n" + "; ".join(notes) + "."
