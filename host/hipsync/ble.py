"""The host's only radio module: finds hipsync devices and talks to one, through bleak's public API.

    found = await scan(timeout_s=5)
    link = DeviceLink(found[0], auto_reconnect=True)
    await link.connect()
    status, values = await link.command(commands.OP_INFO)      # raises CommandError if not OK
    async for data, host_time_s in link.stream():               # one item per notification
        assembler.push_bytes(data, host_time_s)

Backends. `backend=None` uses the environment variable HIPSYNC_BACKEND: unset or "bleak" picks
bleak's platform backend (BlueZ, CoreBluetooth, WinRT); "virtual" picks the virtual radio of
hipsync.sim.bleak_backend, which reaches the virtual air given by HIPSYNC_AIR=127.0.0.1:PORT (the
firmware running in the MicroPython unix port, see hipsync.sim.virtual_device). `backend` may also
be "virtual"/"bleak" or a (scanner class, client class) pair. Nothing else in the host knows which.

Notification callbacks only enqueue (bytes, host time) and return: O(1) on the event loop. The
stream queue and the chunk queue are unbounded, so the host itself never drops a notification;
losses on the link show up as gaps in the frames' sequence numbers (protocol.StreamAssembler).
Host times are `time.monotonic()` seconds (never stepped by NTP; good for the drift fit).
"""

from __future__ import annotations

import asyncio
import logging
import os
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

BACKEND_ENV = "HIPSYNC_BACKEND"


class LinkError(Exception):
    """The radio link failed; the message says what to do."""


class NotConnected(LinkError):
    pass


class CommandTimeout(LinkError):
    pass


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
        backend = os.environ.get(BACKEND_ENV, "bleak") or "bleak"
    if isinstance(backend, tuple):
        return backend
    if backend == "virtual":
        from hipsync.sim.bleak_backend import VirtualClient, VirtualScanner

        return VirtualScanner, VirtualClient
    if backend == "bleak":
        return None, None
    raise ValueError(f"unknown backend {backend!r}: use 'bleak' or 'virtual' "
                     f"(or set {BACKEND_ENV})")


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
        self._token = 0
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
        self.stale_responses = 0

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
    async def command(self, op: int, *args, timeout_s: float = 5.0) -> tuple[int, tuple]:
        """Send one command, wait for its response (matched by token). Returns (OK, values);
        raises CommandError naming the status when the device refuses, CommandTimeout when no
        answer came, NotConnected without a link."""
        if not self.connected:
            raise NotConnected("not connected: call connect() (or wait for the reconnect)")
        async with self._command_lock:
            self._token = self._token % 255 + 1
            token = self._token
            fut = asyncio.get_running_loop().create_future()
            self._pending[token] = (op, fut)
            try:
                await self._client.write_gatt_char(gatt.CONTROL_UUID,
                                                   commands.encode_command(op, token, *args),
                                                   response=True)
                status, values = await asyncio.wait_for(fut, timeout_s)
            except TimeoutError:
                raise CommandTimeout(f"no response to {_op_name(op)} within {timeout_s} s") from None
            except BleakError as e:
                raise LinkError(f"command {_op_name(op)} failed: {e}") from e
            finally:
                self._pending.pop(token, None)
        if status != commands.OK:
            raise CommandError(op, status)
        return status, values

    def _fail_pending(self, error: Exception) -> None:
        for _, fut in self._pending.values():
            if not fut.done():
                fut.set_exception(error)

    async def read_battery_pct(self) -> int:
        if not self.connected:
            raise NotConnected("not connected")
        return (await self._client.read_gatt_char(gatt.BATTERY_LEVEL_UUID))[0]


def _op_name(op: int) -> str:
    spec = commands.op_spec(op)
    return spec[1] if spec else f"op 0x{op:02x}"
