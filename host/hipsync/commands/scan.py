"""`hipsync scan`: hipsync devices advertising nearby.

With `--virtual` it lists the devices of the running virtual air named by HIPSYNC_AIR (the line
`hipsync virtual-device` prints); a scan does not start a private virtual device, there would be
nothing to do with it after the scan."""

from __future__ import annotations

import argparse
import asyncio
import sys

from hipsync.cli import EXIT_FAILED, CliError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to listen (default: 5)")


def run(args: argparse.Namespace) -> int:
    from hipsync import ble
    from hipsync.commands._device import ENV_AIR, air_address, backend, virtual_selected

    if not 0 < args.timeout <= 3600:
        raise CliError(f"--timeout must be a number of seconds above 0 (up to 3600), not "
                       f"{args.timeout:g}")
    if virtual_selected() and air_address() is None:  # a malformed HIPSYNC_AIR is refused there
        raise CliError(f"with --virtual, scan lists the devices of a running virtual device: start "
                       f"`hipsync virtual-device` in another terminal and set {ENV_AIR} to the "
                       f"address it prints", EXIT_FAILED)
    found = asyncio.run(ble.scan(timeout_s=args.timeout, backend=backend()))
    if not found:
        print("hipsync scan: no hipsync device found: is it on, charged and not connected to "
              "another host? (a connected device does not advertise)", file=sys.stderr)
        return EXIT_FAILED
    for dev in found:
        print(f"{dev.address}  {dev.name:<16} rssi {dev.rssi} dBm")
    return 0
