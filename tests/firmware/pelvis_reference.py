"""Float (CPython) twin of firmware/dsp/pelvis.py, motion synthesis, a MicroPython runner for the
device estimator, and the BROAD / imufusion evaluation used by the tests and bench/bench_pelvis.py.

The reference is the same filter in float64: same rest detection, bias average, Mahony gain,
acceleration band, Euler order and heading tracking; only the fixed-point rounding differs.
Angle definitions: docs/CONVENTIONS.md.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "shared"))

import micropython_port
from hipwire import units

ACC_LSB_PER_G = units.ACC_LSB_PER_G
GYR_LSB_PER_DPS = units.GYR_LSB_PER_DPS_X10 / 10
G_MS2 = 9.81
BROAD_DIR = REPO.parent / "shared" / "data" / "broad_orientation"
BROAD_TRIAL = BROAD_DIR / "02_undisturbed_slow_rotation_B.mat"
BROAD_SKIP = f"BROAD data not found at {BROAD_DIR} (see shared/data/README.md): skipped"


# ---- quaternion helpers (w, x, y, z; body -> world) ------------------------------------------
def qmul(a, b):
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return (aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw)


def euler_zxy_deg(q):
    """(obliquity, tilt, yaw) in degrees of q = qz(yaw) qx(obliquity) qy(tilt)."""
    w, x, y, z = q
    r31 = 2 * (x * z - w * y)
    r32 = 2 * (y * z + w * x)
    r33 = w * w - x * x - y * y + z * z
    r12 = 2 * (x * y - w * z)
    r22 = w * w - x * x + y * y - z * z
    obl = math.atan2(r32, math.hypot(r12, r22))
    return math.degrees(obl), math.degrees(math.atan2(-r31, r33)), math.degrees(math.atan2(-r12, r22))


def quat_from_pelvis_deg(obliquity, tilt, rotation):
    """Quaternion(s) (N, 4) of pelvis angles: Rz(-rotation) Rx(obliquity) Ry(tilt)."""
    ob, ti, ro = np.broadcast_arrays(*(np.radians(np.asarray(v, float)) for v in (obliquity, tilt, rotation)))
    zero = np.zeros_like(ob)
    qz = (np.cos(-ro / 2), zero, zero, np.sin(-ro / 2))
    qx = (np.cos(ob / 2), np.sin(ob / 2), zero, zero)
    qy = (np.cos(ti / 2), zero, np.sin(ti / 2), zero)
    return np.stack(qmul(qmul(qz, qx), qy), -1)


def up_in_body(q):
    """World up (+z) seen in the body frame, for quaternions (N, 4)."""
    w, x, y, z = np.asarray(q, float).T
    return np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z], -1)


def up_from_angles_deg(obliquity, tilt):
    """Up vector in the body frame from obliquity/tilt (any rotation; zero calibration)."""
    ob, ti = np.radians(obliquity), np.radians(tilt)
    return np.stack([-np.cos(ob) * np.sin(ti), np.sin(ob), np.cos(ob) * np.cos(ti)], -1)


# ---- motion synthesis ------------------------------------------------------------------------
def synthesize_imu(q_body_to_world, rate_hz=100.0, lin_acc_world_g=None, gyro_bias_dps=(0, 0, 0),
                   gyro_noise_dps=0.0, acc_noise_g=0.0, seed=0):
    """Body-frame counts (N, 6) int16 for a trajectory of unit quaternions (N, 4).

    Gyro sample k is the constant body rate that takes pose k-1 to pose k; acc sample k is the
    specific force (up + linear acceleration, in g) in body frame k."""
    from scipy.spatial.transform import Rotation

    q = np.asarray(q_body_to_world, float)
    rot = Rotation.from_quat(q[:, [1, 2, 3, 0]])
    rel = rot[:-1].inv() * rot[1:]
    gyr = np.vstack([np.zeros(3), np.degrees(rel.as_rotvec()) * rate_hz])
    f_world = np.tile([0.0, 0.0, 1.0], (len(q), 1))
    if lin_acc_world_g is not None:
        f_world = f_world + np.asarray(lin_acc_world_g, float)
    acc = rot.inv().apply(f_world)
    rng = np.random.default_rng(seed)
    gyr = gyr + np.asarray(gyro_bias_dps, float) + gyro_noise_dps * rng.standard_normal(gyr.shape)
    acc = acc + acc_noise_g * rng.standard_normal(acc.shape)
    counts = np.hstack([acc * ACC_LSB_PER_G, gyr * GYR_LSB_PER_DPS])
    return np.clip(np.round(counts), -32768, 32767).astype(np.int16)


# ---- the float filter ------------------------------------------------------------------------
class PelvisReference:
    """Float64 version of dsp.pelvis.PelvisEstimator (same parameters, same structure)."""

    def __init__(self, rate_hz=units.IMU_RATE_HZ, gain=0.5, init_gain=5.0, init_s=1.0,
                 acc_reject_g=0.2, rest_gyro_dps=3.0, rest_noise_dps=1.0, rest_s=1.0,
                 bias_tau_s=1.28, heading_tau_s=5.0):
        self.rate_hz = rate_hz
        dps_per_count = 1 / GYR_LSB_PER_DPS
        self.half_rad_per_count = 0.5 / rate_hz * math.pi / 180 * dps_per_count
        self.kp = 0.5 * gain / rate_hz
        self.kp0 = 0.5 * init_gain / rate_hz
        self.init_n = int(init_s * rate_hz + 0.5)
        self.a_lo = max(0.0, 1.0 - acc_reject_g)
        self.a_hi = min(2.9, 1.0 + acc_reject_g)
        self.dev_max = rest_noise_dps / dps_per_count
        self.abs_max = rest_gyro_dps / dps_per_count
        self.rest_need = max(1, int(rest_s * rate_hz + 0.5))
        bsh = max(0, min(16, int(math.log2(max(1.0, bias_tau_s * rate_hz)) + 0.5)))
        self.bias_alpha = 2.0 ** -bsh
        # heading tracker gain quantised like the device's (HAQ / 2**HF, 64 <= HAQ < 128)
        self.head_alpha = 0.0
        if heading_tau_s * rate_hz >= 1:
            f = 0
            while 2 ** f / (heading_tau_s * rate_hz) < 64:
                f += 1
            self.head_alpha = int(2 ** f / (heading_tau_s * rate_hz) + 0.5) / 2 ** f
        self.q = None
        self.bias = np.zeros(3)
        self.lp = np.zeros(3)
        self.rest_n = 0
        self.mount = (1.0, 0.0, 0.0, 0.0)
        self.href = None
        self.init_left = self.init_n
        self.cal = None
        self.accel_rejected = False
        self.at_rest = False

    def begin_standing_calibration(self):
        self.cal = []

    def end_standing_calibration(self, min_s=0.5, max_gyro_dps=5.0, max_acc_range_g=0.1):
        cal, self.cal = self.cal, None
        if not cal or len(cal) < max(1, int(min_s * self.rate_hz)):
            return False
        arr = np.array(cal)
        acc, gmax = arr[:, :3], np.abs(arr[:, 3:]).max()
        if gmax / GYR_LSB_PER_DPS > max_gyro_dps or np.ptp(acc, 0).max() > max_acc_range_g * ACC_LSB_PER_G:
            return False
        ax, ay, az = acc.mean(0)
        obl = math.atan2(ay, math.hypot(ax, az))
        tilt = math.atan2(-ax, az)
        qy = (math.cos(-tilt / 2), 0.0, math.sin(-tilt / 2), 0.0)
        qx = (math.cos(-obl / 2), math.sin(-obl / 2), 0.0, 0.0)
        self.mount = qmul(qy, qx)
        self.href = None
        return True

    def _start(self, a):
        ax, ay, az = a if np.any(a) else (0, 0, 1)
        obl = math.atan2(ay, math.hypot(ax, az))
        tilt = math.atan2(-ax, az)
        self.q = qmul((math.cos(obl / 2), math.sin(obl / 2), 0, 0),
                      (math.cos(tilt / 2), 0, math.sin(tilt / 2), 0))

    def step(self, sample):
        a = np.asarray(sample[:3], float)
        g = np.asarray(sample[3:], float)
        if self.q is None:
            self._start(a)
        w = g - self.bias
        d = g - self.lp
        self.lp = self.lp + d / 8
        quiet = np.all(np.abs(d) < self.dev_max) and np.all(np.abs(w) < self.abs_max)
        self.rest_n = min(self.rest_n + 1, self.rest_need) if quiet else 0
        self.at_rest = self.rest_n >= self.rest_need
        if self.at_rest:
            self.bias = self.bias + w * self.bias_alpha
        e = w * self.half_rad_per_count
        qw, qx, qy, qz = self.q
        v = np.array([2 * (qx * qz - qw * qy), 2 * (qy * qz + qw * qx), qw * qw - qx * qx - qy * qy + qz * qz])
        ag = a / ACC_LSB_PER_G
        norm = float(np.linalg.norm(ag))
        initialising = self.init_left > 0
        if initialising or self.a_lo <= norm <= self.a_hi:
            self.accel_rejected = False
            e = e + (self.kp0 if initialising else self.kp) * np.clip(np.cross(ag, v), -1, 1)
        else:
            self.accel_rejected = True
        if initialising:
            self.init_left -= 1
        e = np.clip(e, -0.125, 0.125)
        dq = qmul(self.q, (0.0, *e))
        q = np.add(self.q, dq)
        self.q = tuple(q / np.linalg.norm(q))
        if self.cal is not None:
            self.cal.append((*a, *np.abs(w)))
        obl, tilt, yaw = euler_zxy_deg(qmul(self.q, self.mount))
        if self.href is None:
            self.href = yaw
        dh = (yaw - self.href + 180) % 360 - 180
        self.href = (self.href + self.head_alpha * dh + 180) % 360 - 180
        return obl, tilt, -dh

    def run(self, imu_counts, events=()):
        """Angles (N, 3) in degrees; events: (sample index, 'begin' | 'end') before that sample.
        Returns (angles, flags (N, 2) [accel_rejected, at_rest], calibration results)."""
        ev = {}
        for i, name in events:
            ev.setdefault(i, []).append(name)
        out = np.zeros((len(imu_counts), 3))
        flags = np.zeros((len(imu_counts), 2), bool)
        results = []
        for k, s in enumerate(imu_counts):
            for name in ev.get(k, ()):
                if name == "begin":
                    self.begin_standing_calibration()
                else:
                    results.append(self.end_standing_calibration())
            out[k] = self.step(s)
            flags[k] = self.accel_rejected, self.at_rest
        return out, flags, results


# ---- the device estimator in MicroPython -----------------------------------------------------
_RUNNER = """
import array, json
from dsp.pelvis import PelvisEstimator
f = open(%(inp)r, 'rb'); raw = f.read(); f.close()
imu = array.array('h', raw)
if %(typecode)r == 'i':
    imu = array.array('i', imu)
