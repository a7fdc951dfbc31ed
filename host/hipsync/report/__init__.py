"""Session report (HTML + JSON) and a patient's trend across sessions.

    write_report(store, session_id, out_dir) -> (html_path, json_path)
    write_session_report(session, out_dir, stem) -> (html_path, json_path)
    patient_trend(store, patient_id, out_dir) -> (html_path, json_path)
"""

from __future__ import annotations

import json
import os
from html import escape
from pathlib import Path

import numpy as np

from ..analysis import analyse
from ..session import SessionData
from ..store.errors import HipsyncDataError, OutputNotWritable, UnknownPatient
from . import html, json_report, svg

__all__ = ["build_report", "patient_trend", "write_report", "write_session_report"]

TREND_METRICS = (("stance_gmed_pct_mvc", "Stance GMed (%MVC)"),
                 ("stance_es_ipsi_pct_mvc", "Stance-side ES (%MVC)"),
                 ("stance_es_contra_pct_mvc", "Opposite ES (%MVC)"),
                 ("gmed_es_ratio_ipsi", "GMed / stance-side ES"),
                 ("gmed_es_ratio_contra", "GMed / opposite ES"),
                 ("pelvic_drop_deg", "Pelvic drop beyond standing (deg)"))


def _prepare_dir(out_dir) -> Path:
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputNotWritable(out, e.strerror or str(e)) from None
    if not out.is_dir():
        raise OutputNotWritable(out, "it is not a folder")
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputNotWritable(out, "permission denied")
    return out


def _write(path: Path, text: str) -> None:
    try:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)  # a reader never sees half a report
    except OSError as e:
        raise OutputNotWritable(path, e.strerror or str(e)) from None


def build_report(session: SessionData, generated_at: str | None = None) -> dict:
    """The JSON report of a session as a dict (analysis included)."""
    return json_report.build(analyse(session), generated_at=generated_at)


def write_session_report(session: SessionData, out_dir, stem: str | None = None,
                         generated_at: str | None = None) -> tuple[Path, Path]:
    out = _prepare_dir(out_dir)
    rep = build_report(session, generated_at)
    stem = stem or f"session_{session.metadata.session_id or 'unsaved'}"
    html_path, json_path = out / f"{stem}.html", out / f"{stem}.json"
    _write(json_path, json.dumps(rep, indent=1, allow_nan=False))
    _write(html_path, html.render(rep))
    return html_path, json_path


def write_report(store, session_id: int, out_dir) -> tuple[Path, Path]:
    """Analyse a stored session and write session_<id>.html and .json into out_dir.
    Raises UnknownSession, MissingCalibration, NoGaitData, OutputNotWritable."""
    _prepare_dir(out_dir)  # fail on the folder before spending time on the analysis
    session = store.load_session(session_id)
    return write_session_report(session, out_dir, f"session_{session_id}")


def patient_trend(store, patient_id: str, out_dir) -> tuple[Path, Path]:
    """patient_<id>_trend.html/.json: the side medians and flags of every analysable session of
    a patient, in recording order. Sessions that cannot be analysed are listed with the reason."""
    out = _prepare_dir(out_dir)
    ids = store.session_ids(patient_id)
    if not ids:
        raise UnknownPatient(patient_id)
    sessions, skipped = [], []
    for sid in ids:
        try:
            rep = build_report(store.load_session(sid))
        except HipsyncDataError as e:
            skipped.append({"session_id": sid, "reason": str(e)})
            continue
        sessions.append({
            "session_id": sid, "started_at": rep["session"]["started_at"],
            "normalisation": rep["session"]["normalisation"]["used"],
            "sides": {side: {"strides": r["strides"], "flags": r["flags"],
                             **{m: r[m] for m, _ in TREND_METRICS}}
                      for side, r in rep["sides"].items()},
            "flags": [f["code"] + ("" if f["side"] == "session" else f"/{f['side']}")
                      for f in rep["flags"]]})
    trend = {"schema_version": json_report.SCHEMA_VERSION, "patient_id": patient_id,
             "generated_by": json_report.generator_name(), "sessions": sessions,
             "skipped": skipped, "caveats": json_report.CAVEATS}
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in patient_id)
    json_path, html_path = out / f"patient_{safe}_trend.json", out / f"patient_{safe}_trend.html"
    _write(json_path, json.dumps(json_report._clean(trend), indent=1, allow_nan=False))
    _write(html_path, _render_trend(trend))
    return html_path, json_path


def trend_plot_ids() -> list[str]:
    return [f"trend-{m}" for m, _ in TREND_METRICS]


def _render_trend(trend: dict) -> str:
    pid = trend["patient_id"]
    ss = trend["sessions"]
    x = np.arange(1, len(ss) + 1)
    parts = [(f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>hipsync trend – "
             f"{escape(pid)}</title><style>{html._CSS}</style></head><body>"),
             f"<h1>hipsync trend – patient {escape(pid)}</h1>",
             ("<p><small>Median per session (single-leg support); sessions in recording order. "
             "Compare sessions only when each was normalised to its own MVC.</small></p>"),
             "<div class='plots'>"]
    for m, label in TREND_METRICS:
        series = []
        for side in ("left", "right"):
            ys = [s["sides"][side][m]["median"] for s in ss]
            series.append((f"{side} stance", x, np.array([np.nan if v is None else v for v in ys], float)))
        hline = 4.0 if m == "pelvic_drop_deg" else (1.0 if "ratio" in m else None)
        parts.append(svg.line_plot(f"trend-{m}", label, series, "session", label, hline=hline,
                                   markers=True))
    parts.append("</div><h2>Sessions</h2><table><tr><th>#</th><th>Session</th><th>Started</th>"
                 "<th>Normalisation</th><th>Flags</th></tr>")
    for i, s in enumerate(ss, 1):
        parts.append(f"<tr><td>{i}</td><td>{s['session_id']}</td><td>{escape(str(s['started_at']))}</td>"
                     f"<td>{escape(s['normalisation'])}</td><td>{escape(', '.join(s['flags']) or 'none')}</td></tr>")
    parts.append("</table>")
    if trend["skipped"]:
        parts.append("<h2>Sessions not analysed</h2><ul>" + "".join(
            f"<li>{sk['session_id']}: {escape(sk['reason'])}</li>" for sk in trend["skipped"]) + "</ul>")
    parts.append("<h2>Caveats</h2><ul class='caveat'>" + "".join(
        f"<li>{escape(c)}</li>" for c in trend["caveats"]) + "</ul></body></html>")
    return "\n".join(parts)
