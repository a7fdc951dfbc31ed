"""Typed frames decoded from the bytes defined in shared/hipwire (the one definition of the format)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from itertools import accumulate

from hipwire import frames as wire
from hipwire import quality


class ProtocolError(ValueError):
    """Bytes that are not a valid hipsync frame; the message names the problem."""


class UnsupportedFrame(ProtocolError):
    """A well-formed frame this host does not understand (unknown type, newer minor version).
    Receivers skip it and count a warning instead of failing."""


@dataclass(frozen=True, slots=True)
class Header:
    type: int
    version: int
    seq: int
    clock: int


@dataclass(frozen=True, slots=True)
class Batch:
    """ENVELOPE (uV) or PELVIS (centidegrees) samples: channels[c][k] at clock + k * period_ticks."""

    header: Header
    period_ticks: int
    channels: tuple[tuple[int, ...], ...]

    @property
    def n_samples(self) -> int:
        return len(self.channels[0])


@dataclass(frozen=True, slots=True)
class Envelope(Batch):
    pass


@dataclass(frozen=True, slots=True)
class Pelvis(Batch):
    pass


@dataclass(frozen=True, slots=True)
class Event:
    header: Header
    kind: str  # "IC" | "FC"
    side: str  # "L" | "R"
    stride: int


@dataclass(frozen=True, slots=True)
class Status:
    header: Header
    fields: dict

    def quality_names(self) -> list[list[str]] | None:
        q = self.fields.get("quality")
        return [quality.describe(bits) for bits in q] if q is not None else None

    def state_names(self) -> list[str] | None:
        state = self.fields.get("state")
        if state is None:
            return None
        return [name for bit, name in wire.STATE_NAMES if state & bit]


@dataclass(frozen=True, slots=True)
class RawEmg:
    header: Header
    payload: bytes


Frame = Envelope | Pelvis | Event | Status | RawEmg

_TYPE_NAMES = {wire.ENVELOPE: "envelope", wire.PELVIS: "pelvis", wire.EVENT: "event",
               wire.STATUS: "status", wire.RAW_EMG: "raw_emg"}


def _cumulate(deltas, first):
    return tuple(accumulate(deltas, initial=first))


def decode(frame: bytes) -> Frame:
    """Decode one stream frame. Raises ProtocolError (UnsupportedFrame for frames to skip)."""
    try:
        ftype, version, seq, clock = wire.check(frame)
        if ftype not in _TYPE_NAMES:
            raise UnsupportedFrame(f"unknown frame type 0x{ftype:02x}")
        if version & 0x0F > wire.VERSION_MINOR:
            raise UnsupportedFrame(f"newer minor protocol version {version >> 4}.{version & 0x0F}")
        header = Header(ftype, version, seq, clock)
        if ftype == wire.ENVELOPE or ftype == wire.PELVIS:
            period, channels = wire.decode_batch(frame, _cumulate)
            cls = Envelope if ftype == wire.ENVELOPE else Pelvis
            return cls(header, period, tuple(channels))
        if ftype == wire.EVENT:
            kind, side, stride = wire.decode_event(frame)
            return Event(header, "IC" if kind == wire.IC else "FC", "L" if side == wire.LEFT else "R",
                         stride)
        if ftype == wire.STATUS:
            return Status(header, wire.decode_status(frame))
        return RawEmg(header, bytes(frame[wire.HEADER_SIZE:len(frame) - wire.CRC_SIZE]))
    except ProtocolError:
        raise
    except (wire.FrameError, struct.error) as e:
        raise ProtocolError(str(e)) from None
    except TypeError as e:  # not bytes-like at all
        raise ProtocolError(f"frame must be bytes: {e}") from None


def type_name(frame: Frame) -> str:
    return _TYPE_NAMES[frame.header.type]


def to_json_dict(frame: Frame) -> dict:
    """A JSON-ready view of a frame (used by `hipsync decode`)."""
    h = frame.header
    out: dict = {"type": type_name(frame), "version": f"{h.version >> 4}.{h.version & 0xF}",
                 "seq": h.seq, "clock": h.clock}
    if isinstance(frame, Batch):
        out["period_ticks"] = frame.period_ticks
        out["channels"] = [list(c) for c in frame.channels]
    elif isinstance(frame, Event):
        out.update(kind=frame.kind, side=frame.side, stride=frame.stride)
    elif isinstance(frame, Status):
        out["fields"] = frame.fields
        out["quality_flags"] = frame.quality_names()
        out["state_flags"] = frame.state_names()
    else:
        out["payload_hex"] = frame.payload.hex()
    return out
