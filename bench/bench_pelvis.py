"""Pelvis orientation (firmware/dsp/pelvis.py) on the BROAD trial and its speed in MicroPython.

tilt_rmse_deg_broad*: inclination error RMSE (deg) over BROAD's movement phases of trial 02 at
100 Hz, device estimator vs imufusion 1.3.3 on the same counts (tests/firmware/pelvis_reference.py).
pelvis_rtf: seconds of 100 Hz IMU data processed per second of the MicroPython unix port (blocks of
10 samples, as from the IMU FIFO); an ESP32 is roughly 50-100x slower (docs/REFERENCES.md)."""

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "firmware"))

import pelvis_reference as pr

_SPEED = """
import array, time
from dsp.pelvis import PelvisEstimator
f = open(%(path)r, 'rb'); imu = array.array('h', f.read()); f.close()
block = 10
n = len(imu) // 6 // block * block
blocks = [memoryview(imu)[6 * s:6 * (s + block)] for s in range(0, n, block)]
out = array.array('i', bytes(4 * 3 * block))
best = None
for rep in range(3):
    est = PelvisEstimator()
    t0 = time.ticks_us()
    for b in blocks:
        est.process(b, block, out, 0)
    dt = time.ticks_diff(time.ticks_us(), t0)
    best = dt if best is None or dt < best else best
print(n / 100 / (best / 1e6))
"""


def rtf(counts):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "imu.bin"
        path.write_bytes(np.ascontiguousarray(counts, "<i2").tobytes())
        out = pr.micropython_port.check_code(_SPEED % {"path": str(path)}, heap="16m", timeout_s=300)
    return float(out.strip().splitlines()[-1])


def main() -> int:
    status = 0
    if pr.BROAD_TRIAL.exists():
        device, fusion = pr.broad_figures()
        print(f"BENCH tilt_rmse_deg_broad {device:.3f} deg")
        print(f"BENCH tilt_rmse_deg_broad_imufusion {fusion:.3f} deg")
        counts = pr.load_broad()[0]
    else:
        print(pr.BROAD_SKIP, file=sys.stderr)
        status = 1
        t = np.arange(0, 120, 0.01)
        q = pr.quat_from_pelvis_deg(5 * np.sin(2 * np.pi * 0.9 * t), 3 * np.sin(3.6 * np.pi * t),
                                    6 * np.sin(1.8 * np.pi * t))
        counts = pr.synthesize_imu(q, gyro_noise_dps=0.05, acc_noise_g=0.004)
    print(f"BENCH pelvis_rtf {rtf(counts):.0f} x")
    return status


if __name__ == "__main__":
    sys.exit(main())
