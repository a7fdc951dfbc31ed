"""`hipsync scan`: hipsync devices advertising nearby."""

from __future__ import annotations

import argparse
import asyncio


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to listen (default: 5)")


def run(args: argparse.Namespace) -> int:
    from hipsync import ble

    found = asyncio.run(ble.scan(timeout_s=args.timeout))
    if not found:
        print("no hipsync device found (is it on and not connected to another host?)")
        return 1
    for dev in found:
        print(f"{dev.address}  {dev.name:<16} rssi {dev.rssi} dBm")
    return 0
