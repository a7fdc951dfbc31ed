"""End to end through bleak: hipsync.ble -> BleakScanner/BleakClient(backend=virtual) -> the air ->
the fake radio -> the real BleServer in MicroPython (tests/firmware/ble_test_app.py)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from hipsync import ble
from hipsync.protocol import StreamAssembler
from hipsync.sim.air import Air, LinkModel
from hipsync.sim.bleak_backend import VIRTUAL_BACKEND
from hipsync.sim.virtual_device import VirtualDevice
from hipwire import commands, frames, gatt
from micropython_port import MP_TESTS

pytestmark = pytest.mark.slow

TEST_TIMEOUT_S = 30.0


@pytest.fixture
def virtual(monkeypatch):
    """make(link) -> (air, device): an air and the BLE test app advertising on it."""
    started: list = []

    def make(link: LinkModel | None = None, device_id: str = "02a1b2c3d4e5"):
        air = Air(link or LinkModel()).start()
        started.append(air)
        dev = VirtualDevice(air, app="ble_test_app", device_id=device_id, extra_path=(MP_TESTS,))
        started.append(dev.start())
        dev.wait_advertising(10)
        monkeypatch.setenv("HIPSYNC_AIR", air.address)
        return air, dev

    yield make
    for thing in reversed(started):
        thing.stop()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TEST_TIMEOUT_S))


async def _connect(**kwargs) -> ble.DeviceLink:
    found = await ble.scan(5.0, backend=VIRTUAL_BACKEND, stop_after=1)
    assert found, "the virtual device was not found"
    link = ble.DeviceLink(found[0], backend=VIRTUAL_BACKEND, **kwargs)
    await link.connect()
    return link


async def _wait_frames(link: ble.DeviceLink, count: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while link.stream_queue.qsize() < count:
        assert time.monotonic() < deadline, f"only {link.stream_queue.qsize()} of {count} frames"
        await asyncio.sleep(0.01)


def _drain(link: ble.DeviceLink) -> list[tuple[bytes, float]]:
    out = []
    while not link.stream_queue.empty():
        out.append(link.stream_queue.get_nowait())
    return out


def _counters(dev: VirtualDevice, after: int) -> dict:
    return json.loads(dev.wait_for_line("BLE-COUNTERS", 5.0, after=after).split(" ", 1)[1])


def _assemble(items) -> StreamAssembler:
    asm = StreamAssembler()
    for data, t in items:
        asm.push_bytes(data, t)
    asm.flush()
    return asm


def test_scan_connect_mtu_and_commands(virtual):
    air, dev = virtual()

    async def go():
        found = await ble.scan(5.0, backend=VIRTUAL_BACKEND, stop_after=1)
        assert [d.name for d in found] == [dev.name] == ["hipsync-d4e5"]
        assert found[0].address == dev.address
        link = ble.DeviceLink(found[0], backend=VIRTUAL_BACKEND)
        await link.connect()
        try:
            assert link.mtu == gatt.PREFERRED_MTU  # min(central 517, device 247)
            status, info = await link.command(commands.OP_INFO)
            assert status == commands.OK and info[7] == bytes.fromhex(dev.device_id)
            assert await link.read_battery_pct() == 100
            with pytest.raises(ble.CommandError, match="bad_arg") as err:
                await link.command(commands.OP_STREAM_START, commands.MODE_RAW)
            assert err.value.status == commands.ERR_BAD_ARG
            # a token per command: many in a row, each answered by its own response
            for _ in range(5):
                assert (await link.command(commands.OP_TIME_SYNC, 123))[0] == commands.OK
            assert link.stale_responses == 0 and link.malformed_responses == 0
        finally:
            await link.disconnect()
        assert not link.connected

    run(go())
    assert air.stats.connections == 1


def test_clean_link_delivers_every_frame_in_order(virtual):
    air, dev = virtual()
    mark = len(dev.output)

    async def go():
        link = await _connect()
        await link.command(commands.OP_STREAM_START, commands.MODE_PROCESSED)
        await _wait_frames(link, 200)
        await link.command(commands.OP_STREAM_STOP)
        items = _drain(link)
        await link.disconnect()
        return items

    items = run(go())
    seqs = [frames.check(data)[2] for data, _ in items]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # in order, none missing
    asm = _assemble(items)
    assert asm.stats.frames_received == len(items) >= 200
    assert asm.stats.frames_lost == 0 and asm.stats.malformed == 0
    assert air.stats.dropped() == 0
    counters = _counters(dev, mark)
    # the link is the bottleneck: the stack said ENOMEM, the server backed off, nothing was lost
    assert counters["notify_failures"] > 0 and counters["frames_dropped"] == 0
    assert counters["sent"] == len(items)


def test_injected_loss_matches_the_air_count_exactly(virtual):
    air, dev = virtual(LinkModel(seed=7, speed=3.0))

    async def go():
        link = await _connect()
        await link.command(commands.OP_STREAM_START, commands.MODE_PROCESSED)
        await _wait_frames(link, 10)  # a clean start: the first frame must arrive
        air.link.loss_probability = 0.05
        await _wait_frames(link, 600)
        air.link.loss_probability = 0.0  # a clean end: the last frames must arrive
        await _wait_frames(link, 640)
        await link.command(commands.OP_STREAM_STOP)
        items = _drain(link)
        await link.disconnect()
        return items

    items = run(go())
    asm = _assemble(items)
    lost_on_air = air.stats.dropped(gatt.STREAM_UUID)
    assert lost_on_air == air.stats.lost_random > 10
    assert asm.stats.frames_lost == lost_on_air
    assert asm.stats.duplicates == 0 and asm.stats.malformed == 0


def test_forced_disconnect_reconnects_and_reports_the_gap(virtual):
    air, dev = virtual(LinkModel(disconnect_every_n_notifications=120))
    mark = len(dev.output)

    async def go():
        link = await _connect(auto_reconnect=True, reconnect_delay_s=0.05)
        await link.command(commands.OP_STREAM_START, commands.MODE_PROCESSED)
        await asyncio.wait_for(link.disconnected.wait(), 10)
        air.link.disconnect_every_n_notifications = None
        with pytest.raises(ble.NotConnected):
            await link.command(commands.OP_INFO)
        await asyncio.wait_for(link.reconnected.wait(), 10)
        before = link.stream_queue.qsize()
        await _wait_frames(link, before + 100)  # carries on after the reconnect
        await link.command(commands.OP_STREAM_STOP)
        items = _drain(link)
        await link.disconnect()
        return link, items

    link, items = run(go())
    assert link.disconnect_count == 1
    assert [e.kind for e in link.events] == ["connected", "disconnected", "connected"]
    assert air.stats.forced_disconnects == 1
    counters = _counters(dev, mark)
    assert counters["connections"] == 2 and counters["disconnects"] == 1
    asm = _assemble(items)
    gap = air.stats.dropped(gatt.STREAM_UUID) + counters["frames_dropped"]
    assert gap > 0
    assert asm.stats.frames_lost == gap  # every lost frame is accounted for on one side


def test_enomem_backpressure_never_crashes_the_device(virtual):
    # 2 buffers, one notification per 30 ms: the stack is out of buffers almost all the time
    air, dev = virtual(LinkModel(notify_buffers=2, max_notifications_per_interval=1))
    mark = len(dev.output)

    async def go():
        link = await _connect()
        await link.command(commands.OP_STREAM_START, commands.MODE_PROCESSED)
        await _wait_frames(link, 25)
        await link.command(commands.OP_STREAM_STOP)
        assert (await link.command(commands.OP_INFO))[0] == commands.OK  # still answering
        items = _drain(link)
        await link.disconnect()
        return items

    items = run(go())
    counters = _counters(dev, mark)
    assert dev.alive
    assert counters["notify_failures"] >= 25
    assert counters["radio"]["enomem"] == counters["notify_failures"]  # one try per back-off
    assert counters["frames_dropped"] == 0 and counters["notify_errors"] == 0
    assert _assemble(items).stats.frames_lost == 0


def test_sync_chunks_arrive_on_their_own_queue(virtual):
    air, dev = virtual()

    async def go():
        link = await _connect()
        _, echo = await link.command(commands.OP_SESSION_READ, 3, 100, 1500)
        assert echo == (3, 100, 1500)
        data = bytearray()
        while True:
            chunk, _ = await asyncio.wait_for(link.chunks.get(), 5)
            session, offset, payload = commands.decode_chunk(chunk)
            assert session == 3 and offset == 100 + len(data)
            if not payload:
                break
            data += payload
        await link.disconnect()
        return bytes(data)

    data = run(go())
    assert data == bytes((100 + i) & 0xFF for i in range(1500))
