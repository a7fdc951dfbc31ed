"""`hipsync provision --port PORT`: give a board its random secret, shared with this host only.

The secret goes to the board over USB (mpremote) and into this host's secrets file (mode 0600);
it is never printed. `make deploy` runs this after copying the firmware."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from hipsync.cli import EXIT_FAILED, CliError


def add_arguments(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="serial port of the board, e.g. /dev/ttyACM0")
    where.add_argument("--virtual-fs", type=Path, help="filesystem folder of a virtual device")
    p.add_argument("--device-id", help="with --virtual-fs: the virtual device's 12-hex-digit id")
    p.add_argument("--name", help="name to advertise (default hipsync-XXXX from the id)")


def run(args: argparse.Namespace) -> int:
    from hipsync.provision import ProvisionError, provision_board, provision_virtual

    try:
        if args.port:
            if not Path(args.port).exists():
                raise CliError(f"no device on {args.port}: is the board plugged in? (its port is "
                               f"e.g. /dev/ttyACM0; `ls /dev/ttyACM* /dev/ttyUSB*` lists them)",
                               EXIT_FAILED)
            if Path(args.port).is_dir():
                raise CliError(f"--port {args.port} is a folder, not a serial port")
            ds = provision_board(args.port, name=args.name)
        else:
            if not args.device_id or len(args.device_id) != 12:
                raise CliError("--virtual-fs needs --device-id with 12 hex digits")
            try:
                device_id = bytes.fromhex(args.device_id)
            except ValueError:
                raise CliError("--device-id must be 12 hex digits") from None
            _check_folder(args.virtual_fs)  # before the host's secret is replaced
            ds = provision_virtual(args.virtual_fs, device_id, name=args.name)
    except ProvisionError as e:
        raise CliError(str(e), EXIT_FAILED) from None
    except subprocess.TimeoutExpired:
        raise CliError(f"the board on {args.port} did not answer within a minute: unplug it, "
                       f"plug it in again and run provision again", EXIT_FAILED) from None
    print(f"provisioned {ds.name} ({ds.device_id.hex()}); its secret is in this host's secrets file")
    return 0


def _check_folder(fs: Path) -> None:
    if fs.exists() and not fs.is_dir():
        raise CliError(f"--virtual-fs {fs} is a file: give the virtual device's filesystem folder")
    try:
        fs.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CliError(f"cannot create --virtual-fs {fs}: {e.strerror}", EXIT_FAILED) from None
