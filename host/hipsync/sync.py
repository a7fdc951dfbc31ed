"""`hipsync sync`: fetch every recorded session from a device's flash log, intact, exactly once.

    result = await sync_device(link, store, progress=print, secret=ds.secret,
                               patient_id="P-017", reconnect=connect_again)

For each session the device lists as closed and not yet synced:
1. read the logical stream in windows (SESSION_READ of window_bytes); chunks land in a buffer at
   their offset, so lost, repeated or late chunks cost nothing but a re-request of the holes;
   after a window (its end marker, or idle_timeout_s without chunks) the first missing range is
   requested again;
2. on a dropped link: `reconnect()` gives a new link, it is authenticated again, and the transfer
   continues from what is already held;
3. verify the CRC-32 of the whole stream against the session list, parse the records
   (hipwire.records.scan_records), keep the verified bytes in the archive folder, hand the frames to
   the store (hipsync.store.ingest), and only then SESSION_CONFIRM(id, crc): the device marks the
   session synced (and may erase it later).
Idempotent: synced sessions are skipped; a session held in the archive (a crash between ingest and
confirm) is confirmed without a transfer or a second ingest.

The link (`LinkLike`): `await command(op, *args) -> (status, values)` (values as
hipwire.commands.decode_response gives them) and `chunks`: an asyncio.Queue of sync-characteristic
notifications (bytes, or (bytes, host time) tuples; None when the link is lost). Link loss is
ConnectionError or hipsync.ble.LinkError; an error status may also come as an exception with a
`status` attribute (hipsync.ble.CommandError). hipsync.ble.DeviceLink fits as it is:
    link = DeviceLink(found); await link.connect()
    async def again(): await link.reconnect(); return link
    await sync_device(link, store, secret=..., device_id=..., reconnect=again, patient_id=...)
The device id (the bytes the device authenticates with) comes from `device_id=` or link.device_id.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import platformdirs

from hipwire import auth
from hipwire import commands as cmd
from hipwire.frames import FrameError
from hipwire.records import scan_records

# Each window costs a round trip at its end (end marker in, next SESSION_READ out, its response):
# two to three connection intervals in which no chunk moves. 256 KiB (~7 s at full rate) keeps that
# under 2 % of the transfer; the window does not change how holes are re-requested.
WINDOW_BYTES = 256 * 1024


class LinkLike(Protocol):
    device_id: bytes
    chunks: asyncio.Queue

    async def command(self, op: int, *args) -> tuple[int, tuple]: ...


class SyncError(Exception):
    """Sync failed; the message says what happened and what to do."""


class AuthError(SyncError):
    pass


class DeviceNotGenuine(AuthError):
    pass


class CommandFailed(SyncError):
    def __init__(self, op: int, status: int):
        spec = cmd.op_spec(op)
        super().__init__(f"device answered {cmd.status_name(status)} to "
                         f"{spec[1] if spec else hex(op)}")
        self.op = op
        self.status = status


class SessionCorrupt(SyncError):
    pass


@dataclass
class Progress:
    session_id: int
    bytes_done: int
    bytes_total: int
    rate_bytes_per_s: float
    eta_s: float | None


@dataclass
class SessionResult:
    session_id: int
    size: int
    crc32: int
    start_unix: int
    frames: int
    store_session: int | None
    archive_path: Path
    transferred: bool  # False: it was already held (confirmed without a transfer)


@dataclass
class SyncResult:
    device_id: str
    synced: list[SessionResult] = field(default_factory=list)
    already_synced: list[int] = field(default_factory=list)
    still_recording: list[int] = field(default_factory=list)
    bytes_received: int = 0  # chunk payload bytes that arrived (duplicates included)
    bytes_useful: int = 0  # new bytes of session streams
    chunks: int = 0
    chunks_corrupt: int = 0
    requests: int = 0
    reconnects: int = 0
    elapsed_s: float = 0.0

    @property
    def rate_bytes_per_s(self) -> float:
        return self.bytes_useful / self.elapsed_s if self.elapsed_s > 0 else 0.0


def default_archive_dir() -> Path:
    return Path(platformdirs.user_data_dir("hipsync", appauthor=False)) / "device-logs"


def _is_link_loss(e: BaseException) -> bool:
    if isinstance(e, ConnectionError):
        return True
    try:
        from .ble import LinkError
    except ImportError:  # bleak missing: only LinkLike fakes in use
        return False
    return isinstance(e, LinkError) and getattr(e, "status", None) is None


async def _command(link: LinkLike, op: int, *args) -> tuple[int, tuple]:
    """(status, values); ConnectionError when the link is gone, whatever the link's own types."""
    try:
        return await link.command(op, *args)
    except Exception as e:
        status = getattr(e, "status", None)
        if isinstance(status, int):
            return status, ()
        if _is_link_loss(e):
            raise ConnectionError(str(e)) from e
        raise


