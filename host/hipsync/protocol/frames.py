"""Typed frames decoded from the bytes defined in shared/hipwire (the one definition of the format)."""

from __future__ import annotations

import struct
from binascii import crc_hqx
from dataclasses import dataclass
from itertools import accumulate

from hipwire import frames as wire
from hipwire import quality, rawcodec


class ProtocolError(ValueError):
    """Bytes that are not a valid hipsync frame; the message names the problem."""


class UnsupportedFrame(ProtocolError):
    """A well-formed frame this host does not understand (unknown type, newer minor version).
    Receivers skip it and count a warning instead of failing."""


@dataclass(slots=True)  # not frozen: a frozen dataclass costs ~0.8 us more per frame to build
class Header:
    type: int
    version: int
    seq: int
    clock: int


@dataclass(slots=True)  # not frozen: a frozen dataclass costs ~0.8 us more per frame to build
class Batch:
    """ENVELOPE (uV) or PELVIS (centidegrees) samples: channels[c][k] at clock + k * period_ticks."""

    header: Header
    period_ticks: int
    channels: tuple[tuple[int, ...], ...]

    @property
    def n_samples(self) -> int:
        return len(self.channels[0])


@dataclass(slots=True)  # not frozen: a frozen dataclass costs ~0.8 us more per frame to build
class Envelope(Batch):
    pass


@dataclass(slots=True)  # not frozen: a frozen dataclass costs ~0.8 us more per frame to build
class Pelvis(Batch):
    pass


@dataclass(slots=True)  # not frozen: a frozen dataclass costs ~0.8 us more per frame to build
class Event:
    header: Header
    kind: str  # "IC" | "FC"
    side: str  # "L" | "R"
    stride: int


@dataclass(slots=True)  # not frozen: a frozen dataclass costs ~0.8 us more per frame to build
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


@dataclass(slots=True)  # not frozen: a frozen dataclass costs ~0.8 us more per frame to build
class RawEmg:
    """Raw-mode EMG: channels[c][k] = AFE code >> rawcodec.RAW_SHIFT of channel c (units.EMG_CHANNELS
    order) at clock + k * period_ticks; rawcodec.RAW_UV_PER_UNIT uV each. payload: the frame's
    compressed payload bytes, as stored."""

    header: Header
    payload: bytes
    period_ticks: int
    channels: tuple[tuple[int, ...], ...]

    @property
    def n_samples(self) -> int:
        return len(self.channels[0])


Frame = Envelope | Pelvis | Event | Status | RawEmg

_TYPE_NAMES = {wire.ENVELOPE: "envelope", wire.PELVIS: "pelvis", wire.EVENT: "event",
               wire.STATUS: "status", wire.RAW_EMG: "raw_emg"}


_HEADER = struct.Struct(wire.HEADER_FORMAT)
_OVERHEAD = wire.OVERHEAD
_CRC_SIZE = wire.CRC_SIZE
_HEADER_SIZE = wire.HEADER_SIZE
_MAJOR = wire.VERSION_MAJOR
_MINOR = wire.VERSION_MINOR
_ENVELOPE = wire.ENVELOPE
_PELVIS = wire.PELVIS
_EVENT = wire.EVENT
_STATUS = wire.STATUS
_FrameError = wire.FrameError
_DELTA_CODES = (None, "b", "h", "i")  # by wire width code WIDTH_I8..WIDTH_I32
_DELTA_BYTES = (0, 1, 2, 4)
_delta_structs: dict[tuple[int, int], struct.Struct] = {}
_VALUE_LIMIT = wire.VALUE_LIMIT


def _delta_struct(count: int, width: int) -> struct.Struct:
    s = _delta_structs[(count, width)] = struct.Struct(f"<{count}{_DELTA_CODES[width]}")
    return s


