"""hipsync.sync against the real firmware (MicroPython) through the fake link: lossy, dropping,
back-pressured; the host must end byte-identical to the device's log, exactly once."""

from __future__ import annotations

import asyncio
import shutil
import zlib

import pytest
from test_sync_fakelink import FakeDevice, representative_frames, temp_folder

from hipsync import sync as hsync
from hipsync.provision import provision_virtual
from hipsync.secrets import SecretStore
from hipsync.store import open_store
from hipwire import commands as cmd
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
