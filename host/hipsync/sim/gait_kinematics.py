"""Gait timing, pelvis angles and trunk displacement per task, and the sacrum IMU they produce.

Angles and displacements are built at the EMG rate (1 kHz) as smooth functions, then differentiated
numerically: the gyroscope is the body angular velocity of the same angles and the accelerometer
is the second derivative of the same displacement plus gravity rotated into the body frame, so the
IMU is consistent with the ground truth by construction.

Orientation: world_from_body = Rz(-rotation) @ Ry(tilt) @ Rx(obliquity) (intrinsic z-y-x). The
minus sign on rotation is the convention in docs/ARCHITECTURE.md: positive rotation moves the LEFT
side (+y) forward (+x), which is a negative turn about +z.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.signal import fftconvolve

from hipwire import units

from .config import PatientConfig
from .tasks import Task

G_MPS2 = 9.80665
EVENT_DTYPE = np.dtype([("t_s", "f8"), ("kind", "U2"), ("side", "U1")])
WALK_RAMP_S = 1.0  # walking amplitude fades in and out over this time (gait initiation / stop)

# Phase (fraction of the LEFT gait cycle, 0 = left IC) of features of the walking pattern. Every
# value is matched to the Mobilise-D lower-back recordings (ASSUMPTIONS.md, "Sacrum IMU in walking";
# tests/host/test_sim_realism.py measures it).
_OBLIQUITY_PEAK_PHASE = 0.50  # right side lowest at right IC: the swing side drops through single support
_OBLIQUITY_H3_DEG = 0.35  # third harmonic of the obliquity (deg), right side lowest at this phase:
_OBLIQUITY_H3_PHASE = 0.19
_TILT_ANTERIOR_PHASE = 0.28  # anterior tilt peaks in mid stance (and at +0.5); most posterior near IC
_ROTATION_PEAK_PHASE = 0.22  # left side furthest forward in early left stance (lower-back data)
_COM_LOW_PHASE = 0.05  # trunk lowest in double support, just after IC
_ML_LEFT_PHASE = 0.35  # trunk furthest left in left mid-to-late stance
_AP_BRAKING_PHASE = 0.14  # trunk decelerates most ~0.14 cycle after IC
_ML_SWAY_M = 0.045  # amplitude of the stride-frequency sway (m)
_AP_FLUCT_G = 0.12  # step-frequency AP acceleration fluctuation at 1.2 m/s (g)
_IMPACT_V_G = 0.27  # vertical heel-strike transient at 1.2 m/s (g)
_IMPACT_AP_G = 0.15  # AP forward-then-braking pulse at 1.2 m/s (g)
# Stride-to-stride variability (walking only): band-limited random motion added to the angles and
# the trunk displacement, and a random gain per heel strike. RMS values at 1.2 m/s; slower walking
# is less regular (x 1 / sqrt(speed scale)).
_VAR_RATE_DPS = (7.2, 10.8, 11.5)  # RMS of the added angular rate (x, y, z)
_VAR_ACC_G = (0.058, 0.065, 0.072)  # RMS of the added acceleration (x, y, z)
_VAR_RATE_BAND_HZ = (2.0, 8.0)
_VAR_ACC_BAND_HZ = ((0.8, 4.0), (0.8, 4.0), (4.0, 12.0))  # per axis
_IMPACT_GAIN_SD = 0.3


# ------------------------------------------------------------------------------------------------
# Walking: events and phase
# ------------------------------------------------------------------------------------------------
@dataclass
class WalkGait:
    t_start_s: float
    t_end_s: float
    ic_s: dict  # side -> IC times (s), including strides just outside the segment
    fc_s: dict  # side -> FC times; fc_s[side][k] follows ic_s[side][k]
    stride_gain: dict  # side -> per-stride amplitude factor (activation variability)
    phase_spline: CubicSpline  # time -> gait phase g: left IC at integers, right IC at +0.5
    variability_seed: int = 0  # seeds the stride-to-stride variability of the trunk motion

    def phase(self, t_s: np.ndarray) -> np.ndarray:
        return self.phase_spline(t_s)

    def events(self) -> np.ndarray:
        """IC/FC events inside the segment, away from the fade-in/out, sorted by time."""
        lo, hi = self.t_start_s + WALK_RAMP_S / 2, self.t_end_s - WALK_RAMP_S / 2
        rows = []
        for side in ("L", "R"):
            rows += [(t, "IC", side) for t in self.ic_s[side] if lo <= t <= hi]
            rows += [(t, "FC", side) for t in self.fc_s[side] if lo <= t <= hi]
        out = np.array(rows, dtype=EVENT_DTYPE)
        return out[np.argsort(out["t_s"], kind="stable")]

    def single_support(self, side: str, t_s: np.ndarray) -> np.ndarray:
        """0..1 smooth bump over each single support of `side` (contralateral FC -> contralateral IC)."""
        other = "R" if side == "L" else "L"
        other_ic = self.ic_s[other]
        nxt = np.searchsorted(other_ic, self.fc_s[other], side="right")
        valid = nxt < len(other_ic)
        starts, ends = self.fc_s[other][valid], other_ic[nxt[valid]]
        idx = np.searchsorted(starts, t_s, side="right") - 1
        out = np.zeros_like(t_s)
        ok = idx >= 0
        s0, s1 = starts[idx[ok]], ends[idx[ok]]
        u = (t_s[ok] - s0) / np.maximum(s1 - s0, 1e-9)
        out[ok] = np.where((u >= 0) & (u <= 1), np.sin(np.pi * np.clip(u, 0, 1)) ** 2, 0.0)
        return out


def make_walk_gait(cfg: PatientConfig, t_start_s: float, t_end_s: float, rng: np.random.Generator) -> WalkGait:
    stride_s = cfg.stride_time_s
    weak = cfg.weak_side_letter
    t = t_start_s - 2.5 * stride_s + rng.uniform(0, stride_s)
    ic_l = []
    while t < t_end_s + 3 * stride_s:
        ic_l.append(t)
        t += stride_s * float(np.clip(1 + cfg.stride_time_cv * rng.standard_normal(), 0.85, 1.15))
    ic_l = np.array(ic_l)
    strides = np.diff(ic_l)
    ic_l = ic_l[:-1]
    # Right IC half a stride later (small step asymmetry noise).
    ic_r = ic_l + strides * (0.5 + 0.005 * rng.standard_normal(len(strides)))
    stance = {}
    for side in ("L", "R"):
        # A weak side tends to a slightly shorter stance (estimate: 1 % of the cycle).
        base = cfg.stance_fraction - (0.01 if side == weak else 0.0)
        stance[side] = base + 0.005 * rng.standard_normal(len(strides))
    strides_r = np.append(np.diff(ic_r), strides[-1])
    fc_l = ic_l + stance["L"] * strides
    fc_r = ic_r + stance["R"] * strides_r
    knots_t = np.empty(2 * len(ic_l))
    knots_t[0::2], knots_t[1::2] = ic_l, ic_r
    knots_g = 0.5 * np.arange(len(knots_t))
    gains = {s: np.clip(1 + 0.10 * rng.standard_normal(len(ic_l)), 0.7, 1.3) for s in ("L", "R")}
    return WalkGait(t_start_s, t_end_s, {"L": ic_l, "R": ic_r}, {"L": fc_l, "R": fc_r}, gains,
                    CubicSpline(knots_t, knots_g), int(rng.integers(2 ** 31)))


def fade_window(t_s: np.ndarray, t_start_s: float, t_end_s: float, ramp_s: float) -> np.ndarray:
    """1 inside, smooth raised-cosine ramps of `ramp_s` at both ends, 0 at the ends (C1)."""
    up = np.clip((t_s - t_start_s) / ramp_s, 0, 1)
    down = np.clip((t_end_s - t_s) / ramp_s, 0, 1)
    return 0.25 * (1 - np.cos(np.pi * up)) * (1 - np.cos(np.pi * down))


def _impulse_train(n: int, fs: float, times_s: np.ndarray, weights: np.ndarray, t0_s: float) -> np.ndarray:
    train = np.zeros(n)
    idx = np.rint((np.asarray(times_s) - t0_s) * fs).astype(int)
    ok = (idx >= 0) & (idx < n)
    np.add.at(train, idx[ok], np.asarray(weights)[ok])
    return train


def _band_noise(n: int, fs_hz: float, band_hz: tuple, order: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise in band_hz whose `order`-th time derivative has unit RMS (built in the
    frequency domain, so the derivative the IMU sees has the intended size)."""
    f = np.fft.rfftfreq(n, 1.0 / fs_hz)
    lo, hi = band_hz
    shape = np.where((f >= lo) & (f <= hi), 1.0, 0.0)
    spec = (rng.standard_normal(len(f)) + 1j * rng.standard_normal(len(f))) * shape
    deriv_power = np.sum(np.abs(spec) ** 2)
    spec[1:] /= (2 * np.pi * f[1:]) ** order
    spec[0] = 0.0
    x = np.fft.irfft(spec, n)
    return x / np.sqrt(2.0 * deriv_power / n ** 2) if deriv_power > 0 else x


