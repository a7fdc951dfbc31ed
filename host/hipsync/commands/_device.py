"""Finding and connecting to a device for the commands that need one.

With `--virtual` (HIPSYNC_BACKEND=virtual) the commands use the virtual radio. If HIPSYNC_AIR names
a running virtual air (`hipsync virtual-device` prints it), they connect to the device there;
otherwise they start a virtual device of their own for the length of the command, worn by a
simulated patient who walks."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from hipsync.cli import EXIT_FAILED, CliError


def virtual_selected() -> bool:
    return os.environ.get("HIPSYNC_BACKEND", "") == "virtual"


@contextlib.contextmanager
def own_virtual_device(walk_s: float = 600.0, speed: float = 1.0, seed: int = 1):
    """An Air and a VirtualDevice (simulated patient walking) for this process; sets HIPSYNC_AIR."""
    from hipsync.sim import PatientConfig, scenario
    from hipsync.sim import tasks as T
    from hipsync.sim.air import Air, LinkModel
    from hipsync.sim.virtual_device import VirtualDevice

    with tempfile.TemporaryDirectory(prefix="hipsync-virtual-") as tmp:
        scen = scenario.build(PatientConfig(weak_side="left", es_compensation="stance", seed=seed),
                              Path(tmp), tasks=[T.rest(scenario.LEAD_IN_S),
                                                T.standing_calibration(10.0), T.walking(walk_s)])
        with Air(LinkModel(speed=speed)) as air, VirtualDevice(air, feed_path=scen.feed_path) as dev:
            dev.wait_advertising(timeout_s=20)
            os.environ["HIPSYNC_AIR"] = air.address
            yield dev


@contextlib.asynccontextmanager
async def connected(address: str | None = None, timeout_s: float = 5.0) -> AsyncIterator:
    """A connected DeviceLink to the device at `address`, or to the strongest one found."""
    from hipsync import ble

    with contextlib.ExitStack() as stack:
        if virtual_selected() and not os.environ.get("HIPSYNC_AIR"):
            stack.enter_context(own_virtual_device())
        target = address
        if target is None:
            found = await ble.scan(timeout_s=timeout_s, stop_after=1)
            if not found:
                raise CliError("no hipsync device found: is it on, charged and not connected "
                               "to another host?", EXIT_FAILED)
            target = found[0]
        link = ble.DeviceLink(target, auto_reconnect=True)
        await link.connect()
        try:
            yield link
        finally:
            await link.disconnect()