async def _checked(link: LinkLike, op: int, *args) -> tuple:
    status, values = await _command(link, op, *args)
    if status != cmd.OK:
        raise CommandFailed(op, status)
    return values


async def authenticate(link: LinkLike, secret: bytes, device_id: bytes | None = None) -> None:
    """Challenge-response (hipwire.auth): the device learns we hold the secret, we check that it
    holds it too. Raises AuthError (wrong secret, locked out) or DeviceNotGenuine."""
    device_id = device_id if device_id is not None else link.device_id
    status, values = await _command(link, cmd.OP_AUTH_CHALLENGE)
    if status == cmd.ERR_LOCKED_OUT:
        raise AuthError("the device is refusing authentication for a while after wrong attempts; "
                        "wait a minute and try again")
    if status != cmd.OK:
        raise CommandFailed(cmd.OP_AUTH_CHALLENGE, status)
    device_nonce = values[0]
    client_nonce = os.urandom(auth.NONCE_SIZE)
    mac = auth.client_mac(secret, device_id, device_nonce, client_nonce)
    status, values = await _command(link, cmd.OP_AUTH_RESPONSE, client_nonce, mac)
    if status != cmd.OK:
        raise AuthError(f"the device refused our secret ({cmd.status_name(status)}): this host's "
                        f"secret for {device_id.hex()} is not the device's. Re-provision it.")
    if not auth.equal(values[0], auth.device_mac(secret, device_id, client_nonce,
                                                   device_nonce)):
        raise DeviceNotGenuine(f"device {device_id.hex()} accepted us but could not prove it "
                               f"holds the secret: it is not the provisioned device. Not syncing.")


async def list_sessions(link: LinkLike) -> list[tuple]:
    """Every SESSION_ENTRY tuple (id, size, crc, flags, start_unix), paging by id."""
    entries: list[tuple] = []
    first = 0
    while True:
        page = await _checked(link, cmd.OP_SESSION_LIST, first)
        if not page:
            return entries
        entries.extend(page)
        first = page[-1][0] + 1
        if first > 0xFFFF:
            return entries


class _Holes:
    """Which bytes of [0, size) are held: a sorted list of disjoint [start, end) ranges."""

    def __init__(self, size: int):
        self.size = size
        self.have: list[list[int]] = []
        self.held = 0

    def add(self, start: int, end: int) -> int:
        """Mark [start, end) held; returns how many bytes were new."""
        end = min(end, self.size)
        if end <= start:
            return 0
        before = self.held
        merged = []
        placed = False
        for a, b in self.have:
            if b < start or a > end:
                if a > end and not placed:
                    merged.append([start, end])
                    placed = True
                merged.append([a, b])
            else:
                start, end = min(a, start), max(b, end)
        if not placed:
            merged.append([start, end])
        merged.sort()
        self.have = merged
        self.held = sum(b - a for a, b in merged)
        return self.held - before

    def first_missing(self, limit: int) -> tuple[int, int] | None:
        pos = 0
        for a, b in self.have:
            if a > pos:
                return pos, min(a, pos + limit)
            pos = max(pos, b)
        if pos < self.size:
            return pos, min(self.size, pos + limit)
        return None


