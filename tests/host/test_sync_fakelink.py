"""An in-process fake link to the real firmware: the device side (FlashLog, Authenticator,
SyncService and a minimal command dispatcher) runs inside the MicroPython unix port; the host side
is a `hipsync.sync.LinkLike` that loses sync chunks, drops the connection every few chunks and
lets the device meet back-pressure. Used by tests/host/test_sync.py and bench/bench_store.py.

Not a BLE model: no connection intervals, no MTU exchange; the ATT payload is fixed per
connection. The end-to-end path through the virtual air is a separate test (see test_sync.py).

Pipe protocol, both directions: "<BH" kind, body length, body.
"""

from __future__ import annotations

import asyncio
import os
import random
import struct
import tempfile
from pathlib import Path

from hipwire import commands as cmd
from hipwire import frames as wire
from hipwire import units
from hipwire.gatt import PREFERRED_MTU
from micropython_port import micropython_binary, micropython_path

# host -> device
H_CONNECT, H_DISCONNECT, H_COMMAND, H_REC_START, H_REC_APPEND, H_REC_STOP, H_QUIT = range(1, 8)
# device -> host
D_RESPONSE, D_CHUNK, D_CONNECTED, D_DISCONNECTED, D_RECORDED, D_READY = range(8, 14)

DRIVER = r'''
import sys, struct, select
from binascii import unhexlify
from hipwire import commands as cmd
from hipwire.frames import FrameError
from security import Authenticator, load_secret
from store.flashlog import FlashLog
from link.sync_service import SyncService, respond

root, devid, refuse_every, segment = sys.argv[1], unhexlify(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
stdin = sys.stdin.buffer
out = sys.stdout.buffer
log = FlashLog(root + "/log", segment_bytes=segment, reserve_bytes=0)
auth = Authenticator(load_secret(root + "/secret.bin"), devid)
svc = SyncService(log, auth)
reply = bytearray(512)
state = {"conn": -1, "att": 20, "calls": 0, "next_conn": 1}

def read_exact(n):
    b = b""
    while len(b) < n:
        c = stdin.read(n - len(b))
        if not c:
            raise SystemExit
        b += c
    return b

def send(kind, body=b""):
    out.write(struct.pack("<BH", kind, len(body)) + body)

def send_chunk(buf, n):
    state["calls"] += 1
    if refuse_every and state["calls"] % refuse_every == 0:
        return False  # back-pressure: the server keeps nothing, the service offers it again
    send(9, bytes(buf[:n]))
    return True

def command(body):
    conn = state["conn"]
    try:
        token, op, args = cmd.decode_command(body)
    except FrameError:
        n = respond(reply, 0, 0, cmd.ERR_MALFORMED, 0)
        send(8, bytes(reply[:n]))
        return
    spec = cmd.op_spec(op)
    if spec[4] and not auth.is_authenticated(conn):
        status, plen = cmd.ERR_AUTH_REQUIRED, 0
    elif op in svc.HANDLED_OPS:
        status, plen = svc.handle(conn, op, args, reply, state["att"] - cmd.RESPONSE_HEADER_SIZE - 2)
    else:
        status, plen = cmd.ERR_UNKNOWN_OP, 0
    n = respond(reply, token, op, status, plen)
    send(8, bytes(reply[:n]))

poller = select.poll()
poller.register(sys.stdin, select.POLLIN)
send(13)
while True:
    busy = state["conn"] >= 0 and svc.reading
    if poller.poll(0 if busy else -1):
        kind, n = struct.unpack("<BH", read_exact(3))
        body = read_exact(n) if n else b""
        if kind == 1:
            state["conn"] = state["next_conn"]
            state["next_conn"] += 1
            state["att"] = struct.unpack("<H", body)[0]
            send(10)
        elif kind == 2:
            svc.disconnect(state["conn"])
            state["conn"] = -1
            send(11)
        elif kind == 3:
            command(body)
        elif kind == 4:
            log.start()
        elif kind == 5:
            i = 0
            while i < len(body):
                fl = body[i] | (body[i + 1] << 8)
                f = body[i + 2:i + 2 + fl]
                assert log.append(f, fl)
                i += 2 + fl
        elif kind == 6:
            send(12, struct.pack("<H", log.stop()))
        elif kind == 7:
            break
    if state["conn"] >= 0 and svc.reading:
        svc.pump(send_chunk, state["att"], 4)
'''


