"""Exam repetitions (REP frames) from the assembler into the store and back as SessionData.reps;
a version-1 store brought up to the reps table; LiveSession.set_task (OP_TASK) and its clock."""

from __future__ import annotations

import asyncio
import sqlite3
from array import array

import numpy as np
import pytest

from hipsync import ble
from hipsync.acquire import LiveSession
from hipsync.analysis import synthetic
from hipsync.protocol import Rep, StreamAssembler
from hipsync.session import REP_DTYPE
from hipsync.store import StoreVersionError, ingest, open_store
from hipsync.store.schema import SCHEMA_VERSION
from hipwire import commands as cmd
from hipwire import frames as wire

STEP_DOWN = 1 + cmd.EXAM_TASKS.index("step_down")
STANCE = 1 + cmd.EXAM_TASKS.index("single_leg_stance")


def _stream(clock0: int = 50_000):
    """20 s of envelope frames (1 s each) with three REP frames among them, each sent after its
    repetition's end (so its clock, the start, is behind the frames around it)."""
    buf = bytearray(wire.MAX_FRAME)
    frames, seq = [], 0
    reps = {6: (STEP_DOWN, wire.LEFT, 0, 0, 700, 1600, 62),
            9: (STEP_DOWN, wire.LEFT, 1, wire.REP_SHALLOW, 650, 1500, 31),
            19: (STANCE, wire.RIGHT, 0, wire.REP_TRUNCATED, 9000, 14000, 210)}
    for sec in range(20):
        c = clock0 + 1000 * sec
        n = wire.encode_batch(buf, 244, wire.ENVELOPE, seq, c, 10, array("i", [sec] * 400), 0,
                              100, 4)
        frames.append((bytes(buf[:n]), sec + 0.05))
        seq += 1
        if sec in reps:
            task, side, index, flags, low, end, depth = reps[sec]
            start = c + 1000 - end - 200  # ended 0.2 s before this second's end
            n = wire.encode_rep(buf, seq, start, task, side, index, flags, low, end, depth)
            frames.append((bytes(buf[:n]), sec + 0.9))
            seq += 1
    return frames


def _received(frames):
    asm = StreamAssembler()
    out = []
    for data, t in frames:
        out += asm.push_bytes(data, t)
    return out + asm.flush(), asm


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "s.sqlite3") as s:
        yield s


def test_reps_are_stored_once_and_load_in_device_seconds(store):
    received, asm = _received(_stream())
    sid = store.create_session("P1", "dev")
    first = ingest(store, sid, received, link_stats=asm.stats)
    assert first.added == 23 and first.skipped == 0
    again = ingest(store, sid, received)  # a re-sync of the same frames
    assert (again.added, again.duplicates) == (0, 23)
    reps = store.load_session(sid).reps
    assert reps.dtype == REP_DTYPE and len(reps) == 3
    # in start order, not in the order they were sent: the 14 s hold began before the second
    # step-down and was sent 10 s after it
    assert list(reps["task"]) == ["step_down", "single_leg_stance", "step_down"]
    assert list(reps["side"]) == ["L", "R", "L"] and list(reps["index"]) == [0, 0, 1]
    assert list(reps["flags"]) == [0, wire.REP_TRUNCATED, wire.REP_SHALLOW]
    assert list(reps["depth"]) == [62.0, 210.0, 31.0]
    start = (50_000 + 7000 - 1600 - 200) / 1000
    assert reps["t_start_s"][0] == pytest.approx(start)
    assert reps["t_low_s"][0] == pytest.approx(start + 0.7)
    assert reps["t_end_s"][0] == pytest.approx(start + 1.6)
    assert reps["t_end_s"][1] - reps["t_start_s"][1] == pytest.approx(14.0)
    row = store.conn.execute("SELECT low_clock, end_clock, host_time_s, clock_suspect FROM reps "
                             "WHERE session=? AND rep_index=0 AND task='step_down'",
                             (sid,)).fetchone()
    assert row == (round(start * 1000) + 700, round(start * 1000) + 1600, 6.9, 0)


def test_a_rep_with_a_suspect_clock_is_stored_but_not_loaded(store):
    received, _ = _received(_stream())
    rep = next(r for r in received if isinstance(r.frame, Rep))
    suspect = type(rep)(rep.frame, rep.seq, rep.clock, rep.host_time_s, clock_suspect=True)
    sid = store.create_session("P1", "dev")
    ingest(store, sid, [suspect])
    assert store.conn.execute("SELECT count(*) FROM reps").fetchone()[0] == 1
    assert len(store.load_session(sid).reps) == 0  # its time is unknown


