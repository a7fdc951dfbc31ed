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


def _flip_bit(folder: Path, sid: int, offset: int) -> None:
    """Damage the device's flash: one bit of session sid's first segment."""
    seg = folder / "device" / "log" / f"s{sid:05d}" / "00000.seg"
    data = bytearray(seg.read_bytes())
    data[offset] ^= 0x10
    seg.write_bytes(bytes(data))


def _counts(store, session_id):
    q = "SELECT (SELECT count(*) FROM batches WHERE session=?), (SELECT count(*) FROM events " \
        "WHERE session=?), (SELECT count(*) FROM status WHERE session=?)"
    return store.conn.execute(q, (session_id,) * 3).fetchone()


def test_a_damaged_session_is_salvaged_kept_on_the_device_and_blocks_nothing(folder):
    secrets = SecretStore(folder / "secrets.json")

    async def go():
        dev, ds = await _device(folder, secrets)
        try:
            recorded = []
            for seconds, seed in ((8, 21), (8, 22), (8, 23)):
                frames = representative_frames(seconds, seed)
                recorded.append((await dev.record(frames), frames))
            (a, fa), (b, fb), (c, fc) = recorded
            _flip_bit(folder, b, 3000)  # one record of the middle session
            store = open_store(folder / "store.sqlite3")

            async def sync(**kw):
                return await hsync.sync_device(await dev.connect(), store, secret=ds.secret,
                                               patient_id="P-005", archive_dir=folder / "archive",
                                               **kw)

            res = await sync()
            assert [s.session_id for s in res.synced] == [a, c]
            assert all(s.damage is None and s.frames == len(f)
                       for s, f in zip(res.synced, (fa, fc)))
            (dmg,) = res.damaged
            assert dmg.session_id == b and dmg.released is None and dmg.transferred
            # one flipped bit costs the one record it is in, nothing before or after it
            assert dmg.damage["records_kept"] == dmg.frames == len(fb) - 1
            (lost,) = dmg.damage["lost"]
            assert lost[0] <= 3000 < lost[1] and lost[1] - lost[0] <= wire.MAX_FRAME + 7
            stored_b = dmg.store_session
            assert store.damage_of(stored_b) == dmg.damage
            assert store.damage_of(res.synced[0].store_session) is None
            kept = [f for f in fb if f[0] in (1, 2)]
            assert _counts(store, stored_b)[0] in (len(kept), len(kept) - 1)
            # the device keeps it, unsynced and marked; the others are confirmed
            link = await dev.connect()
            await hsync.authenticate(link, ds.secret)
            flags = {e[0]: e[3] for e in await hsync.list_sessions(link)}
            assert flags == {a: cmd.SESSION_SYNCED, b: cmd.SESSION_DAMAGED,
                             c: cmd.SESSION_SYNCED}
            assert (await link.command(cmd.OP_ERASE, b))[0] == cmd.ERR_BAD_ARG
            # a second sync moves nothing and stores nothing twice
            again = await sync()
            assert again.synced == [] and again.bytes_received == 0
            assert [(d.session_id, d.transferred) for d in again.damaged] == [(b, False)]
            assert len(store.session_ids()) == 3
            # a session the device does not hold unsynced cannot be released
            with pytest.raises(hsync.SyncError, match="damaged sessions waiting for release: "
                                                      f"{b}"):
                await sync(accept_damaged=[a])
            # the therapist accepts the salvage: confirmed, the device may erase it
            res = await sync(accept_damaged=[b])
            assert [(s.session_id, s.released, s.transferred) for s in res.synced] == [
                (b, "confirmed", False)]
            assert res.damaged == [] and len(store.session_ids()) == 3
            link = await dev.connect()
            await hsync.authenticate(link, ds.secret)
            flags = {e[0]: e[3] for e in await hsync.list_sessions(link)}
            assert flags[b] == cmd.SESSION_DAMAGED | cmd.SESSION_SYNCED
            store.close()
        finally:
            await dev.stop()

    _run(go())


