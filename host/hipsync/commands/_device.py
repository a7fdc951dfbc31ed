"""Finding, connecting to and authenticating with a device, for the commands that need one.

With `--virtual` (HIPSYNC_BACKEND=virtual) the commands use the virtual radio. If HIPSYNC_AIR names
a running virtual air (`hipsync virtual-device` prints it), they connect to the device there;
otherwise they start a virtual device of their own for the length of the command, worn by a
simulated patient who does what the prompts ask (and otherwise walks about), provisioned with a
secret that only this command knows."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hipsync.cli import EXIT_FAILED, EXIT_USAGE, CliError
from hipwire.commands import EXAM_TASKS as EXAM_TASK_NAMES

VIRTUAL_DEVICE_ID = "02a1b2c3d4e5"
ENV_AIR = "HIPSYNC_AIR"


def virtual_selected() -> bool:
    return os.environ.get("HIPSYNC_BACKEND", "") == "virtual"


def backend() -> tuple | None:
    """The bleak backend the commands hand to hipsync.ble: the virtual radio's with `--virtual`
    (HIPSYNC_BACKEND=virtual), else None (bleak's own). The radio module itself knows neither."""
    if not virtual_selected():
        return None
    from hipsync.sim.bleak_backend import VIRTUAL_BACKEND

    return VIRTUAL_BACKEND


def air_address() -> str | None:
    """The running virtual air named by HIPSYNC_AIR, None when unset. An empty or malformed value
    is a mistake (it would otherwise start a private device), so it is refused."""
    value = os.environ.get(ENV_AIR)
    if value is None:
        return None
    host, _, port = value.strip().rpartition(":")
    if not host or not port.isdigit():
        raise CliError(f"{ENV_AIR}={value!r} is not host:port: use the line `hipsync "
                       f"virtual-device` prints, or unset {ENV_AIR} to start a private virtual "
                       f"device", EXIT_USAGE)
    return value.strip()


# ----------------------------------------------------------------------------- the patient
def add_patient_arguments(p: argparse.ArgumentParser, *, seed: int = 1) -> None:
    """Who wears the virtual device (the same options for `demo` and `virtual-device`)."""
    p.add_argument("--weak-side", choices=["left", "right", "none"], default="left",
                   help="the side whose gluteus medius is weak (none: a healthy person)")
    p.add_argument("--compensation", choices=["stance", "contra", "none"], default="stance",
                   help="which erector takes over in the weak side's single support (ignored "
                        "with --weak-side none)")
    p.add_argument("--seed", type=int, default=seed, help="the simulated person's random seed")
    p.add_argument("--bad-mvc", action="append", default=[], metavar="MUSCLE",
                   choices=["l_gmed", "r_gmed", "l_es", "r_es"],
                   help="the first MVC attempt of this muscle is weak (repeatable)")
    p.add_argument("--restless-calibration", action="store_true",
                   help="the first standing calibration: the patient does not stand still")
    p.add_argument("--sloppy-task", choices=list(EXAM_TASK_NAMES), default=None,
                   help="the first attempt of this exam task (each side) is done badly: too few "
                        "repetitions")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second")


@dataclass(frozen=True)
class Wearer:
    config: object  # hipsync.sim.PatientConfig
    behaviour: object  # hipsync.sim.live_patient.Behaviour

    def describe(self) -> str:
        c = self.config
        if c.weak_side is None:
            return f"simulated healthy person (seed {c.seed})"
        return (f"simulated patient, weak {c.weak_side} gluteus medius, "
                f"{c.es_compensation or 'no'} erector compensation (seed {c.seed})")


def wearer_from(args: argparse.Namespace) -> Wearer:
    from hipsync.sim import PatientConfig
    from hipsync.sim.live_patient import Behaviour

    if not (math.isfinite(args.speed) and args.speed > 0):
        raise CliError("--speed must be a positive number")
    weak = None if args.weak_side == "none" else args.weak_side
    compensation = None if weak is None or args.compensation == "none" else args.compensation
    return Wearer(PatientConfig(weak_side=weak, es_compensation=compensation, seed=args.seed),
                  Behaviour(weak_mvc=frozenset(args.bad_mvc),
                            restless_calibration=args.restless_calibration,
                            sloppy_task=args.sloppy_task))


@dataclass
class VirtualRig:
    """A running virtual device with its air and the person wearing it."""

    device: object  # hipsync.sim.virtual_device.VirtualDevice
    air: object  # hipsync.sim.air.Air
    patient: object  # hipsync.sim.live_patient.LivePatient


@contextlib.contextmanager
def virtual_device(fs_dir: Path, *, wearer: Wearer | None = None, speed: float = 1.0,
                   device_id: str = VIRTUAL_DEVICE_ID, secrets=None, link=None,
                   idle: str = "walk_about", keep_truth: bool = False) -> Iterator[VirtualRig]:
    """Air + live patient + VirtualDevice with its filesystem in fs_dir, provisioned (if not yet)
    into `secrets` (a SecretStore). The patient hears what is said in the air's room. Sets
    HIPSYNC_AIR."""
    from hipsync.provision import provision_virtual
    from hipsync.secrets import SecretStore, UnknownDevice
    from hipsync.sim import PatientConfig
    from hipsync.sim.air import Air, LinkModel
    from hipsync.sim.live_patient import LivePatient
    from hipsync.sim.virtual_device import VirtualDevice

    secrets = secrets or SecretStore()
    fs_dir.mkdir(parents=True, exist_ok=True)
    if not (fs_dir / "secret.bin").exists():
        provision_virtual(fs_dir, bytes.fromhex(device_id), store=secrets)
    else:
        try:
            secrets.get(bytes.fromhex(device_id))
        except UnknownDevice:
            provision_virtual(fs_dir, bytes.fromhex(device_id), store=secrets)
    wearer = wearer or Wearer(PatientConfig(weak_side="left", es_compensation="stance", seed=1),
                              None)
    work = Path(tempfile.mkdtemp(prefix="hipsync-patient-"))
    patient = LivePatient(wearer.config, work / "chips.fifo", behaviour=wearer.behaviour,
                          idle=idle, keep_truth=keep_truth)
    try:
        with Air(link or LinkModel(speed=speed)) as air, patient, \
                VirtualDevice(air, feed_path=patient.fifo_path, device_id=device_id,
                              fs_dir=fs_dir) as dev:
            air.listeners.append(patient.hear)
            dev.wait_advertising(timeout_s=20)
            os.environ[ENV_AIR] = air.address
            yield VirtualRig(dev, air, patient)
    finally:
        with contextlib.suppress(OSError):
            work.rmdir()


def voice() -> Callable[[dict], Awaitable[None]] | None:
    """What a guided protocol says to the person: on the virtual device, the live patient hears
    it through the air's room; on a real device the terminal prompt is all there is."""
    if not virtual_selected():
        return None
    from hipsync.sim.voice import Voice

    address = air_address()
    return Voice(address) if address else None


def authenticator(secrets=None) -> Callable[[object], Awaitable[bytes]]:
    """An `authenticate(link)` that looks the device's secret up by the id it reports (INFO)."""
    from hipsync.ble import commands as cmd
    from hipsync.secrets import SecretStore, UnknownDevice
    from hipsync.sync import authenticate

    async def run(link) -> bytes:
        _, info = await link.command(cmd.OP_INFO)
        device_id = bytes(info[7])
        try:
            ds = (secrets or SecretStore()).get(device_id)
        except UnknownDevice:
            raise CliError(f"no secret for device {device_id.hex()} on this host: provision it "
                           f"first (`hipsync provision`)", EXIT_FAILED) from None
        await authenticate(link, ds.secret, device_id)
        return device_id

    return run


@contextlib.asynccontextmanager
async def connected(address: str | None = None, timeout_s: float = 5.0,
                    auto_reconnect: bool = True) -> AsyncIterator:
    """A connected DeviceLink to the device at `address`, or to the strongest one found.
    auto_reconnect=False for callers that reconnect themselves (sync)."""
    from hipsync import ble
    from hipsync.secrets import ENV_SECRETS

    with contextlib.ExitStack() as stack:
        if virtual_selected() and air_address() is None:
            # a private device for this command: its secret lives and dies with it, in a secrets
            # file of its own (never the user's, where it would replace a real entry)
            from hipsync.secrets import SecretStore

            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hipsync-")))
            secrets_path = tmp / "secrets.json"
            os.environ[ENV_SECRETS] = str(secrets_path)
            stack.enter_context(virtual_device(tmp / "device", secrets=SecretStore(secrets_path)))
        target = address
        if target is None:
            found = await ble.scan(timeout_s=timeout_s, stop_after=1, backend=backend())
            if not found:
                raise CliError("no hipsync device found: is it on, charged and not connected "
                               "to another host?", EXIT_FAILED)
            target = found[0]
        link = ble.DeviceLink(target, auto_reconnect=auto_reconnect, backend=backend())
        await link.connect()
        try:
            yield link
        finally:
            await link.disconnect()
