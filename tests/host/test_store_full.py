"""A store that cannot be written (its disk full) during a live session: nothing received is lost
while memory holds it, everything goes in when space returns, and what never did is counted.
SQLite's max_page_count gives the same error a full disk gives ("database or disk is full")."""

from __future__ import annotations

import sqlite3

import pytest
from test_sync_fakelink import representative_frames

from hipsync.protocol import StreamAssembler
from hipsync.store import open_store
from hipsync.store import writer as writer_mod


def _received(seconds: int, seed: int = 3):
    asm = StreamAssembler()
    out = []
    for i, frame in enumerate(representative_frames(seconds, seed)):
        out += asm.push_bytes(frame, 1000.0 + i * 0.01)
    return out + asm.flush()


def _rows(store, sid: int) -> int:
    return sum(store.conn.execute(f"SELECT count(*) FROM {t} WHERE session=?", (sid,)).fetchone()[0]
               for t in ("batches", "events", "reps", "status"))


def _fill(store) -> None:
    """Leave the store two pages to grow into."""
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count={pages + 2}")


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "s.sqlite3") as s:
        yield s


def test_a_full_store_holds_every_row_and_writes_them_when_space_returns(store):
    sid = store.create_session("P-FULL", "dev")
    received = _received(60)
    errors = []
    w = store.writer(sid, on_error=errors.append, retry_wall_s=0.0)
    for rx in received[:200]:
        w.add(rx)
    w.commit()
    stored_before = _rows(store, sid)
    assert stored_before == 200 and w.error is None
    _fill(store)
    for rx in received[200:600]:
        w.add(rx)  # never raises: the session goes on
    assert isinstance(w.error, sqlite3.OperationalError) and "full" in str(w.error)
    assert len(errors) == 1  # told once, when it started
    assert w.rows_held > 0 and _rows(store, sid) < 600
    store.conn.execute("PRAGMA max_page_count=1073741823")  # space again
    for rx in received[600:]:
        w.add(rx)
    result = w.close()
    assert w.error is None and result.rows_unwritten == 0 and result.rows_not_held == 0
    assert _rows(store, sid) == len(received) == result.added


def test_beyond_the_memory_bound_rows_are_counted_never_silently_dropped(store, monkeypatch):
    monkeypatch.setattr(writer_mod, "HOLD_MAX_ROWS", 100)
    sid = store.create_session("P-FULL", "dev")
    received = _received(30)
    w = store.writer(sid, retry_wall_s=0.0)
    _fill(store)
    for rx in received:
        w.add(rx)
    assert w.error is not None and w.rows_held == 100
    result = w.close()  # still full
    stored = _rows(store, sid)
    assert stored == result.added < 100  # what the two pages took before the first failure
    assert result.rows_not_held == len(received) - stored - 100
    assert result.rows_unwritten == len(received) - stored


def test_a_sync_transaction_is_not_half_held(store):
    sid = store.create_session("P-FULL", "dev")
    received = _received(20)
    _fill(store)
    with pytest.raises(sqlite3.OperationalError), store.transaction():
        writer_mod.ingest(store, sid, received)
    store.conn.execute("PRAGMA max_page_count=1073741823")
    assert _rows(store, sid) == 0


def test_a_store_on_a_full_disk_is_not_called_corrupt(tmp_path):
    import subprocess

    from hipsync.store import CorruptStore, StoreError

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.strip()}")
    try:
        path = disk / "s.sqlite3"
        with open_store(path) as s:
            s.create_session("P-FULL", "dev")
        before = path.read_bytes()
        with open(disk / "ballast", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass
        with pytest.raises(StoreError, match="disk may be full") as e:
            open_store(path, create=False).load_session(1)
        assert not isinstance(e.value, CorruptStore) and "move the file aside" not in str(e.value)
        assert path.read_bytes() == before
        (disk / "ballast").unlink()
        with open_store(path, create=False) as s:
            assert s.session_ids() == [1]
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
