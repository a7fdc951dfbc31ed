"""A device that restarts in the middle of a live session (a brown-out, a watchdog reset): the real
firmware in the virtual device is stopped and started again on the same flash while the host
streams. The session must go on as one time line, with the restart as a gap, and lose nothing else."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from hipsync import ble
from hipsync.acquire import LiveSession
from hipsync.commands._device import VIRTUAL_DEVICE_ID
from hipsync.provision import provision_virtual
from hipsync.secrets import SecretStore
from hipsync.sim import PatientConfig, scenario
from hipsync.sim import tasks as T
from hipsync.sim.air import Air, LinkModel
from hipsync.sim.bleak_backend import VIRTUAL_BACKEND
from hipsync.sim.virtual_device import VirtualDevice
from hipsync.store import open_store
from hipsync.sync import authenticate

pytestmark = pytest.mark.slow
DEVICE_ID = bytes.fromhex(VIRTUAL_DEVICE_ID)


def test_a_device_restart_mid_session_continues_the_session_after_a_gap(tmp_path, monkeypatch):
    # a sensor 10 deg off the pelvis' standing pose: the standing calibration takes that out
    scen = scenario.build(PatientConfig(seed=4, standing_pose_deg=(3.0, 10.0, 0.0)),
                          tmp_path / "patient",
                          tasks=[T.rest(6.0), T.standing_calibration(6.0), T.rest(1.0),
                                 T.walking(40.0)])
    fs_dir = tmp_path / "device-fs"
    secret = provision_virtual(fs_dir, DEVICE_ID, store=SecretStore(tmp_path / "secrets.json")).secret
    store = open_store(tmp_path / "store.sqlite3")

    async def auth(link) -> None:
        await authenticate(link, secret, DEVICE_ID)

    with Air(LinkModel(speed=4.0)) as air, VirtualDevice(air, feed_path=scen.feed_path, fs_dir=fs_dir,
                                                         device_id=VIRTUAL_DEVICE_ID) as device:
        device.wait_advertising(timeout_s=20)
        monkeypatch.setenv("HIPSYNC_AIR", air.address)

        async def go():
            found = await ble.scan(timeout_s=5, backend=VIRTUAL_BACKEND, stop_after=1)
            assert found, "the virtual device was not found"
            link = ble.DeviceLink(found[0], backend=VIRTUAL_BACKEND, auto_reconnect=True,
                                  reconnect_attempts=200, reconnect_delay_s=0.05)
            await link.connect()
            sid = store.create_session("RESTART-1", found[0].address, firmware_version="0.1.0")
            session = LiveSession(link, store, sid, authenticate=auth)
            await session.start()
            calibrated = await session.run_step(scen.steps[0])
            assert calibrated.name == "standing" and calibrated.value == 1  # the pose was held
            await session.wait_device_time(20.0)
            before_s = session.device_time_s
            await asyncio.to_thread(device.stop)  # power lost; back on the same flash
            await asyncio.to_thread(device.start)
            await asyncio.wait_for(link.reconnected.wait(), 30)
            await session.wait_device_time(before_s + 6.0)
            result = await session.stop()
            await link.disconnect()
            return sid, before_s, result

        sid, before_s, result = asyncio.run(asyncio.wait_for(go(), 120))

    assert result.reconnects == 1 and result.device_restarts == 1
    assert result.ingest_errors == 0  # every frame of both epochs has its own key in the store
    assert result.link_stats["device_restarts"] == 1
    assert result.link_stats["duplicates"] == 0 and result.link_stats["late"] == 0
    s = store.load_session(sid)
    t = s.envelope_t_s
    assert np.all(np.diff(t) > 0)  # one time line: the restarted device's samples come after
    steps = np.diff(t)
    gap = int(np.argmax(steps))
    assert steps[gap] > 0.5  # the restart (process start, reconnect, authentication) is a gap
    assert t[gap] <= before_s + 0.5 < t[gap + 1]
    assert np.sum(t > t[gap + 1]) >= 300  # >= 3 s of envelope from the restarted device
    assert np.sum(np.abs(np.diff(steps[steps < 0.5]))) < 1e-6  # 100 Hz on both sides of the gap
    # the gap is counted as lost samples, as the link statistics report it
    assert result.link_stats["envelope_samples_lost"] >= round(steps[gap] * 100) - 2
    # the restarted device kept its standing calibration: walking angles on both sides of the
    # restart are relative to the same standing pose (uncalibrated, tilt would read 10 deg more)
    pt = s.pelvis_t_s
    pre = (pt > 15.0) & (pt < before_s)
    post = pt > t[gap + 1] + 1.0
    assert pre.sum() > 200 and post.sum() > 200
    for k in range(2):  # obliquity, tilt
        shift = np.median(s.pelvis_deg[post, k]) - np.median(s.pelvis_deg[pre, k])
        assert abs(shift) < 1.5, (k, shift)
