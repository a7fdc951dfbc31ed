"""Finding, connecting to and authenticating with a device, for the commands that need one.

With `--virtual` (HIPSYNC_BACKEND=virtual) the commands use the virtual radio. If HIPSYNC_AIR names
a running virtual air (`hipsync virtual-device` prints it), they connect to the device there;
otherwise they start a virtual device of their own for the length of the command, worn by a
simulated patient who walks, provisioned with a secret that only this command knows."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from hipsync.cli import EXIT_FAILED, CliError

VIRTUAL_DEVICE_ID = "02a1b2c3d4e5"


def virtual_selected() -> bool:
    return os.environ.get("HIPSYNC_BACKEND", "") == "virtual"


@contextlib.contextmanager
def virtual_device(fs_dir: Path, *, walk_s: float = 600.0, speed: float = 1.0, seed: int = 1,
                   device_id: str = VIRTUAL_DEVICE_ID, secrets=None, link=None):
    """Air + VirtualDevice with its filesystem in fs_dir, provisioned (if not yet) into `secrets`
    (a SecretStore); the patient stands for calibration, then walks. Sets HIPSYNC_AIR."""
    from hipsync.provision import provision_virtual
    from hipsync.secrets import SecretStore, UnknownDevice
    from hipsync.sim import PatientConfig, scenario
    from hipsync.sim import tasks as T
    from hipsync.sim.air import Air, LinkModel
    from hipsync.sim.virtual_device import VirtualDevice

    secrets = secrets or SecretStore()
    if not (fs_dir / "secret.bin").exists():
        provision_virtual(fs_dir, bytes.fromhex(device_id), store=secrets)
    else:
        try:
            secrets.get(bytes.fromhex(device_id))
        except UnknownDevice:
            provision_virtual(fs_dir, bytes.fromhex(device_id), store=secrets)
    scen = scenario.build(PatientConfig(weak_side="left", es_compensation="stance", seed=seed),
                          fs_dir.parent / (fs_dir.name + "-patient"),
                          tasks=[T.rest(scenario.LEAD_IN_S), T.standing_calibration(10.0),
                                 T.walking(walk_s)])
    with Air(link or LinkModel(speed=speed)) as air, \
            VirtualDevice(air, feed_path=scen.feed_path, device_id=device_id, fs_dir=fs_dir) as dev:
        dev.wait_advertising(timeout_s=20)
        os.environ["HIPSYNC_AIR"] = air.address
        yield dev


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
        if virtual_selected() and not os.environ.get("HIPSYNC_AIR"):
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hipsync-")))
            os.environ.setdefault(ENV_SECRETS, str(tmp / "secrets.json"))
            stack.enter_context(virtual_device(tmp / "device"))
        target = address
        if target is None:
            found = await ble.scan(timeout_s=timeout_s, stop_after=1)
            if not found:
                raise CliError("no hipsync device found: is it on, charged and not connected "
                               "to another host?", EXIT_FAILED)
            target = found[0]
        link = ble.DeviceLink(target, auto_reconnect=auto_reconnect)
        await link.connect()
        try:
            yield link
        finally:
            await link.disconnect()
