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
   the store (hipsync.store.ingest) in one transaction, and only then SESSION_CONFIRM(id, crc): the
   device marks the session synced (and may erase it later).
Idempotent: synced sessions are skipped; a session held in the archive (a crash between ingest and
confirm) is confirmed without a transfer or a second ingest. The store notes which store session
holds which device session (Store.mark_synced, in the same transaction as its rows), so a sync
killed anywhere leaves the session stored completely or not at all, and never twice.

Damaged sessions: a session whose bytes, read twice, do not match its CRC-32 has damaged flash.
Every record that verifies is kept (salvage_records; each record has its own CRC-32), stored with
what was lost (Store.damage_of), archived, and the device is told (SESSION_DAMAGED): the session
stays on the device, unsynced, and the sync goes on with the next one. Only a therapist releases it:
`accept_damaged` confirms it (the device may then erase it like any synced session),
`erase_damaged` confirms and erases it now.

Calibration: a recording starts with a calibration record (hipwire.records.decode_calibration):
whether its pelvis angles are relative to the device's standing calibration, and the MVCs the
clinic's host gave the device (SET_MVC). The store gets them as the session's calibration:
standing angles 0, 0, 0 (the device already measured against standing) and the MVCs, with
`source` "device calibration (standing <when>, MVCs <when>)". A recording without a standing
calibration or MVCs gets no stored calibration (the report says how to add one).

Patients: the device knows no patient codes. `hipsync record start --patient P` records on the host
that the session it started, and the button recordings after it, are P's (`assign_patient`, a
file beside the archive). A sync for another patient than a pending session's is refused before
anything is transferred (PatientMismatch), so one sync never mixes patients.

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
import struct
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import platformdirs

from hipwire import auth
from hipwire import commands as cmd
from hipwire.frames import MAX_FRAME, FrameError
from hipwire.records import (
    RECORD_HEADER,
    RECORD_MAGIC,
    RECORD_OVERHEAD,
    decode_calibration,
    is_calibration,
    scan_records,
)

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


def salvage_records(data: bytes) -> tuple[list[tuple[int, bytes]], list[tuple[int, int]], str | None]:
    """Every record of a session stream that verifies, the [start, end) byte ranges that did not,
    and why the first bad range was refused (None: the stream is whole). After a bad record the
    scan resumes at the next offset where a whole record verifies: its magic, a frame length the
    wire allows and its CRC-32 (a damaged range passes for a record about once in 2^32 tries)."""
    frames: list[tuple[int, bytes]] = []
    lost: list[tuple[int, int]] = []
    first_why = None
    off = 0
    while off < len(data):
        got, end, why = scan_records(data, off)
        frames.extend(got)
        if why is None:
            break
        first_why = first_why or why
        nxt = _next_record(data, end + 1)
        lost.append((end, nxt))
        off = nxt
    return frames, lost, first_why


def _next_record(data: bytes, pos: int) -> int:
    """Offset of the next whole, verifying record at or after pos (len(data) when none)."""
    magic = bytes((RECORD_MAGIC,))
    while True:
        pos = data.find(magic, pos)
        if pos < 0 or len(data) - pos < RECORD_OVERHEAD:
            return len(data)
        _, length = struct.unpack_from(RECORD_HEADER, data, pos)
        if length <= MAX_FRAME:
            got, _, why = scan_records(data[pos:pos + RECORD_OVERHEAD + length])
            if why is None and got:
                return pos
        pos += 1


class PatientMismatch(SyncError):
    pass


