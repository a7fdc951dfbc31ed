"""Calibration values from the session's own tasks: standing baseline angles, resting EMG, MVC."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..session import EMG_CHANNELS, MVC_TASKS, TASK_STANDING, Calibration, SessionData
from ..store.errors import MissingCalibration

MIN_STANDING_S = 3.0
# MVC amplitude = highest mean envelope over a sliding 500 ms window in the MVC task (a common
# choice for isometric MVCs; avoids a single spike setting the reference).
MVC_WINDOW_S = 0.5


def _window(t: np.ndarray, a: float, b: float) -> slice:
    return slice(int(np.searchsorted(t, a)), int(np.searchsorted(t, b, side="right")))


def standing_from_task(session: SessionData) -> np.ndarray | None:
    for task in session.tasks_named(TASK_STANDING):
        s = _window(session.pelvis_t_s, task.t_start_s, task.t_end_s)
        if task.duration_s >= MIN_STANDING_S and s.stop - s.start > 10:
            return np.median(session.pelvis_deg[s], axis=0)
    return None


def mvc_from_tasks(session: SessionData) -> dict[str, float | None]:
    out: dict[str, float | None] = {c: None for c in EMG_CHANNELS}
    rate = session.metadata.envelope_rate_hz
    n_win = max(1, round(MVC_WINDOW_S * rate))
    for i, ch in enumerate(EMG_CHANNELS):
        best = None
        for task in session.tasks_named(MVC_TASKS[ch]):
            x = session.envelope_uv[_window(session.envelope_t_s, task.t_start_s, task.t_end_s), i]
            if len(x) >= n_win:
                v = float(np.max(np.convolve(x, np.ones(n_win) / n_win, mode="valid")))
                best = v if best is None else max(best, v)
        out[ch] = best
    return out


def resolve_calibration(session: SessionData) -> Calibration:
    """The stored calibration, completed from the session's tasks where a value is missing.
    Raises MissingCalibration when there is no standing baseline either way."""
    cal = session.calibration
    standing = cal.standing_deg if cal.has_standing else standing_from_task(session)
    if standing is None:
        detail = ("no stored standing angles and no 'standing' task of at least "
                  f"{MIN_STANDING_S:g} s with pelvis data")
        raise MissingCalibration(session.metadata.session_id, detail)
    mvc = dict(cal.mvc_uv)
    derived = mvc_from_tasks(session)
    for ch in EMG_CHANNELS:
        if mvc.get(ch) is None or not mvc[ch] > 0:
            mvc[ch] = derived[ch]
    source = cal.source if cal.has_standing else "derived from tasks"
    return Calibration(standing_deg=np.asarray(standing, float), mvc_uv=mvc, source=source)


@dataclass
class RestBaseline:
    mean_uv: np.ndarray  # (4,)
    sd_uv: np.ndarray  # (4,)
    source: str


def rest_baseline(session: SessionData) -> RestBaseline | None:
    """Resting EMG (mean, SD per channel) from the standing task: the onset threshold's base."""
    for task in session.tasks_named(TASK_STANDING):
        s = _window(session.envelope_t_s, task.t_start_s, task.t_end_s)
        if s.stop - s.start > 10:
            x = session.envelope_uv[s]
            return RestBaseline(x.mean(axis=0), x.std(axis=0), "standing task")
    return None
