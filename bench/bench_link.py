"""Throughput of the virtual BLE link, measured through bleak (hipsync.ble, backend "virtual") from
the real BleServer in MicroPython, against the link model's nominal capacity.

virtual_link_notify_kBps: notification payload bytes per wall second received by the host while the
  device streams full frames as fast as the link takes them (speed 1, default link model).
virtual_link_model_capacity_kBps: max notifications per interval x (MTU - 3) / interval.
virtual_link_command_rtt_ms: median write-command-to-response time (about two connection events).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from hipsync import ble  # noqa: E402
from hipsync.sim.air import Air, LinkModel  # noqa: E402
from hipsync.sim.bleak_backend import VIRTUAL_BACKEND
from hipsync.sim.virtual_device import VirtualDevice  # noqa: E402
from hipwire import commands  # noqa: E402
from micropython_port import MP_TESTS  # noqa: E402

MEASURE_S = 3.0


async def measure(link: ble.DeviceLink) -> tuple[float, float]:
    rtts = []
    for _ in range(10):
        t0 = time.perf_counter()
        await link.command(commands.OP_TIME_SYNC, 0)
        rtts.append(time.perf_counter() - t0)
    await link.command(commands.OP_STREAM_START, commands.MODE_PROCESSED)
    await asyncio.sleep(0.5)  # settle: pool full, link saturated
    while not link.stream_queue.empty():
        link.stream_queue.get_nowait()
    nbytes = 0
    t0 = time.monotonic()
    while (now := time.monotonic()) - t0 < MEASURE_S:
        try:
            data, _ = await asyncio.wait_for(link.stream_queue.get(), 1.0)
        except TimeoutError:
            continue
        nbytes += len(data)
    elapsed = now - t0
    await link.command(commands.OP_STREAM_STOP)
    return nbytes / elapsed / 1000, statistics.median(rtts) * 1000


async def run(air: Air) -> tuple[float, float, int]:
    os.environ["HIPSYNC_AIR"] = air.address
    found = await ble.scan(5.0, backend=VIRTUAL_BACKEND, stop_after=1)
    link = ble.DeviceLink(found[0], backend=VIRTUAL_BACKEND)
    await link.connect()
    try:
        kbps, rtt_ms = await measure(link)
        return kbps, rtt_ms, link.mtu
    finally:
        await link.disconnect()


def main() -> None:
    model = LinkModel()
    with Air(model) as air:
        with VirtualDevice(air, app="ble_test_app", extra_path=(MP_TESTS,)) as dev:
            dev.wait_advertising(10)
            kbps, rtt_ms, mtu = asyncio.run(asyncio.wait_for(run(air), 60))
    capacity = model.capacity_bytes_per_s(mtu) / 1000
    print(f"BENCH virtual_link_notify_kBps {kbps:.1f} kB/s")
    print(f"BENCH virtual_link_model_capacity_kBps {capacity:.1f} kB/s")
    print(f"BENCH virtual_link_command_rtt_ms {rtt_ms:.1f} ms")


if __name__ == "__main__":
    main()
