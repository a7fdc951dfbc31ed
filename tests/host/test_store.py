"""Session store: round trip of received frames, idempotent re-sync, durability when the writing
process is killed, and the errors a user sees."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from hipsync.analysis import synthetic
from hipsync.protocol import Envelope, Event, Header, Pelvis, Received, Status
from hipsync.store import (
    CorruptStore,
    StoreError,
    UnknownPatient,
    UnknownSession,
    default_store_path,
    ingest,
    open_store,
)
from hipwire import frames as wire
from hipwire import quality


def _rx(frame, seq, clock, late=False, suspect=False):
    return Received(frame, seq, clock, host_time_s=clock / 1000.0, late=late,
                    clock_suspect=suspect)


def _frames(n_env=30, start_seq=0):
    """Envelope (10 samples, 100 ms) + pelvis frames, an event and a status every 10 frames."""
    out, seq = [], start_seq
    for k in range(n_env):
        clock = k * 100
        env = tuple(tuple(int(10 * c + k + j) for j in range(10)) for c in range(4))
        out.append(_rx(Envelope(Header(wire.ENVELOPE, wire.VERSION, seq & 0xFFFF, clock), 10, env),
                       seq, clock))
        seq += 1
        pel = tuple(tuple(int(100 * a + j) for j in range(10)) for a in range(3))
        out.append(_rx(Pelvis(Header(wire.PELVIS, wire.VERSION, seq & 0xFFFF, clock), 10, pel),
                       seq, clock))
        seq += 1
        if k % 10 == 0:
            out.append(_rx(Event(Header(wire.EVENT, wire.VERSION, seq, clock + 5), "IC", "L", k),
                           seq, clock + 5))
            seq += 1
            out.append(_rx(Status(Header(wire.STATUS, wire.VERSION, seq, clock),
                                  {"battery_pct": 90, "quality": [quality.LEAD_OFF, 0, 0, 0]}),
                           seq, clock))
            seq += 1
    return out


def test_round_trip_of_received_frames(tmp_path):
    store = open_store(tmp_path / "s.sqlite3")
    sid = store.create_session("P-001", "DEV-A", firmware_version="1.2.3",
                               filters={"highpass_hz": 20})
    frames = _frames()
    with store.writer(sid) as w:
        for rx in frames:
            w.add(rx)
    s = store.load_session(sid)
    assert s.envelope_uv.shape == (300, 4)
    np.testing.assert_allclose(s.envelope_t_s, np.arange(300) * 0.01)
    # first frame: channel c sample j = 10c + j
    np.testing.assert_array_equal(s.envelope_uv[:10, 1], 10 + np.arange(10))
    np.testing.assert_allclose(s.pelvis_deg[:3, 2], [2.0, 2.01, 2.02])
    assert list(s.events["kind"]) == ["IC"] * 3 and s.events["t_s"][1] == pytest.approx(1.005)
    _t_q, q = s.status.quality()
    assert q.shape == (3, 4) and q[0, 0] == quality.LEAD_OFF
    assert s.metadata.patient_id == "P-001" and s.metadata.firmware_version == "1.2.3"
    assert s.metadata.filters == {"highpass_hz": 20}
    assert s.metadata.placement["l_gmed"].startswith("left GMed")


def test_resync_is_idempotent_and_late_frames_fill_gaps(tmp_path):
    store = open_store(tmp_path / "s.sqlite3")
    sid = store.create_session("P-001", "DEV-A")
    frames = _frames()
    first = [rx for i, rx in enumerate(frames) if i % 7 != 3]  # a live stream that lost frames
    r1 = ingest(store, sid, first)
    assert r1.added == len(first) and r1.duplicates == 0
    r2 = ingest(store, sid, frames)  # re-sync of everything from the device log
    assert r2.added == len(frames) - len(first) and r2.duplicates == len(first)
    assert store.conn.execute("SELECT count(*) FROM batches WHERE session=?", (sid,)).fetchone()[0] \
        == sum(isinstance(rx.frame, (Envelope, Pelvis)) for rx in frames)
    assert len(store.load_session(sid).envelope_t_s) == 300


def test_suspect_clock_frames_are_kept_but_not_placed_in_time(tmp_path):
    store = open_store(tmp_path / "s.sqlite3")
    sid = store.create_session("P-001", "DEV-A")
    frames = _frames(3)
    bad = frames[0]
    frames[0] = _rx(bad.frame, bad.seq, 10_000_000, suspect=True)
    ingest(store, sid, frames)
    s = store.load_session(sid)
    assert len(s.envelope_t_s) == 20 and s.envelope_t_s.max() < 1.0
    assert store.conn.execute("SELECT clock_suspect FROM batches WHERE seq=0").fetchone()[0] == 1


def test_link_stats_saved_with_each_commit(tmp_path):
    class Stats:
        def as_dict(self):
            return {"frames_received": 7, "frames_lost": 1, "loss_fraction": 0.125}

    store = open_store(tmp_path / "s.sqlite3")
    sid = store.create_session("P-001", "DEV-A")
    ingest(store, sid, _frames(2), link_stats=Stats())
    assert store.load_metadata(sid).link_stats["loss_fraction"] == 0.125


_CHILD = textwrap.dedent("""
    import sys, time
    from hipsync.store import open_store
    from hipsync.protocol import Envelope, Header, Received
    from hipwire import frames as wire
    store = open_store(sys.argv[1])
    sid = store.create_session("P-KILL", "DEV-K")
    print("SESSION", sid, flush=True)
    w = store.writer(sid, on_commit=lambda seq: print("COMMIT", seq, flush=True))
    seq = 0
    while True:
        clock = seq * 100
        ch = tuple(tuple(seq for _ in range(10)) for _ in range(4))
        w.add(Received(Envelope(Header(wire.ENVELOPE, wire.VERSION, seq & 0xFFFF, clock), 10, ch),
                       seq, clock, time.monotonic()))
        seq += 1
        time.sleep(0.002)
