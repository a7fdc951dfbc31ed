"""The host's only radio module: finds hipsync devices and talks to one, through bleak's public API.

    found = await scan(timeout_s=5)
    link = DeviceLink(found[0], auto_reconnect=True)
    await link.connect()
    status, values = await link.command(commands.OP_INFO)      # raises CommandError if not OK
    async for data, host_time_s in link.stream():               # one item per notification
        assembler.push_bytes(data, host_time_s)

Backends. `backend=None` is bleak's platform backend (BlueZ, CoreBluetooth, WinRT); the caller
may hand in another as a (scanner class, client class) pair for bleak's `backend=` (the CLI hands
in the virtual radio's when asked for it). This module knows of no particular one.

Notification callbacks only enqueue (bytes, host time) and return: O(1) on the event loop. The
stream queue and the chunk queue are unbounded, so the host itself never drops a notification;
losses on the link show up as gaps in the frames' sequence numbers (protocol.StreamAssembler).
Host times are `time.monotonic()` seconds (never stepped by NTP; good for the drift fit).

Commands survive a lossy link: a try whose response does not come within its wait is sent again
with the same token (waits 0.4, 0.8, 1.6, 1.6 ... s, adding up to the caller's timeout_s), and the
device answers a repeat from its last reply without running the command twice. A command in
flight when the link drops is sent again after the auto-reconnect when that is harmless (see
repeatable_on_new_link); `command_retries` and `commands_resent` count both.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError

from hipwire import commands, gatt
from hipwire.frames import FrameError

log = logging.getLogger(__name__)



class LinkError(Exception):
    """The radio link failed; the message says what to do."""


class NotConnected(LinkError):
    pass


class CommandTimeout(LinkError):
    pass


class CommandInterrupted(NotConnected):
    """The link dropped while a command that must not run twice was in flight: the device may or
    may not have run it, and the host did not send it again (see repeatable_on_new_link)."""

    def __init__(self, op: int):
        self.op = op
        super().__init__(f"the link dropped while {_op_name(op)} was in flight; the device may "
                         f"have run it, so it was not sent again: check the device's state "
                         f"(STATUS, session list) before repeating it")


class CommandError(LinkError):
    """The device answered a command with an error status."""

    def __init__(self, op: int, status: int):
        spec = commands.op_spec(op)
        self.op = op
        self.op_name = spec[1] if spec else f"op_0x{op:02x}"
        self.status = status
        self.status_name = commands.status_name(status)
        super().__init__(f"device refused {self.op_name}: {self.status_name} (status {status})")


def resolve_backend(backend: Any = None) -> tuple[type | None, type | None]:
    """(scanner backend, client backend) for bleak's `backend=` (None, None: bleak's own)."""
    if backend is None:
        return None, None
    if isinstance(backend, tuple) and len(backend) == 2:
        return backend
    raise ValueError(f"backend must be None (bleak's own) or a (scanner class, client class) "
                     f"pair, got {backend!r}")


@dataclass(frozen=True)
class FoundDevice:
    name: str
    address: str
    rssi: int
    device: BLEDevice = field(repr=False)


async def scan(timeout_s: float = 5.0, backend: Any = None, *,
               stop_after: int | None = None) -> list[FoundDevice]:
    """hipsync devices advertising nearby (by service UUID or name prefix), strongest first.
    Returns early once `stop_after` devices were found."""
    scanner_cls, _ = resolve_backend(backend)
    found: dict[str, FoundDevice] = {}
    enough = asyncio.Event()

    def on_adv(device: BLEDevice, adv) -> None:
        name = adv.local_name or device.name or ""
        if gatt.SERVICE_UUID not in adv.service_uuids and not name.startswith(gatt.NAME_PREFIX):
            return
        found[device.address] = FoundDevice(name, device.address, adv.rssi, device)
        if stop_after is not None and len(found) >= stop_after:
            enough.set()

    kwargs: dict[str, Any] = {"detection_callback": on_adv}
    if scanner_cls is not None:
        kwargs["backend"] = scanner_cls
    try:
        async with BleakScanner(**kwargs):
            try:
                await asyncio.wait_for(enough.wait(), timeout_s)
            except TimeoutError:
                pass
    except BleakError as e:
        raise LinkError(f"scan failed: {e}") from e
    return sorted(found.values(), key=lambda d: -d.rssi)


@dataclass
class LinkEvent:
    kind: str  # "connected" | "disconnected" | "reconnect_failed"
    host_time_s: float
    detail: str = ""


class DeviceLink:
    """One connection to one device: commands, stream, sync chunks, reconnects."""

    def __init__(self, device: FoundDevice | BLEDevice | str, *, backend: Any = None,
                 auto_reconnect: bool = False, reconnect_attempts: int = 20,
                 reconnect_delay_s: float = 0.25, clock=time.monotonic):
        self._target = device.device if isinstance(device, FoundDevice) else device
        _, self._client_cls = resolve_backend(backend)
        self.auto_reconnect = auto_reconnect
        self.reconnect_attempts = reconnect_attempts
        self.reconnect_delay_s = reconnect_delay_s
        self._clock = clock
        self._client: BleakClient | None = None
        self._closing = False
        # tokens go on from a random start: a new host process does not begin where the last one
        # did, so its first command cannot match the device's replay entry of the last one's
        # final command (should the device see the same connection handle again)
        self._token = random.randrange(255)
        self._pending: dict[int, tuple[int, asyncio.Future]] = {}
        self._command_lock = asyncio.Lock()
        self._reconnect_task: asyncio.Task | None = None
        self.stream_queue: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()
        self.chunks: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()
        self.events: list[LinkEvent] = []
        self.disconnected = asyncio.Event()
        self.reconnected = asyncio.Event()
        self.disconnect_count = 0
        self.malformed_responses = 0
        self.stale_responses = 0  # replies to a finished command (e.g. to a retry that was late)
        # command retries (see command()): per-try waits, and what the retries cost
        self.first_try_s = FIRST_TRY_S
        self.max_try_s = MAX_TRY_S
        self.command_retries = 0  # tries after the first, same token, on the same link
        self.commands_resent = 0  # sent again on a new link (after a reconnect or authentication)
        self._authenticated = asyncio.Event()  # an AUTH_RESPONSE succeeded on this connection

    def clock(self) -> float:
        """Now, on the clock that stamps received notifications (host_time_s)."""
        return self._clock()

    # ------------------------------------------------------------ connection
    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    @property
    def mtu(self) -> int:
        """The negotiated ATT MTU. bleak's BlueZ backend reports 23 in mtu_size whatever was
        negotiated, so the control characteristic's max_write_without_response_size (MTU - 3,
        right on BlueZ >= 5.62) is taken when it says more."""
        if self._client is None:
            raise NotConnected("not connected")
        mtu = self._client.mtu_size
        char = self._client.services.get_characteristic(gatt.CONTROL_UUID)
        if char is not None:
            mtu = max(mtu, char.max_write_without_response_size + 3)
        return mtu

    @property
    def att_payload(self) -> int:
        return self.mtu - 3

    @property
    def address(self) -> str:
        return self._target.address if isinstance(self._target, BLEDevice) else str(self._target)

    async def connect(self, timeout_s: float = 10.0) -> None:
        """Connect, then subscribe to stream, control and sync. The MTU is what the central and
        the device agreed on (self.mtu)."""
        self._closing = False
        kwargs: dict[str, Any] = {"disconnected_callback": self._on_disconnected,
                                  "timeout": timeout_s}
        if self._client_cls is not None:
            kwargs["backend"] = self._client_cls
        client = BleakClient(self._target, **kwargs)
        try:
            await client.connect()
            await client.start_notify(gatt.STREAM_UUID, self._on_stream)
            await client.start_notify(gatt.CONTROL_UUID, self._on_control)
            await client.start_notify(gatt.SYNC_UUID, self._on_chunk)
        except (BleakError, TimeoutError, OSError) as e:
            try:
                await client.disconnect()
            except (BleakError, TimeoutError, OSError):
                pass
            raise LinkError(f"could not connect to {self.address}: {e}. Is the device on, "
                            f"advertising and in range?") from e
        self._client = client
        self._authenticated.clear()
        self.disconnected.clear()
        self.events.append(LinkEvent("connected", self._clock(), f"mtu={self.mtu}"))

    async def disconnect(self) -> None:
        self._closing = True
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
            try:
                await self._reconnect_task
            except (asyncio.CancelledError, LinkError):
                pass
            self._reconnect_task = None
        if self._client is not None:
            try:
                await self._client.disconnect()
            except (BleakError, TimeoutError, OSError) as e:
                log.warning("disconnect: %s", e)
        self._fail_pending(NotConnected("disconnected"))

    async def __aenter__(self) -> DeviceLink:
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.disconnect()

    async def reconnect(self, attempts: int | None = None, delay_s: float | None = None) -> None:
        """Connect again after a link loss (the device re-advertises). Raises LinkError when every
        attempt failed."""
        attempts = attempts or self.reconnect_attempts
        delay_s = self.reconnect_delay_s if delay_s is None else delay_s
        last: Exception | None = None
        for _ in range(attempts):
            if self._closing:
                raise LinkError("link closed")
            try:
                await self.connect()
                self.reconnected.set()
                return
            except LinkError as e:
                last = e
                await asyncio.sleep(delay_s)
        self.events.append(LinkEvent("reconnect_failed", self._clock(), str(last)))
        raise LinkError(f"could not reconnect to {self.address} after {attempts} attempts: {last}")

    def _on_disconnected(self, client: BleakClient) -> None:
        if self._closing or client is not self._client:
            return
        self.disconnect_count += 1
        self.events.append(LinkEvent("disconnected", self._clock()))
        self.reconnected.clear()
        self.disconnected.set()
        self._authenticated.clear()
        self._fail_pending(NotConnected("the link dropped"))
        if self.auto_reconnect and (self._reconnect_task is None or self._reconnect_task.done()):
            self._reconnect_task = asyncio.get_running_loop().create_task(self._auto_reconnect())

    async def _auto_reconnect(self) -> None:
        try:
            await self.reconnect()
        except LinkError as e:
            log.warning("%s", e)

    # ------------------------------------------------------------ notifications (O(1))
    def _on_stream(self, _char, data: bytearray) -> None:
        self.stream_queue.put_nowait((bytes(data), self._clock()))

    def _on_chunk(self, _char, data: bytearray) -> None:
        self.chunks.put_nowait((bytes(data), self._clock()))

    def _on_control(self, _char, data: bytearray) -> None:
        try:
            token, op, status, values = commands.decode_response(bytes(data))
        except FrameError:
            self.malformed_responses += 1
            return
        entry = self._pending.get(token)
        if entry is None or entry[0] != op or entry[1].done():
            self.stale_responses += 1
            return
        entry[1].set_result((status, values))

    async def stream(self) -> AsyncIterator[tuple[bytes, float]]:
        """Every stream notification as (bytes, host time), in arrival order, across reconnects."""
        while True:
            yield await self.stream_queue.get()

    # ------------------------------------------------------------ commands
    async def command(self, op: int, *args, timeout_s: float = 5.0,
                      repeatable: bool | None = None) -> tuple[int, tuple]:
        """Send one command, wait for its response (matched by token). Returns (OK, values);
        raises CommandError naming the status when the device refuses, CommandTimeout when no
        answer came, NotConnected without a link (CommandInterrupted: the link dropped while a
        command that must not run twice was in flight).

        A lost response (or a failed write) is retried with the same token: the device answers a
        repeat from its last reply without running the command again (hipwire.commands). Each try
        waits first_try_s, then twice as long, up to max_try_s, until the waits add up to
        timeout_s; a reply to any try counts. The waits are per try and start when a try is sent,
        so only time spent waiting for the device counts, never time waiting for the link or for
        another command. With auto_reconnect, a command in flight when the link drops is sent again
        on the new link (with a fresh timeout_s) if running it twice is harmless: `repeatable`,
        by default repeatable_on_new_link(op, args)."""
        if not self.connected:
            raise NotConnected("not connected: call connect() (or wait for the reconnect)")
        if repeatable is None:
            repeatable = repeatable_on_new_link(op, args)
        token = 0
        drops = 0
        waited_for_auth = False
        try:
            while True:
                async with self._command_lock:
                    if not token:
                        token = self._next_token()
                        frame = commands.encode_command(op, token, *args)
                    try:
                        status, values = await self._exchange(op, token, frame, timeout_s)
                    except NotConnected as e:
                        if self._closing or not self.auto_reconnect:
                            raise
                        if not repeatable:
                            raise CommandInterrupted(op) from e
                        if drops >= _MAX_RESENDS_AFTER_RECONNECT:
                            raise NotConnected(f"the link dropped {drops + 1} times during "
                                               f"{_op_name(op)}") from e
                        drops += 1
                        status = None
                if status is None:  # outside the lock: the reconnect may need other commands
                    if not await self._wait_reconnected():
                        raise NotConnected(f"the link dropped during {_op_name(op)} and the "
                                           f"reconnect failed: is the device still in range?")
                    self.commands_resent += 1
                    continue
                if (status == commands.ERR_AUTH_REQUIRED and drops and not waited_for_auth
                        and self.connected):
                    # the new connection is not authenticated yet: whoever authenticates after a
                    # reconnect (acquire.LiveSession) does so now; the device did not run the op
                    waited_for_auth = True
                    try:
                        await asyncio.wait_for(self._authenticated.wait(), timeout_s)
                    except TimeoutError:
                        pass
                    else:
                        self.commands_resent += 1
                        continue
                break
        finally:
            if token:
                self._pending.pop(token, None)
        if op == commands.OP_AUTH_RESPONSE and status == commands.OK:
            self._authenticated.set()
        if status != commands.OK:
            raise CommandError(op, status)
        return status, values

    async def _exchange(self, op: int, token: int, frame: bytes,
                        timeout_s: float) -> tuple[int, tuple]:
        """Tries on the current link, all with the same token, until a response came."""
        fut = asyncio.get_running_loop().create_future()
        self._pending[token] = (op, fut)  # a late reply to an earlier try resolves it too
        last_error: BaseException | None = None
        tries = try_timeouts(timeout_s, self.first_try_s, self.max_try_s)
        try:
            for i, try_s in enumerate(tries):
                if i:
                    self.command_retries += 1
                try:
                    async with asyncio.timeout(try_s):
                        client = self._client
                        if client is None or not client.is_connected:
                            raise NotConnected("the link dropped")
                        try:
                            await client.write_gatt_char(gatt.CONTROL_UUID, frame, response=True)
                            last_error = None
                        except (BleakError, OSError) as e:
                            if not self.connected:
                                raise NotConnected(f"the link dropped: {e}") from e
                            last_error = e  # back off for the rest of this try (a reply may come)
                        return await asyncio.shield(fut)
                except TimeoutError:
                    if fut.done():
                        return fut.result()
        finally:
            if fut.done() and not fut.cancelled():
                fut.exception()  # retrieved: a drop after the last try is not an unhandled error
        if last_error is not None:
            raise LinkError(f"command {_op_name(op)} failed after {len(tries)} tries: "
                            f"{last_error}") from last_error
        raise CommandTimeout(f"no response to {_op_name(op)} within {timeout_s} s "
                             f"({len(tries)} tries)")

    def _next_token(self) -> int:
        """1..255, never one still waiting for its response."""
        for _ in range(255):
            self._token = self._token % 255 + 1
            if self._token not in self._pending:
                return self._token
        raise LinkError("255 commands waiting for responses")

    async def _wait_reconnected(self) -> bool:
        if not self.connected:  # a failed write can come before the drop callback has run
            try:
                await asyncio.wait_for(self.disconnected.wait(), 1.0)
            except TimeoutError:
                pass
        task = self._reconnect_task
        if task is not None and not task.done():
            await asyncio.shield(task)
        return self.connected and not self._closing

    def _fail_pending(self, error: Exception) -> None:
        for _, fut in self._pending.values():
            if not fut.done():
                fut.set_exception(error)

    async def read_battery_pct(self) -> int:
        if not self.connected:
            raise NotConnected("not connected")
        return (await self._client.read_gatt_char(gatt.BATTERY_LEVEL_UUID))[0]


# Command retries. A response lost on the air is the common case (notifications are not
# acknowledged); the device then gets the same frame again and answers it from its last reply
# (hipwire.commands: per connection, token + op + request must be identical).
FIRST_TRY_S = 0.4  # a round trip is 2-3 connection intervals (30-50 ms each) plus the device's poll
MAX_TRY_S = 1.6
_MAX_RESENDS_AFTER_RECONNECT = 3


def try_timeouts(total_s: float, first_s: float = FIRST_TRY_S,
                 max_s: float = MAX_TRY_S) -> list[float]:
    """Per-try waits: first_s, doubling up to max_s, adding up to total_s (a remainder shorter
    than half of first_s goes to the last try instead of a try of its own)."""
    out: list[float] = []
    left = total_s
    step = first_s
    while left > 1e-9:
        wait = min(step, left)
        if left - wait < first_s / 2:
            wait = left
        out.append(wait)
        left -= wait
        step = min(step * 2, max_s)
    return out or [total_s]


# Running a command again on a NEW connection (the device's replay entry died with the old one, so
# a command whose first run happened just before the drop runs a second time):
#   harmless: INFO, BATTERY, AUTH_CHALLENGE (a new challenge; the host answers the one it gets),
#     STREAM_START / STREAM_STOP / SET_CONFIG / SET_MVC (set the same state), CAL_INFO and
#     REC_STATUS (read only), TIME_SYNC (a new anchor, and the reply carries the clock of the run
#     that answered), SESSION_LIST, SESSION_READ (restarts the read; chunks carry their offsets), SESSION_CONFIRM (already synced is fine), CALIBRATE
#     begin steps (restart the window: what was held before the drop is not used), CALIBRATE
#     standing end (the pelvis keeps the window's sums until the next begin, so a second end
#     computes the same pose from the same samples; only the flash save is repeated);
#   not harmless: AUTH_RESPONSE (its challenge died with the link: auth_failed, counted towards
#     the lock-out), CALIBRATE MVC end (a second end answers bad_arg: the peak is gone), REC_START
#     (a second run answers busy, the session id is lost), REC_STOP (a second run answers 0),
#     ERASE (a second run answers not_found or 0 erased).
# The harmless ones are sent again after a reconnect; the others (and ops not listed here, until
# someone judges them) raise CommandInterrupted and the caller decides (e.g. after REC_START:
# REC_STATUS shows whether a session is open, and which).
_REPEATABLE_OPS = frozenset({
    commands.OP_INFO, commands.OP_BATTERY, commands.OP_AUTH_CHALLENGE, commands.OP_STREAM_START,
    commands.OP_STREAM_STOP, commands.OP_SET_CONFIG, commands.OP_SET_MVC, commands.OP_CAL_INFO,
    commands.OP_REC_STATUS, commands.OP_TIME_SYNC, commands.OP_SESSION_LIST,
    commands.OP_SESSION_READ, commands.OP_SESSION_CONFIRM, commands.OP_SESSION_DAMAGED,
    commands.OP_TASK})
_REPEATABLE_CALIBRATE_STEPS = frozenset(
    {commands.CAL_STANDING_BEGIN, commands.CAL_STANDING_END}
    | {commands.CAL_MVC_BEGIN + ch for ch in range(16)})


def repeatable_on_new_link(op: int, args: tuple = ()) -> bool:
    """Whether running op(args) twice, once on a dropped link and once on the next, is harmless."""
    if op == commands.OP_CALIBRATE:
        return bool(args) and args[0] in _REPEATABLE_CALIBRATE_STEPS
    return op in _REPEATABLE_OPS


def _op_name(op: int) -> str:
    spec = commands.op_spec(op)
    return spec[1] if spec else f"op 0x{op:02x}"
