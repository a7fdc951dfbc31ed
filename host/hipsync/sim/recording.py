"""The simulator's output: what the sensors measure plus the ground truth behind it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hipwire import units

from . import chips
from .config import PatientConfig
from .exam import REP_TRUTH_DTYPE
from .tasks import Segment


@dataclass
class Recording:
    """Sample i of the EMG arrays is at t = i / EMG_RATE_HZ s (device tick i); IMU sample k at
    t = k / IMU_RATE_HZ s (tick 10 k). Channel order units.EMG_CHANNELS, angle order
    units.PELVIS_ANGLES. Vectors are in the sacrum body frame (x anterior, y left, z up)."""

    config: PatientConfig
    # --- measured ---
    emg_uv: np.ndarray  # (n,4) input-referred sEMG incl. mains, drift, artefacts, noise, lead-off
    acc_g: np.ndarray  # (m,3) with bias and noise
    gyr_dps: np.ndarray  # (m,3) with bias and noise
    # --- ground truth ---
    activation: np.ndarray  # (n,4) fraction of MVC, 0..1
    envelope_uv: np.ndarray  # (n,4) RMS amplitude the carrier is modulated with = activation * mvc_uv
    mvc_uv_rms: np.ndarray  # (4,) uV RMS at 100 %MVC actually used (weak GMed reduced)
    pelvis_deg: np.ndarray  # (m,3) absolute obliquity, tilt, rotation (deg) at the IMU samples
    events: np.ndarray  # structured, dtype EVENT_DTYPE: t_s (f8), kind "IC"/"FC", side "L"/"R"
    segments: list[Segment]
    acc_true_g: np.ndarray  # (m,3) noise- and bias-free
    gyr_true_dps: np.ndarray  # (m,3) noise- and bias-free
    acc_bias_g: np.ndarray  # (3,)
    gyr_bias_dps: np.ndarray  # (3,)
    lead_off_mask: np.ndarray  # (n,4) bool
    electrode_offset_uv: np.ndarray  # (4,) DC offset that to_sensor_counts adds
    # one row per exam repetition, dtype exam.REP_TRUTH_DTYPE, sorted by start (seconds from the
    # first sample, like segments and events; see exam.py for each column)
    reps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=REP_TRUTH_DTYPE))
    extras: dict = field(default_factory=dict)

    # --- time axes and look-ups ---
    @property
    def duration_s(self) -> float:
        return self.emg_uv.shape[0] / units.EMG_RATE_HZ

    @property
    def emg_t_s(self) -> np.ndarray:
        return np.arange(self.emg_uv.shape[0]) / units.EMG_RATE_HZ

    @property
    def imu_t_s(self) -> np.ndarray:
        return np.arange(self.acc_g.shape[0]) / units.IMU_RATE_HZ

    @property
    def standing_pose_deg(self) -> np.ndarray:
        """The configured quiet-standing pose; the calibration segment averages to about this."""
        return np.asarray(self.config.standing_pose_deg, dtype=float)

    def pelvis_relative_deg(self) -> np.ndarray:
        """(m,3) pelvis angles relative to quiet standing: what the device should report."""
        return self.pelvis_deg - self.standing_pose_deg

    def segment(self, name: str) -> Segment:
        for seg in self.segments:
            if seg.name == name:
                return seg
        raise KeyError(f"no segment {name!r}; have {[s.name for s in self.segments]}")

    def events_between(self, t_start_s: float, t_end_s: float) -> np.ndarray:
        sel = (self.events["t_s"] >= t_start_s) & (self.events["t_s"] < t_end_s)
        return self.events[sel]

    def reps_of(self, task: str) -> np.ndarray:
        """The repetitions of one stored exam task name, e.g. 'step_down_left'."""
        kind, _, side = task.rpartition("_")
        letter = {"left": "L", "right": "R"}.get(side, side)
        return self.reps[(self.reps["task"] == kind) & (self.reps["side"] == letter)]

    def emg_slice(self, seg: Segment) -> slice:
        return slice(int(round(seg.t_start_s * units.EMG_RATE_HZ)), int(round(seg.t_end_s * units.EMG_RATE_HZ)))

    def imu_slice(self, seg: Segment) -> slice:
        return slice(int(round(seg.t_start_s * units.IMU_RATE_HZ)), int(round(seg.t_end_s * units.IMU_RATE_HZ)))

    # --- what the chips see ---
    def to_sensor_counts(self, mounting=None) -> chips.SensorCounts:
        """AFE codes (int32) and IMU counts (int16) in the sensor frame; body = mounting @ sensor
        (identity when None)."""
        m = chips.check_mounting(np.eye(3, dtype=int) if mounting is None else mounting)
        acc, gyr = chips.imu_counts(self.acc_g, self.gyr_dps, m)
        return chips.SensorCounts(
            afe_codes=chips.afe_codes(self.emg_uv, self.electrode_offset_uv),
            acc_counts=acc,
            gyr_counts=gyr,
            mounting=m,
            electrode_offset_uv=self.electrode_offset_uv.copy(),
        )
