"""`hipsync virtual-device`: run a virtual device (real firmware, simulated patient and radio) in
the foreground, so that other `hipsync --virtual` commands can reach it from another terminal.

The person wearing it walks about and stands in bouts until someone asks them to do something
(the prompts of `stream --protocol clinic`), then does it. On a terminal, typing `b` + Enter
holds the device's button (start or stop a home recording)."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
import time
from pathlib import Path

from hipsync.cli import CliError
from hipsync.commands._device import ENV_AIR, add_patient_arguments, virtual_device, wearer_from


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fs", type=Path, default=Path("out/virtual-device/fs"),
                   help="the device's flash (kept between runs; default out/virtual-device/fs)")
    p.add_argument("--minutes", type=float, default=0.0, help="stop after this long (0: Ctrl-C)")
    p.add_argument("--idle", choices=["walk_about", "stand"], default="walk_about",
                   help="what the person does while nobody asks anything (default walk_about)")
    p.add_argument("--loss", type=float, default=0.0,
                   help="probability that the radio loses a notification (a poor link)")
    add_patient_arguments(p)


def run(args: argparse.Namespace) -> int:
    from hipsync.sim.air import LinkModel

    if not (math.isfinite(args.minutes) and args.minutes >= 0) or not 0 <= args.loss < 1:
        raise CliError("--minutes must be >= 0 and --loss in [0, 1)")
    wearer = wearer_from(args)
    link = LinkModel(speed=args.speed, loss_probability=args.loss, seed=args.seed)
    try:
        args.fs.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CliError(f"cannot use {args.fs} as the device's flash: {e.strerror or e}") from None
    rig_cm = virtual_device(args.fs, wearer=wearer, link=link, idle=args.idle)
    rig = rig_cm.__enter__()
    try:
        dev = rig.device
        print(f"virtual device {dev.name} ({dev.address}) advertising; flash in {dev.fs_dir}; "
              f"worn by a {wearer.describe()}")
        print(f"{ENV_AIR}={dev.air_address}")
        print(f"in another terminal:  export HIPSYNC_BACKEND=virtual {ENV_AIR}={dev.air_address}",
              flush=True)
        if sys.stdin.isatty():
            print("type b + Enter to hold the device's button (start/stop a home recording)")
            threading.Thread(target=_button_keys, args=(dev,), daemon=True).start()
        # SIGTERM (a service manager, `kill`) stops it as cleanly as Ctrl-C
        signal.signal(signal.SIGTERM, _interrupt)
        deadline = time.monotonic() + args.minutes * 60 if args.minutes else None
        try:
            while dev.alive and (deadline is None or time.monotonic() < deadline):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    finally:
        rig_cm.__exit__(None, None, None)
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _button_keys(dev) -> None:
    for line in sys.stdin:
        if line.strip().lower() == "b":
            dev.press_button()
            print("button held", flush=True)
