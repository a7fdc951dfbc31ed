"""Live acquisition: a connected device's stream into the session store, with a recording protocol.

    session = LiveSession(link, store, session_id, authenticate=auth)
    await session.start()
    for step in steps: await session.run_step(step)   # standing calibration, MVC trials, walking
    result = await session.stop()

Everything received is written to the store as it arrives (the store commits about every second),
so killing the process loses at most the last second. The device clock is the time base: steps wait
for device time to pass, observed through the frames, so the protocol runs the same on the virtual
device at any speed, and on a device that has been on for hours (start() returns once the first
frame after STREAM_START has arrived, so device time is the device's, never 0). Waiting fails only
when device time stops moving: for `IDLE_TIMEOUT_S` while connected, `OUT_OF_REACH_S` while the
link is down (a wall-clock total would fail any long step on a real board). After a link drop the
link reconnects; the session authenticates again, restarts the stream, and the gap shows up as lost
frames in the link statistics and the report. The guided protocols are in `hipsync.guide`.

A store that cannot be written (disk full) does not end the session: the writer holds what arrives
(hipsync.store.writer), task and calibration marks wait in `session.store` (_HeldMarks), all are
written as soon as the store takes writes again, and `result.rows_unwritten` says what never did.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from hipwire import commands as cmd
from hipwire import frames as wire
from hipwire import units
from hipwire.records import CAPTURE_MAGIC, encode_capture_entry

from .ble import CommandError, DeviceLink, LinkError
from .protocol import Envelope, Event, Pelvis, Received, Status, StreamAssembler

log = logging.getLogger(__name__)
# Device time must move within this much host time while connected (frames come several times a
# second; 15 s is a device that stopped sampling or a link that only looks alive).
IDLE_TIMEOUT_S = 15.0
# ... and within this much while the link is down and reconnecting (walking out of range and back).
OUT_OF_REACH_S = 120.0
GAP_WAIT_S = 0.5
MUSCLE_CHANNELS = {name: i for i, name in enumerate(units.EMG_CHANNELS)}
_SIDE_CODES = {"l": wire.LEFT, "left": wire.LEFT, "r": wire.RIGHT, "right": wire.RIGHT}


@dataclass(frozen=True)
class Step:
    """One task of a recording protocol. `start_s`: device time to start at (None: now)."""

    name: str  # store task name: "standing", "mvc_l_gmed", "walk", ...
    duration_s: float
    start_s: float | None = None
    prompt: str = ""

    @property
    def calibration(self) -> tuple[int, int] | None:
        """(begin, end) CALIBRATE step codes for calibration tasks, else None."""
        return calibration_codes(self.name)


def calibration_codes(task: str) -> tuple[int, int] | None:
    """(begin, end) CALIBRATE step codes of a standing calibration or MVC task, else None."""
    if task.startswith("standing"):
        return cmd.CAL_STANDING_BEGIN, cmd.CAL_STANDING_END
    if task.startswith("mvc_"):
        ch = MUSCLE_CHANNELS[task[4:]]
        return cmd.CAL_MVC_BEGIN + ch, cmd.CAL_MVC_END + ch
    return None


@dataclass
class StepResult:
    name: str
    t_start_s: float
    t_end_s: float
    value: int | None = None  # MVC peak (uV) or standing calibration ok (1/0)


@dataclass
class SessionResult:
    session_id: int
    steps: list[StepResult] = field(default_factory=list)
    link_stats: dict = field(default_factory=dict)
    reconnects: int = 0
    device_restarts: int = 0
    frames_stored: int = 0
    ingest_errors: int = 0  # frames decoded but refused by the store (a bug somewhere: logged)
    store_error: str | None = None  # the store refused writes during the session (disk full)
    store_failed_at_s: float | None = None  # device time it first did
    rows_unwritten: int = 0  # frames that never reached the store
    marks_unwritten: int = 0  # task / calibration marks that never did


class _HeldMarks:
    """The store, as the session and its guide write task and calibration marks to it: while the
    store refuses writes, the marks wait here in order and go in with the next commit that works."""

    def __init__(self, store):
        self._store = store
        self.pending: list[tuple[str, tuple, dict]] = []

    def __getattr__(self, name):
        return getattr(self._store, name)

    def add_task(self, *args, **kw) -> None:
        self._write("add_task", args, kw)

    def remove_task(self, *args, **kw) -> None:
        self._write("remove_task", args, kw)

    def set_calibration(self, *args, **kw) -> None:
        self._write("set_calibration", args, kw)

    def _write(self, name: str, args: tuple, kw: dict) -> None:
        self.pending.append((name, args, kw))
        self.flush()

    def flush(self) -> bool:
        """Write the waiting marks; False while the store still refuses them."""
        while self.pending:
            name, args, kw = self.pending[0]
            try:
                getattr(self._store, name)(*args, **kw)
            except sqlite3.OperationalError:
                self._store.conn.rollback()
                return False
            except Exception:
                self.pending.pop(0)  # a bad mark (e.g. an empty task) is the caller's error
                raise
            self.pending.pop(0)
        return True


class LiveSession:
    def __init__(self, link: DeviceLink, store, session_id: int, *,
                 authenticate: Callable[[DeviceLink], Awaitable[None]] | None = None,
                 capture_path: Path | None = None,
                 on_frame: Callable[[Received], None] | None = None):
        self.link = link
        self.store = _HeldMarks(store)
        self.session_id = session_id
        self.authenticate = authenticate
        # a live session gives a gap up after half a second: the protocol's steps run on the
        # device time of what has arrived (late frames are still stored)
        self.assembler = StreamAssembler(max_wait_s=GAP_WAIT_S)
        self.writer = store.writer(session_id, link_stats=self.assembler.stats,
                                   on_commit=lambda _seq: self.store.flush(),
                                   on_error=self._store_failed)
        self.capture = None
        if capture_path is not None:
            self.capture = open(capture_path, "wb")  # noqa: SIM115 - closed in stop()
            self.capture.write(CAPTURE_MAGIC)
        self.on_frame = on_frame
        # more on_frame callbacks (guides): each gets every frame as it is stored, REP frames
        # (protocol.Rep, one per repetition the device found, at its end) among them
        self.listeners: list[Callable[[Received], None]] = []
        self._failure: BaseException | None = None  # what ended the reconnect watcher
        self.device_time_s = 0.0
        self.latest_status: Status | None = None
        self._time_advanced = asyncio.Event()
        self._pump_task: asyncio.Task | None = None
        self._watch_task: asyncio.Task | None = None
        self.result = SessionResult(session_id)

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Prepare the device, start the stream and return once its first frame has arrived."""
        await self._prepare_device()
        self._pump_task = asyncio.create_task(self._pump())
        self._watch_task = asyncio.create_task(self._watch_reconnects())
        await self.wait_device_time(1e-9)

    async def _prepare_device(self) -> None:
        if self.authenticate is not None:
            await self.authenticate(self.link)
        _, values = await self.link.command(cmd.OP_TIME_SYNC, int(time.time() * 1000))
        answered_s = self.link.clock()
        # After a reconnect: a device that restarted counts its seq and clock from 0 again, and
        # streams only after STREAM_START; what is queued now came before this reply (from the old
        # connection, or from a device that kept streaming through the drop) and goes in first.
        while not self.link.stream_queue.empty():
            self._ingest(*self.link.stream_queue.get_nowait())
        restarts = self.assembler.stats.device_restarts
        for received in self.assembler.check_device_clock(values[0], answered_s):
            self._store(received)
        if self.assembler.stats.device_restarts > restarts:
            self.result.device_restarts += 1
            log.warning("the device restarted during the session: its stream continues after a "
                        "gap (the standing calibration is kept in its flash, MVCs in the store)")
        await self.link.command(cmd.OP_STREAM_START, cmd.MODE_PROCESSED)

    async def stop(self) -> SessionResult:
        try:
            await self.link.command(cmd.OP_STREAM_STOP)
            await asyncio.sleep(0.3)  # let the frames flushed by the device arrive
        except LinkError:
            pass  # the device is gone: keep everything received so far
        for task in (self._pump_task, self._watch_task):
            if task is not None:
                task.cancel()
        while not self.link.stream_queue.empty():
            self._ingest(*self.link.stream_queue.get_nowait())
        for received in self.assembler.flush():
            self._store(received)
        written = self.writer.close()
        self.store.flush()
        self.result.rows_unwritten = written.rows_unwritten
        self.result.marks_unwritten = len(self.store.pending)
        if self.capture is not None:
            self.capture.close()
        self.result.link_stats = self.assembler.stats.as_dict()
        return self.result

    # ------------------------------------------------------------ stream
    async def _pump(self) -> None:
        queue = self.link.stream_queue
        while True:
            try:
                data, host_time_s = await asyncio.wait_for(queue.get(), GAP_WAIT_S)
            except TimeoutError:  # nothing new: what waits behind a gap goes in
                for received in self.assembler.release_waiting(self.link.clock()):
                    self._store(received)
                continue
            try:
                self._ingest(data, host_time_s)
            except Exception as e:  # noqa: BLE001 - one bad frame must not end the session
                self.result.ingest_errors += 1
                if self.result.ingest_errors <= 3:
                    log.warning("frame not stored (%s: %s); the session goes on", type(e).__name__, e)

    def _ingest(self, data: bytes, host_time_s: float) -> None:
        if self.capture is not None:
            self.capture.write(encode_capture_entry(int(time.time() * 1e6), data))
        for received in self.assembler.push_bytes(data, host_time_s):
            self._store(received)

    def _store(self, received: Received) -> None:
        self.writer.add(received)
        self.result.frames_stored += 1
        frame = received.frame
        if isinstance(frame, Status):
            self.latest_status = frame
        if not received.clock_suspect:
            end = received.clock
            if isinstance(frame, (Envelope, Pelvis)):
                end += frame.n_samples * frame.period_ticks
            t = end / units.CLOCK_HZ
            if t > self.device_time_s:
                self.device_time_s = t
                self._time_advanced.set()
        if self.on_frame is not None:
            self.on_frame(received)
        for listener in self.listeners:
            listener(received)

    def _store_failed(self, error: Exception) -> None:
        self.result.store_error = str(error)
        self.result.store_failed_at_s = self.device_time_s
        log.warning("the store %s cannot be written (%s) since device time %.1f s: what arrives "
                    "is held in memory and written when it can be; free space on its disk",
                    self.store.path, error, self.device_time_s)

    async def _watch_reconnects(self) -> None:
        while True:
            await self.link.reconnected.wait()
            self.link.reconnected.clear()
            self.result.reconnects += 1
            try:
                await self._prepare_device()
            except (LinkError, ConnectionError):
                continue  # dropped again: the next reconnect tries again
            except Exception as e:  # noqa: BLE001 - e.g. refused authentication: end the session
                self._failure = e  # raised by the next wait, where the protocol is
                self._time_advanced.set()
                return

    async def wait_device_time(self, t_s: float, idle_timeout_s: float = IDLE_TIMEOUT_S) -> None:
        """Wait until frames up to device time t_s have arrived. Raises LinkError only when device
        time has not moved for idle_timeout_s of host time while connected (OUT_OF_REACH_S while
        the link is down): however long the wait, a device that keeps streaming never fails it."""
        last_move = time.monotonic()
        seen = self.device_time_s
        while self.device_time_s < t_s:
            if self._failure is not None:
                raise self._failure
            self._time_advanced.clear()
            if self.device_time_s > seen:
                seen, last_move = self.device_time_s, time.monotonic()
            idle = time.monotonic() - last_move
            limit = idle_timeout_s if self.link.connected else max(idle_timeout_s, OUT_OF_REACH_S)
            if idle > limit:
                where = "" if self.link.connected else " (the link is down)"
                raise LinkError(f"no data from the device for {idle:.0f} s{where}: device time "
                                f"stopped at {self.device_time_s:.1f} s, waiting for {t_s:.1f} s")
            try:
                await asyncio.wait_for(self._time_advanced.wait(), 0.5)
            except TimeoutError:
                pass

    # ------------------------------------------------------------ protocol
    async def run_step(self, step: Step, announce: Callable[[str], None] | None = None) -> StepResult:
        if step.start_s is not None:
            await self.wait_device_time(step.start_s)
        if announce and step.prompt:
            announce(step.prompt)
        cal = step.calibration
        if cal is not None:
            await self._calibrate(cal[0])
        # a scheduled step (the virtual patient's script) keeps its own times; a prompted one
        # starts when the command went out, as seen in device time
        t0 = step.start_s if step.start_s is not None else self.device_time_s
        await self.wait_device_time(t0 + step.duration_s)
        t1 = t0 + step.duration_s if step.start_s is not None else self.device_time_s
        value = await self._calibrate(cal[1]) if cal is not None else None
        if step.name.startswith("standing") and value:
            self.device_calibrated(t0, t1)
        self.store.add_task(self.session_id, step.name, t0, t1)
        result = StepResult(step.name, t0, t1, value)
        self.result.steps.append(result)
        return result

    def device_calibrated(self, t0_s: float, t1_s: float) -> None:
        """The device accepted a standing calibration over [t0_s, t1_s]: from now on it sends
        angles relative to that pose, so the session's standing reference is zero (subtracting
        the task's absolute angles again would be wrong)."""
        self.store.set_calibration(self.session_id, standing_deg=(0.0, 0.0, 0.0),
                                   source=f"device calibration (standing at device time "
                                          f"{t0_s:.0f}-{t1_s:.0f} s)")

    async def set_task(self, task_name: str | None, side: str | None, reps: int = 0) -> float:
        """Tell the device which exam task runs (OP_TASK), so it looks for that task's repetitions
        on the stance side; task_name None stops the search (a repetition still open is sent
        truncated). side: "L"/"R" (or "left"/"right"); reps: how many are expected (0 unknown).
        Returns the device time (s, on the frames' time line) at which the search started or
        stopped. Sending the active task again is a no-op that returns the same time, so the link
        may re-send it after a reconnect."""
        if task_name is None:
            code, side_code = cmd.TASK_NONE, wire.LEFT
        else:
            if task_name not in cmd.EXAM_TASKS:
                raise ValueError(f"unknown exam task {task_name!r}; one of {', '.join(cmd.EXAM_TASKS)}")
            code = 1 + cmd.EXAM_TASKS.index(task_name)
            side_code = _SIDE_CODES.get(side.lower() if isinstance(side, str) else side)
            if side_code is None:
                raise ValueError(f"side must be 'L' or 'R', not {side!r}")
        if not 0 <= reps <= 255:
            raise ValueError(f"reps must be 0..255, not {reps}")
        _, values = await self.link.command(cmd.OP_TASK, code, side_code, reps)
        return self.assembler.unwrap_clock(values[0]) / units.CLOCK_HZ

    async def _calibrate(self, code: int) -> int | None:
        try:
            _, values = await self.link.command(cmd.OP_CALIBRATE, code)
        except CommandError:
            raise
        return values[1]


def describe_event(frame: Event) -> str:
    return f"{frame.kind} {frame.side} #{frame.stride}"
