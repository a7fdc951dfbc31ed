"""Typed frames decoded from the bytes defined in shared/hipwire (the one definition of the format)."""

from __future__ import annotations

import struct
from binascii import crc_hqx
from dataclasses import dataclass
from itertools import accumulate
from operator import itemgetter

from hipwire import frames as wire
from hipwire import quality, rawcodec
from hipwire.commands import EXAM_TASKS as _EXAM_TASKS


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


@dataclass(slots=True)  # not frozen: a frozen dataclass costs ~0.8 us more per frame to build
class Rep:
    """One exam repetition the device found. header.clock is its start; low_ticks and end_ticks are
    offsets from it (device ticks); depth is in REP_DEPTH_UNITS[task] (mm or centidegrees)."""

    header: Header
    task: str  # a name of hipwire.commands.EXAM_TASKS
    side: str  # stance side "L" | "R"
    index: int  # the device's count within the task, from 0 (u8, wraps after 255)
    flags: int  # wire.REP_* bits
    low_ticks: int
    end_ticks: int
    depth: int

    @property
    def depth_units(self) -> str:
        return wire.REP_DEPTH_UNITS[_EXAM_TASKS.index(self.task)]

    def flag_names(self) -> list[str]:
        return [name for bit, name in wire.REP_FLAGS if self.flags & bit]


Frame = Envelope | Pelvis | Event | Status | RawEmg | Rep

_TYPE_NAMES = {wire.ENVELOPE: "envelope", wire.PELVIS: "pelvis", wire.EVENT: "event",
               wire.STATUS: "status", wire.RAW_EMG: "raw_emg", wire.REP: "rep"}


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
_RAW_EMG = wire.RAW_EMG
_FrameError = wire.FrameError
_VALUE_LIMIT = wire.VALUE_LIMIT
_BATCH_START = wire.HEADER_SIZE + wire.BATCH_PREFIX
# _UNPACK_DELTAS[count][width]: the unpacker of count deltas of wire width code width (1..3), all
# built once (765 small Structs) so a channel costs one tuple index, not a format string or a cache
# lookup with a tuple key.
_UNPACK_DELTAS = tuple((None,) + tuple(struct.Struct(f"<{count}{code}").unpack_from for code in "bhi")
                       for count in range(wire.MAX_BATCH_SAMPLES))
_ZIGZAG_BYTE = tuple((u >> 1) ^ -(u & 1) for u in range(0x80))  # one-byte varint -> value


def _read_start(frame, off: int, end: int, c: int) -> tuple[int, int]:
    """Channel c's start value, a zigzag varint at frame[off]; returns (value, offset after it)."""
    u = 0
    shift = 0
    while True:
        if off >= end:
            raise _FrameError(f"batch truncated in channel {c} start value")
        b = frame[off]
        off += 1
        u |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift > 35:
            raise _FrameError(f"varint too long in channel {c}")
    first = (u >> 1) ^ -(u & 1)
    if not -_VALUE_LIMIT < first < _VALUE_LIMIT:
        raise _FrameError(f"batch value {first} in channel {c} outside the format's range")
    return first, off


def _decode_batch(frame) -> tuple[int, tuple[tuple[int, ...], ...]]:
    """wire.decode_batch (the format's definition; same checks, same result) with the per-channel
    work cut down for the host: prebuilt unpackers, one- and two-byte varint fast paths (start
    values with |v| < 2**13 need no range check), C-speed running sums. The running sums
    (itertools.accumulate, 20-30 ns per value) are most of what is left.
    tests/host/test_rawcodec.py compares the two on random and mutated batches."""
    end = len(frame) - _CRC_SIZE
    if end < _BATCH_START:
        raise _FrameError("batch payload too short")
    n = frame[_HEADER_SIZE]
    shape = frame[_HEADER_SIZE + 1]
    period = shape & 0x1F
    if n == 0 or period == 0:
        raise _FrameError(f"batch header invalid: n={n} period={period}")
    off = _BATCH_START
    channels = []
    append = channels.append
    if n == 1:  # start values only
        for c in range((shape >> 5) + 1):
            first, off = _read_start(frame, off, end, c)
            append((first,))
    else:
        count = n - 1
        unpack = _UNPACK_DELTAS[count]
        unpack_i8 = unpack[1]
        for c in range((shape >> 5) + 1):
            u = frame[off] if off < end else 0x80
            if u < 0x80:  # one-byte varint: |first| < 64
                first = _ZIGZAG_BYTE[u]
                off += 1
            elif off + 1 < end and frame[off + 1] < 0x80:  # two bytes (pelvis angles): < 2**13
                u = (u & 0x7F) | (frame[off + 1] << 7)
                first = (u >> 1) ^ -(u & 1)
                off += 2
            else:
                first, off = _read_start(frame, off, end, c)
            if off >= end:
                raise _FrameError(f"batch truncated in channel {c} width")
            width = frame[off]
            off += 1
            if width == 1:  # WIDTH_I8, by far the most common
                if off + count > end:
                    raise _FrameError(f"batch truncated in channel {c} deltas")
                append(tuple(accumulate(unpack_i8(frame, off), initial=first)))
                off += count
            elif width == 0:  # WIDTH_ZERO: no bytes follow
                append((first,) * n)
            elif width == 2 or width == 3:
                after = off + (2 if width == 2 else 4) * count
                if after > end:
                    raise _FrameError(f"batch truncated in channel {c} deltas")
                values = tuple(accumulate(unpack[width](frame, off), initial=first))
                if width == 3 and not -_VALUE_LIMIT < min(values) <= max(values) < _VALUE_LIMIT:
                    # 8- and 16-bit deltas over <= 255 samples cannot leave the range from a
                    # valid start
                    raise _FrameError(f"batch values in channel {c} outside the format's range")
                append(values)
                off = after
            else:
                raise _FrameError(f"invalid delta width code {width} in channel {c}")
    if off != end:
        raise _FrameError(f"{end - off} unexpected bytes after batch")
    return period, tuple(channels)