def _decode_batch(frame) -> tuple[int, tuple[tuple[int, ...], ...]]:
    """wire.decode_batch (the format's definition; same checks, same result) with the per-channel
    work cut down for the host: cached Structs, a one-byte varint fast path, C-speed running sums.
    tests/host/test_rawcodec.py compares the two on random and mutated batches."""
    end = len(frame) - _CRC_SIZE
    off = _HEADER_SIZE
    if end - off < wire.BATCH_PREFIX:
        raise _FrameError("batch payload too short")
    n = frame[off]
    n_channels = (frame[off + 1] >> 5) + 1
    period = frame[off + 1] & 0x1F
    if n == 0 or period == 0:
        raise _FrameError(f"batch header invalid: n={n} period={period}")
    off += wire.BATCH_PREFIX
    count = n - 1
    structs = _delta_structs
    channels = []
    append = channels.append
    for c in range(n_channels):
        if off >= end:
            raise _FrameError(f"batch truncated in channel {c} start value")
        u = frame[off]
        off += 1
        if u & 0x80:  # more varint bytes follow
            u &= 0x7F
            shift = 0
            while True:
                if off >= end:
                    raise _FrameError(f"batch truncated in channel {c} start value")
                shift += 7
                if shift > 35:
                    raise _FrameError(f"varint too long in channel {c}")
                b = frame[off]
                off += 1
                u |= (b & 0x7F) << shift
                if not b & 0x80:
                    break
        first = (u >> 1) ^ -(u & 1)
        if not -_VALUE_LIMIT < first < _VALUE_LIMIT:
            raise _FrameError(f"batch value {first} in channel {c} outside the format's range")
        if count == 0:
            append((first,))
            continue
        if off >= end:
            raise _FrameError(f"batch truncated in channel {c} width")
        width = frame[off]
        off += 1
        if width > 3:  # WIDTH_I32
            raise _FrameError(f"invalid delta width code {width} in channel {c}")
        if width == 0:  # WIDTH_ZERO
            append((first,) * n)
            continue
        size = count * _DELTA_BYTES[width]
        if off + size > end:
            raise _FrameError(f"batch truncated in channel {c} deltas")
        deltas = structs.get((count, width)) or _delta_struct(count, width)
        values = tuple(accumulate(deltas.unpack_from(frame, off), initial=first))
        if width == 3 and not -_VALUE_LIMIT < min(values) <= max(values) < _VALUE_LIMIT:
            # 8- and 16-bit deltas over <= 255 samples cannot leave the range from a valid start
            raise _FrameError(f"batch values in channel {c} outside the format's range")
        append(values)
        off += size
    if off != end:
        raise _FrameError(f"{end - off} unexpected bytes after batch")
    return period, tuple(channels)


_KIND_NAMES = {wire.IC: "IC", wire.FC: "FC"}
_SIDE_NAMES = {wire.LEFT: "L", wire.RIGHT: "R"}


def decode(frame: bytes) -> Frame:
    """Decode one stream frame. Raises ProtocolError (UnsupportedFrame for frames to skip)."""
    try:
        # wire.check at C speed: binascii.crc_hqx with initial value 0xFFFF is CRC-16/CCITT-FALSE
        # (polynomial 0x1021, no reflection, no final XOR); tests/host/test_rawcodec.py checks it
        # against wire.crc16.
        n = len(frame)
        if n < _OVERHEAD:
            raise _FrameError(f"frame too short: {n} bytes, need at least {_OVERHEAD}")
        if crc_hqx(frame[:n - _CRC_SIZE], 0xFFFF) != frame[n - 2] | (frame[n - 1] << 8):
            raise _FrameError("CRC mismatch")
        ftype, version, seq, clock = _HEADER.unpack_from(frame)
        if version >> 4 != _MAJOR:
            raise _FrameError(f"unsupported protocol major version {version >> 4}")
        if ftype not in _TYPE_NAMES:
            raise UnsupportedFrame(f"unknown frame type 0x{ftype:02x}")
        if version & 0x0F > _MINOR:
            raise UnsupportedFrame(f"newer minor protocol version {version >> 4}.{version & 0x0F}")
        header = Header(ftype, version, seq, clock)
        if ftype == _ENVELOPE:
            period, channels = _decode_batch(frame)
            return Envelope(header, period, channels)
        if ftype == _PELVIS:
            period, channels = _decode_batch(frame)
            return Pelvis(header, period, channels)
        if ftype == _EVENT:
            kind, side, stride = wire.decode_event(frame)
            return Event(header, _KIND_NAMES[kind], _SIDE_NAMES[side], stride)
        if ftype == _STATUS:
            return Status(header, wire.decode_status(frame))
        period, channels = rawcodec.decode(frame)
        return RawEmg(header, bytes(frame[_HEADER_SIZE:n - _CRC_SIZE]), period,
                      tuple(tuple(c) for c in channels))
    except ProtocolError:
        raise
    except (_FrameError, struct.error) as e:
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
        out["period_ticks"] = frame.period_ticks
        out["channels"] = [list(c) for c in frame.channels]
    return out
