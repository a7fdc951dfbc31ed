"""What the chips see: ADS1294R codes and ICM-42688-P counts in the sensor's own frame.

Mounting: a 3x3 integer matrix M (a signed permutation with det +1) with body = M @ sensor, so the
chip measures sensor = M.T @ body.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hipwire import units

_INT16 = (-32768, 32767)


@dataclass(frozen=True)
class SensorCounts:
    afe_codes: np.ndarray  # (n,4) int32, 24-bit two's complement range, channel order EMG_CHANNELS
    acc_counts: np.ndarray  # (m,3) int16, sensor frame, units.ACC_LSB_PER_G per g
    gyr_counts: np.ndarray  # (m,3) int16, sensor frame, units.GYR_DPS_PER_LSB dps per count
    mounting: np.ndarray  # (3,3) int, body = mounting @ sensor
    electrode_offset_uv: np.ndarray  # (4,) DC offset included in afe_codes


def check_mounting(mounting) -> np.ndarray:
    m = np.asarray(mounting)
    if m.shape != (3, 3):
        raise ValueError(f"mounting must be a 3x3 matrix, got shape {m.shape}")
    mi = np.rint(m).astype(int)
    if not np.array_equal(mi, m) or not np.array_equal(mi.T @ mi, np.eye(3, dtype=int)):
        raise ValueError(f"mounting must be a signed permutation matrix of integers, got {m.tolist()}")
    if round(np.linalg.det(mi)) != 1:
        raise ValueError("mounting must be a proper rotation (det +1): the chip frame is right-handed")
    return mi


def afe_codes(emg_uv: np.ndarray, electrode_offset_uv: np.ndarray) -> np.ndarray:
    codes = np.rint((emg_uv + electrode_offset_uv) / units.EMG_UV_PER_CODE)
    return np.clip(codes, units.EMG_CODE_MIN, units.EMG_CODE_MAX).astype(np.int32)


def uv_from_codes(codes: np.ndarray) -> np.ndarray:
    return np.asarray(codes, dtype=float) * units.EMG_UV_PER_CODE


def imu_counts(acc_g: np.ndarray, gyr_dps: np.ndarray, mounting) -> tuple[np.ndarray, np.ndarray]:
    m = check_mounting(mounting)
    acc_s = acc_g @ m  # row-wise M.T @ body
    gyr_s = gyr_dps @ m
    acc = np.clip(np.rint(acc_s * units.ACC_LSB_PER_G), *_INT16).astype(np.int16)
    gyr = np.clip(np.rint(gyr_s / units.GYR_DPS_PER_LSB), *_INT16).astype(np.int16)
    return acc, gyr


def body_from_counts(acc_counts: np.ndarray, gyr_counts: np.ndarray, mounting) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of imu_counts (up to rounding): body-frame acc (g) and gyro (deg/s)."""
    m = check_mounting(mounting)
    acc = (np.asarray(acc_counts, dtype=float) / units.ACC_LSB_PER_G) @ m.T
    gyr = (np.asarray(gyr_counts, dtype=float) * units.GYR_DPS_PER_LSB) @ m.T
    return acc, gyr
