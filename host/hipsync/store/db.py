"""The SQLite session store: patients, devices, sessions, tasks, calibration, electrode placement,
normalisation, decoded streams and link statistics.

Durability: WAL journal with `synchronous=FULL`. FULL syncs the WAL on every commit, so a commit
survives both a killed process and a power cut (NORMAL would survive only the former). The writer
commits about once a second of data, so the fsync cost is one per second."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

import numpy as np
import platformdirs

from hipwire import frames as wire
from hipwire import units

from ..session import (
    EMG_CHANNELS,
    EVENT_DTYPE,
    REP_DTYPE,
    Calibration,
    Metadata,
    SessionData,
    StatusLog,
    Task,
)
from .errors import (
    CorruptStore,
    StoreError,
    StoreVersionError,
    UnknownPatient,
    UnknownSession,
)
from .schema import DDL, SCHEMA_VERSION

ENV_STORE = "HIPSYNC_STORE"
STORE_FILENAME = "sessions.sqlite3"
_SQLITE_MAGIC = b"SQLite format 3\x00"


def default_store_path() -> Path:
    """$HIPSYNC_STORE if set, else sessions.sqlite3 in the user's data folder (platformdirs)."""
    env = os.environ.get(ENV_STORE)
    if env:
        return Path(env)
    return Path(platformdirs.user_data_dir("hipsync", appauthor=False)) / STORE_FILENAME


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def open_store(path: str | os.PathLike | None = None, *, create: bool = True) -> Store:
    """Open (and by default create) the store at `path`, else at default_store_path().
    Raises CorruptStore for a file that is not a hipsync store, StoreError when it is missing
    and create=False."""
    return Store(Path(path) if path is not None else default_store_path(), create=create)


