"""What gets added to the clean signals: mains, baseline drift, heel-strike motion artefacts,
electronic noise, electrode lead-off (sEMG) and bias plus white noise (IMU)."""

from __future__ import annotations

import numpy as np

from hipwire import units

from .config import PatientConfig

# Input-referred full scale of the AFE (uV): 2**23 codes.
FULL_SCALE_UV = (units.EMG_CODE_MAX + 1) * units.EMG_UV_PER_CODE
# A lifted electrode floats to the rail (lead-off current source): well beyond full scale, plus
# the mains picked up by the open input.
LEAD_OFF_DC_UV = 1.5 * FULL_SCALE_UV
LEAD_OFF_MAINS_UV = 2000.0
_ARTEFACT_DECAY_S = 0.08
_ARTEFACT_CONTRA_GAIN = 0.4


def mains(t_s: np.ndarray, cfg: PatientConfig, rng: np.random.Generator) -> np.ndarray:
    amp = cfg.mains_uv * rng.uniform(0.7, 1.3, 4)
    ph = rng.uniform(0, 2 * np.pi, 4)
    w = 2 * np.pi * cfg.mains_hz * t_s[:, None]
    return amp * (np.sin(w + ph) + 0.1 * np.sin(3 * (w + ph)))


def baseline_drift(t_s: np.ndarray, cfg: PatientConfig, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros((len(t_s), 4))
    if cfg.baseline_drift_uv <= 0:
        return out
    for ch in range(4):
        for f in rng.uniform(0.02, 0.5, 5):
            out[:, ch] += np.sin(2 * np.pi * f * t_s + rng.uniform(0, 2 * np.pi))
    return out * (cfg.baseline_drift_uv / np.sqrt(5 / 2))


def motion_artefacts(n: int, fs_hz: float, ic_by_side: dict, cfg: PatientConfig,
                     rng: np.random.Generator) -> np.ndarray:
    """A damped low-frequency (3-10 Hz) wobble starting 10 ms after each IC, strongest on the
    heel-strike side. ic_by_side maps 'L'/'R' to (times in s from the recording start, weights)."""
    out = np.zeros((n, 4))
    if cfg.motion_artefact_uv <= 0:
        return out
    k_t = np.arange(int(5 * _ARTEFACT_DECAY_S * fs_hz)) / fs_hz
    for side, (times_s, weights) in ic_by_side.items():
        ipsi = (0, 2) if side == "L" else (1, 3)
        gains = np.full(4, _ARTEFACT_CONTRA_GAIN)
        gains[list(ipsi)] = 1.0
        for t, wt in zip(times_s, weights):
            i0 = int(round((t + 0.010) * fs_hz))
            if wt <= 0 or i0 >= n or i0 + len(k_t) <= 0:
                continue
            f = rng.uniform(3.0, 10.0)
            burst = np.sin(2 * np.pi * f * k_t) * np.exp(-k_t / _ARTEFACT_DECAY_S)
            amp = cfg.motion_artefact_uv * wt * rng.uniform(0.5, 1.0, 4) * rng.choice([-1.0, 1.0], 4) * gains
            lo, hi = max(i0, 0), min(i0 + len(k_t), n)
            out[lo:hi] += burst[lo - i0:hi - i0, None] * amp
    return out


def electronic_noise(n: int, cfg: PatientConfig, rng: np.random.Generator) -> np.ndarray:
    return cfg.noise_uv * rng.standard_normal((n, 4))


def apply_lead_off(emg_uv: np.ndarray, t_s: np.ndarray, cfg: PatientConfig) -> np.ndarray:
    """Overwrite each lifted channel with rail + mains; returns the (n,4) lead-off mask."""
    mask = np.zeros(emg_uv.shape, dtype=bool)
    for lo in cfg.lead_offs:
        sel = (t_s >= lo.t_start_s) & (t_s < lo.t_end_s)
        ch = lo.channel_index
        mask[sel, ch] = True
        emg_uv[sel, ch] = LEAD_OFF_DC_UV + LEAD_OFF_MAINS_UV * np.sin(2 * np.pi * cfg.mains_hz * t_s[sel])
    return mask


def imu_errors(m: int, cfg: PatientConfig, rng: np.random.Generator,
               noise_rng: np.random.Generator | None = None):
    """(acc bias g (3,), acc noise (m,3), gyro bias dps (3,), gyro noise (m,3)). The biases are
    the sensor's own (drawn from rng); the noise from noise_rng when given (one part of a longer
    recording: the same sensor, new noise)."""
    acc_bias = rng.uniform(-cfg.acc_bias_g, cfg.acc_bias_g, 3)
    gyr_bias = rng.uniform(-cfg.gyr_bias_dps, cfg.gyr_bias_dps, 3)
    noisy = noise_rng if noise_rng is not None else rng
    return (acc_bias, cfg.acc_noise_g * noisy.standard_normal((m, 3)),
            gyr_bias, cfg.gyr_noise_dps * noisy.standard_normal((m, 3)))
