"""End to end through the virtual device: the real firmware in MicroPython, simulated chips and
radio, reached through bleak. What the host stores must match the simulated patient's truth."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import numpy as np
import pytest

from hipsync import ble
from hipsync.acquire import LiveSession, Step
from hipsync.ble import CommandError
from hipsync.commands._device import VIRTUAL_DEVICE_ID, Wearer
from hipsync.commands.demo import run_demo
from hipsync.provision import provision_virtual
from hipsync.secrets import SecretStore
from hipsync.sim import PatientConfig, scenario
from hipsync.sim import tasks as T
from hipsync.sim.air import Air, LinkModel
from hipsync.sim.bleak_backend import VIRTUAL_BACKEND
from hipsync.sim.virtual_device import VirtualDevice
from hipsync.store import open_store
from hipsync.sync import authenticate, sync_device
from hipwire import commands as cmd
from hipwire import gatt
from hipwire.records import scan_records

pytestmark = pytest.mark.slow
DEVICE_ID = bytes.fromhex(VIRTUAL_DEVICE_ID)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    wearer = Wearer(PatientConfig(weak_side="left", es_compensation="stance", seed=3), None)
    result = asyncio.run(run_demo(out, wearer, walk_s=40.0, speed=6.0, keep_truth=True))
    return out, result


def test_demo_writes_the_report_and_loses_nothing_on_a_clean_link(demo):
    out, result = demo
    report = json.loads((out / "report.json").read_text())
    assert (out / "report.html").stat().st_size > 10_000
    assert result["link"]["frames_lost"] == 0 and result["link"]["malformed"] == 0
    left, right = report["sides"]["left"], report["sides"]["right"]
    # weak left GMed with stance-side erector compensation: flagged on left stance only
    assert "ES_DOMINANT_IPSI" in left["flags"]
    assert "ES_DOMINANT_IPSI" not in right["flags"]
    assert left["strides"] >= 20 and right["strides"] >= 20


def _walk_truth_and_session(out: Path, result: dict):
    """The patient's walk as they really did it, on device time, and the stored session."""
    session = open_store(out / "demo.sqlite3", create=False).load_session(1)
    walks = [(t0, rec) for t0, rec in result["patient"].truth
             if any(seg.name == "walking" for seg in rec.segments) and rec.duration_s >= 40]
    assert walks, [rec.segments for _, rec in result["patient"].truth]
    t0, rec = walks[-1]
    return t0, rec, session


def test_the_patient_did_what_each_prompt_asked(demo):
    _, result = demo
    heard = [h.instruction["task"] for h in result["patient"].heard]
    want = ["standing", "mvc_l_gmed", "mvc_r_gmed", "mvc_l_es", "mvc_r_es", "walk"]
    assert [h for h in heard if h != "rest"] == want
    assert [s.name for s in result["steps"]] == want and all(s.accepted for s in result["steps"])


def test_decoded_streams_match_the_simulated_truth(demo):
    out, result = demo
    t0, rec, s = _walk_truth_and_session(out, result)
    # what the patient walked: the piece's walking segment, until the host said stop
    seg = rec.segment("walking")
    told = next(o for o in result["steps"] if o.name == "walk")
    walk = type(seg)(seg.name, seg.t_start_s + t0, min(seg.t_end_s + t0, told.t_end_s), seg.kind)
    # pelvis: device angles (relative to its standing calibration) against the true relative angles
    m = (s.pelvis_t_s > walk.t_start_s + 2) & (s.pelvis_t_s < walk.t_end_s - 1)
    truth = rec.pelvis_relative_deg()
    for k, name in enumerate(("obliquity", "tilt", "rotation")):
        want = np.interp(s.pelvis_t_s[m], rec.imu_t_s + t0, truth[:, k])
        err = s.pelvis_deg[m, k] - want
        rmse = float(np.sqrt(np.mean((err - np.median(err)) ** 2)))
        assert rmse < 1.0, (name, rmse)  # tolerance: 1 deg RMS after the static offset
        assert abs(np.median(err)) < 1.5, (name, np.median(err))
    # envelopes: the device's rectified envelope follows the true amplitude (delay ~37 ms)
    me = (s.envelope_t_s > walk.t_start_s + 2) & (s.envelope_t_s < walk.t_end_s - 1)
    t = s.envelope_t_s[me]
    for ch in range(4):
        want = np.interp(t - 0.037, rec.emg_t_s + t0, rec.envelope_uv[:, ch])
        r = np.corrcoef(s.envelope_uv[me, ch], want)[0, 1]
        assert r > 0.9, (ch, r)
    # gait events: every true initial contact found within 60 ms, on the right side
    true_ic = [(e["t_s"] + t0, e["side"]) for e in rec.events
               if e["kind"] == "IC" and walk.t_start_s + 2 < e["t_s"] + t0 < walk.t_end_s - 2]
    dev_ic = [(float(e[0]), e[2]) for e in s.events if e[1] == "IC"]
    hits = 0
    for t_true, side in true_ic:
        close = [(abs(t - t_true), sd) for t, sd in dev_ic if abs(t - t_true) <= 0.06]
        if close and min(close)[1] == side:
            hits += 1
    # 90 %: the live patient's walks start and stop where the prompts put them, and the detector
    # places some weak-side ICs 60-80 ms early (the stance-window issue); 93-100 % measured
    assert hits >= 0.90 * len(true_ic), (hits, len(true_ic))


