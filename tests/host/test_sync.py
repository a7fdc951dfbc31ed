"""hipsync.sync against the real firmware (MicroPython) through the fake link: lossy, dropping,
back-pressured; the host must end byte-identical to the device's log, exactly once."""

from __future__ import annotations

import asyncio
import json
import shutil
import zlib
from pathlib import Path

import pytest
from test_sync_fakelink import FakeDevice, representative_frames, temp_folder

from hipsync import sync as hsync
from hipsync.provision import provision_virtual
from hipsync.secrets import SecretStore
from hipsync.store import open_store
from hipwire import commands as cmd
from hipwire import frames as wire
from hipwire import records
from hipwire.frames import FrameError
from hipwire.records import scan_records


@pytest.fixture
def folder():
    path = temp_folder()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 80))


async def _device(folder, secrets, **kw):
    dev = FakeDevice(folder / "device", **kw)
    (folder / "device").mkdir(parents=True)
    ds = provision_virtual(folder / "device", dev.device_id, store=secrets)
    await dev.start()
    return dev, ds


def test_lossy_dropping_link_ends_byte_identical_and_a_second_sync_moves_nothing(folder):
    secrets = SecretStore(folder / "secrets.json")

    async def go():
        dev, ds = await _device(folder, secrets, segment_bytes=16384)
        try:
            recorded = []
            for seconds, seed in ((40, 1), (25, 2), (1, 3)):
                frames = representative_frames(seconds, seed)
                sid = await dev.record(frames)
                recorded.append((sid, frames))
            store = open_store(folder / "store.sqlite3")
            seen = []

            async def reconnect():
                return await dev.connect(loss_probability=0.05, disconnect_every_chunks=25,
                                         seed=len(seen) + 10)

            link = await dev.connect(loss_probability=0.05, disconnect_every_chunks=25)
            result = await hsync.sync_device(link, store, seen.append, secret=ds.secret,
                                             reconnect=reconnect, patient_id="P-001",
                                             archive_dir=folder / "archive", window_bytes=8192,
                                             idle_timeout_s=0.3)
            assert dev.disconnects >= 10 and result.reconnects == dev.disconnects
            assert result.chunks_corrupt == 0
            assert [s.session_id for s in result.synced] == [sid for sid, _ in recorded]
            for res, (_sid, frames) in zip(result.synced, recorded):
                data = res.archive_path.read_bytes()
                got, end, why = scan_records(data)
                assert why is None and [f for _, f in got] == frames  # byte-identical records
                assert zlib.crc32(data) == res.crc32 and len(data) == res.size
                assert res.transferred and res.frames == len(frames)
            assert seen and seen[-1].bytes_done == seen[-1].bytes_total
            assert result.bytes_useful == sum(r.size for r in result.synced)
            n_rows = store.conn.execute("SELECT count(*) FROM batches").fetchone()[0]
            assert n_rows == sum(1 for _, fr in recorded for f in fr if f[0] in (1, 2))
            # the device now lists every session as synced; a second run moves nothing
            link = await dev.connect()
            again = await hsync.sync_device(link, store, secret=ds.secret, patient_id="P-001",
                                            archive_dir=folder / "archive")
            assert again.synced == [] and again.bytes_received == 0 and again.requests == 0
            assert again.already_synced == [sid for sid, _ in recorded]
            assert store.conn.execute("SELECT count(*) FROM batches").fetchone()[0] == n_rows
            assert len(store.session_ids()) == len(recorded)
            store.close()
        finally:
            await dev.stop()

    _run(go())