def test_save_session_data_keeps_the_reps(store):
    s = synthetic.make_session(synthetic.healthy(seed=1, walk_s=10))
    s.reps = np.array([(3.25, 3.9, 4.75, "single_leg_squat", "R", 4, 0, 48.0),
                       (1.0, 2.0, 3.0, "hip_abduction_wb", "L", 0, wire.REP_SHALLOW, -20.0)],
                      dtype=REP_DTYPE)
    back = store.load_session(store.save_session_data(s)).reps
    assert list(back["task"]) == ["hip_abduction_wb", "single_leg_squat"]  # in start order
    assert back[1].tolist() == (3.25, 3.9, 4.75, "single_leg_squat", "R", 4, 0, 48.0)


def test_an_older_store_gains_the_reps_and_synced_tables_and_keeps_its_sessions(tmp_path):
    path = tmp_path / "old.sqlite3"
    with open_store(path) as s:
        sid = s.create_session("P1", "dev")
        s.add_task(sid, "walk", 1.0, 2.0)
    # what a store written before the reps table looks like
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE reps")
    conn.execute("DROP TABLE synced")
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    with open_store(path) as s:
        assert s.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        assert s.synced_session("dev", 1, 0) is None
        s.mark_synced(sid, "dev", 1, 0xDEADBEEF)
        assert s.synced_session("dev", 1, 0xDEADBEEF) == sid and s.damage_of(sid) is None
        received, _ = _received(_stream())
        assert ingest(s, sid, received).added == 23
        loaded = s.load_session(sid)
        assert len(loaded.reps) == 3 and [t.name for t in loaded.tasks] == ["walk"]
    # a store newer than this host is refused, not half-read
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreVersionError):
        open_store(path)


# ------------------------------------------------------------------ LiveSession.set_task
class _FakeLink:
    """Answers OP_TASK with a fixed device clock and records what was sent."""

    def __init__(self, reply_clock: int):
        self.reply_clock = reply_clock
        self.sent = []
        self.stream_queue = asyncio.Queue()

    async def command(self, op, *args, **kw):
        self.sent.append((op, args))
        return cmd.OK, (self.reply_clock,)

    def clock(self) -> float:
        return 0.0


def test_set_task_sends_op_task_and_returns_the_reply_clock_on_the_frames_time_line(store):
    sid = store.create_session("P1", "dev")
    clock0 = 2 ** 32 - 5000  # frames before the 32-bit wrap, the reply after it
    link = _FakeLink(reply_clock=(clock0 + 19_500) % 2 ** 32)
    session = LiveSession(link, store, sid)
    seen = []
    session.listeners.append(seen.append)
    for data, t in _stream(clock0):
        session._ingest(data, t)

    async def go():
        # before the assembler released any frame (its window is still filling): the waiting
        # frames give the reference; after stop() every frame is out and the last one does
        t_start = await session.set_task("step_down", "L", 5)
        result = await session.stop()
        t_right = await session.set_task("single_leg_stance", "right")
        t_stop = await session.set_task(None, None)
        return t_start, t_right, t_stop, result

    t_start, t_right, t_stop, result = asyncio.run(go())
    assert t_start == t_right == t_stop == pytest.approx((clock0 + 19_500) / 1000)
    assert link.sent == [(cmd.OP_TASK, (STEP_DOWN, wire.LEFT, 5)), (cmd.OP_STREAM_STOP, ()),
                         (cmd.OP_TASK, (STANCE, wire.RIGHT, 0)),
                         (cmd.OP_TASK, (cmd.TASK_NONE, wire.LEFT, 0))]
    # listeners see every REP frame as it is stored, with its clock unwrapped past 2^32
    reps = [r for r in seen if isinstance(r.frame, Rep)]
    assert [(r.frame.task, r.frame.index) for r in reps] == [
        ("step_down", 0), ("step_down", 1), ("single_leg_stance", 0)]
    assert reps[2].clock == clock0 + 20_000 - 14_000 - 200 and result.frames_stored == 23
    assert len(store.load_session(sid).reps) == 3
    del link.sent[:]
    for bad in (("walk", "L"), ("step_down", "X"), ("step_down", None)):
        with pytest.raises(ValueError):
            asyncio.run(session.set_task(*bad))
    with pytest.raises(ValueError, match="reps"):
        asyncio.run(session.set_task("step_down", "L", 300))
    assert link.sent == []  # nothing sent for a refused argument


def test_op_task_is_sent_again_on_a_new_link():
    # the device answers a repeat of the active task with its original clock, running nothing
    assert ble.repeatable_on_new_link(cmd.OP_TASK, (STEP_DOWN, wire.LEFT, 5))