async def _connect(air: Air, auto_reconnect: bool = True) -> ble.DeviceLink:
    os.environ["HIPSYNC_AIR"] = air.address
    found = await ble.scan(timeout_s=5, backend=VIRTUAL_BACKEND, stop_after=1)
    assert found, "virtual device not found"
    link = ble.DeviceLink(found[0], backend=VIRTUAL_BACKEND, auto_reconnect=auto_reconnect)
    await link.connect()
    return link


def _device(tmp_path: Path, air: Air, walk_s: float = 30.0, provision: bool = True):
    scen = scenario.build(PatientConfig(seed=5), tmp_path / "patient",
                          tasks=[T.rest(2.0), T.walking(walk_s)])
    fs = tmp_path / "fs"
    secrets = SecretStore(tmp_path / "secrets.json")
    secret = provision_virtual(fs, DEVICE_ID, store=secrets).secret if provision else None
    dev = VirtualDevice(air, feed_path=scen.feed_path, fs_dir=fs, device_id=VIRTUAL_DEVICE_ID)
    return dev, secret, fs


def test_a_stranger_gets_an_error_for_every_protected_command_and_no_data(tmp_path):
    async def go(air):
        link = await _connect(air)
        try:
            _, info = await link.command(cmd.OP_INFO)
            assert info[8] == 1  # authentication required
            _, (battery_pct, battery_mv) = await link.command(cmd.OP_BATTERY)  # open to all
            assert 50 <= battery_pct <= 100 and 3700 <= battery_mv <= 4200  # a charged battery
            for op, args in ((cmd.OP_STREAM_START, (0,)), (cmd.OP_REC_START, ()),
                             (cmd.OP_SESSION_LIST, (0,)), (cmd.OP_SESSION_READ, (1, 0, 100)),
                             (cmd.OP_ERASE, (cmd.ERASE_ALL_SYNCED,)), (cmd.OP_SET_CONFIG, (60,)),
                             (cmd.OP_CALIBRATE, (cmd.CAL_STANDING_BEGIN,))):
                with pytest.raises(CommandError) as e:
                    await link.command(op, *args)
                assert e.value.status == cmd.ERR_AUTH_REQUIRED
            await asyncio.sleep(0.5)
            assert link.stream_queue.empty() and link.chunks.empty()
            with pytest.raises(Exception, match="refused our secret"):
                await authenticate(link, b"\x00" * 32, DEVICE_ID)
        finally:
            await link.disconnect()

    with Air(LinkModel(speed=2.0)) as air:
        dev, _, _ = _device(tmp_path, air)
        with dev:
            dev.wait_advertising(timeout_s=20)
            asyncio.run(go(air))


def test_record_at_home_then_sync_over_a_lossy_dropping_link(tmp_path):
    """Record with no host streaming; then sync with 5 % loss on the sync characteristic and the
    link dropping every 40 chunks: the store ends with the device's log byte for byte, and a
    second sync transfers nothing."""
    link_model = LinkModel(speed=4.0)

    async def record(air, secret):
        link = await _connect(air)
        await authenticate(link, secret, DEVICE_ID)
        _, (sid,) = await link.command(cmd.OP_REC_START)
        await asyncio.sleep(20 / link_model.speed)  # ~20 s of device time at home
        await link.command(cmd.OP_REC_STOP)
        await link.disconnect()
        return sid

    async def sync(air, secret, store, archive):
        link = await _connect(air, auto_reconnect=False)  # sync_device reconnects itself

        async def again():
            await link.reconnect()
            return link

        try:
            return await sync_device(link, store, secret=secret, device_id=DEVICE_ID,
                                     reconnect=again, patient_id="HOME-1", archive_dir=archive)
        finally:
            await link.disconnect()

    with Air(link_model) as air:
        dev, secret, fs = _device(tmp_path, air, walk_s=40.0)
        store = open_store(tmp_path / "store.sqlite3")
        with dev:
            dev.wait_advertising(timeout_s=20)
            sid = asyncio.run(record(air, secret))
            link_model.loss_probability = 0.05
            link_model.lossy_uuids = frozenset({gatt.SYNC_UUID})
            link_model.disconnect_every_n_notifications = 40
            first = asyncio.run(sync(air, secret, store, tmp_path / "archive"))
            link_model.disconnect_every_n_notifications = None
            second = asyncio.run(sync(air, secret, store, tmp_path / "archive"))
    assert [s.session_id for s in first.synced] == [sid]
    assert first.reconnects >= 1 and air.stats.dropped(gatt.SYNC_UUID) > 0
    segments = sorted((fs / "log" / f"s{sid:05d}").glob("*.seg"))
    device_bytes = b"".join(p.read_bytes() for p in segments)
    assert first.synced[0].archive_path.read_bytes() == device_bytes
    frames, end, reason = scan_records(device_bytes)
    assert reason is None and len(frames) > 100 and first.synced[0].frames == len(frames)
    assert second.synced == [] and sid in second.already_synced
    session = store.load_session(first.synced[0].store_session)
    assert session.envelope_t_s[-1] - session.envelope_t_s[0] > 15