def test_crash_between_ingest_and_confirm_is_not_ingested_twice(folder):
    secrets = SecretStore(folder / "secrets.json")

    async def go():
        dev, ds = await _device(folder, secrets)
        try:
            sid = await dev.record(representative_frames(10, 5))
            store = open_store(folder / "store.sqlite3")
            real_confirm = hsync._confirm

            async def crash(link, s, c):
                raise KeyboardInterrupt  # the host dies before confirming

            hsync._confirm = crash
            try:
                with pytest.raises(KeyboardInterrupt):
                    await hsync.sync_device(await dev.connect(), store, secret=ds.secret,
                                            patient_id="P-002", archive_dir=folder / "archive")
            finally:
                hsync._confirm = real_confirm
            rows = store.conn.execute("SELECT count(*) FROM batches").fetchone()[0]
            res = await hsync.sync_device(await dev.connect(), store, secret=ds.secret,
                                          patient_id="P-002", archive_dir=folder / "archive")
            assert [s.session_id for s in res.synced] == [sid]
            assert not res.synced[0].transferred and res.bytes_received == 0
            assert store.conn.execute("SELECT count(*) FROM batches").fetchone()[0] == rows
            assert len(store.session_ids()) == 1
            store.close()
        finally:
            await dev.stop()

    _run(go())


def test_stranger_gets_no_data_and_cannot_erase(folder):
    secrets = SecretStore(folder / "secrets.json")

    async def go():
        dev, ds = await _device(folder, secrets)
        try:
            sid = await dev.record(representative_frames(3, 7))
            link = await dev.connect()
            for op, args in ((cmd.OP_SESSION_LIST, (0,)), (cmd.OP_SESSION_READ, (sid, 0, 4096)),
                             (cmd.OP_SESSION_CONFIRM, (sid, 0)), (cmd.OP_ERASE, (sid,)),
                             (cmd.OP_ERASE, (cmd.ERASE_ALL_SYNCED,)), (cmd.OP_REC_START, ())):
                status, values = await link.command(op, *args)
                assert status == cmd.ERR_AUTH_REQUIRED and values == ()
            await asyncio.sleep(0.2)
            assert link.chunks.empty()
            with pytest.raises(hsync.AuthError):
                await hsync.authenticate(link, b"\x42" * 32)  # a stranger's guess
            with pytest.raises(hsync.AuthError, match="wait"):
                await hsync.authenticate(link, ds.secret)  # locked out for a second now
            await asyncio.sleep(1.1)
            link = await dev.connect()
            await hsync.authenticate(link, ds.secret)
            # even authenticated, an unsynced session is not erased
            status, _ = await link.command(cmd.OP_ERASE, sid)
            assert status == cmd.ERR_BAD_ARG
            (entry,) = await hsync.list_sessions(link)
            assert entry[0] == sid and entry[3] == 0
        finally:
            await dev.stop()

    _run(go())


def test_the_host_notices_a_device_that_cannot_prove_itself(folder):
    # A device that accepts anything (a fake posing as ours) but does not hold the secret.
    class Impostor:
        device_id = b"\x01\x02\x03\x04\x05\x06"
        chunks: asyncio.Queue

        async def command(self, op, *args):
            if op == cmd.OP_AUTH_CHALLENGE:
                return cmd.OK, (b"\x00" * 16,)
            return cmd.OK, (b"\x00" * 32,)

    with pytest.raises(hsync.DeviceNotGenuine):
        _run(hsync.authenticate(Impostor(), b"\x07" * 32))


def test_holes_bookkeeping():
    h = hsync._Holes(100)
    assert h.first_missing(30) == (0, 30)
    assert h.add(10, 20) == 10 and h.add(15, 25) == 5 and h.add(15, 25) == 0
    assert h.first_missing(30) == (0, 10)
    h.add(0, 10)
    assert h.first_missing(30) == (25, 55)
    h.add(40, 200)
    assert h.first_missing(30) == (25, 40) and h.held == 85
    h.add(25, 40)
    assert h.first_missing(30) is None and h.have == [[0, 100]]


# ------------------------------------------------------------------ calibration record, patients
GOLDEN = json.loads((Path(__file__).resolve().parents[2] / "shared/hipwire/golden.json").read_text())