def walking_kinematics(cfg: PatientConfig, gait: WalkGait, t_s: np.ndarray):
    """Dynamic pelvis angles (deg, n x 3) and world trunk displacement (m, n x 3) plus impact
    accelerations (g, n x 3) for one walking segment sampled at `t_s` (1 kHz)."""
    g = gait.phase(t_s)
    p = np.mod(g, 1.0)
    w = fade_window(t_s, gait.t_start_s, gait.t_end_s, WALK_RAMP_S)
    sc = cfg.speed_scale
    weak = cfg.weak_side_letter
    rng = np.random.default_rng(gait.variability_seed)
    irregular = 1.0 / np.sqrt(sc)
    fs = float(units.EMG_RATE_HZ)
    n = len(t_s)
    extra_l = cfg.pelvic_drop_deg if weak == "L" else 0.0  # left stance -> right (swing) side drops
    extra_r = cfg.pelvic_drop_deg if weak == "R" else 0.0
    left_support = 0.5 + 0.5 * np.cos(2 * np.pi * (p - _OBLIQUITY_PEAK_PHASE))
    obl_amp = cfg.obliquity_amp_deg + extra_l * left_support + extra_r * (1 - left_support)
    obliquity = (obl_amp * np.cos(2 * np.pi * (p - _OBLIQUITY_PEAK_PHASE))
                 + _OBLIQUITY_H3_DEG * np.cos(6 * np.pi * (p - _OBLIQUITY_H3_PHASE)))
    tilt = cfg.tilt_amp_deg * sc * np.cos(4 * np.pi * (p - _TILT_ANTERIOR_PHASE))
    rotation = cfg.rotation_amp_deg * np.sqrt(sc) * np.cos(2 * np.pi * (p - _ROTATION_PEAK_PHASE))
    angles = np.stack([obliquity, tilt, rotation], axis=1)
    for axis in range(3):
        if _VAR_RATE_DPS[axis] > 0:
            angles[:, axis] += _VAR_RATE_DPS[axis] * irregular * _band_noise(n, fs, _VAR_RATE_BAND_HZ, 1, rng)
    angles *= w[:, None]

    z = -0.01 * sc * np.cos(4 * np.pi * (p - _COM_LOW_PHASE))  # 2 cm vertical excursion per step
    y = _ML_SWAY_M * np.cos(2 * np.pi * (p - _ML_LEFT_PHASE))  # sway, left in left stance
    # AP speed fluctuation: braking after each IC, propulsion before the next.
    step_hz = 2.0 / cfg.stride_time_s
    x = (_AP_FLUCT_G * sc * G_MPS2) / (2 * np.pi * step_hz) ** 2 * np.cos(4 * np.pi * (p - _AP_BRAKING_PHASE))
    disp = np.stack([x, y, z], axis=1)
    for axis in range(3):
        if _VAR_ACC_G[axis] > 0:
            disp[:, axis] += _VAR_ACC_G[axis] * irregular * G_MPS2 * _band_noise(n, fs, _VAR_ACC_BAND_HZ[axis], 2, rng)
    disp *= w[:, None]

    # Heel-strike transients: vertical "Mexican hat" (net zero velocity) 40 ms after IC, and an
    # AP forward-then-braking pulse (derivative of a Gaussian) centred 20 ms after IC.
    k_t = np.arange(-150, 151) / fs
    sig_v, sig_ap = 0.025, 0.025
    hat = (1 - (k_t / sig_v) ** 2) * np.exp(-0.5 * (k_t / sig_v) ** 2)
    dgauss = -(k_t / sig_ap) * np.exp(0.5 - 0.5 * (k_t / sig_ap) ** 2)  # peak +1 before centre
    impacts = np.zeros((n, 3))
    for side in ("L", "R"):
        ics = gait.ic_s[side]
        w_ic = np.interp(ics, t_s, w, left=0.0, right=0.0)
        w_ic = w_ic * np.clip(1 + _IMPACT_GAIN_SD * rng.standard_normal(len(ics)), 0.2, 2.0)
        impacts[:, 2] += _IMPACT_V_G * sc * fftconvolve(_impulse_train(n, fs, ics + 0.040, w_ic, t_s[0]), hat, "same")
        impacts[:, 0] += _IMPACT_AP_G * sc * fftconvolve(_impulse_train(n, fs, ics + 0.020, w_ic, t_s[0]), dgauss, "same")
    return angles, disp, impacts