def test_stream_survives_a_forced_disconnect_and_reports_the_gap(tmp_path):
    async def go(air, secret, store):
        link = await _connect(air)

        async def auth(lk):
            await authenticate(lk, secret, DEVICE_ID)

        sid = store.create_session("P-GAP", link.address)
        session = LiveSession(link, store, sid, authenticate=auth)
        await session.start()
        await session.wait_device_time(session.device_time_s + 4)
        before_s = session.device_time_s
        link.auto_reconnect = False  # stay away ~4 s of device time, as a walk out of range would
        air.force_disconnect()
        await asyncio.wait_for(link.disconnected.wait(), 10)
        await asyncio.sleep(2.0)
        await link.reconnect()
        # the gap (>= 4 s) and >= 4 s after it: STATUS frames from after the gap carry the
        # device's count of the frames it dropped while unconnected
        await session.wait_device_time(before_s + 10)
        device_dropped = session.latest_status.fields["frames_dropped"]
        result = await session.stop()
        await link.disconnect()
        return result, device_dropped

    with Air(LinkModel(speed=2.0)) as air:
        dev, secret, _ = _device(tmp_path, air)
        store = open_store(tmp_path / "store.sqlite3")
        with dev:
            dev.wait_advertising(timeout_s=20)
            result, device_dropped = asyncio.run(go(air, secret, store))
    assert result.reconnects == 1
    # the gap: frames the air lost in flight plus those the device gave up while unconnected,
    # all of them counted by the host as lost (none silently missing)
    in_flight = air.stats.dropped(gatt.STREAM_UUID)
    assert device_dropped > 0
    assert result.link_stats["frames_lost"] == in_flight + device_dropped
    assert result.frames_stored > 40


def test_lossy_stream_loss_count_equals_what_the_link_dropped(tmp_path):
    async def go(air, secret, store):
        link = await _connect(air)

        async def auth(lk):
            await authenticate(lk, secret, DEVICE_ID)

        sid = store.create_session("P-LOSS", link.address)
        session = LiveSession(link, store, sid, authenticate=auth)
        await session.start()
        await session.run_step(Step("walk", 12.0))
        result = await session.stop()
        await link.disconnect()
        return result

    link_model = LinkModel(speed=3.0, loss_probability=0.05, seed=11,
                           lossy_uuids=frozenset({gatt.STREAM_UUID}))
    with Air(link_model) as air:
        dev, secret, _ = _device(tmp_path, air)
        store = open_store(tmp_path / "store.sqlite3")
        with dev:
            dev.wait_advertising(timeout_s=20)
            result = asyncio.run(go(air, secret, store))
    dropped = air.stats.dropped(gatt.STREAM_UUID)
    assert dropped > 0
    # frames lost inside the stream = frames the air dropped (the very last could be undetectable)
    assert dropped - 1 <= result.link_stats["frames_lost"] <= dropped


def test_after_a_link_drop_the_next_stranger_gets_no_stream(tmp_path):
    """The therapist's link drops mid-stream; a stranger connects and subscribes before the
    therapist's host is back: not one frame of the patient's stream reaches them."""
    async def go(air, secret):
        link = await _connect(air, auto_reconnect=False)
        await authenticate(link, secret, DEVICE_ID)
        await link.command(cmd.OP_STREAM_START, cmd.MODE_PROCESSED)
        first = await asyncio.wait_for(link.stream_queue.get(), 10)
        assert first  # the therapist gets the stream
        air.force_disconnect()
        await asyncio.wait_for(link.disconnected.wait(), 10)
        stranger = await _connect(air, auto_reconnect=False)  # subscribes to every notification
        try:
            await asyncio.sleep(3.0)
            got = stranger.stream_queue.qsize()
        finally:
            await stranger.disconnect()
        return got

    with Air(LinkModel(speed=2.0)) as air:
        dev, secret, _ = _device(tmp_path, air)
        with dev:
            dev.wait_advertising(timeout_s=20)
            assert asyncio.run(go(air, secret)) == 0