def _calibration_frame(flags, standing_unix, mvc, mvc_unix, clock=0):
    buf = bytearray(records.CALIBRATION_SIZE)
    n = records.encode_calibration(buf, clock, flags, standing_unix, mvc, mvc_unix)
    return bytes(buf[:n])


def test_the_calibration_record_matches_its_golden_vector():
    (v,) = [x for x in GOLDEN["vectors"] if x["name"] == "record_of_calibration"]
    a = v["args"]["calibration"]
    frame = _calibration_frame(a["flags"], a["standing_unix"], a["mvc_uv"], a["mvc_unix"],
                               a["clock"])
    assert frame.hex() == v["args"]["frame"] and len(frame) == records.CALIBRATION_SIZE
    out = bytearray(records.record_size(len(frame)))
    assert out[:records.encode_record(out, frame, len(frame))].hex() == v["hex"]
    d = v["decoded"]["calibration"]
    assert records.decode_calibration(frame) == (d["clock"], d["flags"], d["standing_unix"],
                                                 tuple(d["mvc_uv"]), d["mvc_unix"])
    cal = hsync.DeviceCalibration.from_frame(frame)
    assert cal.standing and cal.mvc_uv == {"l_gmed": 412.0, "r_gmed": 388.0, "l_es": None,
                                           "r_es": 164.0}
    assert cal.source == ("device calibration (standing 2025-12-01 14:40 UTC, "
                          "MVCs 2025-12-01 14:45 UTC (l_gmed, r_gmed, r_es))")
    for bad in (frame[:-1], frame[:-2] + b"\x00\x00", b"\x51" + frame[1:]):
        with pytest.raises(FrameError):
            records.decode_calibration(bad)
    assert not records.is_calibration(bytes.fromhex(GOLDEN["vectors"][0]["hex"]))


def test_sync_stores_the_recordings_device_calibration_and_none_where_it_had_none(folder):
    secrets = SecretStore(folder / "secrets.json")
    mvc = (412, 388, 151, 164)

    async def go():
        dev, ds = await _device(folder, secrets)
        try:
            with_cal = await dev.record([_calibration_frame(cmd.CAL_HAS_STANDING, 1764600000,
                                                            mvc, 1764600300)]
                                        + representative_frames(8, 11))
            without = await dev.record([_calibration_frame(0, 0, (0, 0, 0, 0), 0)]
                                       + representative_frames(4, 12))
            store = open_store(folder / "store.sqlite3")
            res = await hsync.sync_device(await dev.connect(), store, secret=ds.secret,
                                          patient_id="HOME-7", archive_dir=folder / "archive")
            assert [s.session_id for s in res.synced] == [with_cal, without]
            a, b = res.synced
            assert a.calibration_stored and not b.calibration_stored
            assert a.calibration.standing and not b.calibration.standing
            cal = store.load_calibration(a.store_session)
            assert list(cal.standing_deg) == [0.0, 0.0, 0.0]
            assert cal.mvc_uv == {"l_gmed": 412.0, "r_gmed": 388.0, "l_es": 151.0, "r_es": 164.0}
            assert cal.source == ("device calibration (standing 2025-12-01 14:40 UTC, "
                                  "MVCs 2025-12-01 14:45 UTC)")
            assert not store.load_calibration(b.store_session).has_standing
            # the record is not a stream frame: no loss, nothing "unsupported"
            stats = store.load_metadata(a.store_session).link_stats
            assert stats["frames_lost"] == 0 and stats["unsupported"] == 0
            assert a.frames == len(representative_frames(8, 11)) + 1  # every record counted
            store.close()
        finally:
            await dev.stop()

    _run(go())


