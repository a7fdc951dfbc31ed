"""What every export shares: the typed export error and how a stride number is written.

The device numbers strides per side and sends `-1` for "no stride yet" (an FC before that foot's
first IC, firmware/dsp/gait.py); on the wire the index is a u16, so -1 arrives as 0xFFFF. Exports
write an unknown stride as nothing (an empty CSV cell, no number in an annotation or marker),
never as 65535."""

from __future__ import annotations

from ..store.errors import HipsyncDataError

STRIDE_UNKNOWN_WIRE = 0xFFFF  # -1 & 0xFFFF: what a u16 stride index of -1 decodes to


class ExportError(HipsyncDataError):
    """The session cannot be written in the requested format (the message says why and what to
    do); the CLI prints it without a traceback (exit 1)."""


def known_stride(stride) -> int | None:
    """The stride index, or None when the device did not know it (-1, or -1 wrapped to 0xFFFF)."""
    s = int(stride)
    return None if s < 0 or s == STRIDE_UNKNOWN_WIRE else s


def event_text(kind: str, side: str, stride) -> str:
    """'IC L 3'; 'FC R' when the stride is unknown."""
    s = known_stride(stride)
    return f"{kind} {side}" if s is None else f"{kind} {side} {s}"
