"""`hipsync demo`: the main job end to end on the virtual device.

A simulated patient (by default a weak left gluteus medius with stance-side erector compensation)
wears the virtual device: the real firmware in the MicroPython unix port, simulated chips on one
side and a simulated radio on the other. The host finds it with bleak and runs the clinic protocol
(or, with --protocol exam, the clinical exam) as a therapist would: each prompt is said to the
patient, who does what it asks (standing calibration, an MVC per muscle, the single-leg tasks, a
walk); the session is stored and the synergy report written.

The session goes into the demo's own store (`<out>/demo.sqlite3`, new each run), or, with
`hipsync --store S demo`, into S beside the sessions already there, so that two demo sessions of
one patient can be compared (`hipsync --store S compare A B`)."""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import time
from pathlib import Path

from hipsync.cli import EXIT_FAILED, CliError
from hipsync.commands._device import add_patient_arguments, wearer_from


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="out/demo", help="folder for the report (default: out/demo)")
    p.add_argument("--protocol", choices=["clinic", "exam"], default="clinic",
                   help="clinic: calibration, MVCs, walk (default); exam: also the single-leg "
                        "tasks on each side before the walk")
    p.add_argument("--walk-s", type=float, default=120.0, help="walking duration (default: 120)")
    p.add_argument("--loss", type=float, default=0.0, help="notification loss probability")
    add_patient_arguments(p, seed=7)
    p.set_defaults(speed=6.0)


def run(args: argparse.Namespace) -> int:
    if not math.isfinite(args.walk_s) or args.walk_s <= 0 or not 0 <= args.loss < 1:
        raise CliError("--walk-s and --speed must be positive and --loss in [0, 1)")
    wearer = wearer_from(args)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CliError(f"cannot create {out}: {e.strerror}") from None
    t0 = time.monotonic()
    print(f"demo: a {wearer.describe()} wears the virtual device (real firmware in MicroPython, "
          f"{args.speed:g}x speed)", flush=True)
    store = getattr(args, "store", None)
    result = asyncio.run(run_demo(out, wearer, walk_s=args.walk_s, speed=args.speed,
                                  loss=args.loss, protocol=args.protocol,
                                  store_path=Path(store) if store else None))
    print(f"session {result['session']} in {result['store']}")
    print(f"report: {result['html']}")
    print(f"json:   {result['json']}")
    print(f"frames stored {result['frames']}, lost {result['link']['frames_lost']}, "
          f"wall {time.monotonic() - t0:.1f} s")
    print(result["findings"])
    return 0 if result["frames"] else EXIT_FAILED


async def run_demo(out: Path, wearer, *, walk_s: float = 120.0, speed: float = 6.0,
                   loss: float = 0.0, patient_id: str = "DEMO-001", keep_truth: bool = False,
                   protocol: str = "clinic", store_path: Path | None = None,
                   rest_s: float | None = None) -> dict:
    """The demo's journey; the result holds the report paths, the link statistics, the guide's
    step outcomes and (keep_truth) the patient, whose `truth` is what they really did.
    store_path: an existing (or new) store to add the session to; None: the demo's own, new.
    rest_s: the rest between steps (None: the protocol's own)."""
    from hipsync import ble
    from hipsync.acquire import LiveSession
    from hipsync.commands._device import VIRTUAL_DEVICE_ID, virtual_device
    from hipsync.guide import PROTOCOLS, Guide, TerminalUI
    from hipsync.report import SIMULATED_KEY, build_report, findings_text, write_report
    from hipsync.secrets import SecretStore
    from hipsync.sim.air import LinkModel
    from hipsync.sim.bleak_backend import VIRTUAL_BACKEND
    from hipsync.sim.voice import Voice
    from hipsync.store import open_store
    from hipsync.sync import authenticate

    work = out / "work"
    # a fresh device: empty flash, provisioned with a secret kept in the demo's own secrets file
    fs_dir = work / "device-fs"
    shutil.rmtree(fs_dir, ignore_errors=True)
    secrets = SecretStore(work / "device-secrets.json")
    if store_path is None:
        store_path = out / "demo.sqlite3"
        for stale in (store_path, Path(str(store_path) + "-wal"), Path(str(store_path) + "-shm")):
            stale.unlink(missing_ok=True)
    store = open_store(store_path)
    device_id = bytes.fromhex(VIRTUAL_DEVICE_ID)
    link_model = LinkModel(speed=speed, loss_probability=loss, seed=wearer.config.seed)
    with virtual_device(fs_dir, wearer=wearer, secrets=secrets, link=link_model,
                        idle="stand", keep_truth=keep_truth) as rig:
        secret = secrets.get(device_id).secret
        found = await ble.scan(timeout_s=5, backend=VIRTUAL_BACKEND, stop_after=1)
        if not found:
            raise CliError("the virtual device did not show up in the scan", EXIT_FAILED)
        link = ble.DeviceLink(found[0], backend=VIRTUAL_BACKEND, auto_reconnect=True)
        await link.connect()
        _, info = await link.command(ble.commands.OP_INFO)
        session_id = store.create_session(
            patient_id, found[0].address, firmware_version="%d.%d.%d" % info[:3],
            filters={**device_filters(), SIMULATED_KEY: f"hipsync demo: {wearer.describe()}"},
            normalisation="MVC", notes=f"virtual device demo: {wearer.describe()}")

        async def auth(lk) -> None:
            await authenticate(lk, secret, device_id)

        session = LiveSession(link, store, session_id, authenticate=auth)
        await session.start()
        guide = Guide(session, TerminalUI(interactive=False), say=Voice(rig.air.address))
        steps = PROTOCOLS[protocol](walk_s) if rest_s is None else \
            PROTOCOLS[protocol](walk_s, rest_s=rest_s)
        await guide.run(steps)
        result = await session.stop()
        await link.disconnect()
    html, js = write_report(store, session_id, out)
    shutil.copyfile(html, out / "report.html")
    shutil.copyfile(js, out / "report.json")
    findings = findings_text(build_report(store.load_session(session_id)))
    return {"html": out / "report.html", "json": out / "report.json", "session": session_id,
            "frames": result.frames_stored, "link": result.link_stats, "store": store_path,
            "findings": findings, "steps": guide.result.steps, "patient": rig.patient}


def device_filters() -> dict:
    """What the firmware's signal chain does, for the ISEK metadata of the report."""
    return {"emg_sampling_hz": 1000, "highpass_hz": 20, "mains_notch_hz": 50,
            "rectification": "full-wave", "envelope_lowpass_hz": 7, "envelope_order": 2,
            "envelope_rate_hz": 100, "envelope_delay_ms": 37,
            "mains_notches": "50 Hz and 150 Hz, Q 10", "imu_rate_hz": 100,
            "afe": "ADS1294R, gain 12, 24-bit", "imu": "ICM-42688-P, +-8 g, +-1000 dps"}
