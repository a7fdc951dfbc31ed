"""A patient's trend across sessions: patient_<id>_trend.html and .json.

Every session of the patient gets a number, 1..N in recording order (the sessions that cannot be
analysed keep theirs, so the numbers do not shift when one is repaired). Per session: its date,
the strides (n) and the median with its interquartile range of each metric per stance side, its
flags and its warnings."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

import numpy as np

from ..store.errors import HipsyncDataError, MissingCalibration, UnknownPatient
from . import html, json_report, svg
from ._files import prepare_dir, write_text

# (metric, label without unit, needs MVC normalisation to be compared across sessions)
TREND_METRICS = (("stance_gmed_pct_mvc", "Stance GMed (%MVC)", True),
                 ("stance_es_ipsi_pct_mvc", "Stance-side ES (%MVC)", True),
                 ("stance_es_contra_pct_mvc", "Opposite ES (%MVC)", True),
                 ("gmed_es_ratio_ipsi", "GMed / stance-side ES (ratio)", True),
                 ("gmed_es_ratio_contra", "GMed / opposite ES (ratio)", True),
                 ("pelvic_drop_deg", "Pelvic drop beyond standing (deg)", False))
TABLE_METRICS = (("pelvic_drop_deg", "drop (deg)", 1), ("gmed_es_ratio_ipsi", "GMed/ES ipsi", 2),
                 ("stance_gmed_pct_mvc", "GMed (%MVC)", 1))


_CSS = "#trend-sessions td.num,#trend-sessions td.date{white-space:nowrap} .warnings ul{margin:0;padding-left:16px}"


def trend_plot_ids() -> list[str]:
    return [f"trend-{m}" for m, _, _ in TREND_METRICS]


def _date(started_at) -> str:
    return str(started_at or "")[:10] or "?"


def _session_entry(number: int, sid: int, rep: dict) -> dict:
    warnings = ([f"Simulated data ({rep['simulated_reason']})"] if rep.get("simulated") else [])
    warnings += rep["first_screen"]["notices"] + rep["warnings"]
    return {
        "session_number": number, "session_id": sid, "started_at": rep["session"]["started_at"],
        "date": _date(rep["session"]["started_at"]),
        "normalisation": rep["session"]["normalisation"]["used"],
        "simulated": rep.get("simulated", False),
        "sides": {side: {"strides": r["strides"], "flags": r["flags"],
                         **{m: r[m] for m, _, _ in TREND_METRICS}}
                  for side, r in rep["sides"].items()},
        "flags": [f["code"] + ("" if f["side"] == "session" else f"/{f['side']}")
                  for f in rep["flags"]],
        "warnings": warnings,
        "findings": _findings(rep)}


def _findings(rep: dict) -> str:
    from .findings import findings_text
    return findings_text(rep)


def patient_trend(store, patient_id: str, out_dir) -> tuple[Path, Path]:
    """patient_<id>_trend.html/.json: the side summaries, flags and warnings of every session of
    a patient, in recording order. Sessions that cannot be analysed are listed with the reason
    (and, for a missing calibration, how to copy one)."""
    from . import build_report
    from .calibration import calibration_hint

    out = prepare_dir(out_dir)
    ids = store.session_ids(patient_id)
    if not ids:
        raise UnknownPatient(patient_id)
    sessions, skipped = [], []
    for number, sid in enumerate(ids, 1):
        try:
            rep = build_report(store.load_session(sid))
        except HipsyncDataError as e:
            reason = str(e)
            if isinstance(e, MissingCalibration):
                reason += " " + calibration_hint(store, sid)
            started = store.load_metadata(sid).started_at
            skipped.append({"session_number": number, "session_id": sid, "started_at": started,
                            "date": _date(started), "reason": reason})
            continue
        sessions.append(_session_entry(number, sid, rep))
    trend = {"schema_version": json_report.SCHEMA_VERSION, "patient_id": patient_id,
             "generated_by": json_report.generator_name(), "sessions": sessions,
             "skipped": skipped, "caveats": json_report.CAVEATS}
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in patient_id)
    json_path, html_path = out / f"patient_{safe}_trend.json", out / f"patient_{safe}_trend.html"
    write_text(json_path, json.dumps(json_report._clean(trend), indent=1, allow_nan=False))
    write_text(html_path, render_trend(trend))
    return html_path, json_path


def _summ(s: dict | None, digits: int) -> str:
    if not s or s.get("median") is None:
        return "–"
    return f"{s['median']:.{digits}f} (IQR {s['iqr']:.{digits}f}, n {s['n']})"


def render_trend(trend: dict) -> str:
    pid = trend["patient_id"]
    ss = trend["sessions"]
    x = np.array([s["session_number"] for s in ss], float)
    every = sorted([(s["session_number"], s["date"]) for s in ss]
                   + [(k["session_number"], k["date"]) for k in trend["skipped"]])
    # the number, and the date under it (month-day only when many sessions share the axis)
    xticks = [(n, str(n), d[5:] if len(every) > 6 and len(d) >= 10 else d) for n, d in every]
    parts = [(f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>hipsync trend – "
             f"{escape(pid)}</title><style>{html._CSS}{_CSS}</style></head><body>")]
    if any(s.get("simulated") for s in ss):
        parts.append("<div class='simulated' id='simulated-banner' role='note'>Simulated data in "
                     "this trend – sessions marked below</div>")
    parts += [f"<h1>hipsync trend – patient {escape(pid)}</h1>",
              ("<p><small>Median per session with its interquartile range (whisker), single-leg "
               "support; sessions numbered 1.. in recording order, the date under each number. "
               "Activation and ratios are plotted only for sessions normalised to their own MVC "
               "(others cannot be compared).</small></p>"),
              f"<p class='caveat-line'>{escape(json_report.FIRST_SCREEN_CAVEAT)}</p>",
              "<div class='plots'>"]
    for m, label, needs_mvc in TREND_METRICS:
        series = []
        for side in ("left", "right"):
            vals = [s["sides"][side][m] if (s["normalisation"] == "MVC" or not needs_mvc) else None
                    for s in ss]
            med, q1, q3 = ([np.nan if (v is None or v.get(k) is None) else v[k] for v in vals]
                           for k in ("median", "q1", "q3"))
            series.append((f"{side} stance", x, np.array(med, float), np.array(q1, float),
                           np.array(q3, float)))
        hline = 4.0 if m == "pelvic_drop_deg" else (1.0 if "ratio" in m else None)
        parts.append(svg.line_plot(f"trend-{m}", label, series, "session number (date)", label,
                                   hline=hline, markers=True, xticks=xticks, xpad=0.08))
    parts.append("</div><h2>Sessions</h2><table id='trend-sessions'><tr><th>#</th>"
                 "<th>Session</th><th>Date</th><th>Normalisation</th>"
                 "<th>n strides (L / R)</th>"
                 + "".join(f"<th>{escape(lab)}<br><small>median (IQR, n)</small></th>"
                           for _, lab, _ in TABLE_METRICS)
                 + "<th>Flags</th><th>Warnings</th></tr>")
    for s in ss:
        sl, sr = s["sides"]["left"], s["sides"]["right"]
        cells = "".join(f"<td class='num'>L {_summ(sl[m], d)}<br>R {_summ(sr[m], d)}</td>"
                        for m, _, d in TABLE_METRICS)
        warns = ("<ul>" + "".join(f"<li>{escape(w)}</li>" for w in s["warnings"]) + "</ul>"
                 if s["warnings"] else "none")
        parts.append(f"<tr><td>{s['session_number']}</td><td>{s['session_id']}</td>"
                     f"<td class='date'>{escape(s['date'])}</td><td>{escape(s['normalisation'])}</td>"
                     f"<td class='num'>{sl['strides']} / {sr['strides']}</td>{cells}"
                     f"<td>{escape(', '.join(s['flags']) or 'none')}</td>"
                     f"<td class='warnings'>{warns}</td></tr>")
    parts.append("</table>")
    if trend["skipped"]:
        parts.append("<h2>Sessions not analysed</h2><ul id='trend-skipped'>" + "".join(
            f"<li>#{sk['session_number']} (session {sk['session_id']}, {escape(sk['date'])}): "
            f"{escape(sk['reason'])}</li>" for sk in trend["skipped"]) + "</ul>")
    parts.append("<h2>Caveats</h2><ul class='caveat'>" + "".join(
        f"<li>{escape(c)}</li>" for c in trend["caveats"]) + "</ul></body></html>")
    return "\n".join(parts)