_KIND_NAMES = {wire.IC: "IC", wire.FC: "FC"}
_SIDE_NAMES = {wire.LEFT: "L", wire.RIGHT: "R"}
_EVENT_LEN = wire.OVERHEAD + wire.EVENT_SIZE
_EVENT_BODY = struct.Struct(wire.EVENT_FORMAT)


def _decode_event(frame) -> tuple[str, str, int]:
    """wire.decode_event (same checks, same messages) returning the names. decode() inlines the
    valid case and calls this for the message; tests/host/test_rawcodec.py compares the two."""
    if len(frame) != _EVENT_LEN:
        raise _FrameError(f"EVENT frame must be {_EVENT_LEN} bytes, got {len(frame)}")
    kind, side, stride = _EVENT_BODY.unpack_from(frame, _HEADER_SIZE)
    kind_name = _KIND_NAMES.get(kind)
    if kind_name is None:
        raise _FrameError(f"unknown event kind {kind}")
    side_name = _SIDE_NAMES.get(side)
    if side_name is None:
        raise _FrameError(f"unknown event side {side}")
    return kind_name, side_name, stride


_REP = wire.REP
_REP_LEN = wire.OVERHEAD + wire.REP_SIZE
_REP_BODY = struct.Struct(wire.REP_FORMAT)


def _decode_rep(frame) -> tuple[str, str, int, int, int, int, int]:
    """wire.decode_rep (same checks, same messages) returning the task and side names."""
    if len(frame) != _REP_LEN:
        raise _FrameError(f"REP frame must be {_REP_LEN} bytes, got {len(frame)}")
    task, side, index, flags, low, end, depth = _REP_BODY.unpack_from(frame, _HEADER_SIZE)
    if not 1 <= task <= len(_EXAM_TASKS):
        raise _FrameError(f"unknown exam task {task}")
    side_name = _SIDE_NAMES.get(side)
    if side_name is None:
        raise _FrameError(f"unknown repetition side {side}")
    if low > end:
        raise _FrameError("repetition's lowest point after its end")
    return _EXAM_TASKS[task - 1], side_name, index, flags, low, end, depth


_PAGE_UNPACK = tuple(struct.Struct(fmt).unpack_from for fmt in wire.PAGE_FORMATS)
_PAGE_STEP = tuple(1 + size for size in wire.PAGE_SIZES)
_N_PAGES = wire.N_PAGES
_PAGE_POWER = wire.PAGE_POWER
_PAGE_MAINS = wire.PAGE_MAINS
_PAGE_FIELDS = wire.PAGE_FIELDS
# Every page once, in order from PAGE_POWER: what the device sends whenever the ATT payload has
# room (status_pages_fitting). One unpack; the page ids and the fields are picked from its result
# by position, as wire.decode_status names them (quality and mains_uv as lists).
_ALL_PAGES = struct.Struct("<" + "".join("B" + fmt.lstrip("<") for fmt in wire.PAGE_FORMATS))


def _all_pages_layout():
    id_at, names, picks, at = [], [], [], 0
    for page, fmt in enumerate(wire.PAGE_FORMATS):
        id_at.append(at)
        at += 1
        count = len(struct.unpack(fmt, bytes(struct.calcsize(fmt))))
        if page == wire.PAGE_POWER:
            picks += [at, at + 1, at + 2, slice(at + 3, at + 7)]
        elif page == wire.PAGE_MAINS:
            picks.append(slice(at, at + count))
        else:
            picks += range(at, at + count)
        names += wire.PAGE_FIELDS[page]
        at += count
    return itemgetter(*id_at), tuple(range(wire.N_PAGES)), tuple(names), itemgetter(*picks)


