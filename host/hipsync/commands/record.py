"""`hipsync record start --patient P | stop | status`: a recording at home, in the device's flash.

The device records by itself (holding its button 2 s does the same as `start` / `stop`); while it
records its LED blinks slowly (0.5 s on, 0.5 s off). `start` records on this host that the
recording (and the button recordings after it) belong to patient P, so a later
`hipsync sync --patient P` files them under P, and a sync for another patient is refused. Each
recording carries the device's standing calibration and MVCs (given at the clinic), so the synced
session can be reported (`hipsync report SESSION`).

Exit codes: 0 done; 1 the device could not do it (not found, already recording, not recording,
flash full, link or authentication problem); 2 wrong arguments."""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from datetime import UTC, datetime

from hipsync.cli import EXIT_FAILED, CliError

# bench/bench_store.py: the processed stream takes about 950 B/s of flash (docs/STORAGE.md); used
# for "hours left" until the recording has run long enough to measure its own rate
NOMINAL_BYTES_PER_S = 950.0
MEASURED_AFTER_S = 30
# the flash log opens a 64 KiB segment only with 32 KiB to spare (firmware/store/flashlog.py)
SEGMENT_RESERVE_BYTES = (64 + 32) * 1024


def add_arguments(p: argparse.ArgumentParser) -> None:
    from hipsync.cli import add_global_options

    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    s = sub.add_parser("start", help="start recording into the device's flash")
    s.add_argument("--patient", required=True, help="pseudonymous code of the wearer, e.g. P001")
    s.add_argument("--address", help="device address (default: the strongest one found)")
    s = sub.add_parser("stop", help="stop the recording")
    s.add_argument("--address", help="device address (default: the strongest one found)")
    s = sub.add_parser("status", help="is it recording, for how long, flash left, calibration")
    s.add_argument("--address", help="device address (default: the strongest one found)")
    for s in sub.choices.values():
        add_global_options(s, device=True, store=False)


def run(args: argparse.Namespace) -> int:
    if args.action == "start" and not args.patient.strip():
        raise CliError("--patient must be a non-empty pseudonymous code")
    return asyncio.run(_record(args))


async def _record(args: argparse.Namespace) -> int:
    from hipsync.commands._device import authenticator, connected
    from hipsync.sync import SyncError

    async with connected(args.address) as link:
        try:
            device_id = await authenticator()(link)
        except SyncError as e:  # wrong secret, locked out, not the provisioned device
            raise CliError(str(e), EXIT_FAILED) from None
        if args.action == "start":
            await _start(link, device_id, args.patient.strip())
        elif args.action == "stop":
            await _stop(link, device_id)
        else:
            await _status(link, device_id)
    return 0


async def _command(link, op: int, *args) -> tuple[int, tuple]:
    """(status, values) without raising for an error status (the caller words it)."""
    from hipsync.ble import CommandError

    try:
        return await link.command(op, *args)
    except CommandError as e:
        return e.status, ()


async def _rec_command(link, op: int) -> tuple[int, tuple]:
    """REC_START / REC_STOP, which are not sent twice after a reconnect: when the link dropped
    with one in flight, REC_STATUS (after the reconnect) tells whether the device ran it."""
    from hipsync.ble import CommandInterrupted
    from hipwire import commands as cmd

    try:
        return await _command(link, op)
    except CommandInterrupted:
        _, (flags, sid, *_rest) = await link.command(cmd.OP_REC_STATUS)
        recording = bool(flags & cmd.REC_RECORDING)
        if op == cmd.OP_REC_START and recording:
            return cmd.OK, (sid,)
        if op == cmd.OP_REC_STOP and not recording:
            return cmd.OK, (-1,)  # it stopped; which session is not known any more
        return await _command(link, op)  # it did not run: now it may


# ----------------------------------------------------------------------------- start
async def _start(link, device_id: bytes, patient: str) -> None:
    from hipsync.sync import assign_patient, describe_sessions, list_sessions, patients_of
    from hipwire import commands as cmd

    entries = await list_sessions(link)
    pending = [e[0] for e in entries if not e[3] & (cmd.SESSION_SYNCED | cmd.SESSION_OPEN)]
    owners = patients_of(device_id, pending)
    others = sorted({p for p in owners.values() if p is not None and p != patient})
    if others:
        held = [s for s, p in owners.items() if p == others[0]]
        raise CliError(f"the device still holds {describe_sessions(held)} of patient "
                       f"{others[0]}, not synced: run `hipsync sync --patient {others[0]}` first, so that "
                       f"patients are never mixed", EXIT_FAILED)
    _check_patient_map(device_id)  # before the device starts: it must be possible to say whose
    # the device stamps the session's start with the host's clock
    await link.command(cmd.OP_TIME_SYNC, int(time.time() * 1000))
    status, values = await _rec_command(link, cmd.OP_REC_START)
    if status == cmd.ERR_STORAGE and any(e[3] & cmd.SESSION_SYNCED for e in entries):
        # synced sessions are held intact by a host (their CRC was confirmed): make room
        _, (erased,) = await link.command(cmd.OP_ERASE, cmd.ERASE_ALL_SYNCED)
        print(f"flash was full: erased {erased} session(s) already synced")
        status, values = await _rec_command(link, cmd.OP_REC_START)
    if status == cmd.ERR_BUSY:
        _, st = await link.command(cmd.OP_REC_STATUS)
        raise CliError(f"the device is already recording (session {st[1]}, "
                       f"{_duration(st[2])}): `hipsync record stop` first", EXIT_FAILED)
    if status == cmd.ERR_STORAGE:
        raise CliError("the device's flash is full: sync its sessions (`hipsync sync --patient "
                       f"{patient}`) and run `hipsync record start` again, which erases the "
                       f"synced ones", EXIT_FAILED)
    if status != cmd.OK:
        raise CliError(f"the device refused to start recording ({cmd.status_name(status)})",
                       EXIT_FAILED)
    sid = values[0]
    try:
        assign_patient(device_id, sid, patient)
    except OSError as e:
        raise CliError(f"the device records (session {sid}), but this host could not note that it "
                       f"is patient {patient}'s: {e.strerror}: {e.filename}. `hipsync sync "
                       f"--patient {patient}` still files it under {patient}", EXIT_FAILED) from None
    print(f"recording: session {sid} of device {device_id.hex()} for patient {patient}")
    print("the LED blinks slowly (0.5 s on, 0.5 s off) while it records; "
          "`hipsync record stop` or holding the button 2 s ends it")
    print(f"calibration: {_calibration_line(await link.command(cmd.OP_CAL_INFO))}")
    if unassigned := [s for s, p in owners.items() if p is None]:
        print(f"note: the device also holds {describe_sessions(unassigned)}, recorded for no "
              f"patient: the next sync files them under its --patient")