n = len(imu) // 6
est = PelvisEstimator(**%(kwargs)s)
out = array.array('i', bytes(12 * n))
flags = bytearray(2 * n)
ev = %(events)s
block = %(block)d
results = []
mv = memoryview(imu)
s = 0
while s < n:
    for name in ev.get(s, ()):
        if name == 'begin':
            est.begin_standing_calibration()
        else:
            results.append(est.end_standing_calibration())
    e = min(n, s + block)
    for k in ev:
        if s < k < e:
            e = k
    est.process(mv[6 * s:6 * e], e - s, out, 3 * s)
    flags[2 * (e - 1)] = est.accel_rejected
    flags[2 * (e - 1) + 1] = est.at_rest
    s = e
f = open(%(outp)r, 'wb'); f.write(out); f.write(flags); f.close()
print(json.dumps({'bias': list(est.gyro_bias_counts), 'cal': results, 'init': est.initialising}))
"""


def run_device(imu_counts, events=(), block=10, typecode="h", **kwargs):
    """Run dsp.pelvis.PelvisEstimator in MicroPython on counts (N, 6).

    Returns (angles (N, 3) deg, flags (N, 2) [accel_rejected, at_rest] valid at block ends,
    info {'bias', 'cal', 'init'}). block=1 records flags for every sample."""
    imu = np.ascontiguousarray(imu_counts, dtype="<i2")
    n = len(imu)
    ev = {}
    for i, name in events:
        ev.setdefault(int(i), []).append(name)
    with tempfile.TemporaryDirectory() as tmp:
        inp, outp = Path(tmp) / "imu.bin", Path(tmp) / "out.bin"
        inp.write_bytes(imu.tobytes())
        code = _RUNNER % {"inp": str(inp), "outp": str(outp), "typecode": typecode,
                          "kwargs": repr(kwargs), "events": repr(ev), "block": block}
        stdout = micropython_port.check_code(code, heap="16m", timeout_s=120)
        raw = outp.read_bytes()
    angles = np.frombuffer(raw[:12 * n], "<i4").reshape(n, 3) / 100.0
    flags = np.frombuffer(raw[12 * n:], np.uint8).reshape(n, 2).astype(bool)
    return angles, flags, json.loads(stdout.strip().splitlines()[-1])


# ---- BROAD evaluation ------------------------------------------------------------------------
def load_broad(path=BROAD_TRIAL, rate_hz=100):
    """BROAD trial resampled to rate_hz: (imu counts (N, 6) int16, optical up in the IMU frame
    (N, 3) with NaN where missing, movement mask (N,))."""
    from scipy.io import loadmat
    from scipy.signal import resample_poly

    d = loadmat(str(path))
    fs = float(np.squeeze(d["sampling_rate"]))
    up_fac, down_fac = 7, 20  # 2000/7 Hz -> 100 Hz
    if abs(fs * up_fac / down_fac - rate_hz) > 1e-3:
        raise ValueError(f"unexpected BROAD rate {fs}")
    acc = resample_poly(d["imu_acc"], up_fac, down_fac, axis=0)
    gyr = resample_poly(d["imu_gyr"], up_fac, down_fac, axis=0)
    counts = np.hstack([acc / G_MS2 * ACC_LSB_PER_G, np.degrees(gyr) * GYR_LSB_PER_DPS])
    counts = np.clip(np.round(counts), -32768, 32767).astype(np.int16)
    n = len(counts)
    # optical orientation at the 100 Hz instants: normalised lerp between the two neighbours
    q = d["opt_quat"]
    u = np.arange(n) * fs / rate_hz
    i0 = np.minimum(np.floor(u).astype(int), len(q) - 2)
    f = (u - i0)[:, None]
    qa, qb = q[i0], q[i0 + 1]
    qb = np.where((np.sum(qa * qb, 1) < 0)[:, None], -qb, qb)
    qi = (1 - f) * qa + f * qb
    qi /= np.linalg.norm(qi, axis=1)[:, None]
    movement = d["movement"][np.minimum(np.round(u).astype(int), len(q) - 1), 0].astype(bool)
    return counts, up_in_body(qi), movement


def inclination_error_deg(up_est, up_ref):
    """Angle between estimated and reference up vectors in the sensor frame (deg); equals BROAD's
    calculateInclinationError of the earth-frame error quaternion (heading-independent part)."""
    a = up_est / np.linalg.norm(up_est, axis=1)[:, None]
    b = up_ref / np.linalg.norm(up_ref, axis=1)[:, None]
    return np.degrees(np.arccos(np.clip(np.sum(a * b, 1), -1, 1)))


def rmse_deg(err, mask):
    sel = err[mask]
    return float(np.sqrt(np.nanmean(sel ** 2)))


def imufusion_quaternions(imu_counts, rate_hz=100):
    """x-io Fusion (imufusion 1.3.3) 6-axis on the same counts, with its own gyro bias module;
    settings as in Fusion's own examples (gain 0.5, rejection 10 deg, timeout 5 s)."""
    import imufusion

    settings = imufusion.AhrsSettings(sample_rate=rate_hz, convention=imufusion.CONVENTION_NWU,
                                      gain=0.5, gyroscope_range=1000.0,
                                      acceleration_rejection=10.0, magnetic_rejection=10.0,
                                      rejection_timeout=int(5 * rate_hz))
    ahrs = imufusion.Ahrs()
    ahrs.set_settings(settings)
    bias = imufusion.Bias()
    bias.set_settings(imufusion.BiasSettings(sample_rate=rate_hz, stationary_threshold=3.0,
                                             stationary_period=3.0))
    acc = imu_counts[:, :3].astype(float) / ACC_LSB_PER_G
    gyr = imu_counts[:, 3:].astype(float) / GYR_LSB_PER_DPS
    out = np.zeros((len(imu_counts), 4))
    for k in range(len(imu_counts)):
        g = bias.update(np.ascontiguousarray(gyr[k]))
        ahrs.update_no_magnetometer(np.ascontiguousarray(g), np.ascontiguousarray(acc[k]))
        out[k] = ahrs.get_quaternion()
    return out


def broad_figures():
    """Inclination RMSE (deg) over BROAD's movement phases: device estimator and imufusion."""
    counts, up_ref, movement = load_broad()
    angles, _, _ = run_device(counts, block=10)
    up_dev = up_from_angles_deg(angles[:, 0], angles[:, 1])
    up_fus = up_in_body(imufusion_quaternions(counts))
    return (rmse_deg(inclination_error_deg(up_dev, up_ref), movement),
            rmse_deg(inclination_error_deg(up_fus, up_ref), movement))
