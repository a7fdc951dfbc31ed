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
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as a shell reports it)
ENV_DEBUG = "HIPSYNC_DEBUG"  # 1: an unexpected error shows its traceback
ENV_BACKEND = "HIPSYNC_BACKEND"
_BACKENDS = ("bleak", "virtual")
# the commands that reach a device through hipsync.ble (and so read HIPSYNC_BACKEND)
DEVICE_COMMANDS = frozenset({"scan", "stream", "sync", "record"})
STORE_COMMANDS = frozenset({"stream", "sync", "report", "export", "sessions", "demo", "compare"})


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
    try:
        if not path.exists():
            raise CliError(f"{path}: no such file: give the path of a capture written by "
                           f"`hipsync stream --capture`")
        if path.is_dir():
            raise CliError(f"{path}: is a folder, not a capture file")
        return path.read_bytes()
    except OSError as e:  # e.g. no permission to read it (or to look into its folder)
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
        "compare": ("hipsync.commands.compare", "before/after of two sessions of one patient"),
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
        add_global_options(p, device=name in DEVICE_COMMANDS, store=name in STORE_COMMANDS)
        p.set_defaults(func=mod.run)
    return parser


def add_global_options(p: argparse.ArgumentParser, *, device: bool, store: bool) -> None:
    """--virtual / --store after the subcommand too (`hipsync stream --virtual ...`), as people
    type them; SUPPRESS keeps the value given before the subcommand when they are not repeated."""
    if device:
        p.add_argument("--virtual", action="store_true", default=argparse.SUPPRESS,
                       help="use the virtual device backend (same as HIPSYNC_BACKEND=virtual)")
    if store:
        p.add_argument("--store", default=argparse.SUPPRESS,
                       help="session store file (default: HIPSYNC_STORE or the user data folder)")


def _not_built(name: str, reason: str) -> int:
    raise CliError(f"`hipsync {name}` is not available in this build ({reason})", EXIT_FAILED)


def main(argv: list[str] | None = None) -> int:
    command = "hipsync"
    # everything the CLI writes is health data (store, archive, captures, reports, exports):
    # readable by its owner only
    os.umask(os.umask(0o077) | 0o077)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        command = f"hipsync {args.command}"
        if args.virtual:
            os.environ[ENV_BACKEND] = "virtual"
        if args.store:
            os.environ["HIPSYNC_STORE"] = args.store
        if args.command in DEVICE_COMMANDS:
            _check_backend()
        code = args.func(args) or EXIT_OK
        sys.stdout.flush()  # inside the try: a closed pipe shows up here, not at exit
        return code
    except BrokenPipeError:
        # the reader went away (`hipsync decode F | head`): nothing more to say to it. Python
        # would flush stdout again at exit and complain; point it at devnull first (Python docs,
        # "Note on SIGPIPE")
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - sorted by _explain: ours get their message, bugs one line
        message, code = _explain(e)
        if code is None:  # not one of ours: a bug
            if os.environ.get(ENV_DEBUG) == "1":
                raise
            message = (f"unexpected error (a bug in hipsync): {type(e).__name__}: {e}. Rerun with "
                       f"{ENV_DEBUG}=1 to see the traceback, and report it")
            code = EXIT_FAILED
        print(f"{command}: {message}", file=sys.stderr)
        return code


def _check_backend() -> None:
    value = os.environ.get(ENV_BACKEND, "")
    if value and value not in _BACKENDS:
        raise CliError(f"{ENV_BACKEND}={value!r} is not a backend: use "
                       f"{' or '.join(_BACKENDS)} (or unset it for the computer's Bluetooth, "
                       f"or pass --virtual)")


def _explain(e: BaseException) -> tuple[str, int | None]:
    """(message, exit code) for an error the user can act on; (.., None) for a bug. Exit codes:
    2 a wrong argument (or setting), an unknown session or patient, a file that is not what the
    command takes; 1 a device, link, secrets or store problem."""
    from hipsync.ble import CommandTimeout, LinkError
    from hipsync.provision import ProvisionError
    from hipsync.secrets import SecretsError
    from hipsync.store import HipsyncDataError, UnknownPatient, UnknownSession
    from hipsync.sync import AuthError, SyncError

    if isinstance(e, CliError):
        return str(e), e.code
    if isinstance(e, (UnknownSession, UnknownPatient)):
        return str(e), EXIT_USAGE
    if isinstance(e, HipsyncDataError):
        return str(e), EXIT_FAILED
    if isinstance(e, AuthError):  # its message says what to do (wait, re-provision)
        return f"authentication failed: {e}", EXIT_FAILED
    if isinstance(e, SyncError):
        return str(e), EXIT_FAILED
    if isinstance(e, CommandTimeout):
        return (f"{e}: the device stopped answering. Is it on, in range and not busy with "
                f"another host? Then run the command again"), EXIT_FAILED
    if isinstance(e, LinkError):
        return str(e), EXIT_FAILED
    if isinstance(e, SecretsError):
        return str(e), EXIT_FAILED
    if isinstance(e, ProvisionError):
        return str(e), EXIT_FAILED
    if isinstance(e, ConnectionError):  # hipsync.sync turns a lost link into one
        return (f"the link to the device failed: {e}. Is it on and in range? Then run the "
                f"command again"), EXIT_FAILED
    if isinstance(e, OSError):
        return _os_error(e), EXIT_FAILED
    return repr(e), None


def _os_error(e: OSError) -> str:
    what = e.strerror or str(e) or type(e).__name__
    if e.filename is not None:
        return (f"cannot use {e.filename}: {what}. Check the path and its permissions (the store "
                f"is HIPSYNC_STORE or --store, the device secrets HIPSYNC_SECRETS, the rest under "
                f"your home folder)")
    if _raised_in(e, ("bleak", "dbus_fast")):
        return (f"cannot reach the computer's Bluetooth ({what}): is Bluetooth on and bluetoothd "
                f"running? Or use the virtual device (--virtual)")
    return f"system error: {what}"


def _raised_in(e: BaseException, packages: tuple[str, ...]) -> bool:
    """Whether e passed through code of one of these packages on its way up."""
    tb = e.__traceback__
    while tb is not None:
        if any(p in Path(tb.tb_frame.f_code.co_filename).parts for p in packages):
            return True
        tb = tb.tb_next
    return False


if __name__ == "__main__":
    # `python -m hipsync.cli`: run the imported module, so that CliError raised by the command
    # modules (which import hipsync.cli) is the class caught here
    from hipsync.cli import main as _main

    sys.exit(_main())