def test_a_damaged_session_erased_by_the_therapist_leaves_its_salvage_in_the_store(folder):
    secrets = SecretStore(folder / "secrets.json")

    async def go():
        dev, ds = await _device(folder, secrets)
        try:
            frames = representative_frames(8, 31)
            sid = await dev.record(frames)
            _flip_bit(folder, sid, 5)  # the first record
            _flip_bit(folder, sid, 2000)
            store = open_store(folder / "store.sqlite3")
            res = await hsync.sync_device(await dev.connect(), store, secret=ds.secret,
                                          patient_id="P-006", archive_dir=folder / "archive",
                                          erase_damaged=[sid])
            (s,) = res.synced
            assert s.released == "erased" and len(s.damage["lost"]) == 2
            assert s.frames == len(frames) - 2 and store.damage_of(s.store_session) == s.damage
            link = await dev.connect()
            await hsync.authenticate(link, ds.secret)
            assert await hsync.list_sessions(link) == []
            store.close()
        finally:
            await dev.stop()

    _run(go())


def test_an_interrupted_ingest_leaves_nothing_or_everything_and_never_twice(folder):
    from hipsync.store.writer import SessionWriter

    secrets = SecretStore(folder / "secrets.json")

    async def go():
        dev, ds = await _device(folder, secrets)
        try:
            frames = representative_frames(30, 41)
            sid = await dev.record(frames)
            store = open_store(folder / "store.sqlite3")

            async def sync():
                return await hsync.sync_device(await dev.connect(), store, secret=ds.secret,
                                               patient_id="P-007",
                                               archive_dir=folder / "archive")

            # killed while writing: after some rows went in
            real_commit = SessionWriter.commit
            calls = []

            def dying_commit(self, clock=None):
                calls.append(1)
                if len(calls) == 3:
                    raise KeyboardInterrupt
                real_commit(self, clock)

            SessionWriter.commit = dying_commit
            try:
                with pytest.raises(KeyboardInterrupt):
                    await sync()
            finally:
                SessionWriter.commit = real_commit
            assert len(calls) == 3
            assert store.session_ids() == [] and _counts(store, 1) == (0, 0, 0)
            # killed just after writing, before the archive holds it
            real_save = hsync._Ledger.save

            def dying_save(self, *a):
                raise KeyboardInterrupt

            hsync._Ledger.save = dying_save
            try:
                with pytest.raises(KeyboardInterrupt):
                    await sync()
            finally:
                hsync._Ledger.save = real_save
            (stored,) = store.session_ids()
            full = _counts(store, stored)
            assert full[0] == sum(1 for f in frames if f[0] in (1, 2))
            # the next sync finds what is stored: one session, confirmed
            res = await sync()
            assert [(s.session_id, s.store_session) for s in res.synced] == [(sid, stored)]
            assert store.session_ids() == [stored] and _counts(store, stored) == full
            store.close()
        finally:
            await dev.stop()

    _run(go())


def test_salvage_resumes_at_the_next_record_that_verifies():
    frames = [bytes([wire.STATUS, i]) * (5 + i) for i in range(20)]
    data = bytearray()
    starts = []
    for f in frames:
        out = bytearray(records.record_size(len(f)))
        starts.append(len(data))
        data += out[:records.encode_record(out, f, len(f))]
    whole = bytes(data)
    got, lost, why = hsync.salvage_records(whole)
    assert [f for _, f in got] == frames and lost == [] and why is None
    # a flipped length field, a damaged CRC and a torn tail
    data[starts[3] + 1] ^= 0x40
    data[starts[10] + 8] ^= 0x01
    got, lost, why = hsync.salvage_records(bytes(data[:starts[19] + 4]))
    assert [f for _, f in got] == [f for i, f in enumerate(frames[:19]) if i not in (3, 10)]
    assert lost == [(starts[3], starts[4]), (starts[10], starts[11]), (starts[19], starts[19] + 4)]
    assert why == f"record CRC mismatch at {starts[3]}"  # the first damage: 64 bytes too long