# ------------------------------------------------------------------------------------------------
# Other tasks
# ------------------------------------------------------------------------------------------------
def mvc_envelope(t_rel_s: np.ndarray, duration_s: float) -> np.ndarray:
    """0..1 contraction: rest 10 %, raised-cosine ramp 15 %, hold at 1 for 60 %, release 15 %."""
    u = t_rel_s / duration_s
    r = np.zeros_like(u)
    up = (u >= 0.10) & (u < 0.25)
    r[up] = 0.5 * (1 - np.cos(np.pi * (u[up] - 0.10) / 0.15))
    r[(u >= 0.25) & (u < 0.85)] = 1.0
    dn = (u >= 0.85) & (u < 1.0)
    r[dn] = 0.5 * (1 + np.cos(np.pi * (u[dn] - 0.85) / 0.15))
    return r


def mvc_kinematics(task: Task, t_rel_s: np.ndarray):
    """Standing isometric MVC: abducting one leg hikes that side; back extension tilts anteriorly."""
    r = mvc_envelope(t_rel_s, task.duration_s)
    angles = np.zeros((len(t_rel_s), 3))
    if task.muscle == "l_gmed":
        angles[:, 0] = 1.5 * r  # left side up = right side relatively lower = positive obliquity
    elif task.muscle == "r_gmed":
        angles[:, 0] = -1.5 * r
    else:
        angles[:, 1] = 2.0 * r
    return angles, np.zeros((len(t_rel_s), 3))