def representative_frames(seconds: int, seed: int = 1, max_frame: int = wire.MAX_FRAME) -> list[bytes]:
    """The processed stream as the device records it: envelope (4 ch) and pelvis (3 ch) batches of
    50 samples at 100 Hz, about 4 gait events per second, one STATUS frame (all pages) per second.
    Values are seeded random walks (envelope uV, angles centidegrees), not physiology: frame sizes
    depend on them only through the delta widths."""
    rnd = random.Random(seed)
    buf = bytearray(max_frame)
    out: list[bytes] = []
    seq = 0
    env = [40, 55, 30, 35]
    ang = [150, 800, -200]
    status = [0] * wire.N_STATUS_VALUES
    status[wire.V_BATTERY_PCT] = 90
    per_s = units.ENVELOPE_RATE_HZ
    stride = 0
    for sec in range(seconds):
        base_clock = sec * units.CLOCK_HZ
        for half in range(2):
            clock = base_clock + half * 500
            e_samples, p_samples = [], []
            for _ in range(per_s // 2):
                env = [max(0, v + rnd.randint(-12, 12)) for v in env]
                ang = [v + rnd.randint(-25, 25) for v in ang]
                e_samples.extend(env)
                p_samples.extend(ang)
            for ftype, samples, nch in ((wire.ENVELOPE, e_samples, 4), (wire.PELVIS, p_samples, 3)):
                start, left, c = 0, len(samples) // nch, clock
                while left:
                    n = wire.encode_batch(buf, max_frame, ftype, seq, c, units.TICKS_PER_ENVELOPE_SAMPLE,
                                          samples, start * nch, left, nch)
                    took = buf[wire.HEADER_SIZE]
                    out.append(bytes(buf[:n]))
                    seq += 1
                    start += took
                    left -= took
                    c += took * units.TICKS_PER_ENVELOPE_SAMPLE
        for k in range(4):
            n = wire.encode_event(buf, seq, base_clock + 250 * k + rnd.randint(0, 40),
                                  wire.IC if k % 2 == 0 else wire.FC, (k // 2) % 2, stride)
            out.append(bytes(buf[:n]))
            seq += 1
            stride += k % 2
        n = wire.encode_status(buf, max_frame, seq, base_clock, 0, status)
        out.append(bytes(buf[:n]))
        seq += 1
    return out


class FakeLink:
    """hipsync.sync.LinkLike over the pipe. Loses each sync chunk with loss_probability, and drops
    the connection after every disconnect_every_chunks delivered chunks (0: never)."""

    def __init__(self, device: FakeDevice, att_payload: int, loss_probability: float,
                 disconnect_every_chunks: int, rnd: random.Random):
        self.device = device
        self.device_id = device.device_id
        self.att_payload = att_payload
        self.chunks: asyncio.Queue = asyncio.Queue()
        self.loss_probability = loss_probability
        self.disconnect_every_chunks = disconnect_every_chunks
        self.rnd = rnd
        self.alive = True
        self.delivered = 0
        self.lost = 0
        self._token = 0
        self._pending: asyncio.Future | None = None

    async def command(self, op: int, *args) -> tuple[int, tuple]:
        if not self.alive:
            raise ConnectionError("not connected")
        self._token = (self._token + 1) & 0xFF
        fut = asyncio.get_running_loop().create_future()
        self._pending = fut
        self.device.send(H_COMMAND, cmd.encode_command(op, self._token, *args))
        frame = await asyncio.wait_for(fut, 10)
        token, rop, status, values = cmd.decode_response(frame)
        assert token == self._token and rop == op
        return status, values

    def _on_response(self, frame: bytes) -> None:
        if self._pending is not None and not self._pending.done():
            self._pending.set_result(frame)

    def _on_chunk(self, frame: bytes) -> None:
        if self.rnd.random() < self.loss_probability:
            self.lost += 1
            return
        self.chunks.put_nowait(frame)
        self.delivered += 1
        if self.disconnect_every_chunks and self.delivered % self.disconnect_every_chunks == 0:
            self.device.drop(self)

    def _lost(self) -> None:
        self.alive = False
        self.chunks.put_nowait(None)
        if self._pending is not None and not self._pending.done():
            self._pending.set_exception(ConnectionError("link dropped"))


class FakeDevice:
    """The firmware's flash log and sync service in a MicroPython process."""

    def __init__(self, folder: Path, device_id: bytes = b"\xa4\xcf\x12\x34\x56\x78",
                 refuse_every: int = 7, segment_bytes: int = 65536):
        self.folder = Path(folder)
        self.device_id = device_id
        self.refuse_every = refuse_every
        self.segment_bytes = segment_bytes
        self.proc: asyncio.subprocess.Process | None = None
        self.link: FakeLink | None = None
        self._acks: asyncio.Queue = asyncio.Queue()
        self._reader: asyncio.Task | None = None
        self.disconnects = 0
        self._unacked_drops = 0

    async def start(self) -> FakeDevice:
        self.folder.mkdir(parents=True, exist_ok=True)
        driver = self.folder / "driver.py"
        driver.write_text(DRIVER)
        env = dict(os.environ, MICROPYPATH=micropython_path())
        self.proc = await asyncio.create_subprocess_exec(
            micropython_binary(), "-X", "heapsize=512k", str(driver), str(self.folder),
            self.device_id.hex(), str(self.refuse_every), str(self.segment_bytes),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, limit=1 << 20)
        self._reader = asyncio.create_task(self._read())
        kind, _ = await asyncio.wait_for(self._acks.get(), 20)
        assert kind == D_READY
        return self

    def send(self, kind: int, body: bytes = b"") -> None:
        self.proc.stdin.write(struct.pack("<BH", kind, len(body)) + body)

    async def _read(self) -> None:
        out = self.proc.stdout
        while True:
            try:
                head = await out.readexactly(3)
                kind, n = struct.unpack("<BH", head)
                body = await out.readexactly(n) if n else b""
            except asyncio.IncompleteReadError:
                err = await self.proc.stderr.read()
                self._acks.put_nowait((-1, err))
                return
            link = self.link
            if kind == D_RESPONSE:
                if link is not None:
                    link._on_response(body)
            elif kind == D_CHUNK:
                if link is not None and link.alive:
                    link._on_chunk(body)
            else:
                self._acks.put_nowait((kind, body))

    async def _ack(self, want: int) -> bytes:
        kind, body = await asyncio.wait_for(self._acks.get(), 60)
        if kind != want:
            raise RuntimeError(f"fake device: expected {want}, got {kind}: {body[-2000:]!r}")
        return body

    async def record(self, frames: list[bytes]) -> int:
        self.send(H_REC_START)
        batch = bytearray()
        for f in frames:
            if len(batch) + len(f) + 2 > 60000:
                self.send(H_REC_APPEND, bytes(batch))
                batch.clear()
            batch += struct.pack("<H", len(f)) + f
        if batch:
            self.send(H_REC_APPEND, bytes(batch))
        self.send(H_REC_STOP)
        return struct.unpack("<H", await self._ack(D_RECORDED))[0]

    async def connect(self, att_payload: int = PREFERRED_MTU - 3, loss_probability: float = 0.0,
                      disconnect_every_chunks: int = 0, seed: int = 1) -> FakeLink:
        if self.link is not None and self.link.alive:
            self.drop(self.link)
        while self._unacked_drops:
            await self._ack(D_DISCONNECTED)
            self._unacked_drops -= 1
        link = FakeLink(self, att_payload, loss_probability, disconnect_every_chunks,
                        random.Random(seed + self.disconnects))
        self.send(H_CONNECT, struct.pack("<H", att_payload))
        await self._ack(D_CONNECTED)
        self.link = link
        return link

    def drop(self, link: FakeLink) -> None:
        """The connection ends: everything the device sends until it has seen that is lost."""
        if not link.alive:
            return
        link._lost()
        self.disconnects += 1
        self.link = None
        self._unacked_drops += 1
        self.send(H_DISCONNECT)

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.send(H_QUIT)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()


def temp_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="hipsync-fakedev-"))
