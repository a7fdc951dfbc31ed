"""A session without its own standing calibration (a home recording synced from the device) can
borrow the patient's last clinic calibration: its standing angles and its plausible MVCs.

    copy_calibration(store, session_id, from_session_id) -> CopiedCalibration
    calibration_hint(store, session_id) -> str   (what to type, for the "no standing" message)
"""

from __future__ import annotations

from dataclasses import dataclass

from ..analysis.calibration import resolve_calibration, standing_from_task
from ..analysis.mvc_check import session_mvc_checks
from ..session import EMG_CHANNELS
from ..store.errors import HipsyncDataError, MissingCalibration
from .provenance import copied_source

_MAX_SESSIONS_SEARCHED = 20
# hipsync.sync stores a recording's device calibration under this source (standing 0, 0, 0: the
# device streamed angles relative to its own standing calibration)
DEVICE_RELATIVE_SOURCE_PREFIX = "device calibration"  # loading a session reads all its samples: look at the newest few


class CalibrationCopyError(HipsyncDataError):
    """The calibration cannot be copied (other patient, same session, source has none)."""


@dataclass(frozen=True)
class CopiedCalibration:
    session_id: int
    from_session_id: int
    from_date: str
    standing_deg: tuple[float, float, float]
    mvc_uv: dict[str, float | None]  # None: not copied (missing or implausible in the source)
    mvc_not_copied: dict[str, str]  # channel -> why
    source: str  # the calibration source text stored, e.g. "copied from session 3 of 2024-02-10"


def copy_calibration(store, session_id: int, from_session_id: int) -> CopiedCalibration:
    """Copy the standing posture (the median of its standing task; else its stored standing
    angles, unless they are a device-relative reference) and the plausible MVCs of another
    session of the same patient into this session's stored calibration (Store.set_calibration).
    MVCs that are missing or fail mvc_check in the source are stored as None, so this session's
    own MVC tasks (if any) or the report's fallback apply to them. Raises UnknownSession, and CalibrationCopyError (another
    patient's session, the session itself, or a source without a standing calibration)."""
    target = store.load_metadata(session_id)  # UnknownSession if absent
    source_meta = store.load_metadata(from_session_id)
    if from_session_id == session_id:
        raise CalibrationCopyError(f"--calibration-from {from_session_id} is the session itself; "
                                   f"name another session of patient {target.patient_id}.")
    if source_meta.patient_id != target.patient_id:
        raise CalibrationCopyError(
            f"session {from_session_id} belongs to patient {source_meta.patient_id}, session "
            f"{session_id} to {target.patient_id}: a calibration is only copied between sessions "
            f"of the same patient ({_candidates_text(store, session_id)}).")
    src = store.load_session(from_session_id)
    try:
        cal = resolve_calibration(src)
    except MissingCalibration:
        raise CalibrationCopyError(
            f"session {from_session_id} has no standing calibration to copy either "
            f"({_candidates_text(store, session_id)}).") from None
    # A session that needs a copy streamed angles not relative to any standing reference, so it
    # needs the standing posture as the sensor saw it: the standing task's median (measured before
    # the device's calibration ended). A stored device calibration (sync's "device calibration
    # (...)": angles already relative, standing 0, 0, 0) means nothing for other angles.
    standing = standing_from_task(src)
    if standing is None:
        if str(cal.source).startswith(DEVICE_RELATIVE_SOURCE_PREFIX):
            raise CalibrationCopyError(
                f"session {from_session_id} has only the device's own standing reference (its "
                f"angles were recorded relative to it), not a standing task whose posture could "
                f"be copied ({_candidates_text(store, session_id)}).")
        standing = cal.standing_deg
    checks = session_mvc_checks(src, cal.mvc_uv)
    mvc = {ch: (checks[ch].mvc_uv if checks[ch].ok else None) for ch in EMG_CHANNELS}
    not_copied = {ch: checks[ch].reason for ch in EMG_CHANNELS if not checks[ch].ok}
    text = copied_source(from_session_id, source_meta.started_at)
    # set_calibration keeps stored values that are not given: pass every channel explicitly
    store.set_calibration(session_id, standing_deg=standing, mvc_uv=mvc, source=text)
    return CopiedCalibration(session_id, from_session_id, (source_meta.started_at or "?")[:10],
                             tuple(float(v) for v in standing), mvc, not_copied, text)


def _has_standing(store, sid: int) -> bool:
    """A standing posture copy_calibration can copy."""
    cal = store.load_calibration(sid)
    if cal.has_standing and not str(cal.source).startswith(DEVICE_RELATIVE_SOURCE_PREFIX):
        return True
    return standing_from_task(store.load_session(sid)) is not None


def calibrated_sessions(store, session_id: int) -> list[tuple[int, str]]:
    """(session id, date) of the patient's other sessions with a standing calibration, newest
    first (at most the newest _MAX_SESSIONS_SEARCHED are looked at)."""
    meta = store.load_metadata(session_id)
    ids = [s for s in store.session_ids(meta.patient_id) if s != session_id]
    out = []
    for sid in reversed(ids[-_MAX_SESSIONS_SEARCHED:]):
        try:
            if _has_standing(store, sid):
                out.append((sid, (store.load_metadata(sid).started_at or "?")[:10]))
        except HipsyncDataError:
            continue
    return out


def _candidates_text(store, session_id: int) -> str:
    c = calibrated_sessions(store, session_id)
    if not c:
        return "this patient has no other session with a standing calibration"
    return "sessions of this patient with one: " + ", ".join(f"{s} ({d})" for s, d in c[:5])


def calibration_hint(store, session_id: int) -> str:
    """One or two sentences on how to give this session a calibration."""
    c = calibrated_sessions(store, session_id)
    if not c:
        return ("No other session of this patient has a standing calibration to copy: record a "
                "clinic session with the standing task first, then copy its calibration with "
                f"`hipsync report {session_id} --calibration-from <that session>`.")
    sid, date = c[0]
    more = "" if len(c) == 1 else f" (others: {', '.join(f'{s} of {d}' for s, d in c[1:5])})"
    return (f"To use the patient's last clinic calibration instead (session {sid} of {date}), run "
            f"`hipsync report {session_id} --calibration-from {sid}`{more}.")


def missing_calibration_message(store, err: MissingCalibration) -> str:
    return f"{err} {calibration_hint(store, err.session_id)}"