class Store:
    def __init__(self, path: Path, create: bool = True):
        self.path = Path(path)
        self._transaction_depth = 0
        exists = self.path.exists()
        if not exists and not create:
            raise StoreError(f"No session store at {self.path}. Record a session first, or point "
                             f"{ENV_STORE} / --store at an existing store file.")
        if exists:
            if self.path.is_dir():
                raise CorruptStore(self.path, "it is a folder")
            with open(self.path, "rb") as f:
                head = f.read(16)
            if head and head != _SQLITE_MAGIC:
                raise CorruptStore(self.path, "the file is not an SQLite database")
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"Cannot create the store folder {self.path.parent}: {e}. Set "
                                 f"{ENV_STORE} to a writable path.") from None
        try:
            self.conn = sqlite3.connect(str(self.path), timeout=10.0)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreVersionError(self.path, version, SCHEMA_VERSION)
            tables = {r[0] for r in self.conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
            if version == 0 and tables:
                raise CorruptStore(self.path, "an SQLite database, but not a hipsync store")
            if version < SCHEMA_VERSION:
                # new, or an older schema: every statement is CREATE ... IF NOT EXISTS, so this
                # adds only the tables a version-1 store lacks (reps) and keeps what it holds
                self.conn.executescript(DDL)
                self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                self.conn.commit()
            else:
                self.conn.execute("SELECT count(*) FROM sessions").fetchone()
        except sqlite3.OperationalError as e:
            # the file may be fine: its disk is full or read-only, or its folder not writable
            # (a WAL store needs room for its journal even to be read)
            raise StoreError(f"Cannot open the store {self.path} ({e}): its disk may be full or "
                             f"read-only, or its folder not writable. The file was not changed; "
                             f"free space (or make it writable) and try again.") from None
        except sqlite3.DatabaseError as e:
            raise CorruptStore(self.path, str(e)) from None

    # -- transactions
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything written inside is committed once at the end, or, if it raises (or the
        process dies), not at all. Nests: only the outermost commits."""
        self._transaction_depth += 1
        try:
            yield
        except BaseException:
            if self._transaction_depth == 1:
                self.conn.rollback()
            raise
        else:
            if self._transaction_depth == 1:
                self.conn.commit()
        finally:
            self._transaction_depth -= 1

    @property
    def in_transaction(self) -> bool:
        """Inside transaction(): writes are committed at its end, all or nothing."""
        return self._transaction_depth > 0

    def commit(self) -> None:
        """Commit, unless inside transaction() (which commits at its end)."""
        if self._transaction_depth == 0:
            self.conn.commit()

    # -- context
    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- patients, devices, sessions
    def ensure_patient(self, code: str) -> int:
        if not code or not isinstance(code, str):
            raise ValueError("patient id must be a non-empty pseudonymous code")
        row = self.conn.execute("SELECT id FROM patients WHERE code=?", (code,)).fetchone()
        if row:
            return row[0]
        cur = self.conn.execute("INSERT INTO patients(code, created_at) VALUES (?, ?)", (code, _now()))
        self.commit()
        return cur.lastrowid

    def ensure_device(self, device_id: str) -> int:
        row = self.conn.execute("SELECT id FROM devices WHERE device_id=?", (device_id,)).fetchone()
        if row:
            return row[0]
        cur = self.conn.execute("INSERT INTO devices(device_id, first_seen) VALUES (?, ?)",
                                (device_id, _now()))
        self.commit()
        return cur.lastrowid

    def create_session(self, patient_id: str, device_id: str, *, firmware_version: str = "",
                       filters: dict | None = None, electrodes: dict | None = None,
                       placement: dict | None = None, normalisation: str = "MVC",
                       started_at: str | None = None, notes: str = "",
                       emg_rate_hz: float = units.EMG_RATE_HZ,
                       envelope_rate_hz: float = units.ENVELOPE_RATE_HZ,
                       pelvis_rate_hz: float = units.PELVIS_RATE_HZ) -> int:
        """New session for a patient (pseudonymous code) on a device; returns the session id."""
        p = self.ensure_patient(patient_id)
        d = self.ensure_device(device_id)
        meta = Metadata()
        cur = self.conn.execute(
            "INSERT INTO sessions(patient, device, firmware_version, started_at, emg_rate_hz, "
            "envelope_rate_hz, pelvis_rate_hz, filters_json, notes) VALUES (?,?,?,?,?,?,?,?,?)",
            (p, d, firmware_version, started_at or _now(), emg_rate_hz, envelope_rate_hz,
             pelvis_rate_hz, json.dumps(filters or {}), notes))
        sid = cur.lastrowid
        self.conn.execute("INSERT INTO normalisation(session, method) VALUES (?, ?)",
                          (sid, normalisation))
        rows = [("*", electrodes or meta.electrodes)]
        place = dict(meta.placement)
        place.update(placement or {})
        rows += [(ch, place[ch]) for ch in EMG_CHANNELS]
        self.conn.executemany(
            "INSERT INTO electrode_placement(session, channel, description_json) VALUES (?,?,?)",
            [(sid, ch, json.dumps(desc)) for ch, desc in rows])
        self.commit()
        return sid

    def session_ids(self, patient_id: str | None = None) -> list[int]:
        if patient_id is None:
            return [r[0] for r in self.conn.execute("SELECT id FROM sessions ORDER BY id")]
        row = self.conn.execute("SELECT id FROM patients WHERE code=?", (patient_id,)).fetchone()
        if row is None:
            raise UnknownPatient(patient_id)
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM sessions WHERE patient=? ORDER BY started_at, id", (row[0],))]

    def list_sessions(self) -> list[dict]:
        """One dict per session: id, patient_id, device_id, started_at, n_frames."""
        q = ("SELECT s.id, p.code, d.device_id, s.started_at, "
             "(SELECT count(*) FROM batches b WHERE b.session=s.id) FROM sessions s "
             "JOIN patients p ON p.id=s.patient JOIN devices d ON d.id=s.device ORDER BY s.id")
        return [{"session_id": r[0], "patient_id": r[1], "device_id": r[2], "started_at": r[3],
                     "n_batches": r[4]} for r in self.conn.execute(q)]

    def _check_session(self, session_id) -> None:
        row = self.conn.execute("SELECT 1 FROM sessions WHERE id=?", (session_id,)).fetchone()
        if row is None:
            raise UnknownSession(session_id, self.session_ids())

    # -- tasks, calibration
    def add_task(self, session_id: int, name: str, t_start_s: float, t_end_s: float) -> None:
        """Mark a task (e.g. 'standing', 'mvc_l_gmed', 'walk') in device time seconds."""
        self._check_session(session_id)
        if not t_end_s > t_start_s:
            raise ValueError(f"task {name!r}: end {t_end_s} s must be after start {t_start_s} s")
        self.conn.execute("INSERT OR REPLACE INTO tasks(session, name, t_start_s, t_end_s) "
                          "VALUES (?,?,?,?)", (session_id, name, float(t_start_s), float(t_end_s)))
        self.commit()

    def remove_task(self, session_id: int, name: str, t_start_s: float) -> None:
        """Unmark one task (a trial found implausible after the fact is stored again under its
        refused name)."""
        self._check_session(session_id)
        self.conn.execute("DELETE FROM tasks WHERE session=? AND name=? AND t_start_s=?",
                          (session_id, name, float(t_start_s)))
        self.commit()

    def set_calibration(self, session_id: int, *, standing_deg=None,
                        mvc_uv: dict[str, float | None] | None = None,
                        source: str = "entered") -> None:
        """Store the standing baseline (obliquity, tilt, rotation in deg) and/or MVC per muscle
        (envelope uV). Values not given keep what is stored."""
        self._check_session(session_id)
        old = self.load_calibration(session_id)
        st = old.standing_deg if standing_deg is None else np.asarray(standing_deg, float)
        mvc = dict(old.mvc_uv)
        mvc.update(mvc_uv or {})
        st_vals = [None] * 3 if st is None else [float(v) for v in st]
        mvc_vals = [None if mvc.get(c) is None else float(mvc[c]) for c in EMG_CHANNELS]
        self.conn.execute("INSERT OR REPLACE INTO calibrations VALUES (?,?,?,?,?,?,?,?,?,?)",
                          (session_id, *st_vals, *mvc_vals, source, _now()))
        self.commit()

    def load_calibration(self, session_id: int) -> Calibration:
        row = self.conn.execute("SELECT * FROM calibrations WHERE session=?",
                                (session_id,)).fetchone()
        if row is None:
            return Calibration()
        st = None if row[1] is None else np.array(row[1:4], dtype=float)
        mvc = {c: row[4 + i] for i, c in enumerate(EMG_CHANNELS)}
        return Calibration(standing_deg=st, mvc_uv=mvc, source=row[8])

    def save_link_stats(self, session_id: int, stats: dict) -> None:
        self.conn.execute("INSERT OR REPLACE INTO link_stats VALUES (?,?,?)",
                          (session_id, json.dumps(stats), _now()))

    # -- synced device sessions
    def synced_session(self, device_id: str, device_session: int, crc32: int) -> int | None:
        """The store session that holds a device's session (as listed with crc32), or None."""
        row = self.conn.execute(
            "SELECT y.session FROM synced y JOIN devices d ON d.id=y.device "
            "WHERE d.device_id=? AND y.device_session=? AND y.crc32=?",
            (device_id, device_session, crc32)).fetchone()
        return row[0] if row else None

    def mark_synced(self, session_id: int, device_id: str, device_session: int, crc32: int,
                    damage: dict | None = None) -> None:
        """Note that session_id holds the device's session (damage: what a damaged one lost)."""
        self._check_session(session_id)
        self.conn.execute("INSERT OR REPLACE INTO synced VALUES (?,?,?,?,?)",
                          (self.ensure_device(device_id), device_session, crc32, session_id,
                           None if damage is None else json.dumps(damage)))
        self.commit()

    def damage_of(self, session_id: int) -> dict | None:
        """What a session synced from a damaged device log lost (None: intact or not synced)."""
        row = self.conn.execute("SELECT damage_json FROM synced WHERE session=?",
                                (session_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    # -- writing
    def writer(self, session_id: int, link_stats=None, **kw):
        from .writer import SessionWriter
        return SessionWriter(self, session_id, link_stats=link_stats, **kw)

    # -- loading
    def load_metadata(self, session_id: int) -> Metadata:
        self._check_session(session_id)
        r = self.conn.execute(
            "SELECT s.id, p.code, d.device_id, s.firmware_version, s.started_at, s.emg_rate_hz, "
            "s.envelope_rate_hz, s.pelvis_rate_hz, s.filters_json, s.notes FROM sessions s "
            "JOIN patients p ON p.id=s.patient JOIN devices d ON d.id=s.device WHERE s.id=?",
            (session_id,)).fetchone()
        meta = Metadata(session_id=r[0], patient_id=r[1], device_id=r[2], firmware_version=r[3],
                        started_at=r[4], emg_rate_hz=r[5], envelope_rate_hz=r[6],
                        pelvis_rate_hz=r[7], filters=json.loads(r[8]), notes=r[9])
        for ch, desc in self.conn.execute(
                "SELECT channel, description_json FROM electrode_placement WHERE session=?",
                (session_id,)):
            if ch == "*":
                meta.electrodes = json.loads(desc)
            else:
                meta.placement[ch] = json.loads(desc)
        n = self.conn.execute("SELECT method FROM normalisation WHERE session=?",
                              (session_id,)).fetchone()
        if n:
            meta.normalisation = n[0]
        ls = self.conn.execute("SELECT stats_json FROM link_stats WHERE session=?",
                               (session_id,)).fetchone()
        if ls:
            meta.link_stats = json.loads(ls[0])
        meta.flash_damage = self.damage_of(session_id)
        return meta

    def _load_batches(self, session_id: int, ftype: int, n_channels: int, scale: float):
        rows = self.conn.execute(
            "SELECT clock, period_ticks, n_samples, data FROM batches WHERE session=? AND type=? "
            "AND clock_suspect=0 ORDER BY clock", (session_id, ftype)).fetchall()
        if not rows:
            return np.zeros(0), np.zeros((0, n_channels))
        clock = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        period = np.fromiter((r[1] for r in rows), np.int64, len(rows))
        n = np.fromiter((r[2] for r in rows), np.int64, len(rows))
        values = np.frombuffer(b"".join(r[3] for r in rows), dtype="<i4").reshape(-1, n_channels)
        starts = np.cumsum(n) - n
        k = np.arange(int(n.sum())) - np.repeat(starts, n)
        ticks = np.repeat(clock, n) + np.repeat(period, n) * k
        # late or re-sent frames can overlap: keep one sample per tick, in clock order
        ticks_u, first = np.unique(ticks, return_index=True)
        return ticks_u / units.CLOCK_HZ, values[first].astype(float) * scale

    def load_session(self, session_id: int) -> SessionData:
        """Everything stored for a session as SessionData (device time in s, envelope uV,
        pelvis deg). Frames with a suspect clock are left out (their time is unknown)."""
        meta = self.load_metadata(session_id)
        env_t, env = self._load_batches(session_id, wire.ENVELOPE, len(EMG_CHANNELS), 1.0)
        pel_t, pel = self._load_batches(session_id, wire.PELVIS, 3, 1.0 / units.ANGLE_CDEG_PER_DEG)
        ev_rows = self.conn.execute(
            "SELECT clock, kind, side, stride FROM events WHERE session=? AND clock_suspect=0 "
            "ORDER BY clock, seq", (session_id,)).fetchall()
        events = np.array([(c / units.CLOCK_HZ, k, s, st) for c, k, s, st in ev_rows],
                          dtype=EVENT_DTYPE)
        rep_rows = self.conn.execute(
            "SELECT clock, low_clock, end_clock, task, side, rep_index, flags, depth FROM reps "
            "WHERE session=? AND clock_suspect=0 ORDER BY clock, seq", (session_id,)).fetchall()
        hz = units.CLOCK_HZ
        reps = np.array([(c / hz, lo / hz, e / hz, task, side, i, fl, d)
                         for c, lo, e, task, side, i, fl, d in rep_rows], dtype=REP_DTYPE)
        st_rows = self.conn.execute(
            "SELECT clock, fields_json FROM status WHERE session=? AND clock_suspect=0 "
            "ORDER BY clock, seq", (session_id,)).fetchall()
        status = StatusLog(np.array([r[0] / units.CLOCK_HZ for r in st_rows], dtype=float),
                           [json.loads(r[1]) for r in st_rows])
        tasks = [Task(*r) for r in self.conn.execute(
            "SELECT name, t_start_s, t_end_s FROM tasks WHERE session=? ORDER BY t_start_s",
            (session_id,))]
        return SessionData(env_t, env, pel_t, pel, events, status, tasks,
                           self.load_calibration(session_id), meta, reps=reps)

    def patient_of(self, session_id: int) -> str:
        return self.load_metadata(session_id).patient_id

    # -- a SessionData built elsewhere (synthetic sessions, imports) into the store
    def save_session_data(self, session: SessionData, *, samples_per_frame: int = 100) -> int:
        """Write a whole SessionData as if it had been received: batches of samples_per_frame,
        events, repetitions, status, tasks, calibration. Returns the new session id."""
        m = session.metadata
        sid = self.create_session(m.patient_id or "anonymous", m.device_id or "unknown",
                                  firmware_version=m.firmware_version, filters=m.filters,
                                  electrodes=m.electrodes, placement=m.placement,
                                  normalisation=m.normalisation, started_at=m.started_at or None,
                                  notes=m.notes, emg_rate_hz=m.emg_rate_hz,
                                  envelope_rate_hz=m.envelope_rate_hz,
                                  pelvis_rate_hz=m.pelvis_rate_hz)
        from .writer import batch_rows_from_arrays
        seq = 0
        rows = []
        for ftype, t, vals in ((wire.ENVELOPE, session.envelope_t_s, np.rint(session.envelope_uv)),
                               (wire.PELVIS, session.pelvis_t_s,
                                np.rint(session.pelvis_deg * units.ANGLE_CDEG_PER_DEG))):
            for r in batch_rows_from_arrays(ftype, t, vals, samples_per_frame):
                rows.append((sid, seq, *r))
                seq += 1
        self.conn.executemany("INSERT INTO batches VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        ev = [(sid, seq + i, round(e["t_s"] * units.CLOCK_HZ), str(e["kind"]), str(e["side"]),
               int(e["stride"]), float(e["t_s"]), 0) for i, e in enumerate(session.events)]
        self.conn.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?)", ev)
        seq += len(ev)
        hz = units.CLOCK_HZ
        rp = [(sid, seq + i, round(r["t_start_s"] * hz), str(r["task"]), str(r["side"]),
               int(r["index"]), round(r["t_low_s"] * hz), round(r["t_end_s"] * hz),
               int(r["flags"]), round(float(r["depth"])), float(r["t_start_s"]), 0)
              for i, r in enumerate(session.reps)]
        self.conn.executemany("INSERT INTO reps VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rp)
        seq += len(rp)
        st = [(sid, seq + i, round(t * units.CLOCK_HZ), json.dumps(f), float(t), 0)
              for i, (t, f) in enumerate(zip(session.status.t_s, session.status.fields))]
        self.conn.executemany("INSERT INTO status VALUES (?,?,?,?,?,?)", st)
        self.conn.executemany("INSERT INTO tasks(session, name, t_start_s, t_end_s) VALUES (?,?,?,?)",
                              [(sid, t.name, t.t_start_s, t.t_end_s) for t in session.tasks])
        if m.link_stats:
            self.save_link_stats(sid, m.link_stats)
        self.commit()
        cal = session.calibration
        if cal.has_standing or any(v is not None for v in cal.mvc_uv.values()):
            self.set_calibration(sid, standing_deg=cal.standing_deg, mvc_uv=cal.mvc_uv,
                                 source=cal.source)
        return sid
