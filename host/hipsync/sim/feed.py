"""Write (and read back) the simulator's chip feed: what the unix board's fake AFE and IMU convert.

The format is defined once in `hipwire.feed`; the MicroPython side reads it with
`firmware/unixboard/chip_feed.py`. Codes are what the ADS1294R would output (signed 24-bit), the
lead-off mask has bit c set while channel c's electrode is off, and IMU counts are in the sensor
frame (ax, ay, az, gx, gy, gz), as the ICM-42688-P measures them.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from hipwire import feed as fmt
from hipwire import units

_EMG_DTYPE = np.dtype([("codes", "<i4", (units.N_EMG,)), ("leadoff", "<u4")])
_IMU_DTYPE = np.dtype("<i2")
assert _EMG_DTYPE.itemsize == fmt.EMG_RECORD_SIZE
assert struct.calcsize(fmt.IMU_RECORD_FORMAT) == fmt.IMU_RECORD_SIZE


class FeedError(ValueError):
    """The arrays cannot be written as a chip feed (shape, range or dtype)."""


def write_feed(path: str | Path, emg_codes: np.ndarray, leadoff: np.ndarray, imu_counts: np.ndarray,
               *, emg_rate_hz: int = units.EMG_RATE_HZ, imu_rate_hz: int = units.IMU_RATE_HZ) -> Path:
    """Write a feed file: emg_codes (n, 4) int, leadoff (n,) bit masks, imu_counts (m, 6) int16."""
    codes = np.asarray(emg_codes)
    mask = np.asarray(leadoff)
    imu = np.asarray(imu_counts)
    if codes.ndim != 2 or codes.shape[1] != units.N_EMG:
        raise FeedError(f"emg_codes must have shape (n, {units.N_EMG}), got {codes.shape}")
    if mask.shape != (codes.shape[0],):
        raise FeedError(f"leadoff must have shape ({codes.shape[0]},), got {mask.shape}")
    if imu.ndim != 2 or imu.shape[1] != 6:
        raise FeedError(f"imu_counts must have shape (m, 6), got {imu.shape}")
    if codes.size and (codes.min() < units.EMG_CODE_MIN or codes.max() > units.EMG_CODE_MAX):
        raise FeedError(f"emg_codes must fit 24-bit two's complement "
                        f"[{units.EMG_CODE_MIN}, {units.EMG_CODE_MAX}], got {codes.min()}..{codes.max()}")
    if mask.size and (mask.min() < 0 or mask.max() >= 1 << units.N_EMG):
        raise FeedError(f"leadoff masks must be in [0, {(1 << units.N_EMG) - 1}], got {mask.min()}..{mask.max()}")
    if imu.size and (imu.min() < -32768 or imu.max() > 32767):
        raise FeedError(f"imu_counts must fit int16, got {imu.min()}..{imu.max()}")
    emg = np.empty(codes.shape[0], dtype=_EMG_DTYPE)
    emg["codes"] = codes
    emg["leadoff"] = mask
    path = Path(path)
    with path.open("wb") as f:
        f.write(struct.pack(fmt.HEADER_FORMAT, fmt.MAGIC, emg_rate_hz, imu_rate_hz, codes.shape[0],
                            imu.shape[0]))
        f.write(emg.tobytes())
        f.write(imu.astype(_IMU_DTYPE).tobytes())
    return path


def read_feed(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """(emg_codes (n,4) int32, leadoff (n,) uint32, imu_counts (m,6) int16, emg_rate_hz, imu_rate_hz)."""
    data = Path(path).read_bytes()
    magic, emg_rate, imu_rate, n_emg, n_imu = struct.unpack_from(fmt.HEADER_FORMAT, data)
    if magic != fmt.MAGIC:
        raise FeedError(f"{path} is not a chip feed (magic {magic!r})")
    emg = np.frombuffer(data, dtype=_EMG_DTYPE, count=n_emg, offset=fmt.HEADER_SIZE)
    imu = np.frombuffer(data, dtype=_IMU_DTYPE, count=6 * n_imu, offset=fmt.imu_offset(n_emg, 0))
    return (emg["codes"].astype(np.int32), emg["leadoff"].astype(np.uint32),
            imu.reshape(n_imu, 6).copy(), emg_rate, imu_rate)
