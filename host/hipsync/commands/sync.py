"""`hipsync sync --patient ID`: pull every new recorded session from the device into the store.

Resumes after a dropped link, verifies each session end to end (CRC-32), and only then tells the
device it may erase it. Running it twice transfers nothing new.

A session whose flash is damaged is salvaged (every record that verifies goes into the store, the
report says what was lost), stays on the device and never blocks the sessions after it. The
therapist then releases it: `--accept-damaged ID` confirms it (the device erases it when it needs
room), `--erase-damaged ID` erases it now."""

from __future__ import annotations

import argparse
import asyncio
import sys

from hipsync.cli import EXIT_FAILED, CliError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--patient", required=True, help="pseudonymous code of the device's wearer")
    p.add_argument("--address", help="device address (default: the strongest one found)")
    p.add_argument("--accept-damaged", metavar="ID", type=int, action="append", default=[],
                   help="release a damaged session: what was salvaged is kept, the device may "
                        "erase it when it needs room (repeatable)")
    p.add_argument("--erase-damaged", metavar="ID", type=int, action="append", default=[],
                   help="release a damaged session and erase it from the device now (repeatable)")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_sync(args))


def _progress(p) -> None:
    eta = f"{p.eta_s:5.0f} s" if p.eta_s is not None else "    ?"
    pct = 100 * p.bytes_done / p.bytes_total if p.bytes_total else 100.0
    end = "\r" if sys.stdout.isatty() else "\n"
    print(f"session {p.session_id}: {pct:5.1f} %  {p.bytes_done / 1024:8.1f} KiB  "
          f"{p.rate_bytes_per_s / 1024:6.1f} KiB/s  ETA {eta}", end=end, flush=True)


async def _sync(args: argparse.Namespace) -> int:
    from hipsync.ble import commands as cmd
    from hipsync.commands._device import connected
    from hipsync.secrets import SecretStore, UnknownDevice
    from hipsync.store import open_store
    from hipsync.sync import SyncError, sync_device

    store = open_store()
    async with connected(args.address, auto_reconnect=False) as link:
        _, info = await link.command(cmd.OP_INFO)
        device_id = bytes(info[7])
        try:
            secret = SecretStore().get(device_id).secret
        except UnknownDevice:
            raise CliError(f"no secret for device {device_id.hex()} on this host: provision it "
                           f"first (`hipsync provision`)", EXIT_FAILED) from None

        async def again():
            await link.reconnect()
            return link

        try:
            result = await sync_device(link, store, _progress, secret=secret, device_id=device_id,
                                       reconnect=again, patient_id=args.patient,
                                       accept_damaged=args.accept_damaged,
                                       erase_damaged=args.erase_damaged)
        except SyncError as e:
            raise CliError(str(e), EXIT_FAILED) from None
    print()
    for s in result.synced:
        released = (f" (damaged: {_damage(s.damage)}; {s.released} on the device)"
                    if s.released else "")
        print(f"session {s.session_id}: {s.size} bytes, {s.frames} frames -> store session "
              f"{s.store_session}{released}")
    for s in result.damaged:
        print(f"session {s.session_id}: DAMAGED on the device's flash: {_damage(s.damage)}. "
              f"{s.frames} records salvaged -> store session {s.store_session}; the report "
              f"says what is missing. The session stays on the device until you release it: "
              f"`hipsync sync --patient {args.patient} --accept-damaged {s.session_id}` (the "
              f"device may then erase it) or `--erase-damaged {s.session_id}`", file=sys.stderr)
    if result.still_recording:
        print(f"still recording (not synced): {result.still_recording}")
    print(f"{len(result.synced)} new session(s), "
          f"{len(result.damaged)} damaged kept on the device, "
          f"{len(result.already_synced)} already synced, "
          f"{result.reconnects} reconnect(s), {result.rate_bytes_per_s / 1024:.1f} KiB/s")
    return 0


def _damage(damage: dict) -> str:
    ranges = damage["lost"]
    return (f"{damage['bytes_lost']} bytes unreadable in {len(ranges)} place"
            f"{'' if len(ranges) == 1 else 's'}")