def _check_patient_map(device_id: bytes) -> None:
    from hipsync.sync import PatientMap

    folder = PatientMap(None, device_id.hex()).path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        writable = os.access(folder, os.W_OK)
    except OSError as e:
        writable, why = False, e.strerror
    else:
        why = "not writable"
    if not writable:
        raise CliError(f"this host notes whose recording it is in {folder}, which cannot be "
                       f"written ({why}): check HOME (or XDG_DATA_HOME) and its permissions, then "
                       f"run `hipsync record start` again", EXIT_FAILED)


# ----------------------------------------------------------------------------- stop
async def _stop(link, device_id: bytes) -> None:
    from hipsync.sync import patients_of
    from hipwire import commands as cmd

    _, st = await link.command(cmd.OP_REC_STATUS)
    _, (sid,) = await _rec_command(link, cmd.OP_REC_STOP)
    if sid == -1:  # the link dropped while it stopped
        sid = st[1]
    if sid == 0:
        raise CliError("the device is not recording: nothing to stop (`hipsync record status` "
                       "shows what it is doing)", EXIT_FAILED)
    patient = patients_of(device_id, [sid])[sid]
    seconds, size = (st[2], st[3]) if st[1] == sid else (None, None)
    what = f", {_duration(seconds)}, {size / 1024:.0f} KiB" if seconds is not None else ""
    print(f"stopped: session {sid}{what}")
    if patient is not None:
        print(f"patient {patient}: `hipsync sync --patient {patient}` brings it into the store")
    else:
        print("started with the button, for no patient: `hipsync sync --patient P` files it "
              "under P")


# ----------------------------------------------------------------------------- status
async def _status(link, device_id: bytes) -> None:
    from hipsync.sync import patients_of
    from hipwire import commands as cmd

    _, (flags, sid, seconds, size, free_kib) = await link.command(cmd.OP_REC_STATUS)
    recording = bool(flags & cmd.REC_RECORDING)
    if recording:
        patient = patients_of(device_id, [sid])[sid]
        rate = size / seconds if seconds >= MEASURED_AFTER_S else None
        print(f"recording: yes, session {sid}"
              + (f" (patient {patient})" if patient else " (started with the button)")
              + f", {_duration(seconds)}, {size / 1024:.0f} KiB"
              + (f", {rate * 60 / 1024:.0f} KiB/min" if rate else ""))
    else:
        rate = None
        print("recording: no" + (" (the flash is full)" if flags & cmd.REC_FLASH_FULL else ""))
    usable = max(0, free_kib * 1024 - SEGMENT_RESERVE_BYTES)
    hours = usable / (rate or NOMINAL_BYTES_PER_S) / 3600
    basis = "at this recording's rate" if rate else "at the usual ~3.4 MB/h"
    print(f"flash free: {free_kib / 1024:.1f} MiB, about {hours:.1f} h of recording {basis}")
    cal = _calibration_line(await link.command(cmd.OP_CAL_INFO))
    print(f"calibration {'attached' if recording else 'a recording will carry'}: {cal}")


def _calibration_line(reply: tuple[int, tuple]) -> str:
    from hipwire import commands as cmd
    from hipwire.units import EMG_CHANNELS

    flags, t_st, *mvc, t_mvc = reply[1]
    parts = []
    if flags & cmd.CAL_HAS_STANDING:
        parts.append(f"standing {_when(t_st)}")
    if any(mvc):
        parts.append("MVCs " + ", ".join(f"{ch} {v} uV" for ch, v in zip(EMG_CHANNELS, mvc) if v)
                     + f" ({_when(t_mvc)})")
    if not parts:
        return ("none: the device has no standing calibration or MVCs, so the report will need "
                "one entered (calibrate at the clinic first)")
    if not flags & cmd.CAL_HAS_STANDING:
        parts.append("no standing calibration: pelvic angles cannot be reported")
    return "; ".join(parts)


def _when(unix_s: int) -> str:
    return (datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%d %H:%M UTC") if unix_s
            else "time unknown")


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "?"
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"
