"""End to end: CPython writes a chip feed (host/hipsync/sim/feed.py), the real drivers and captures
run in MicroPython against the fake chips reading it, and every code, lead-off bit and IMU count
comes back unchanged (IMU rotated to the body frame)."""

from __future__ import annotations

from pathlib import Path

import micropython_port
import numpy as np
import pytest
from hipsync.sim.feed import FeedError, read_feed, write_feed
from hipwire import units

MOUNTING = np.array([[0, 0, -1], [-1, 0, 0], [0, 1, 0]])  # board/pins.py IMU_TO_BODY

_CAPTURE = """
import array
import hardware_clock
from board import hw
from capture.emg_capture import EmgCapture
from capture.imu_capture import ImuCapture
from drivers import ads1294, icm42688

def no_delay(ms):
    pass

clock = hardware_clock.install({feed!r}, block_samples=100)
b = hw.build()
afe = ads1294.Ads1294(b.afe_spi, b.afe_cs, b.afe_start, b.afe_reset_n, b.afe_pwdn_n, delay_ms=no_delay)
afe.begin()
imu = icm42688.Icm42688(b.imu_spi, b.imu_cs, delay_ms=no_delay)
imu.begin()
emg = EmgCapture(afe, b.afe_drdy, b.drdy_counter, ring_samples=256)
ic = ImuCapture(imu, b.imu_to_body, emg)
emg.start()
ic.start()
codes = array.array("i", bytes(4 * 4 * 256))
lo = bytearray(256)
body = array.array("h", bytes(2 * 6 * 128))
emg_runs = []
imu_runs = []
with open({out!r} + ".emg", "wb") as fe, open({out!r} + ".lo", "wb") as fl, open({out!r} + ".imu", "wb") as fi:
    def drain():
        while True:
            n = emg.drain(codes, lo, 256)
            if not n:
                break
            emg_runs.append((emg.clock_first, n))
            fe.write(memoryview(codes)[:4 * n])
            fl.write(memoryview(lo)[:n])
        while True:
            n = ic.drain(body, 128)
            if not n:
                break
            imu_runs.append((ic.clock_first, n))
            fi.write(memoryview(body)[:6 * n])
    while not clock.finished:
        clock.advance(40)
        drain()
    clock.advance(20)
    drain()
print("RESULT", emg.delivered, emg.lost_samples, ic.delivered, ic.lost_samples, clock.imu.first_clock,
      emg_runs[0][0], imu_runs[0][0])
"""


def _feed_arrays(n_emg: int, rng: np.random.Generator):
    codes = rng.integers(units.EMG_CODE_MIN, units.EMG_CODE_MAX + 1, size=(n_emg, 4), dtype=np.int64)
    codes[:4] = [[units.EMG_CODE_MIN, units.EMG_CODE_MAX, -1, 0]] * 4  # rails and sign boundary
    leadoff = np.zeros(n_emg, dtype=np.uint32)
    leadoff[700:1300] |= 0b0100  # l_es electrode lifted for 0.6 s
    leadoff[2000:2100] |= 0b0011
    imu = rng.integers(-32768, 32768, size=(n_emg // 10, 6), dtype=np.int64)
    imu[0] = [-32768, 32767, -32768, -32768, 0, 32767]  # -(-32768) saturates to 32767
    return codes.astype(np.int32), leadoff, imu.astype(np.int16)


def test_feed_round_trips_in_cpython(tmp_path: Path):
    codes, leadoff, imu = _feed_arrays(500, np.random.default_rng(1))
    path = write_feed(tmp_path / "f.feed", codes, leadoff, imu)
    got_codes, got_lo, got_imu, emg_hz, imu_hz = read_feed(path)
    assert np.array_equal(got_codes, codes) and np.array_equal(got_lo, leadoff)
    assert np.array_equal(got_imu, imu) and (emg_hz, imu_hz) == (1000, 100)


@pytest.mark.parametrize("bad", ["code_range", "shape", "leadoff"])
def test_feed_writer_rejects_what_the_chips_cannot_produce(tmp_path: Path, bad: str):
    codes, leadoff, imu = _feed_arrays(100, np.random.default_rng(2))
    if bad == "code_range":
        codes = codes.astype(np.int64)
        codes[5, 1] = units.EMG_CODE_MAX + 1
    elif bad == "shape":
        codes = codes[:, :3]
    else:
        leadoff = leadoff.copy()
        leadoff[3] = 16
    with pytest.raises(FeedError):
        write_feed(tmp_path / "bad.feed", codes, leadoff, imu)


def test_micropython_capture_returns_the_fed_samples(tmp_path: Path):
    n_emg = 5000
    codes, leadoff, imu = _feed_arrays(n_emg, np.random.default_rng(3))
    feed = write_feed(tmp_path / "walk.feed", codes, leadoff, imu)
    out = str(tmp_path / "out")
    stdout = micropython_port.check_code(_CAPTURE.format(feed=str(feed), out=out))
    line = next(s for s in stdout.splitlines() if s.startswith("RESULT"))
    emg_n, emg_lost, imu_n, imu_lost, imu_first_true, emg_first, imu_first = map(int, line.split()[1:])
    assert (emg_n, emg_lost, imu_n, imu_lost) == (n_emg, 0, n_emg // 10, 0)
    assert emg_first == 0
    assert abs(imu_first - imu_first_true) <= 5

    got_codes = np.fromfile(out + ".emg", dtype="<i4").reshape(-1, 4)
    got_lo = np.fromfile(out + ".lo", dtype=np.uint8)
    got_imu = np.fromfile(out + ".imu", dtype="<i2").reshape(-1, 6)
    assert np.array_equal(got_codes, codes)
    assert np.array_equal(got_lo, leadoff)
    want = np.concatenate([imu[:, :3].astype(np.int64) @ MOUNTING.T, imu[:, 3:].astype(np.int64) @ MOUNTING.T],
                          axis=1)
    assert np.array_equal(got_imu, np.clip(want, -32768, 32767))
