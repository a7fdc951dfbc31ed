"""The `hipsync` command line. Each subcommand is a thin layer over a library module.

Devices are reached through bleak; `--virtual` (or HIPSYNC_BACKEND=virtual) selects the virtual
device backend, so every command works the same without a radio."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran but found a problem (e.g. malformed frames)
EXIT_USAGE = 2  # bad arguments or input that is not what the command takes


class CliError(Exception):
    """An error the user can act on: printed without a traceback."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------------------- decode
def cmd_decode(args: argparse.Namespace) -> int:
    from hipsync.protocol import ProtocolError, UnsupportedFrame, decode, to_json_dict
    from hipwire.frames import FrameError
    from hipwire.records import CAPTURE_ENTRY_SIZE, read_capture

    path = Path(args.capture)
    data = _read_input(path)
    try:
        entries, tail = read_capture(data)
    except FrameError as e:
        raise CliError(f"{path}: {e}") from None
    malformed = 0
    unsupported = 0
    out = sys.stdout
    for offset, t_us, frame in entries:
        try:
            decoded = to_json_dict(decode(frame))
        except UnsupportedFrame as e:
            unsupported += 1
            print(f"{path}: offset {offset}: skipped: {e}", file=sys.stderr)
            continue
        except ProtocolError as e:
            malformed += 1
            print(f"{path}: offset {offset}: malformed frame: {e}", file=sys.stderr)
            continue
        decoded["offset"] = offset
        decoded["host_time_us"] = t_us
        out.write(json.dumps(decoded, separators=(",", ":")) + "\n")
    if tail:
        malformed += 1
        print(f"{path}: {tail}", file=sys.stderr)
    if unsupported:
        print(f"{path}: {unsupported} frame(s) of an unknown type or newer version skipped",
              file=sys.stderr)
    print(f"{path}: {len(entries)} frame(s), {malformed} malformed"
          f" (entries are {CAPTURE_ENTRY_SIZE}-byte headers + frames)", file=sys.stderr)
    return EXIT_FAILED if malformed else EXIT_OK


def _read_input(path: Path) -> bytes:
    if not path.exists():
        raise CliError(f"{path}: no such file")
    if path.is_dir():
        raise CliError(f"{path}: is a folder, not a file")
    try:
        return path.read_bytes()
    except OSError as e:
        raise CliError(f"{path}: cannot read: {e.strerror}") from None


# ----------------------------------------------------------------------------- parser
def _commands() -> dict:
    """Subcommands that live in their own modules register here: name -> (module, help)."""
    return {
        "scan": ("hipsync.commands.scan", "find hipsync devices nearby"),
        "stream": ("hipsync.commands.stream", "live view; saves to the session store as it goes"),
        "sync": ("hipsync.commands.sync", "pull new recorded sessions from a device"),
        "record": ("hipsync.commands.record", "start, stop or check a recording in the device"),
        "report": ("hipsync.commands.report", "write the synergy report of a session or patient"),
        "export": ("hipsync.commands.export", "export a session as CSV or EDF+"),
        "replay": ("hipsync.commands.replay", "run recorded CSV samples through the firmware"),
        "provision": ("hipsync.commands.provision", "give a device its name and secret"),
        "demo": ("hipsync.commands.demo", "simulated patient -> virtual device -> report"),
        "sessions": ("hipsync.commands.sessions", "list the sessions in the store"),
        "virtual-device": ("hipsync.commands.virtual_device",
                           "run a virtual device for other `--virtual` commands"),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hipsync", description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="session store file (default: HIPSYNC_STORE or the user "
                                         "data folder)")
    parser.add_argument("--virtual", action="store_true",
                        help="use the virtual device backend (same as HIPSYNC_BACKEND=virtual)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser("decode", help="print a capture's frames as JSON lines")
    p.add_argument("capture", help="capture file written by `hipsync stream --capture`")
    p.set_defaults(func=cmd_decode)
    for name, (module, help_text) in _commands().items():
        p = sub.add_parser(name, help=help_text)
        try:
            mod = __import__(module, fromlist=["add_arguments", "run"])
        except ModuleNotFoundError as e:
            if e.name != module:  # the command exists but something it needs is missing: a bug
                raise
            missing = "its module is not built yet"
            p.set_defaults(func=lambda args, m=missing, n=name: _not_built(n, m))
            p.add_argument("rest", nargs=argparse.REMAINDER)
            continue
        mod.add_arguments(p)
        p.set_defaults(func=mod.run)
    return parser


def _not_built(name: str, reason: str) -> int:
    raise CliError(f"`hipsync {name}` is not available in this build ({reason})", EXIT_FAILED)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.virtual:
        os.environ["HIPSYNC_BACKEND"] = "virtual"
    if args.store:
        os.environ["HIPSYNC_STORE"] = args.store
    from hipsync.ble import LinkError
    from hipsync.store import HipsyncDataError, UnknownPatient, UnknownSession

    try:
        return args.func(args) or EXIT_OK
    except CliError as e:
        print(f"hipsync {args.command}: {e}", file=sys.stderr)
        return e.code
    except (UnknownSession, UnknownPatient) as e:  # a wrong argument
        print(f"hipsync {args.command}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (HipsyncDataError, LinkError) as e:
        print(f"hipsync {args.command}: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"hipsync {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # `python -m hipsync.cli`: run the imported module, so that CliError raised by the command
    # modules (which import hipsync.cli) is the class caught here
    from hipsync.cli import main as _main

    sys.exit(_main())