_ALL_PAGE_IDS, _ALL_PAGES_IN_ORDER, _ALL_PAGES_NAMES, _ALL_PAGES_VALUES = _all_pages_layout()


def _decode_status(frame) -> dict:
    """wire.decode_status (same checks, same dict, same key order) with prebuilt unpackers and one
    unpack for the usual frame that carries every page; tests/host/test_rawcodec.py compares."""
    end = len(frame) - _CRC_SIZE
    if end - _HEADER_SIZE == _ALL_PAGES.size:
        v = _ALL_PAGES.unpack_from(frame, _HEADER_SIZE)
        if _ALL_PAGE_IDS(v) == _ALL_PAGES_IN_ORDER:
            fields = dict(zip(_ALL_PAGES_NAMES, _ALL_PAGES_VALUES(v)))
            fields["quality"] = list(fields["quality"])
            fields["mains_uv"] = list(fields["mains_uv"])
            return fields
    off = _HEADER_SIZE
    if off >= end:
        raise _FrameError("STATUS frame has no page")
    fields: dict = {}
    while off < end:
        page = frame[off]
        if page >= _N_PAGES:
            raise _FrameError(f"unknown STATUS page {page}")
        if off + _PAGE_STEP[page] > end:
            raise _FrameError(f"STATUS page {page} truncated")
        values = _PAGE_UNPACK[page](frame, off + 1)
        off += _PAGE_STEP[page]
        if page == _PAGE_POWER:
            fields["battery_pct"], fields["state"], fields["battery_mv"] = values[0:3]
            fields["quality"] = list(values[3:7])
        elif page == _PAGE_MAINS:
            fields["mains_uv"] = list(values)
        else:
            for name, value in zip(_PAGE_FIELDS[page], values):
                fields[name] = value
    return fields


_VERSION = wire.VERSION


def _check_version(ftype: int, version: int) -> None:
    """A version other than ours: refuse another major, skip a newer minor (after the type)."""
    if version >> 4 != _MAJOR:
        raise _FrameError(f"unsupported protocol major version {version >> 4}")
    if ftype not in _TYPE_NAMES:
        raise UnsupportedFrame(f"unknown frame type 0x{ftype:02x}")
    if version & 0x0F > _MINOR:
        raise UnsupportedFrame(f"newer minor protocol version {version >> 4}.{version & 0x0F}")


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
        if version != _VERSION:
            _check_version(ftype, version)
        # most frequent first: EVENT frames are ~40 % of a walking stream
        if ftype == _EVENT:  # _decode_event, inline: the call costs ~10 % of an EVENT frame
            if n != _EVENT_LEN:
                raise _FrameError(f"EVENT frame must be {_EVENT_LEN} bytes, got {n}")
            kind, side, stride = _EVENT_BODY.unpack_from(frame, _HEADER_SIZE)
            if kind not in _KIND_NAMES or side not in _SIDE_NAMES:
                _decode_event(frame)  # raises, naming the field
            return Event(Header(ftype, version, seq, clock), _KIND_NAMES[kind], _SIDE_NAMES[side],
                         stride)
        if ftype == _ENVELOPE:
            period, channels = _decode_batch(frame)
            return Envelope(Header(ftype, version, seq, clock), period, channels)
        if ftype == _PELVIS:
            period, channels = _decode_batch(frame)
            return Pelvis(Header(ftype, version, seq, clock), period, channels)
        if ftype == _STATUS:
            return Status(Header(ftype, version, seq, clock), _decode_status(frame))
        if ftype == _RAW_EMG:
            period, channels = rawcodec.decode(frame)
            return RawEmg(Header(ftype, version, seq, clock),
                          bytes(frame[_HEADER_SIZE:n - _CRC_SIZE]), period,
                          tuple(tuple(c) for c in channels))
        if ftype == _REP:
            return Rep(Header(ftype, version, seq, clock), *_decode_rep(frame))
        raise UnsupportedFrame(f"unknown frame type 0x{ftype:02x}")
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
    elif isinstance(frame, Rep):
        out.update(task=frame.task, side=frame.side, index=frame.index, flags=frame.flags,
                   flag_names=frame.flag_names(), low_ticks=frame.low_ticks,
                   end_ticks=frame.end_ticks, depth=frame.depth, depth_units=frame.depth_units)
    elif isinstance(frame, Status):
        out["fields"] = frame.fields
        out["quality_flags"] = frame.quality_names()
        out["state_flags"] = frame.state_names()
    else:
        out["payload_hex"] = frame.payload.hex()
        out["period_ticks"] = frame.period_ticks
        out["channels"] = [list(c) for c in frame.channels]
    return out
