"""Session sync over the virtual link: the real firmware (flash log, SyncService, BleServer) in
MicroPython on the virtual air, hipsync.sync.sync_device through bleak (backend "virtual").

1. Record: the virtual device (provisioned, fresh flash) runs a simulated walk at RECORD_SPEED x;
   the host authenticates, REC_START, waits RECORD_DEVICE_S of device time, REC_STOP (as
   tests/host/test_virtual_device_e2e.py does).
2. Sync: the device reboots onto the same flash at speed 1 (its chips keep running in real time, as
   on a worn device) on an air with the default link model (speed 1, no loss, no disconnects), and
   sync_device fetches the session (archive only, no store).

sync_kBps: session bytes / time from sending SESSION_READ to holding every byte (authentication,
  listing, CRC check, archive write and confirm left out), in kB (1000 bytes) per second. At speed 1
  modelled time is wall time.
sync_capacity_ratio: sync_kBps / the link model's capacity for sync data. LinkModel
  .capacity_bytes_per_s(mtu) counts notification payload (ATT payload = MTU - 3 per notification,
  max_notifications_per_interval per interval); a sync chunk carries 10 bytes of its own (8 header,
  2 CRC), so the like-for-like capacity is max_notifications_per_interval x (MTU - 3 - 10) /
  interval_s, the session bytes the link could carry if every notification slot held a full chunk.
sync_link_kBps: chunk notification bytes (headers, CRC, end markers, repeats included) per second
  over the same span, for comparison with capacity_bytes_per_s itself.
10 minutes of device time make about 540 kB: three SESSION_READ windows of the host's default size.
Each window ends with a turnaround of two to three connection intervals with no chunk on air; the
unix board's socket to the air sends without TCP_NODELAY, so a response that follows another small
message waits one delayed ACK (~40 ms), one interval more than a radio would take.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from hipsync import ble
from hipsync.commands._device import VIRTUAL_DEVICE_ID
from hipsync.provision import provision_virtual
from hipsync.secrets import SecretStore
from hipsync.sim import PatientConfig, scenario
from hipsync.sim import tasks as T
from hipsync.sim.air import Air, LinkModel
from hipsync.sim.bleak_backend import VIRTUAL_BACKEND
from hipsync.sim.virtual_device import VirtualDevice
from hipsync.sync import authenticate, sync_device
from hipwire import commands as cmd

RECORD_DEVICE_S = 600.0
RECORD_SPEED = 20.0
CHUNK_OVERHEAD = cmd.CHUNK_HEADER_SIZE + 2  # header + CRC-16 of each chunk
DEVICE_ID = bytes.fromhex(VIRTUAL_DEVICE_ID)


async def _connect(air: Air) -> ble.DeviceLink:
    os.environ["HIPSYNC_AIR"] = air.address
    found = await ble.scan(timeout_s=5, backend=VIRTUAL_BACKEND, stop_after=1)
    if not found:
        raise RuntimeError("virtual device not found")
    link = ble.DeviceLink(found[0], backend=VIRTUAL_BACKEND)
    await link.connect()
    return link


async def record(air: Air, secret: bytes) -> tuple[int, int]:
    link = await _connect(air)
    try:
        await authenticate(link, secret, DEVICE_ID)
        _, (t0,) = await link.command(cmd.OP_TIME_SYNC, int(time.time() * 1000))
        _, (sid,) = await link.command(cmd.OP_REC_START)
        while True:  # device time, from its own clock: the chips may lag the nominal speed
            await asyncio.sleep(1.0)
            _, (now,) = await link.command(cmd.OP_TIME_SYNC, int(time.time() * 1000))
            if now - t0 >= RECORD_DEVICE_S * 1000:
                break
        await link.command(cmd.OP_REC_STOP)
        return sid, now - t0
    finally:
        await link.disconnect()


class _TimedLink:
    """The link as sync_device sees it, noting when the first SESSION_READ went out."""

    def __init__(self, link: ble.DeviceLink):
        self._link = link
        self.first_read: float | None = None

    def __getattr__(self, name):
        return getattr(self._link, name)

    async def command(self, op: int, *args):
        if op == cmd.OP_SESSION_READ and self.first_read is None:
            self.first_read = time.monotonic()
        return await self._link.command(op, *args)


async def sync(air: Air, secret: bytes, archive: Path) -> dict:
    link = await _connect(air)
    timed = _TimedLink(link)
    done: list[float] = []

    def progress(p) -> None:
        if p.bytes_done == p.bytes_total and not done:
            done.append(time.monotonic())

    try:
        result = await sync_device(timed, None, progress, secret=secret, device_id=DEVICE_ID,
                                   archive_dir=archive)
    finally:
        await link.disconnect()
    if len(result.synced) != 1 or not done or timed.first_read is None:
        raise RuntimeError(f"expected one session synced, got {result}")
    return {"size": result.synced[0].size, "span_s": done[0] - timed.first_read,
            "received": result.bytes_received, "chunks": result.chunks,
            "requests": result.requests, "mtu": link.mtu}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="hipsync-bench-sync-") as tmp:
        work = Path(tmp)
        scen = scenario.build(PatientConfig(seed=5), work / "patient",
                              tasks=[T.rest(2.0), T.walking(RECORD_DEVICE_S + 20.0)])
        fs = work / "fs"
        secret = provision_virtual(fs, DEVICE_ID, store=SecretStore(work / "secrets.json")).secret
        with Air(LinkModel(speed=RECORD_SPEED)) as air, VirtualDevice(
                air, feed_path=scen.feed_path, fs_dir=fs, device_id=VIRTUAL_DEVICE_ID) as dev:
            dev.wait_advertising(timeout_s=20)
            sid, recorded_ms = asyncio.run(record(air, secret))
        model = LinkModel()  # the default: speed 1, 30 ms interval, 5 notifications per interval
        with Air(model) as air, VirtualDevice(air, feed_path=scen.feed_path, fs_dir=fs,
                                              device_id=VIRTUAL_DEVICE_ID) as dev:
            dev.wait_advertising(timeout_s=20)
            got = asyncio.run(sync(air, secret, work / "archive"))
            stats = air.stats
    span_s = got["span_s"] * model.speed  # modelled seconds (speed 1: the same)
    kbps = got["size"] / span_s / 1000
    link_kbps = (got["received"] + got["chunks"] * CHUNK_OVERHEAD) / span_s / 1000
    att = got["mtu"] - 3
    capacity = model.capacity_bytes_per_s(got["mtu"]) * (att - CHUNK_OVERHEAD) / att / 1000
    print(f"# session {sid}: {recorded_ms / 1000:.0f} s of device time, {got['size']} bytes, "
          f"{got['chunks']} chunks, {got['requests']} reads, mtu {got['mtu']}, "
          f"{got['span_s']:.2f} s; air delivered {stats.delivered}, lost "
          f"{stats.dropped()}", file=sys.stderr)
    print(f"BENCH sync_kBps {kbps:.1f} kB/s")
    print(f"BENCH sync_link_kBps {link_kbps:.1f} kB/s")
    print(f"BENCH sync_capacity_ratio {kbps / capacity:.2f} ratio")


if __name__ == "__main__":
    main()