def test_a_sync_for_another_patient_is_refused_before_anything_moves(folder):
    secrets = SecretStore(folder / "secrets.json")

    async def go():
        dev, ds = await _device(folder, secrets)
        try:
            archive = folder / "archive"
            first = await dev.record(representative_frames(3, 21))
            hsync.assign_patient(dev.device_id, first, "P-A", archive_dir=archive)
            button = await dev.record(representative_frames(3, 22))  # the button, later
            store = open_store(folder / "store.sqlite3")
            with pytest.raises(hsync.PatientMismatch,
                               match=r"sessions 1, 2 were recorded for P-A, not P-B.*"
                                     r"hipsync sync --patient P-A"):
                await hsync.sync_device(await dev.connect(), store, secret=ds.secret,
                                        patient_id="P-B", archive_dir=archive)
            assert store.session_ids() == []
            link = await dev.connect()
            await hsync.authenticate(link, ds.secret)
            assert [e[3] for e in await hsync.list_sessions(link)] == [0, 0]  # none confirmed
            res = await hsync.sync_device(await dev.connect(), store, secret=ds.secret,
                                          patient_id="P-A", archive_dir=archive)
            assert [(s.session_id, s.patient_id) for s in res.synced] == [(first, "P-A"),
                                                                          (button, "P-A")]
            assert {store.patient_of(s.store_session) for s in res.synced} == {"P-A"}
            store.close()
        finally:
            await dev.stop()

    _run(go())


def _with_reps(frames: list[bytes], reps: dict[int, tuple]) -> list[bytes]:
    """The frames with a REP frame after frame i for each reps[i] = (start clock, task, side, index,
    flags, low ticks, end ticks, depth), renumbered so seq stays one counter over all of them."""
    out, buf = [], bytearray(wire.MAX_FRAME)
    for i, fr in enumerate(frames):
        out.append(bytearray(fr))
        if i in reps:
            n = wire.encode_rep(buf, 0, *reps[i])
            out.append(bytearray(buf[:n]))
    for seq, fr in enumerate(out):
        fr[2:4] = seq.to_bytes(2, "little")
        wire.seal(fr, len(fr) - 2)
    return [bytes(fr) for fr in out]


def test_rep_frames_in_a_recording_land_in_the_store(folder):
    secrets = SecretStore(folder / "secrets.json")
    step_down = 1 + cmd.EXAM_TASKS.index("step_down")
    base = representative_frames(6, 31)
    clocks = [wire.check(f)[3] for f in base]
    # after the first frame past 3 s and past 5.5 s: repetitions that started 1.8 s before
    after = [next(i for i, c in enumerate(clocks) if c >= t) for t in (3000, 5500)]
    reps = {after[0]: (1200, step_down, wire.LEFT, 0, 0, 700, 1600, 62),
            after[1]: (3700, step_down, wire.LEFT, 1, wire.REP_SHALLOW, 650, 1500, 30)}
    frames = _with_reps(base, reps)

    async def go():
        dev, ds = await _device(folder, secrets)
        try:
            sid = await dev.record(frames)
            store = open_store(folder / "store.sqlite3")
            res = await hsync.sync_device(await dev.connect(), store, secret=ds.secret,
                                          patient_id="EX-1", archive_dir=folder / "archive")
            assert [s.session_id for s in res.synced] == [sid]
            session = store.load_session(res.synced[0].store_session)
            stats = session.metadata.link_stats
            store.close()
            return session, stats
        finally:
            await dev.stop()

    session, stats = _run(go())
    assert stats["frames_lost"] == 0 and stats["unsupported"] == 0 and stats["malformed"] == 0
    got = [(round(r["t_start_s"], 3), round(r["t_low_s"], 3), round(r["t_end_s"], 3), r["task"],
            r["side"], int(r["index"]), int(r["flags"]), r["depth"]) for r in session.reps]
    assert got == [(1.2, 1.9, 2.8, "step_down", "L", 0, 0, 62.0),
                   (3.7, 4.35, 5.2, "step_down", "L", 1, wire.REP_SHALLOW, 30.0)]
    assert len(session.events) == sum(wire.check(f)[0] == wire.EVENT for f in base)
