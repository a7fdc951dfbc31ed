"""Where a session's data came from, as far as the report must say: simulated or not, and whether
its calibration was copied from another session.

Simulated data. The robust marker is `filters["simulated"]` in the session (a short text saying
what simulated it, e.g. "virtual device demo, seed 7"): `Store.create_session(...,
filters={**device_filters(), SIMULATED_KEY: "..."})`. Until every writer sets it, a session is also
taken as simulated when its device is the virtual device (its fixed id), when it was built by
hipsync.analysis.synthetic, or when its notes say "simulated"."""

from __future__ import annotations

import re

SIMULATED_KEY = "simulated"  # key in Metadata.filters; value: what simulated it (non-empty text)
_SYNTHETIC_DEVICE_PREFIX = "SYN-"  # hipsync.analysis.synthetic's device id
_SYNTHETIC_FIRMWARE = "synthetic"
_SIMULATED_WORDS = re.compile(r"\b(simulated|virtual device)\b", re.IGNORECASE)

# Calibration copied from another session: the calibration's `source` says so, in this form.
COPIED_SOURCE_FORMAT = "copied from session {session_id} of {date}"
_COPIED = re.compile(r"^copied from session (?P<sid>\d+) of (?P<date>\S+)")


def _virtual_device_ids() -> set[str]:
    from hipsync.commands._device import VIRTUAL_DEVICE_ID  # the one definition of the id
    return {VIRTUAL_DEVICE_ID.lower()}


def _plain_id(device_id: str) -> str:
    return re.sub(r"[^0-9a-z]", "", str(device_id).lower())


def simulated_reason(metadata) -> str | None:
    """Why this session is simulated data (one phrase), or None for a recording of a person."""
    marker = (metadata.filters or {}).get(SIMULATED_KEY)
    if marker:
        return f"marked simulated when recorded: {marker}" if isinstance(marker, str) \
            else "marked simulated when recorded"
    if _plain_id(metadata.device_id) in _virtual_device_ids():
        return f"recorded from the virtual device, id {metadata.device_id}"
    if str(metadata.device_id).startswith(_SYNTHETIC_DEVICE_PREFIX) \
            or metadata.firmware_version == _SYNTHETIC_FIRMWARE:
        return "a synthetic session built by hipsync.analysis.synthetic"
    if _SIMULATED_WORDS.search(metadata.notes or ""):
        return f"session notes: {metadata.notes}"
    return None


def copied_source(session_id: int, started_at: str) -> str:
    """The calibration source text of a calibration copied from session `session_id`."""
    return COPIED_SOURCE_FORMAT.format(session_id=session_id, date=(started_at or "?")[:10])


def copied_from(source: str | None) -> dict | None:
    """{"session_id", "date"} when a calibration source says it was copied, else None."""
    m = _COPIED.match(source or "")
    return None if m is None else {"session_id": int(m.group("sid")), "date": m.group("date")}