""")


def test_killed_writer_loses_nothing_committed(tmp_path):
    path = tmp_path / "kill.sqlite3"
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE,
                            text=True)
    last_commit, commits = None, 0
    deadline = time.monotonic() + 60
    try:
        for line in proc.stdout:
            if line.startswith("COMMIT"):
                last_commit = int(line.split()[1])
                commits += 1
                if commits >= 5:
                    break
            assert time.monotonic() < deadline, "child did not commit in time"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert last_commit is not None
    store = open_store(path, create=False)
    seqs = [r[0] for r in store.conn.execute("SELECT seq FROM batches ORDER BY seq")]
    # everything up to the last reported commit is there, with no hole (it may hold a little
    # more: commits between our last read and the kill)
    assert seqs[-1] >= last_commit
    assert seqs == list(range(len(seqs)))
    s = store.load_session(store.session_ids("P-KILL")[0])
    assert len(s.envelope_t_s) == 10 * len(seqs)
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_file_that_is_not_sqlite_is_a_corrupt_store(tmp_path):
    bad = tmp_path / "notes.sqlite3"
    bad.write_text("these are my notes, not a database\n" * 20)
    with pytest.raises(CorruptStore, match="not an SQLite database"):
        open_store(bad)


def test_foreign_sqlite_database_is_refused(tmp_path):
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t(x)")
    con.commit()
    con.close()
    with pytest.raises(CorruptStore, match="not a hipsync store"):
        open_store(other)


def test_truncated_database_is_a_corrupt_store(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = open_store(path)
    store.save_session_data(synthetic.make_session(synthetic.healthy(walk_s=20)))
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    data = path.read_bytes()
    path.write_bytes(data[:100] + b"\x00" * 50 + data[150:4096])
    with pytest.raises(CorruptStore) as e:
        open_store(path).load_session(1)
    assert "HIPSYNC_STORE" in str(e.value)


def test_missing_store_without_create(tmp_path):
    with pytest.raises(StoreError, match="No session store"):
        open_store(tmp_path / "nope.sqlite3", create=False)


def test_unknown_session_and_patient(tmp_path):
    store = open_store(tmp_path / "s.sqlite3")
    sid = store.create_session("P-001", "DEV-A")
    with pytest.raises(UnknownSession, match=f"Known sessions: {sid}"):
        store.load_session(sid + 41)
    with pytest.raises(UnknownSession):
        store.writer(999)
    with pytest.raises(UnknownPatient):
        store.session_ids("P-404")


def test_default_path_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("HIPSYNC_STORE", str(tmp_path / "env.sqlite3"))
    assert default_store_path() == tmp_path / "env.sqlite3"
    store = open_store()
    assert store.path == tmp_path / "env.sqlite3" and store.path.exists()
    monkeypatch.delenv("HIPSYNC_STORE")
    assert default_store_path().name == "sessions.sqlite3"


def test_save_session_data_round_trip(tmp_path):
    s = synthetic.make_session(synthetic.healthy(walk_s=30, loss_fraction=0.1))
    store = open_store(tmp_path / "s.sqlite3")
    sid = store.save_session_data(s)
    back = store.load_session(sid)
    np.testing.assert_allclose(back.envelope_t_s, s.envelope_t_s, atol=1e-9)
    np.testing.assert_allclose(back.envelope_uv, np.rint(s.envelope_uv))
    np.testing.assert_allclose(back.pelvis_deg, np.rint(s.pelvis_deg * 100) / 100)
    np.testing.assert_allclose(back.events["t_s"], s.events["t_s"], atol=1e-3)
    assert [t.name for t in back.tasks] == [t.name for t in s.tasks]
    store.set_calibration(sid, standing_deg=[1, 2, 3])
    store.set_calibration(sid, mvc_uv={"l_gmed": 200.0})
    cal = store.load_calibration(sid)
    assert list(cal.standing_deg) == [1, 2, 3] and cal.mvc_uv["l_gmed"] == 200.0
    assert cal.mvc_uv["r_es"] is None
