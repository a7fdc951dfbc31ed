"""Session report (HTML + JSON) and a patient's trend across sessions.

    write_report(store, session_id, out_dir) -> (html_path, json_path)
    write_session_report(session, out_dir, stem) -> (html_path, json_path)
    build_report(session) -> dict
    findings_text(report_dict) -> str   (one or two plain lines for a terminal)
    patient_trend(store, patient_id, out_dir) -> (html_path, json_path)
    copy_calibration(store, session_id, from_session_id) -> CopiedCalibration
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..analysis import analyse
from ..analysis.calibration import resolve_calibration
from ..analysis.mvc_check import MvcCheck, session_mvc_checks
from ..session import EMG_CHANNELS, MVC_TASKS, SessionData
from . import html, json_report
from ._files import prepare_dir, write_text
from .calibration import CalibrationCopyError, CopiedCalibration, calibration_hint, copy_calibration
from .findings import findings_text
from .provenance import SIMULATED_KEY, simulated_reason
from .trend import TREND_METRICS, patient_trend, trend_plot_ids

__all__ = ["SIMULATED_KEY", "TREND_METRICS", "CalibrationCopyError", "CopiedCalibration", "build_report",
           "calibration_hint", "copy_calibration", "findings_text", "patient_trend",
           "simulated_reason", "trend_plot_ids", "write_report", "write_session_report"]

# A task renamed so that the analysis does not take its MVC (see _without_unusable_mvcs)
_NOT_USED = " (MVC not used)"


def _without_unusable_mvcs(session: SessionData, checks: dict[str, MvcCheck]) -> SessionData:
    """The session as the analysis should see it: an implausible MVC neither stored nor derived
    from its task, so the analysis falls back as for a missing one (it derives an MVC from every
    task named mvc_<channel>, hence the rename). The session itself is not changed."""
    bad = {ch for ch, c in checks.items() if c.status == "implausible"}
    if not bad:
        return session
    names = {MVC_TASKS[ch] for ch in bad}
    tasks = [dataclasses.replace(t, name=t.name + _NOT_USED) if t.name in names else t
             for t in session.tasks]
    mvc = {ch: (None if ch in bad else session.calibration.mvc_uv.get(ch)) for ch in EMG_CHANNELS}
    return dataclasses.replace(session, tasks=tasks,
                               calibration=dataclasses.replace(session.calibration, mvc_uv=mvc))


def build_report(session: SessionData, generated_at: str | None = None) -> dict:
    """The JSON report of a session as a dict (analysis included). An MVC that fails
    hipsync.analysis.mvc_check is not normalised to; the report's first screen says so.
    Raises MissingCalibration, NoGaitData."""
    checks = session_mvc_checks(session, resolve_calibration(session).mvc_uv)
    analysed = _without_unusable_mvcs(session, checks)
    a = analyse(analysed)
    if analysed is not session:  # report the session as stored: its own task names
        a.session = session
        for entry, task in zip(a.tasks, session.tasks):
            entry["name"] = task.name
    return json_report.build(a, generated_at=generated_at, mvc_checks=checks)


def write_session_report(session: SessionData, out_dir, stem: str | None = None,
                         generated_at: str | None = None) -> tuple[Path, Path]:
    out = prepare_dir(out_dir)
    rep = build_report(session, generated_at)
    stem = stem or f"session_{session.metadata.session_id or 'unsaved'}"
    html_path, json_path = out / f"{stem}.html", out / f"{stem}.json"
    write_text(json_path, json.dumps(rep, indent=1, allow_nan=False))
    write_text(html_path, html.render(rep))
    return html_path, json_path


def write_report(store, session_id: int, out_dir) -> tuple[Path, Path]:
    """Analyse a stored session and write session_<id>.html and .json into out_dir.
    Raises UnknownSession, MissingCalibration, NoGaitData, OutputNotWritable."""
    prepare_dir(out_dir)  # fail on the folder before spending time on the analysis
    session = store.load_session(session_id)
    return write_session_report(session, out_dir, f"session_{session_id}")
