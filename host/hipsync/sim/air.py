"""The virtual air: a loopback hub between virtual devices and virtual centrals, with a link model.

Devices are the real firmware running in the MicroPython unix port; their fake `bluetooth` module
(firmware/unixboard/bluetooth.py) connects here over TCP. Centrals are the bleak backend in
hipsync.sim.bleak_backend (VirtualScanner, VirtualClient), also over TCP. The air listens on
127.0.0.1 only, on an ephemeral port (`Air.address`, passed to both ends as HIPSYNC_AIR).

The link model (`LinkModel`, mutable while running) follows a BLE connection:
- every connection event (`interval_s`, default 30 ms) carries at most
  `max_notifications_per_interval` device-to-central PDUs (notifications and ATT responses, in
  order) and everything queued from the central;
- the device's stack has `notify_buffers` notification buffers: a buffer is busy from gatts_notify
  until the notification has gone on air (or was lost); when all are busy the device gets ENOMEM;
- the ATT MTU is 23 until an exchange, then min(central MTU, device's config(mtu=...));
- notifications can be lost with `loss_probability` (seeded: `seed`), optionally only on
  `lossy_uuids`; `extra_latency_s` delays delivery to the central;
- forced disconnects: `disconnect_after_s` after each connection starts, every
  `disconnect_every_n_notifications`, or `Air.force_disconnect()`;
- `speed`: modelled seconds per wall second. Every modelled duration above is divided by it.

Everything the link did not deliver is counted in `Air.stats` (`AirStats`), per characteristic
UUID, so that tests can compare it with the host's StreamAssembler loss count: random loss,
notifications queued when a connection dropped, notifications for a connection that had already
gone, and notifications delivered to a central that had not subscribed (the stack sends them
anyway; the central discards them).

Socket protocol (the one definition; firmware/unixboard/bluetooth.py mirrors the numbers): each
message is a header "<HBHH" = body length, kind, a, b, followed by the body (bytes, or UTF-8 JSON).
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
import threading
import time
import uuid as uuidlib
from collections import deque
from dataclasses import dataclass, field

HEADER = "<HBHH"
HEADER_SIZE = 7

# device -> air
D_HELLO = 1  # body: JSON {"mac": hex}
D_REGISTER = 2  # body: JSON service table
D_ADV = 3  # a: len(adv_data), b: connectable; body: adv_data + resp_data
D_ADV_STOP = 4
D_NOTIFY = 5  # a: conn, b: value handle; body: data
D_INDICATE = 6  # a: conn, b: value handle; body: data
D_WRITE_RSP = 7  # a: conn, b: value handle
D_READ_RSP = 8  # a: conn, b: value handle; body: value
D_DISCONNECT = 9  # a: conn
D_MTU_REQ = 10  # a: conn, b: preferred MTU
D_SET_MTU = 11  # a: preferred MTU
D_UPDATE = 12  # a: conn, b: value handle; body: data (only to a subscribed central)
# air -> device
A_CONFIG = 20  # a: notification buffers
A_CONNECT = 21  # a: conn; body: central address
A_DISCONNECT = 22  # a: conn, b: HCI reason
A_WRITE_REQ = 23  # a: conn, b: value handle; body: data
A_WRITE_CMD = 24
A_READ = 25  # a: conn, b: value handle
A_MTU = 26  # a: conn, b: MTU
A_TX_DONE = 27  # a: buffers freed, b: conn
A_INDICATE_DONE = 28  # a: conn, b: value handle
# central <-> air
C_SCAN = 40  # a: 1 start, 0 stop
C_ADV_REPORT = 41  # body: JSON {address, name, service_uuids, rssi}
C_CONNECT = 42  # body: JSON {"address"}
C_CONNECTED = 43  # a: conn; body: JSON {"address", "name", "services"}
C_CONNECT_FAILED = 44  # body: reason text
C_MTU_REQ = 45  # a: central MTU
C_MTU = 46  # a: MTU
C_READ = 47  # a: value handle
C_READ_RSP = 48  # a: value handle, b: ATT status; body: value
C_WRITE = 49  # a: value handle, b: 1 with response; body: data
C_WRITE_RSP = 50  # a: value handle, b: ATT status
C_SUBSCRIBE = 51  # a: value handle, b: 1 on / 0 off
C_SUBSCRIBE_RSP = 52  # a: value handle, b: ATT status
C_NOTIFY = 53  # a: value handle; body: data
C_DISCONNECT = 54
C_DISCONNECTED = 55  # a: 1 when the central asked for it, b: HCI reason
# the room the air is in: a voice telling the person who wears the device what to do
V_SAY = 60  # body: JSON instruction (hipsync.sim.live_patient.LivePatient.hear); no answer

ATT_DEFAULT_MTU = 23
ATT_ERR_INVALID_HANDLE = 0x01
ATT_ERR_READ_NOT_PERMITTED = 0x02
ATT_ERR_WRITE_NOT_PERMITTED = 0x03
HCI_REMOTE_USER_TERMINATED = 0x13
HCI_SUPERVISION_TIMEOUT = 0x08
HCI_LOCAL_HOST_TERMINATED = 0x16
FLAG_READ = 0x0002
FLAG_WRITE_NO_RESPONSE = 0x0004
FLAG_WRITE = 0x0008
FLAG_NOTIFY = 0x0010
FLAG_INDICATE = 0x0020


def pack(kind: int, a: int = 0, b: int = 0, body: bytes = b"") -> bytes:
    return struct.pack(HEADER, len(body), kind, a, b) + body


async def read_message(reader: asyncio.StreamReader) -> tuple[int, int, int, bytes]:
    """(kind, a, b, body); raises asyncio.IncompleteReadError at EOF."""
    head = await reader.readexactly(HEADER_SIZE)
    n, kind, a, b = struct.unpack(HEADER, head)
    body = await reader.readexactly(n) if n else b""
    return kind, a, b, body


def parse_advertisement(data: bytes) -> tuple[str | None, list[str]]:
    """(local name, service UUIDs) from advertising + scan-response AD structures."""
    name = None
    uuids: list[str] = []
    i = 0
    while i < len(data):
        length = data[i]
        if length == 0 or i + 1 + length > len(data):
            break
        ad_type, value = data[i + 1], data[i + 2:i + 1 + length]
        if ad_type in (0x08, 0x09):
            name = value.decode(errors="replace")
        elif ad_type in (0x06, 0x07):
            for k in range(0, len(value) - 15, 16):
                uuids.append(str(uuidlib.UUID(bytes=bytes(reversed(value[k:k + 16])))))
        elif ad_type in (0x02, 0x03):
            for k in range(0, len(value) - 1, 2):
                short = value[k] | (value[k + 1] << 8)
                uuids.append(f"0000{short:04x}-0000-1000-8000-00805f9b34fb")
        i += 1 + length
    return name, uuids


@dataclass
class LinkModel:
    """Knobs of the virtual link; change them at any time (read at every connection event)."""

    interval_s: float = 0.030  # connection interval (BlueZ default 30-50 ms, Apple >= 15 ms)
    max_notifications_per_interval: int = 5  # NimBLE on an ESP32 manages about 4-6
    notify_buffers: int = 10  # device stack's notification pool; ENOMEM when all are queued
    central_mtu: int = 517  # what the central offers in the MTU exchange (BlueZ: 517)
    loss_probability: float = 0.0
    lossy_uuids: frozenset[str] | None = None  # None: every notifying characteristic
    seed: int = 1
    extra_latency_s: float = 0.0
    disconnect_after_s: float | None = None  # modelled seconds after each connection starts
    disconnect_every_n_notifications: int | None = None
    speed: float = 1.0  # modelled seconds per wall-clock second

    def wall(self, modelled_s: float) -> float:
        return modelled_s / self.speed

    def capacity_bytes_per_s(self, mtu: int = 247) -> float:
        """Nominal notification payload capacity in modelled time."""
        return self.max_notifications_per_interval * (mtu - 3) / self.interval_s


@dataclass
class AirStats:
    notifications_in: int = 0  # notifications the device's stack accepted
    delivered: int = 0
    delivered_bytes: int = 0
    lost_random: int = 0
    dropped_on_disconnect: int = 0  # queued on a connection when it dropped
    dropped_stale: int = 0  # sent on a connection that had already dropped
    dropped_unsubscribed: int = 0  # delivered to a central that had not subscribed
    truncated: int = 0  # longer than MTU - 3 (the device's fake truncates before sending)
    connection_events: int = 0
    connections: int = 0
    forced_disconnects: int = 0
    dropped_by_uuid: dict[str, int] = field(default_factory=dict)

    def dropped(self, uuid: str | None = None) -> int:
        """Notifications the link did not deliver (to a subscriber), for one UUID or all."""
        if uuid is not None:
            return self.dropped_by_uuid.get(uuid.lower(), 0)
        return sum(self.dropped_by_uuid.values())

    def as_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "dropped_by_uuid"}
        out["dropped_by_uuid"] = dict(self.dropped_by_uuid)
        out["dropped"] = self.dropped()
        return out


class _Peer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    def send(self, kind: int, a: int = 0, b: int = 0, body: bytes = b"") -> None:
        if not self.writer.is_closing():
            self.writer.write(pack(kind, a, b, body))

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


@dataclass
class _Char:
    uuid: str
    handle: int
    props: int
    cccd: int | None


class _Device:
    def __init__(self, peer: _Peer):
        self.peer = peer
        self.address = ""
        self.services: list = []
        self.chars: dict[int, _Char] = {}
        self.adv = b""
        self.advertising = False
        self.connectable = True
        self.name: str | None = None
        self.uuids: list[str] = []
        self.mtu_pref = ATT_DEFAULT_MTU
        self.conn: _Connection | None = None


class _Connection:
    def __init__(self, handle: int, device: _Device, central: _Peer, started: float):
        self.handle = handle
        self.device = device
        self.central = central
        self.started = started  # loop time
        self.open = True
        self.mtu = ATT_DEFAULT_MTU
        self.mtu_exchanged = False
        self.subscribed: set[int] = set()
        self.up: deque = deque()  # device -> central: ("n", handle, data) | ("r", kind, a, b, body)
        self.down: deque = deque()  # central -> device messages (kind, a, b, body)
        self.notified = 0
        self.task: asyncio.Task | None = None


class Air:
    """The hub. `with Air() as air:` runs it in a background thread; `air.address` is what
    HIPSYNC_AIR must hold for devices and centrals."""

    def __init__(self, link: LinkModel | None = None):
        self.link = link or LinkModel()
        self.stats = AirStats()
        self._rng = random.Random(self.link.seed)
        self._seed_used = self.link.seed
        self._devices: dict[str, _Device] = {}
        self._scanners: set[_Peer] = set()
        self._next_conn = 1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._start_error: BaseException | None = None
        self.port = 0
        # who hears what is said in the room (V_SAY): the simulated person, called on the air's
        # thread with the instruction
        self.listeners: list = []

    # ------------------------------------------------------------------ lifecycle
    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 5.0) -> Air:
        self._thread = threading.Thread(target=self._thread_main, name="hipsync-air", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError("virtual air did not start")
        if self._start_error is not None:
            raise RuntimeError(f"virtual air failed to start: {self._start_error}")
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._loop is not None and self._stopped is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout_s)
        self._thread = None

    def __enter__(self) -> Air:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _thread_main(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        try:
            self._server = await asyncio.start_server(self._on_peer, "127.0.0.1", 0)
        except OSError as e:
            self._start_error = e
            self._ready.set()
            return
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopped.wait()
        self._server.close()
        for device in list(self._devices.values()):
            if device.conn is not None:
                self._disconnect(device.conn, HCI_LOCAL_HOST_TERMINATED, by_central=False)
            device.peer.close()
        for peer in list(self._scanners):
            peer.close()
        await self._server.wait_closed()

    # ------------------------------------------------------------------ thread-safe helpers
    def _call(self, fn, *args):
        """Run fn(*args) on the air's loop and return its result (from any thread)."""
        if self._loop is None:
            raise RuntimeError("the air is not running")
        if threading.current_thread() is self._thread:
            return fn(*args)
        done = threading.Event()
        box: list = []

        def run():
            try:
                box.append(fn(*args))
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        if not done.wait(5.0):
            raise RuntimeError("virtual air did not answer")
        return box[0] if box else None

    def force_disconnect(self, name_or_address: str | None = None) -> int:
        """Drop the link(s) of one device (by advertised name or address) or of all; returns how
        many connections were dropped. The centrals see an unsolicited disconnect."""
        def go():
            count = 0
            for device in list(self._devices.values()):
                if name_or_address not in (None, device.name, device.address):
                    continue
                if device.conn is not None:
                    self.stats.forced_disconnects += 1
                    self._disconnect(device.conn, HCI_SUPERVISION_TIMEOUT, by_central=False)
                    count += 1
            return count
        return self._call(go)

    def devices(self) -> list[dict]:
        """Registered devices: name, address, advertising, connected."""
        return self._call(lambda: [{"name": d.name, "address": d.address,
                                    "advertising": d.advertising, "connected": d.conn is not None}
                                   for d in self._devices.values()])

    def wait_for_device(self, name: str | None = None, timeout_s: float = 10.0,
                        advertising: bool = True) -> dict:
        """Block until a device (with this name) is registered (and advertising)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for d in self.devices():
                if (name is None or d["name"] == name) and (d["advertising"] or not advertising):
                    return d
            time.sleep(0.01)
        raise TimeoutError(f"no virtual device {name or ''} advertising after {timeout_s} s")

    # ------------------------------------------------------------------ peers
    async def _on_peer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _Peer(reader, writer)
        try:
            kind, a, b, body = await read_message(reader)
            if kind == D_HELLO:
                await self._serve_device(peer, body)
            elif kind == V_SAY:
                self._hear(body)
            else:
                await self._serve_central(peer, (kind, a, b, body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            peer.close()

    def _hear(self, body: bytes) -> None:
        try:
            instruction = json.loads(body)
        except ValueError:
            return
        for listener in list(self.listeners):
            listener(instruction)

    # -- devices
    async def _serve_device(self, peer: _Peer, hello: bytes) -> None:
        device = _Device(peer)
        mac = bytes.fromhex(json.loads(hello)["mac"])
        device.address = ":".join(f"{x:02X}" for x in mac)
        self._devices[device.address] = device
        peer.send(A_CONFIG, self.link.notify_buffers)
        try:
            while True:
                kind, a, b, body = await read_message(peer.reader)
                self._from_device(device, kind, a, b, body)
        finally:
            if device.conn is not None:
                self._disconnect(device.conn, HCI_SUPERVISION_TIMEOUT, by_central=False)
            self._devices.pop(device.address, None)

    def _from_device(self, device: _Device, kind: int, a: int, b: int, body: bytes) -> None:
        conn = device.conn
        if kind == D_NOTIFY or kind == D_INDICATE or kind == D_UPDATE:
            if kind == D_NOTIFY:
                self.stats.notifications_in += 1
            if conn is None or conn.handle != a:
                if kind == D_NOTIFY:
                    self.stats.dropped_stale += 1
                    self._count_drop(device, b)
                return
            if len(body) > conn.mtu - 3:
                self.stats.truncated += 1
                body = body[:conn.mtu - 3]
            conn.up.append(("n" if kind == D_NOTIFY else ("i" if kind == D_INDICATE else "u"),
                            b, body))
        elif kind == D_WRITE_RSP:
            if conn is not None and conn.handle == a:
                conn.up.append(("r", C_WRITE_RSP, b, 0, b""))
        elif kind == D_READ_RSP:
            if conn is not None and conn.handle == a:
                conn.up.append(("r", C_READ_RSP, b, 0, body))
        elif kind == D_MTU_REQ:
            device.mtu_pref = b
            if conn is not None and conn.handle == a:
                self._exchange_mtu(conn, self.link.central_mtu)
        elif kind == D_SET_MTU:
            device.mtu_pref = a
        elif kind == D_REGISTER:
            device.services = json.loads(body)
            device.chars = {c["handle"]: _Char(c["uuid"], c["handle"], c["props"], c.get("cccd"))
                            for s in device.services for c in s["chars"]}
        elif kind == D_ADV:
            device.adv = body
            device.name, device.uuids = parse_advertisement(body)
            device.connectable = bool(b)
            device.advertising = True
            for scanner in list(self._scanners):
                self._report(scanner, device)
        elif kind == D_ADV_STOP:
            device.advertising = False
        elif kind == D_DISCONNECT:
            if conn is not None and conn.handle == a:
                self._disconnect(conn, HCI_LOCAL_HOST_TERMINATED, by_central=False)

    def _count_drop(self, device: _Device, handle: int) -> None:
        ch = device.chars.get(handle)
        key = ch.uuid if ch else f"handle-{handle}"
        self.stats.dropped_by_uuid[key] = self.stats.dropped_by_uuid.get(key, 0) + 1

    def _report(self, scanner: _Peer, device: _Device) -> None:
        if device.advertising:
            scanner.send(C_ADV_REPORT, body=json.dumps({
                "address": device.address, "name": device.name, "service_uuids": device.uuids,
                "rssi": -55, "connectable": device.connectable}).encode())

    # -- centrals: one TCP connection is one scanner or one client
    async def _serve_central(self, peer: _Peer, first: tuple[int, int, int, bytes]) -> None:
        conn: _Connection | None = None
        msg = first
        try:
            while True:
                kind, a, b, body = msg
                if kind == C_SCAN:
                    if a:
                        self._scanners.add(peer)
                        for device in self._devices.values():
                            self._report(peer, device)
                    else:
                        self._scanners.discard(peer)
                elif kind == C_CONNECT:
                    conn = self._connect(peer, json.loads(body)["address"])
                elif conn is not None and conn.open:
                    if kind == C_DISCONNECT:
                        self._disconnect(conn, HCI_REMOTE_USER_TERMINATED, by_central=True)
                        conn = None
                    else:
                        conn.down.append((kind, a, b, body))
                elif kind in (C_READ, C_WRITE, C_SUBSCRIBE, C_MTU_REQ, C_DISCONNECT):
                    peer.send(C_DISCONNECTED, 1 if kind == C_DISCONNECT else 0,
                              HCI_REMOTE_USER_TERMINATED)
                msg = await read_message(peer.reader)
        finally:
            self._scanners.discard(peer)
            if conn is not None and conn.open:
                self._disconnect(conn, HCI_REMOTE_USER_TERMINATED, by_central=True)

    def _connect(self, central: _Peer, address: str) -> _Connection | None:
        device = self._devices.get(address.upper())
        if device is None or not device.advertising or not device.connectable:
            central.send(C_CONNECT_FAILED, body=f"device {address} is not advertising".encode())
            return None
        if device.conn is not None:
            central.send(C_CONNECT_FAILED, body=f"device {address} is busy".encode())
            return None
        handle = self._next_conn
        self._next_conn = self._next_conn % 0xFFFE + 1
        conn = _Connection(handle, device, central, asyncio.get_running_loop().time())
        device.conn = conn
        device.advertising = False  # the stack stops advertising on connection
        self.stats.connections += 1
        device.peer.send(A_CONFIG, self.link.notify_buffers)
        device.peer.send(A_CONNECT, handle, 0, b"\xc0\xff\xee\x00\x00\x01")
        central.send(C_CONNECTED, handle, body=json.dumps({
            "address": device.address, "name": device.name, "services": device.services}).encode())
        conn.task = asyncio.get_running_loop().create_task(self._run_connection(conn))
        return conn

    def _disconnect(self, conn: _Connection, reason: int, by_central: bool) -> None:
        if not conn.open:
            return
        conn.open = False
        if conn.task is not None and conn.task is not asyncio.current_task():
            conn.task.cancel()
        for item in conn.up:
            if item[0] == "n":
                self.stats.dropped_on_disconnect += 1
                self._count_drop(conn.device, item[1])
        conn.up.clear()
        if conn.device.conn is conn:
            conn.device.conn = None
        conn.device.peer.send(A_DISCONNECT, conn.handle, reason)
        conn.central.send(C_DISCONNECTED, 1 if by_central else 0, reason)

    def _exchange_mtu(self, conn: _Connection, central_mtu: int) -> None:
        if not conn.mtu_exchanged:
            conn.mtu = max(ATT_DEFAULT_MTU, min(central_mtu, conn.device.mtu_pref))
            conn.mtu_exchanged = True
        # the result reaches both ends in the next connection event
        conn.up.append(("r", C_MTU, conn.mtu, 0, b""))
        conn.device.peer.send(A_MTU, conn.handle, conn.mtu)

    # ------------------------------------------------------------------ connection events
    async def _run_connection(self, conn: _Connection) -> None:
        loop = asyncio.get_running_loop()
        next_t = loop.time()
        while conn.open:
            next_t += self.link.wall(self.link.interval_s)
            now = loop.time()
            if next_t < now - 1.0:  # fell far behind (debugger, overload): do not burst
                next_t = now
            await asyncio.sleep(max(0.0, next_t - now))
            if conn.open:
                self._connection_event(conn, loop)

    def _connection_event(self, conn: _Connection, loop: asyncio.AbstractEventLoop) -> None:
        link = self.link
        if link.seed != self._seed_used:
            self._rng = random.Random(link.seed)
            self._seed_used = link.seed
        self.stats.connection_events += 1
        device = conn.device
        # central -> device: everything queued goes in this event
        while conn.down:
            kind, a, b, body = conn.down.popleft()
            self._from_central(conn, kind, a, b, body)
        # device -> central: at most max_notifications_per_interval PDUs, in order
        freed = 0
        latency = link.wall(link.extra_latency_s)
        for _ in range(max(1, link.max_notifications_per_interval)):
            if not conn.up:
                break
            item = conn.up.popleft()
            if item[0] == "r":
                _, kind, a, b, body = item
                if kind == C_MTU:
                    conn.central.send(C_MTU, a)
                else:
                    self._deliver(conn, kind, a, b, body, latency, loop)
                continue
            tag, handle, data = item
            if tag == "i":
                device.peer.send(A_INDICATE_DONE, conn.handle, handle)
            if tag == "u" and handle not in conn.subscribed:
                continue
            if tag == "n":
                freed += 1
                ch = device.chars.get(handle)
                lossy = link.lossy_uuids is None or (ch is not None and ch.uuid in link.lossy_uuids)
                if lossy and link.loss_probability > 0 and self._rng.random() < link.loss_probability:
                    self.stats.lost_random += 1
                    self._count_drop(device, handle)
                    continue
                if handle not in conn.subscribed:
                    self.stats.dropped_unsubscribed += 1
                    self._count_drop(device, handle)
                    continue
                self.stats.delivered += 1
                self.stats.delivered_bytes += len(data)
                conn.notified += 1
            self._deliver(conn, C_NOTIFY, handle, 0, data, latency, loop)
        if freed:
            device.peer.send(A_TX_DONE, freed, conn.handle)
        # forced disconnects
        every = link.disconnect_every_n_notifications
        after = link.disconnect_after_s
        if ((every and conn.notified >= every)
                or (after is not None and (loop.time() - conn.started) >= link.wall(after))):
            self.stats.forced_disconnects += 1
            self._disconnect(conn, HCI_SUPERVISION_TIMEOUT, by_central=False)

    def _deliver(self, conn: _Connection, kind: int, a: int, b: int, body: bytes, latency: float,
                 loop: asyncio.AbstractEventLoop) -> None:
        if latency > 0:
            loop.call_later(latency, self._deliver_now, conn, kind, a, b, body)
        else:
            self._deliver_now(conn, kind, a, b, body)

    @staticmethod
    def _deliver_now(conn: _Connection, kind: int, a: int, b: int, body: bytes) -> None:
        if conn.open:
            conn.central.send(kind, a, b, body)

    def _from_central(self, conn: _Connection, kind: int, a: int, b: int, body: bytes) -> None:
        device = conn.device
        if kind == C_MTU_REQ:
            self._exchange_mtu(conn, a)
        elif kind == C_SUBSCRIBE:
            ch = device.chars.get(a)
            if ch is None or not ch.props & (FLAG_NOTIFY | FLAG_INDICATE):
                conn.up.append(("r", C_SUBSCRIBE_RSP, a, ATT_ERR_INVALID_HANDLE, b""))
                return
            if b:
                conn.subscribed.add(a)
            else:
                conn.subscribed.discard(a)
            # the stack answers a CCCD write itself
            conn.up.append(("r", C_SUBSCRIBE_RSP, a, 0, b""))
        elif kind == C_WRITE:
            ch = device.chars.get(a)
            allowed = FLAG_WRITE if b else FLAG_WRITE_NO_RESPONSE
            if ch is None or not ch.props & allowed:
                if b:
                    status = ATT_ERR_INVALID_HANDLE if ch is None else ATT_ERR_WRITE_NOT_PERMITTED
                    conn.up.append(("r", C_WRITE_RSP, a, status, b""))
                return
            device.peer.send(A_WRITE_REQ if b else A_WRITE_CMD, conn.handle, a, body)
        elif kind == C_READ:
            ch = device.chars.get(a)
            if ch is None or not ch.props & FLAG_READ:
                status = ATT_ERR_INVALID_HANDLE if ch is None else ATT_ERR_READ_NOT_PERMITTED
                conn.up.append(("r", C_READ_RSP, a, status, b""))
                return
            device.peer.send(A_READ, conn.handle, a)