@dataclass
class DeviceCalibration:
    """A recording's calibration record: standing (pelvis angles relative to a standing
    calibration), when (unix s, 0 unknown) and the MVCs (uV per channel, None = not given)."""

    clock: int
    standing: bool
    standing_unix: int
    mvc_uv: dict[str, float | None]
    mvc_unix: int

    @classmethod
    def from_frame(cls, frame: bytes) -> DeviceCalibration:
        from hipwire.units import EMG_CHANNELS

        clock, flags, t_st, mvc, t_mvc = decode_calibration(frame)
        return cls(clock, bool(flags & cmd.CAL_HAS_STANDING), t_st,
                   {ch: (float(v) if v else None) for ch, v in zip(EMG_CHANNELS, mvc)}, t_mvc)

    @property
    def has_mvc(self) -> bool:
        return any(v is not None for v in self.mvc_uv.values())

    @property
    def source(self) -> str:
        def when(t: int) -> str:
            return (datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC") if t
                    else "time unknown")

        parts = [f"standing {when(self.standing_unix)}" if self.standing else "no standing"]
        if self.has_mvc:
            given = [ch for ch, v in self.mvc_uv.items() if v is not None]
            parts.append(f"MVCs {when(self.mvc_unix)}"
                         + ("" if len(given) == len(self.mvc_uv) else f" ({', '.join(given)})"))
        else:
            parts.append("no MVCs")
        return f"device calibration ({', '.join(parts)})"

    def as_dict(self) -> dict:
        return {"clock": self.clock, "standing": self.standing,
                "standing_unix": self.standing_unix, "mvc_uv": self.mvc_uv,
                "mvc_unix": self.mvc_unix}


def store_device_calibration(store, store_session: int, cal: DeviceCalibration | None) -> bool:
    """Set the store session's calibration from a recording's calibration record; False (nothing
    stored) when the device had neither a standing calibration nor MVCs."""
    if cal is None or not (cal.standing or cal.has_mvc):
        return False
    store.set_calibration(store_session, standing_deg=(0.0, 0.0, 0.0) if cal.standing else None,
                          mvc_uv=cal.mvc_uv if cal.has_mvc else None, source=cal.source)
    return True


# ----------------------------------------------------------------------------- patients
PATIENTS_FILE = "patients.json"


def describe_sessions(ids) -> str:
    """'session 4' / 'sessions 4, 5'."""
    ids = list(ids)
    return f"session{'' if len(ids) == 1 else 's'} {', '.join(map(str, ids))}"


class PatientMap:
    """archive/<device>/patients.json: which patient a device's recordings belong to.
    {"sessions": {"7": "P-017"}, "holder": {"patient": "P-017", "from_session": 7}}: session 7 was
    started for P-017 (`record start`), and so are the button recordings after it."""

    def __init__(self, archive_dir: str | os.PathLike | None, device_hex: str):
        root = Path(archive_dir) if archive_dir is not None else default_archive_dir()
        self.path = root / device_hex / PATIENTS_FILE

    def load(self) -> dict:
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {"sessions": {}, "holder": None}
        doc.setdefault("sessions", {})
        doc.setdefault("holder", None)
        return doc

    def assign(self, session_id: int, patient_id: str) -> None:
        doc = self.load()
        doc["sessions"][str(session_id)] = patient_id
        doc["holder"] = {"patient": patient_id, "from_session": session_id}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def patient_of(self, session_id: int, doc: dict | None = None) -> str | None:
        doc = doc if doc is not None else self.load()
        got = doc["sessions"].get(str(session_id))
        if got is not None:
            return got
        holder = doc["holder"]
        if holder and session_id >= holder["from_session"]:
            return holder["patient"]
        return None


def assign_patient(device_id: bytes | str, session_id: int, patient_id: str,
                   archive_dir: str | os.PathLike | None = None) -> None:
    """Record on this host that device session `session_id` (and the button recordings after it)
    belong to patient_id."""
    dev = device_id if isinstance(device_id, str) else bytes(device_id).hex()
    PatientMap(archive_dir, dev).assign(session_id, patient_id)


def patients_of(device_id: bytes | str, session_ids, archive_dir=None) -> dict[int, str | None]:
    dev = device_id if isinstance(device_id, str) else bytes(device_id).hex()
    pm = PatientMap(archive_dir, dev)
    doc = pm.load()
    return {sid: pm.patient_of(sid, doc) for sid in session_ids}


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
    calibration: DeviceCalibration | None = None  # the recording's calibration record
    calibration_stored: bool = False  # it became the store session's calibration
    patient_id: str | None = None
    # a damaged session: records_kept, records_lost_bytes, lost ([start, end) byte ranges), why
    damage: dict | None = None
    released: str | None = None  # a damaged one the therapist released: "confirmed" / "erased"


