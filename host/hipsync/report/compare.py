"""Before/after of two sessions of one person: compare.json and compare.html.

    write_compare(store, before_id, after_id, out_dir) -> (html_path, json_path)
    build_compare(before_report, after_report, before_exam=None, after_exam=None) -> dict
    render_compare(comparison) -> str

The comparison itself (measures, thresholds, rules, sources) is hipsync.analysis.compare; this
module analyses the two stored sessions as the session report does and writes what it found.
Schema: docs/report_schema.md, "Before/after comparison"."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from ..analysis import analyse
from ..analysis import compare as cmp
from ..analysis.calibration import resolve_calibration
from ..analysis.mvc_check import session_mvc_checks
from . import html, json_report, provenance
from ._files import prepare_dir, write_text

SCHEMA_VERSION = "1.0"
JSON_NAME, HTML_NAME = "compare.json", "compare.html"
CAVEATS = [
    ("A change beyond the detectable change is larger than what usually varies between two "
     "sessions of one person; it is not proof of a change, and a change within it is not proof "
     "that nothing changed."),
    ("The between-session variation of sEMG (about 40 %) was measured on other muscles (gluteus "
     "maximus, vastus lateralis, biceps femoris) in running, cycling and squatting (Colyer & "
     "McGuigan 2018); it is an estimate for the gluteus medius and erector spinae in these "
     "tasks. The GMed/ES ratio divides two such amplitudes and may vary more."),
    ("Walking speed, step width, fatigue and electrode placement change activation: compare the "
     "stride times shown, and note any change of electrodes or footwear."),
    ("A weak gluteus medius can show higher %MVC, not lower (Penney et al., Arch Phys Med "
     "Rehabil 2014): a change of %MVC is a change of pattern, not of strength."),
    "Trunk lean is not assessed: a sensor on the sacrum cannot see it.",
]


def session_report(session) -> tuple[dict, object]:
    """(report dict, SessionAnalysis.exam or None) of a session, analysed as the session report
    analyses it (an implausible MVC is not normalised to). Raises MissingCalibration, NoGaitData."""
    from . import _without_unusable_mvcs

    checks = session_mvc_checks(session, resolve_calibration(session).mvc_uv)
    a = analyse(_without_unusable_mvcs(session, checks))
    rep = json_report.build(a, mvc_checks=checks)
    return rep, getattr(a, "exam", None)


def write_compare(store, before_id: int, after_id: int, out_dir,
                  generated_at: str | None = None) -> tuple[Path, Path]:
    """Compare two stored sessions and write compare.html and compare.json into out_dir. Raises
    SameSession, UnknownSession, DifferentPatients, OutputNotWritable (before any analysis),
    MissingCalibration, NoGaitData, NotMvcNormalised."""
    if before_id == after_id:  # an argument error: no need to open either session
        raise cmp.SameSession(before_id)
    meta_b, meta_a = store.load_metadata(before_id), store.load_metadata(after_id)
    cmp.check_pair(before_id, meta_b.patient_id, after_id, meta_a.patient_id)
    out = prepare_dir(out_dir)  # fail on the folder before spending time on the analyses
    reports = []
    for sid in (before_id, after_id):
        rep, exam = session_report(store.load_session(sid))
        norm = rep["session"]["normalisation"]
        cmp.check_normalisation(sid, norm["used"], norm.get("mvc_checks"))
        # the report's exam when it has one (the values its session report shows); the
        # analysis' own otherwise
        reports.append((rep, exam if rep.get("exam") is None else None))
    result = build_compare(reports[0][0], reports[1][0], reports[0][1], reports[1][1],
                           generated_at=generated_at)
    json_path, html_path = out / JSON_NAME, out / HTML_NAME
    write_text(json_path, json.dumps(result, indent=1, allow_nan=False))
    write_text(html_path, render_compare(result))
    return html_path, json_path


def _session_info(rep: dict) -> dict:
    s = rep["session"]
    return {"session_id": s["session_id"], "started_at": s["started_at"],
            "date": str(s["started_at"] or "")[:10] or None, "device_id": s["device_id"],
            "firmware_version": s["firmware_version"],
            "normalisation": s["normalisation"]["used"],
            "calibration_source": s["calibration"]["source"],
            "simulated": bool(rep.get("simulated")), "simulated_reason": rep.get("simulated_reason")}


def _warnings(before: dict, after: dict, rb: dict, ra: dict) -> list[str]:
    out = []
    if before["started_at"] and after["started_at"] and after["started_at"] < before["started_at"]:
        out.append(f"Session {after['session_id']} (after) was recorded before session "
                   f"{before['session_id']} (before): changes are after minus before as given.")
    if before["device_id"] != after["device_id"]:
        out.append(f"Different devices ({before['device_id']}, {after['device_id']}): electrodes "
                   f"and sensor placement may differ as well.")
    for role, info, rep in (("before", before, rb), ("after", after, ra)):
        copied = provenance.copied_from(info["calibration_source"])
        if copied is not None:
            out.append(f"Session {info['session_id']} ({role}) uses the calibration of session "
                       f"{copied['session_id']} of {copied['date']}: its %MVC is normalised to the "
                       f"MVCs of that session, so electrode placement between the two adds to the "
                       f"between-session variation.")
        for notice in (rep.get("first_screen") or {}).get("notices", []):
            if copied is not None and notice.startswith("Calibration copied"):
                continue  # said just above
            out.append(f"Session {info['session_id']} ({role}): {notice}")
    return out


def build_compare(before_report: dict, after_report: dict, before_exam=None, after_exam=None,
                  generated_at: str | None = None) -> dict:
    """The comparison as a JSON-ready dict. The reports are session report dicts
    (hipsync.report.build_report); the exams, when given, are SessionAnalysis.exam (otherwise
    each report's `exam`, when it has one)."""
    before, after = _session_info(before_report), _session_info(after_report)
    mb = cmp.session_measures(before_report, before_exam)
    ma = cmp.session_measures(after_report, after_exam)
    before["exam_recorded"] = any(k != cmp.WALKING for k in mb)
    after["exam_recorded"] = any(k != cmp.WALKING for k in ma)
    sections = cmp.compare(mb, ma)
    simulated = [f"session {i['session_id']}: {i['simulated_reason']}" for i in (before, after)
                 if i["simulated"]]
    result = {
        "schema_version": SCHEMA_VERSION,
        "generated_by": json_report.generator_name(),
        "generated_at": generated_at or datetime.now(UTC).isoformat(timespec="seconds"),
        "simulated": bool(simulated),
        "simulated_reason": "; ".join(simulated) or None,
        "patient_id": before_report["session"]["patient_id"],
        "before": before,
        "after": after,
        "sections": sections,
        "rules": {"emg_between_session_variation_pct": cmp.EMG_BETWEEN_SESSION_VARIATION_PCT,
                  "emg_within_session_variation_pct": cmp.EMG_WITHIN_SESSION_VARIATION_PCT,
                  "emg_factor": cmp.EMG_FACTOR, "emg_fall_pct": cmp.EMG_FALL_PCT,
                  "pelvic_drop_sdc_deg": cmp.PELVIC_DROP_SDC_DEG,
                  "text": dict(cmp.RULE_TEXT)},
        "sources": [dict(s) for s in cmp.SOURCES],
        "warnings": _warnings(before, after, before_report, after_report),
        "caveats": list(CAVEATS),
    }
    return json_report._clean(result)


# ------------------------------------------------------------------------------ HTML
_CSS = """
.beyond{background:#fff3cd;font-weight:bold} .na{color:#888} td.verdict{white-space:nowrap}
table.compare td.num{white-space:nowrap}
"""


_RULE_LABELS = {cmp.EMG: "sEMG", cmp.ANGLE: "Pelvic drop", cmp.NOT_JUDGED: "Not judged"}


def _digits(unit: str) -> int:
    return 2 if unit == "ratio" else 0 if unit == "ms" else 1


def _fmt(v, unit: str, sign: str = "") -> str:
    if v is None:
        return "–"
    d = _digits(unit)
    return f"{round(v, d) + 0.0:{sign}.{d}f}"  # + 0.0: no "-0.0" for a change that rounds to 0


def _change_cell(c: dict) -> str:
    if c["change"] is None:
        return "–"
    text = _fmt(c["change"], c["unit"], "+")
    if c["change_pct"] is not None:
        text += f" ({round(c['change_pct']) + 0:+d} %)"
    return escape(text)


def _verdict(c: dict) -> tuple[str, str]:
    if c["not_available"]:
        return "na", f"not available: {c['not_available']}"
    if c["judged_by"] == cmp.NOT_JUDGED:
        return "na", "not judged"
    return ("beyond", "yes") if c["beyond_detectable_change"] else ("", "no")


def _who(info: dict) -> str:
    sid = "unsaved session" if info["session_id"] is None else f"session {info['session_id']}"
    return f"{sid}, {info['date'] or 'date unknown'}"


def render_compare(c: dict) -> str:
    b, a = c["before"], c["after"]
    title = (f"hipsync before/after – patient {c['patient_id']} – session {b['session_id']} → "
             f"{a['session_id']}")
    parts = [(f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
              f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
              f"<title>{escape(('SIMULATED – ' if c['simulated'] else '') + title)}</title>"
              f"<style>{html._CSS}{_CSS}</style></head><body>")]
    if c["simulated"]:
        parts.append(f"<div class='simulated' id='simulated-banner' role='note'>Simulated data – "
                     f"not a recording of a patient ({escape(c['simulated_reason'] or '')})</div>")
    parts.append(f"<h1>{escape(title)}</h1>")
    copied = any(provenance.copied_from(i["calibration_source"]) for i in (b, a))
    parts.append(f"<p class='subtitle'>Before: {escape(_who(b))} · after: {escape(_who(a))} · "
                 + ("MVC normalised (a calibration was copied: see below)" if copied
                    else "each normalised to its own MVC") + "</p>")
    rules = c["rules"]
    parts.append(f"<p class='caveat-line' id='rule-line'>A change counts as beyond the detectable "
                 f"change when sEMG (%MVC, ratios) rises by more than "
                 f"{rules['emg_between_session_variation_pct']:g} % or falls by more than "
                 f"{rules['emg_fall_pct']:.0f} % (a factor {rules['emg_factor']:g}), or the "
                 f"pelvic drop changes by more than {rules['pelvic_drop_sdc_deg']:g} deg. "
                 f"Patterns, not a diagnosis; trunk lean not assessed.</p>")
    for w in c["warnings"]:
        parts.append(f"<p class='warn'>{escape(w)}</p>")
    parts.append("<h2 id='summary'>Summary</h2>")
    for name, sec in c["sections"].items():
        for side in cmp.SIDES:
            parts.append(f"<p class='summary' id='summary-{name}-{side}'>"
                         f"{escape(sec['sides'][side]['sentence'])}</p>")
    for name, sec in c["sections"].items():
        parts.append(f"<h2 id='section-{name}'>{escape(sec['label'])}</h2>")
        if sec["not_recorded_in"]:
            who = " and ".join(_who(b if r == "before" else a) for r in sec["not_recorded_in"])
            parts.append(f"<p class='note'>Not recorded in {escape(who)}: its changes are not "
                         f"available.</p>")
        parts.append(f"<table class='compare' id='table-{name}'><tr><th>Stance side</th>"
                     f"<th>Measure</th><th>Before<br><small>{escape(_who(b))}</small></th>"
                     f"<th>After<br><small>{escape(_who(a))}</small></th><th>Change</th>"
                     f"<th>Beyond detectable change</th></tr>")
        for side in cmp.SIDES:
            for key, m in sec["sides"][side]["measures"].items():
                cls, verdict = _verdict(m)
                n = (f" <small>(n {m['n_before'] if m['n_before'] is not None else '–'} / "
                     f"{m['n_after'] if m['n_after'] is not None else '–'})</small>")
                parts.append(
                    f"<tr class='{cls}' data-measure='{escape(key)}' data-side='{side}'>"
                    f"<td>{side}</td><td>{escape(m['label'])} ({escape(m['unit'])}){n}</td>"
                    f"<td class='num'>{_fmt(m['before'], m['unit'])}</td>"
                    f"<td class='num'>{_fmt(m['after'], m['unit'])}</td>"
                    f"<td class='num'>{_change_cell(m)}</td>"
                    f"<td class='verdict'>{escape(verdict)}</td></tr>")
        parts.append("</table>")
    parts.append("<h2 id='rules'>Rules</h2><table>" + "".join(
        f"<tr><th>{escape(_RULE_LABELS.get(k, k))}</th><td>{escape(v)}</td></tr>"
        for k, v in rules["text"].items())
        + "</table>")
    parts.append("<h2 id='sources'>Sources</h2><ul class='caveat'>" + "".join(
        f"<li>{escape(s['text'])} <small>({escape(s['used_for'])})</small></li>"
        for s in c["sources"]) + "</ul>")
    parts.append("<h2 id='caveats'>Caveats</h2><ul class='caveat'>"
                 + "".join(f"<li>{escape(x)}</li>" for x in c["caveats"]) + "</ul>")
    parts.append(f"<p><small>Generated {escape(c['generated_at'])} by "
                 f"{escape(c['generated_by'])}</small></p></body></html>")
    return "\n".join(parts)