def postural_sway(t_s: np.ndarray, rng: np.random.Generator):
    """Quiet-standing sway present throughout: a few tenths of a degree, millimetres, 0.1-0.6 Hz."""
    angles = np.zeros((len(t_s), 3))
    disp = np.zeros((len(t_s), 3))
    for axis, (deg, metres) in enumerate([(0.2, 0.003), (0.25, 0.004), (0.3, 0.0)]):
        for _ in range(3):
            f = rng.uniform(0.1, 0.6)
            ph = rng.uniform(0, 2 * np.pi)
            angles[:, axis] += deg / np.sqrt(3) * np.sin(2 * np.pi * f * t_s + ph)
            ph = rng.uniform(0, 2 * np.pi)
            disp[:, axis] += metres / np.sqrt(3) * np.sin(2 * np.pi * f * t_s + ph)
    return angles, disp


# ------------------------------------------------------------------------------------------------
# IMU
# ------------------------------------------------------------------------------------------------
def world_from_body(angles_deg: np.ndarray) -> np.ndarray:
    """(n,3) [obliquity, tilt, rotation] deg -> (n,3,3) rotation matrices body -> world."""
    a = np.radians(np.asarray(angles_deg, dtype=float))
    phi, theta, psi = a[..., 0], a[..., 1], -a[..., 2]
    cf, sf, ct, st, cp, sp = np.cos(phi), np.sin(phi), np.cos(theta), np.sin(theta), np.cos(psi), np.sin(psi)
    r = np.empty(a.shape[:-1] + (3, 3))
    r[..., 0, 0] = cp * ct
    r[..., 0, 1] = cp * st * sf - sp * cf
    r[..., 0, 2] = cp * st * cf + sp * sf
    r[..., 1, 0] = sp * ct
    r[..., 1, 1] = sp * st * sf + cp * cf
    r[..., 1, 2] = sp * st * cf - cp * sf
    r[..., 2, 0] = -st
    r[..., 2, 1] = ct * sf
    r[..., 2, 2] = ct * cf
    return r


def body_rates_dps(angles_deg: np.ndarray, fs_hz: float) -> np.ndarray:
    """Body-frame angular velocity (deg/s) of the z-y-x orientation above, from angle rates."""
    a = np.radians(angles_deg)
    rate = np.gradient(a, 1.0 / fs_hz, axis=0)
    phi, theta = a[:, 0], a[:, 1]
    dphi, dtheta, dpsi = rate[:, 0], rate[:, 1], -rate[:, 2]
    wx = dphi - dpsi * np.sin(theta)
    wy = dtheta * np.cos(phi) + dpsi * np.sin(phi) * np.cos(theta)
    wz = -dtheta * np.sin(phi) + dpsi * np.cos(phi) * np.cos(theta)
    return np.degrees(np.stack([wx, wy, wz], axis=1))


def imu_from_motion(angles_deg: np.ndarray, disp_m: np.ndarray, extra_acc_g: np.ndarray, fs_hz: float):
    """True (noise-free) body-frame acc (g) and gyro (deg/s) at fs_hz."""
    acc_world_g = np.gradient(np.gradient(disp_m, 1.0 / fs_hz, axis=0), 1.0 / fs_hz, axis=0) / G_MPS2
    acc_world_g += extra_acc_g
    acc_world_g[:, 2] += 1.0  # an accelerometer at rest reads +1 g up
    r = world_from_body(angles_deg)
    acc_body = np.einsum("nji,nj->ni", r, acc_world_g)  # R.T @ a
    return acc_body, body_rates_dps(angles_deg, fs_hz)