@dataclass
class SyncResult:
    device_id: str
    synced: list[SessionResult] = field(default_factory=list)
    # damaged sessions salvaged and kept on the device (unsynced) until a therapist releases them
    damaged: list[SessionResult] = field(default_factory=list)
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
        # a damaged session's archive holds the bytes as read, which do not match the device's CRC
        want = doc.get("data_crc32", crc) if doc.get("damage") else crc
        if zlib.crc32(log.read_bytes()) != want:
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
        self.patients = PatientMap(archive_dir, self.device_id.hex())
        self._t0 = time.monotonic()
        self._last_report = 0.0
        self.accept_damaged: frozenset[int] = frozenset()
        self.erase_damaged: frozenset[int] = frozenset()

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
        self._check_patients(entries)
        self._check_releases(entries)
        for entry in entries:
            sid, size, crc, flags, start_unix = entry
            if flags & cmd.SESSION_OPEN:
                self.result.still_recording.append(sid)
            elif flags & cmd.SESSION_SYNCED:
                self.result.already_synced.append(sid)
            else:
                done = await self._session(entry)
                (self.result.damaged if done.damage and not done.released
                 else self.result.synced).append(done)
        self.result.elapsed_s = time.monotonic() - self._t0
        return self.result

    def _check_releases(self, entries: list[tuple]) -> None:
        """A session the therapist releases must be one this device still holds unsynced."""
        waiting = {e[0] for e in entries if not e[3] & (cmd.SESSION_OPEN | cmd.SESSION_SYNCED)}
        asked = set(self.accept_damaged) | set(self.erase_damaged)
        if not asked <= waiting:
            damaged = sorted(e[0] for e in entries
                             if e[3] & cmd.SESSION_DAMAGED and e[0] in waiting)
            raise SyncError(
                f"device {self.device_id.hex()} holds no unsynced "
                f"{describe_sessions(sorted(asked - waiting))}; its damaged sessions waiting for "
                f"release: {', '.join(map(str, damaged)) or 'none'}. Nothing was synced.")

    def _check_patients(self, entries: list[tuple]) -> None:
        """Refuse, before any transfer, a sync that would put another patient's recording into
        this patient's sessions."""
        doc = self.patients.load()
        wrong = {}
        for sid, _size, crc, flags, _start in entries:
            if flags & (cmd.SESSION_OPEN | cmd.SESSION_SYNCED) or self.ledger.load(sid, crc):
                continue
            owner = self.patients.patient_of(sid, doc)
            if owner is not None and self.patient_id and owner != self.patient_id:
                wrong.setdefault(owner, []).append(sid)
        if wrong:
            who = "; ".join(f"{describe_sessions(sids)} {'was' if len(sids) == 1 else 'were'} "
                            f"recorded for {p}" for p, sids in sorted(wrong.items()))
            first = sorted(wrong)[0]
            raise PatientMismatch(
                f"device {self.device_id.hex()}: {who}, not {self.patient_id}. Nothing was "
                f"synced. Run `hipsync sync --patient {first}` for them first.")

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
            frames, lost, why = salvage_records(data)
            damage = None
            if lost or zlib.crc32(data) != crc:
                damage = {"records_kept": len(frames), "bytes_lost": sum(b - a for a, b in lost),
                          "lost": [list(r) for r in lost],
                          "why": why or "the data read twice does not match the device's CRC-32"}
            cal = None
            stream = []
            for _, f in frames:
                if is_calibration(f):
                    if cal is None:
                        try:
                            cal = DeviceCalibration.from_frame(f)
                        except FrameError:
                            pass  # a newer major version: the session stays uncalibrated
                else:
                    stream.append(f)
            patient = self.patients.patient_of(sid) or self.patient_id
            store_session, stored = self._store_session(sid, crc, start_unix, stream, patient,
                                                        cal, damage)
            held = {"session": sid, "crc32": crc, "size": size, "start_unix": start_unix,
                    "frames": len(frames), "store_session": store_session,
                    "patient_id": patient,
                    "calibration": cal.as_dict() if cal is not None else None,
                    "calibration_stored": stored, "damage": damage,
                    "data_crc32": zlib.crc32(data)}
            archive = self.ledger.save(sid, crc, data, held)
        else:
            archive = self.ledger.paths(sid, crc)[0]
        damage = held.get("damage")
        released = None
        if damage is None:
            await self.call(_confirm, sid, crc)
        elif sid in self.erase_damaged or sid in self.accept_damaged:
            await self.call(_confirm, sid, crc)  # what was salvaged is all there will be
            released = "confirmed"
            if sid in self.erase_damaged:
                await self.call(_erase, sid)
                released = "erased"
        elif not flags & cmd.SESSION_DAMAGED:
            await self.call(_mark_damaged, sid, crc)
        c = held.get("calibration")
        cal = DeviceCalibration(**c) if c else None
        return SessionResult(sid, size, crc, start_unix, held["frames"], held["store_session"],
                             archive, transferred, cal, bool(held.get("calibration_stored")),
                             held.get("patient_id"), damage, released)

    def _store_session(self, sid: int, crc: int, start_unix: int, stream: list[bytes],
                       patient: str | None, cal: DeviceCalibration | None,
                       damage: dict | None) -> tuple[int | None, bool]:
        """The store session holding device session sid (made now in one transaction, or found
        from an earlier sync that stopped before the archive was written), and whether the
        recording's calibration became its calibration."""
        if self.store is None:
            return None, False
        dev = self.device_id.hex()
        found = self.store.synced_session(dev, sid, crc)
        if found is not None:
            return found, cal is not None and (cal.standing or cal.has_mvc)
        with self.store.transaction():
            store_session = self._ingest(sid, start_unix, stream, patient)
            stored = store_device_calibration(self.store, store_session, cal)
            self.store.mark_synced(store_session, dev, sid, crc, damage)
        return store_session, stored

    def _ingest(self, sid: int, start_unix: int, frames: list[bytes],
                patient_id: str | None = None) -> int | None:
        if self.store is None:
            return None
        from hipwire.frames import check

        from .protocol import StreamAssembler
        from .store import ingest

        patient_id = patient_id or self.patient_id
        if not patient_id:
            raise SyncError("a patient id is needed to put synced sessions into the store")
        started = (datetime.fromtimestamp(start_unix, UTC).isoformat(timespec="seconds")
                   if start_unix else None)
        store_sid = self.store.create_session(patient_id, self.device_id.hex(),
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


async def _erase(link: LinkLike, sid: int) -> None:
    status, _ = await _command(link, cmd.OP_ERASE, sid)
    if status not in (cmd.OK, cmd.ERR_NOT_FOUND):  # not found: an erase the link lost the answer to
        raise CommandFailed(cmd.OP_ERASE, status)


async def _mark_damaged(link: LinkLike, sid: int, crc: int) -> None:
    status, _ = await _command(link, cmd.OP_SESSION_DAMAGED, sid, crc)
    if status not in (cmd.OK, cmd.ERR_UNKNOWN_OP):  # older firmware: the host's mark is kept
        raise CommandFailed(cmd.OP_SESSION_DAMAGED, status)


async def sync_device(link: LinkLike, store=None, progress: Callable[[Progress], None] | None = None,
                      *, secret: bytes,
                      reconnect: Callable[[], Awaitable[LinkLike]] | None = None,
                      patient_id: str | None = None, archive_dir: str | os.PathLike | None = None,
                      window_bytes: int = WINDOW_BYTES, idle_timeout_s: float = 1.0,
                      max_reconnects: int = 50, device_id: bytes | None = None,
                      accept_damaged: Iterable[int] = (),
                      erase_damaged: Iterable[int] = ()) -> SyncResult:
    """Sync every closed, unsynced session of the device on `link` (see the module docstring).
    store: a hipsync.store.Store (sessions are created for patient_id) or None (archive only).
    accept_damaged / erase_damaged: damaged sessions (device ids) the therapist releases: confirmed
    (the device may erase them when it needs room) / confirmed and erased now."""
    s = _Sync(link, store, progress, secret, reconnect, patient_id,
              archive_dir if archive_dir is not None else default_archive_dir(), window_bytes,
              idle_timeout_s, max_reconnects, device_id)
    s.accept_damaged = frozenset(accept_damaged)
    s.erase_damaged = frozenset(erase_damaged)
    return await s.run()
