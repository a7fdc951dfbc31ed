"""Capture throughput on the unix port: EMG 4 ch @ 1 kHz + IMU @ 100 Hz through the fake chips, the
real drivers and both captures (DRDY IRQ per sample, IMU FIFO drained every 50 ms), in multiples of
real time. Fake-chip work (frame building, SPI routing) is included, so the capture alone is faster.
The ESP32-S3 runs bytecode roughly 35-100x slower than this (docs/REFERENCES.md)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import micropython_port

_TICKS = 30000  # 30 s of device time

_CODE = """
import array, time
import hardware_clock
from board import hw
from capture.emg_capture import EmgCapture
from capture.imu_capture import ImuCapture
from drivers import ads1294, icm42688

def no_delay(ms):
    pass

clock = hardware_clock.install()
b = hw.build()
afe = ads1294.Ads1294(b.afe_spi, b.afe_cs, b.afe_start, b.afe_reset_n, b.afe_pwdn_n, delay_ms=no_delay)
afe.begin()
imu = icm42688.Icm42688(b.imu_spi, b.imu_cs, delay_ms=no_delay)
imu.begin()
emg = EmgCapture(afe, b.afe_drdy, b.drdy_counter, ring_samples=256)
ic = ImuCapture(imu, b.imu_to_body, emg)
codes = array.array("i", bytes(4 * 4 * 256))
lo = bytearray(256)
body = array.array("h", bytes(2 * 6 * 128))

def run(ticks):
    left = ticks
    while left > 0:
        clock.advance(50)
        emg.drain(codes, lo, 256)
        ic.drain(body, 128)
        left -= 50

emg.start()
ic.start()
run(1000)
t0 = time.ticks_us()
run(%d)
dt = time.ticks_diff(time.ticks_us(), t0)
assert emg.lost_samples == 0 and ic.lost_samples == 0
print("RTF", %d * 1000 / dt)
"""


def main() -> None:
    best = 0.0
    for _ in range(3):
        out = micropython_port.check_code(_CODE % (_TICKS, _TICKS))
        rtf = float(next(s for s in out.splitlines() if s.startswith("RTF")).split()[1])
        best = max(best, rtf)
    print(f"BENCH capture_rtf {best:.1f} x")


if __name__ == "__main__":
    main()
