"""`hipsync demo`: the main job end to end on the virtual device.

A simulated patient (weak left gluteus medius, stance-side erector compensation) wears the virtual
device: the real firmware in the MicroPython unix port, simulated chips on one side and a simulated
radio on the other. The host finds it with bleak, runs the clinic protocol (standing calibration,
an MVC per muscle, a walk), stores the session and writes the synergy report."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import time
from pathlib import Path

from hipsync.cli import EXIT_FAILED, CliError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="out/demo", help="folder for the report (default: out/demo)")
    p.add_argument("--walk-s", type=float, default=120.0, help="walking duration (default: 120)")
    p.add_argument("--speed", type=float, default=6.0,
                   help="simulated seconds per wall second (default: 6)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--weak-side", choices=["left", "right", "none"], default="left")
    p.add_argument("--compensation", choices=["stance", "contra", "none"], default="stance")
    p.add_argument("--loss", type=float, default=0.0, help="notification loss probability")


def run(args: argparse.Namespace) -> int:
    if args.walk_s <= 0 or args.speed <= 0 or not 0 <= args.loss < 1:
        raise CliError("--walk-s and --speed must be positive and --loss in [0, 1)")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CliError(f"cannot create {out}: {e.strerror}") from None
    t0 = time.monotonic()
    result = asyncio.run(run_demo(out, walk_s=args.walk_s, speed=args.speed, seed=args.seed,
                                  weak_side=None if args.weak_side == "none" else args.weak_side,
                                  compensation=None if args.compensation == "none"
                                  else args.compensation, loss=args.loss))
    print(f"report: {result['html']}")
    print(f"json:   {result['json']}")
    print(f"frames stored {result['frames']}, lost {result['link']['frames_lost']}, "
          f"wall {time.monotonic() - t0:.1f} s")
    return 0 if result["frames"] else EXIT_FAILED


async def run_demo(out: Path, *, walk_s: float = 120.0, speed: float = 6.0, seed: int = 7,
                   weak_side: str | None = "left", compensation: str | None = "stance",
                   loss: float = 0.0, patient_id: str = "DEMO-001") -> dict:
    from hipsync import ble
    from hipsync.acquire import LiveSession
    from hipsync.commands._device import VIRTUAL_DEVICE_ID
    from hipsync.provision import provision_virtual
    from hipsync.report import write_report
    from hipsync.secrets import SecretStore
    from hipsync.sim import PatientConfig, scenario
    from hipsync.sim.air import Air, LinkModel
    from hipsync.sim.virtual_device import VirtualDevice
    from hipsync.store import open_store
    from hipsync.sync import authenticate

    config = PatientConfig(weak_side=weak_side, es_compensation=compensation, seed=seed)
    work = out / "work"
    scen = scenario.build(config, work, walk_s=walk_s)
    # a fresh device: empty flash, provisioned with a secret kept in the demo's own secrets file
    fs_dir = work / "device-fs"
    shutil.rmtree(fs_dir, ignore_errors=True)
    device_id = bytes.fromhex(VIRTUAL_DEVICE_ID)
    secret = provision_virtual(fs_dir, device_id,
                               store=SecretStore(work / "device-secrets.json")).secret
    store_path = out / "demo.sqlite3"
    for stale in (store_path, Path(str(store_path) + "-wal"), Path(str(store_path) + "-shm")):
        stale.unlink(missing_ok=True)
    store = open_store(store_path)
    link_model = LinkModel(speed=speed, loss_probability=loss, seed=seed)
    with Air(link_model) as air, VirtualDevice(air, feed_path=scen.feed_path, fs_dir=fs_dir,
                                               device_id=VIRTUAL_DEVICE_ID) as device:
        device.wait_advertising(timeout_s=20)
        os.environ["HIPSYNC_AIR"] = air.address  # where the virtual backend finds the air
        found = await ble.scan(timeout_s=5, backend="virtual", stop_after=1)
        if not found:
            raise CliError("the virtual device did not show up in the scan", EXIT_FAILED)
        link = ble.DeviceLink(found[0], backend="virtual", auto_reconnect=True)
        await link.connect()
        _, info = await link.command(ble.commands.OP_INFO)
        firmware = "%d.%d.%d" % info[:3]
        session_id = store.create_session(
            patient_id, found[0].address, firmware_version=firmware,
            filters=device_filters(),
            normalisation="MVC", notes="virtual device demo: simulated patient, "
            f"weak side {weak_side or 'none'}, compensation {compensation or 'none'}, seed {seed}")
        async def auth(lk) -> None:
            await authenticate(lk, secret, device_id)

        session = LiveSession(link, store, session_id, authenticate=auth)
        await session.start()
        for step in scen.steps:
            await session.run_step(step)
        result = await session.stop()
        await link.disconnect()
    html, js = write_report(store, session_id, out)
    shutil.copyfile(html, out / "report.html")
    shutil.copyfile(js, out / "report.json")
    return {"html": out / "report.html", "json": out / "report.json", "session": session_id,
            "frames": result.frames_stored, "link": result.link_stats, "store": store_path}


def device_filters() -> dict:
    """What the firmware's signal chain does, for the ISEK metadata of the report."""
    return {"emg_sampling_hz": 1000, "highpass_hz": 20, "mains_notch_hz": 50,
            "rectification": "full-wave", "envelope_lowpass_hz": 7, "envelope_order": 2,
            "envelope_rate_hz": 100, "envelope_delay_ms": 37, "mains_notches": "50 Hz and 150 Hz, Q 10", "imu_rate_hz": 100,
            "afe": "ADS1294R, gain 12, 24-bit", "imu": "ICM-42688-P, +-8 g, +-1000 dps"}
