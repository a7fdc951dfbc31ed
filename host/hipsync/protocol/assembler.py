"""Turns notifications as they arrive (lost, duplicated, reordered, delayed) into an ordered stream
with exact loss accounting and unwrapped clocks."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from hipwire import frames as wire
from hipwire.units import CLOCK_HZ

from .clock import ClockMap
from .frames import Batch, Frame, ProtocolError, Rep, UnsupportedFrame, decode

_SEQ_MOD = 1 << 16
_CLOCK_MOD = 1 << 32
# A clock step larger than this between neighbouring frames must be confirmed by the next frame
# before it is believed (one corrupt value must not shift the rest of a recording).
MAX_CLOCK_STEP_TICKS = 600_000
# A device clock this far (in host seconds) behind where the fit puts it means the device
# restarted, even if it is past the last frame's (a link drop alone leaves it running; reply
# latency stays well below this).
RESTART_TOLERANCE_S = 2.0


def _unwrap(raw: int, ref: int, mod: int) -> int:
    half = mod // 2
    return ref + ((raw - ref % mod + half) % mod) - half


@dataclass(frozen=True, slots=True)
class Received:
    frame: Frame
    seq: int  # unwrapped
    clock: int  # unwrapped device ticks
    host_time_s: float
    late: bool = False  # delivered after later frames (it had been counted lost, now recovered)
    clock_suspect: bool = False  # a lone clock value inconsistent with its neighbours


@dataclass
class _Coverage:
    first: int | None = None
    end: int = 0
    received: int = 0
    period: int = 1

    def add(self, clock: int, n: int, period: int) -> None:
        self.period = period
        if self.first is None or clock < self.first:
            self.first = clock
        self.end = max(self.end, clock + n * period)
        self.received += n

    @property
    def lost(self) -> int:
        if self.first is None:
            return 0
        return max(0, (self.end - self.first) // self.period - self.received)


@dataclass
class LinkStats:
    frames_received: int = 0
    frames_lost: int = 0
    duplicates: int = 0
    late: int = 0
    malformed: int = 0
    unsupported: int = 0
    clock_suspect: int = 0
    device_restarts: int = 0  # epochs after the first: seq and clock started again mid-stream
    coverage: dict[int, _Coverage] = field(default_factory=dict)

    def samples_lost(self, frame_type: int) -> int:
        cov = self.coverage.get(frame_type)
        return cov.lost if cov else 0

    @property
    def loss_fraction(self) -> float:
        total = self.frames_received + self.frames_lost
        return self.frames_lost / total if total else 0.0

    def as_dict(self) -> dict:
        return {"frames_received": self.frames_received, "frames_lost": self.frames_lost,
                "duplicates": self.duplicates, "late": self.late, "malformed": self.malformed,
                "unsupported": self.unsupported, "clock_suspect": self.clock_suspect,
                "device_restarts": self.device_restarts,
                "envelope_samples_lost": self.samples_lost(wire.ENVELOPE),
                "pelvis_samples_lost": self.samples_lost(wire.PELVIS),
                "loss_fraction": round(self.loss_fraction, 6)}


class StreamAssembler:
    """Feed it frames (or raw notification bytes) in arrival order; get them back in device order.

    Losses are counted exactly: frames from the gaps of the unwrapped sequence numbers, samples
    from the gaps of each batch type's clock coverage. Frames that arrive after the reorder window
    gave them up are still delivered (flagged late) and no longer counted lost.

    A device that restarts begins its sequence numbers and clock again. check_device_clock() (the
    clock a TIME_SYNC returned after a reconnect) tells, and the stream goes on as a new epoch:
    seq continues after the old epoch's, and the clock where the old epoch's fit puts the restarted
    device, so a session keeps one time line with the restart as a gap of lost samples."""

    def __init__(self, reorder_window: int = 64, recent: int = 4096,
                 max_wait_s: float | None = None):
        """max_wait_s: also give a gap up once the frame after it has waited this long (host
        time). A live view wants it: at 10 % loss there is nearly always a gap, and a window of
        64 frames alone would hold everything back by seconds. What arrives after all is still
        delivered (late) and taken off the lost count."""
        self.stats = LinkStats()
        self.clock_map = ClockMap()
        self._window = reorder_window
        self._max_wait_s = max_wait_s
        self._pending: dict[int, tuple[Frame, float]] = {}
        self._next: int | None = None  # next unwrapped seq to release
        self._start = 0  # lowest seq accounted for
        self._seq_ref: int | None = None
        self._released: deque[int] = deque(maxlen=recent)
        self._released_set: set[int] = set()
        self._lost: set[int] = set()
        self._clock_ref: int | None = None
        self._held: tuple[Frame, int, float] | None = None  # one-frame look-ahead for clocks
        self._seq_base = 0  # added to the device's seq and clock (mod their ranges) in this epoch
        self._clock_base = 0

    # -- device restarts
    def check_device_clock(self, raw_clock: int, host_time_s: float) -> list[Received]:
        """The device's clock as it answered at host_time_s (a TIME_SYNC reply, after a reconnect).
        Everything received so far is released (returned): the reconnect is a gap anyway, and a
        restart must not leave old frames waiting among the new epoch's. If the device restarted,
        the next frames start a new epoch."""
        out = self.flush()
        if self._clock_ref is None or self.clock_map.n_points == 0:
            return out  # nothing received yet: the first frames set the time line
        expected = self.clock_map.device_ticks(host_time_s)
        now = _unwrap((raw_clock + self._clock_base) % _CLOCK_MOD, self._clock_ref, _CLOCK_MOD)
        # behind the last frame: a running clock never goes back. Past it but far behind the fit:
        # a restart longer ago than the stream had run (the tolerance is host time, so that a
        # slow reply to a device clock running faster than real time is not one)
        rate = self.clock_map.fit()[1]  # host seconds per device second
        if now >= self._clock_ref and now >= expected - RESTART_TOLERANCE_S * CLOCK_HZ / rate:
            return out
        self.stats.device_restarts += 1
        last_seq = self._seq_ref if self._seq_ref is not None else -1
        self._seq_base = last_seq + 1
        self._seq_ref = last_seq
        self._clock_base = round(expected) - raw_clock
        self._clock_ref = round(expected)
        self._next = None
        self._start = 0
        return out

    def unwrap_clock(self, raw_clock: int) -> int:
        """A u32 device clock from a command reply (OP_TASK, TIME_SYNC) on the frames' time line:
        the same epoch offset and unwrapping as the frames' clocks."""
        raw = (raw_clock + self._clock_base) % _CLOCK_MOD
        ref = self._clock_ref
        if ref is None:  # nothing released yet: the frames waiting give the first clocks
            waiting = [f for f, _ in self._pending.values()]
            if self._held is not None:
                waiting.append(self._held[0])
            if not waiting:
                return raw
            return _unwrap(raw, self._raw_clock(waiting[0]), _CLOCK_MOD)
        return _unwrap(raw, ref, _CLOCK_MOD)

    # -- input
    def push_bytes(self, data: bytes, host_time_s: float) -> list[Received]:
        try:
            frame = decode(data)
        except UnsupportedFrame:
            self.stats.unsupported += 1
            return []
        except ProtocolError:
            self.stats.malformed += 1
            return []
        return self.push(frame, host_time_s)

    def push(self, frame: Frame, host_time_s: float) -> list[Received]:
        raw = (frame.header.seq + self._seq_base) % _SEQ_MOD
        useq = raw if self._seq_ref is None else _unwrap(raw, self._seq_ref, _SEQ_MOD)
        self._seq_ref = useq if self._seq_ref is None else max(self._seq_ref, useq)
        out: list[Received] = []
        if useq in self._released_set or useq in self._pending:
            self.stats.duplicates += 1
            return out
        if self._next is not None and useq < self._next:
            # given up on (or from before the first release): deliver it now, out of order
            if useq in self._lost:
                self._lost.discard(useq)
                self.stats.frames_lost -= 1
            elif useq < self._start:  # older than the first frame released: the gap between is lost
                gap = [s for s in range(useq + 1, self._start) if s not in self._released_set]
                self._lost.update(gap)
                self.stats.frames_lost += len(gap)
                self._start = useq
            self.stats.late += 1
            self._mark_released(useq)
            out.extend(self._release(frame, useq, host_time_s, late=True))
            return out
        self._pending[useq] = (frame, host_time_s)
        self._drain(out, force=False, now_s=host_time_s)
        return out

    def release_waiting(self, now_s: float) -> list[Received]:
        """Frames held behind a gap longer than max_wait_s, released (call when nothing arrives)."""
        out: list[Received] = []
        if self._max_wait_s is not None:
            self._drain(out, force=False, now_s=now_s)
        return out

    def flush(self) -> list[Received]:
        out: list[Received] = []
        self._drain(out, force=True)
        if self._held is not None:
            frame, useq, t = self._held
            self._held = None
            out.extend(self._emit(frame, useq, t, late=False, suspect=False))
        return out

    # -- ordering
    def _waited_too_long(self, now_s: float | None) -> bool:
        if self._max_wait_s is None or now_s is None or not self._pending:
            return False
        return now_s - min(t for _, t in self._pending.values()) > self._max_wait_s

    def _drain(self, out: list[Received], force: bool, now_s: float | None = None) -> None:
        if self._next is None:
            # the first frames may arrive out of order too: start once the window has filled
            if not self._pending or (not force and max(self._pending) - min(self._pending)
                                     < self._window // 2):
                return
            self._next = self._start = min(self._pending)
        while self._pending:
            if self._next in self._pending:
                frame, t = self._pending.pop(self._next)
                self._mark_released(self._next)
                out.extend(self._release(frame, self._next, t, late=False))
                self._next += 1
            elif (force or max(self._pending) - self._next >= self._window
                  or self._waited_too_long(now_s)):
                self._lost.add(self._next)
                self.stats.frames_lost += 1
                self._next += 1
            else:
                break

    def _mark_released(self, useq: int) -> None:
        if len(self._released) == self._released.maxlen:
            self._released_set.discard(self._released[0])
        self._released.append(useq)
        self._released_set.add(useq)

    # -- clocks: one frame of look-ahead decides whether a big step is real or a lone bad value
    def _release(self, frame: Frame, useq: int, t: float, late: bool) -> list[Received]:
        self.stats.frames_received += 1
        if late:
            raw = self._raw_clock(frame)
            clock = _unwrap(raw, raw if self._clock_ref is None else self._clock_ref, _CLOCK_MOD)
            return self._emit(frame, useq, t, late=True, suspect=False, clock=clock)
        if self._held is None:
            self._held = (frame, useq, t)
            return []
        held, held_seq, held_t = self._held
        self._held = (frame, useq, t)
        suspect = False
        if self._clock_ref is not None:
            c_held = _unwrap(self._raw_clock(held), self._clock_ref, _CLOCK_MOD)
            c_next = _unwrap(self._raw_clock(frame), self._clock_ref, _CLOCK_MOD)
            if (abs(c_held - self._clock_ref) > MAX_CLOCK_STEP_TICKS
                    and abs(c_next - self._clock_ref) <= MAX_CLOCK_STEP_TICKS):
                suspect = True
        return self._emit(held, held_seq, held_t, late=False, suspect=suspect)

    def _raw_clock(self, frame: Frame) -> int:
        return (frame.header.clock + self._clock_base) % _CLOCK_MOD

    def _emit(self, frame: Frame, useq: int, t: float, late: bool, suspect: bool,
              clock: int | None = None) -> list[Received]:
        if clock is None:
            raw = self._raw_clock(frame)
            clock = _unwrap(raw, raw if self._clock_ref is None else self._clock_ref, _CLOCK_MOD)
            if suspect:
                self.stats.clock_suspect += 1
            elif not isinstance(frame, Rep):
                # a REP frame is sent when its repetition ends, but its clock is the start (up to a
                # 30 s hold earlier): it is neither "now" for the unwrapping reference nor a
                # (clock, arrival) pair for the drift fit. Its clock is still unwrapped and checked.
                self._clock_ref = clock
        if not suspect:
            if isinstance(frame, Batch):
                cov = self.stats.coverage.setdefault(frame.header.type, _Coverage())
                cov.add(clock, frame.n_samples, frame.period_ticks)
            if not isinstance(frame, Rep):
                self.clock_map.add(clock, t)
        return [Received(frame, useq, clock, t, late=late, clock_suspect=suspect)]