class _Ledger:
    """archive/<device>/session-<id>-<crc>.hslog (verified stream) and .json (what was done)."""

    def __init__(self, root: Path, device_hex: str):
        self.folder = root / device_hex

    def paths(self, sid: int, crc: int) -> tuple[Path, Path]:
        stem = f"session-{sid:05d}-{crc:08x}"
        return self.folder / f"{stem}.hslog", self.folder / f"{stem}.json"

    def load(self, sid: int, crc: int) -> dict | None:
        log, meta = self.paths(sid, crc)
        if not (log.exists() and meta.exists()):
            return None
        try:
            doc = json.loads(meta.read_text())
        except ValueError:
            return None
        if zlib.crc32(log.read_bytes()) != crc:
            return None
        return doc

    def save(self, sid: int, crc: int, data: bytes, doc: dict) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        log, meta = self.paths(sid, crc)
        for path, body in ((log, data), (meta, json.dumps(doc).encode())):
            tmp = path.with_suffix(path.suffix + ".tmp")
            with open(tmp, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        return log


class _Transfer:
    def __init__(self, sync: _Sync, entry: tuple):
        self.sync = sync
        self.sid, self.size, self.crc, self.flags, self.start_unix = entry
        self.buf = bytearray(self.size)
        self.holes = _Holes(self.size)

    def take(self, chunk: bytes) -> bool | None:
        """Store a chunk; True if it is an end marker, None if it is not ours or corrupt."""
        res = self.sync.result
        if isinstance(chunk, tuple):
            chunk = chunk[0]
        try:
            sid, offset, data = cmd.decode_chunk(chunk)
        except FrameError:
            res.chunks_corrupt += 1
            return None
        res.chunks += 1
        if sid != self.sid:
            return None
        if not data:
            return True
        if offset >= self.size:
            return None
        end = min(self.size, offset + len(data))
        self.buf[offset:end] = data[:end - offset]
        res.bytes_received += len(data)
        new = self.holes.add(offset, end)
        res.bytes_useful += new
        if new:
            self.sync.report(self)
        return False

    async def run(self) -> bytes:
        s = self.sync
        while True:
            missing = self.holes.first_missing(s.window_bytes)
            if missing is None:
                return bytes(self.buf)
            start, end = missing
            try:
                await self._window(start, end)
            except ConnectionError:
                await s.reconnect_link()

    async def _window(self, start: int, end: int) -> None:
        s = self.sync
        link = s.link
        s.result.requests += 1
        _, offset, length = await _checked(link, cmd.OP_SESSION_READ, self.sid, start, end - start)
        want_end = offset + length
        while True:
            if self.holes.first_missing(1) is None:
                return
            if self._covered(start, want_end):
                return
            try:
                chunk = await asyncio.wait_for(link.chunks.get(), s.idle_timeout_s)
            except TimeoutError:
                return  # end marker lost, or the device stalled: re-request what is missing
            if chunk is None:
                raise ConnectionError("link lost during a read")
            if self.take(chunk):
                raw = chunk[0] if isinstance(chunk, tuple) else chunk
                if cmd.decode_chunk(raw)[1] == want_end:
                    return

    def _covered(self, start: int, end: int) -> bool:
        for a, b in self.holes.have:
            if a <= start and b >= end:
                return True
        return False


class _Sync:
    def __init__(self, link, store, progress, secret, reconnect, patient_id, archive_dir,
                 window_bytes, idle_timeout_s, max_reconnects, device_id):
        self.link = link
        self.device_id = bytes(device_id if device_id is not None else link.device_id)
        self.store = store
        self.progress = progress
        self.secret = secret
        self.reconnect = reconnect
        self.patient_id = patient_id
        self.window_bytes = window_bytes
        self.idle_timeout_s = idle_timeout_s
        self.max_reconnects = max_reconnects
        self.result = SyncResult(device_id=self.device_id.hex())
        self.ledger = _Ledger(Path(archive_dir), self.device_id.hex())
        self._t0 = time.monotonic()
        self._last_report = 0.0

    def report(self, tr: _Transfer) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if now - self._last_report < 0.2 and tr.holes.held < tr.size:
            return
        self._last_report = now
        elapsed = now - self._t0
        rate = self.result.bytes_useful / elapsed if elapsed > 0 else 0.0
        left = tr.size - tr.holes.held
        self.progress(Progress(tr.sid, tr.holes.held, tr.size, rate,
                               left / rate if rate > 0 else None))

    async def reconnect_link(self) -> None:
        while True:
            if self.reconnect is None:
                raise SyncError("the link dropped and no way to reconnect was given; run sync "
                                "again (what was confirmed is kept, the rest is read again)")
            if self.result.reconnects >= self.max_reconnects:
                raise SyncError(f"the link dropped {self.result.reconnects} times; move the "
                                f"device closer to the computer and run sync again")
            self.result.reconnects += 1
            try:
                self.link = await self.reconnect()
                await authenticate(self.link, self.secret, self.device_id)
                return
            except Exception as e:
                if _is_link_loss(e):
                    continue
                raise

    async def call(self, fn, *args):
        """Run a command step, reconnecting and retrying it after a dropped link."""
        while True:
            try:
                return await fn(self.link, *args)
            except ConnectionError:
                await self.reconnect_link()

    async def run(self) -> SyncResult:
        await self.call(authenticate, self.secret, self.device_id)
        entries = await self.call(list_sessions)
        for entry in entries:
            sid, size, crc, flags, start_unix = entry
            if flags & cmd.SESSION_OPEN:
                self.result.still_recording.append(sid)
            elif flags & cmd.SESSION_SYNCED:
                self.result.already_synced.append(sid)
            else:
                self.result.synced.append(await self._session(entry))
        self.result.elapsed_s = time.monotonic() - self._t0
        return self.result

    async def _session(self, entry: tuple) -> SessionResult:
        sid, size, crc, flags, start_unix = entry
        held = self.ledger.load(sid, crc)
        transferred = held is None
        if held is None:
            data = b""
            for _attempt in range(2):
                data = await _Transfer(self, entry).run()
                if zlib.crc32(data) == crc:
                    break
            else:
                raise SessionCorrupt(f"session {sid}: the data read twice does not match the "
                                     f"device's CRC-32; the device log may be damaged. Nothing "
                                     f"was confirmed or erased.")
            frames, end, why = scan_records(data)
            if why is not None:
                raise SessionCorrupt(f"session {sid}: {why}; nothing was confirmed or erased")
            store_session = self._ingest(sid, start_unix, [f for _, f in frames])
            held = {"session": sid, "crc32": crc, "size": size, "start_unix": start_unix,
                    "frames": len(frames), "store_session": store_session,
                    "patient_id": self.patient_id}
            archive = self.ledger.save(sid, crc, data, held)
        else:
            archive = self.ledger.paths(sid, crc)[0]
        await self.call(_confirm, sid, crc)
        return SessionResult(sid, size, crc, start_unix, held["frames"], held["store_session"],
                             archive, transferred)

    def _ingest(self, sid: int, start_unix: int, frames: list[bytes]) -> int | None:
        if self.store is None:
            return None
        from hipwire.frames import check

        from .protocol import StreamAssembler
        from .store import ingest

        if not self.patient_id:
            raise SyncError("a patient id is needed to put synced sessions into the store")
        started = (datetime.fromtimestamp(start_unix, UTC).isoformat(timespec="seconds")
                   if start_unix else None)
        store_sid = self.store.create_session(self.patient_id, self.device_id.hex(),
                                              started_at=started,
                                              notes=f"synced from device session {sid}")
        asm = StreamAssembler()
        received = []
        first_clock = None
        for frame in frames:
            try:
                clock = check(frame)[3]
            except FrameError:
                continue
            first_clock = clock if first_clock is None else first_clock
            t = start_unix + ((clock - first_clock) & 0xFFFFFFFF) / 1000.0
            received.extend(asm.push_bytes(frame, t))
        received.extend(asm.flush())
        ingest(self.store, store_sid, received, link_stats=asm.stats)
        return store_sid


async def _confirm(link: LinkLike, sid: int, crc: int) -> None:
    await _checked(link, cmd.OP_SESSION_CONFIRM, sid, crc)


async def sync_device(link: LinkLike, store=None, progress: Callable[[Progress], None] | None = None,
                      *, secret: bytes,
                      reconnect: Callable[[], Awaitable[LinkLike]] | None = None,
                      patient_id: str | None = None, archive_dir: str | os.PathLike | None = None,
                      window_bytes: int = WINDOW_BYTES, idle_timeout_s: float = 1.0,
                      max_reconnects: int = 50, device_id: bytes | None = None) -> SyncResult:
    """Sync every closed, unsynced session of the device on `link` (see the module docstring).
    store: a hipsync.store.Store (sessions are created for patient_id) or None (archive only)."""
    s = _Sync(link, store, progress, secret, reconnect, patient_id,
              archive_dir if archive_dir is not None else default_archive_dir(), window_bytes,
              idle_timeout_s, max_reconnects, device_id)
    return await s.run()
