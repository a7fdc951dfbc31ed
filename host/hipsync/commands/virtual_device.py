"""`hipsync virtual-device`: run a virtual device (real firmware, simulated patient and radio) in
the foreground, so that other `hipsync --virtual` commands can reach it from another terminal."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from hipsync.cli import CliError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fs", type=Path, default=Path("out/virtual-device/fs"),
                   help="the device's flash (kept between runs; default out/virtual-device/fs)")
    p.add_argument("--walk-s", type=float, default=600.0)
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second")
    p.add_argument("--minutes", type=float, default=0.0, help="stop after this long (0: Ctrl-C)")


def run(args: argparse.Namespace) -> int:
    from hipsync.commands._device import virtual_device

    if args.speed <= 0 or args.walk_s <= 0:
        raise CliError("--speed and --walk-s must be positive")
    with virtual_device(args.fs, walk_s=args.walk_s, speed=args.speed) as dev:
        print(f"virtual device {dev.name} ({dev.address}) advertising; flash in {dev.fs_dir}")
        print(f"in another terminal:  export HIPSYNC_BACKEND=virtual HIPSYNC_AIR={dev.air_address}")
        deadline = time.monotonic() + args.minutes * 60 if args.minutes else None
        try:
            while dev.alive and (deadline is None or time.monotonic() < deadline):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0
