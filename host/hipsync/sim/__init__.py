"""Simulated patient: sEMG of both gluteus medius and lumbar erector spinae plus a sacrum IMU,
with the ground truth behind them. Assumptions and sources: ASSUMPTIONS.md in this folder."""

from .chips import SensorCounts, body_from_counts, uv_from_codes
from .config import LeadOff, PatientConfig
from .gait_kinematics import EVENT_DTYPE, world_from_body
from .patient import simulate
from .recording import Recording
from .tasks import (
    Segment,
    Task,
    default_protocol,
    hip_abduction,
    mvc,
    rest,
    single_leg_squat,
    standing_calibration,
    step_down,
    walking,
)

__all__ = [
    "EVENT_DTYPE",
    "LeadOff",
    "PatientConfig",
    "Recording",
    "Segment",
    "SensorCounts",
    "Task",
    "body_from_counts",
    "default_protocol",
    "hip_abduction",
    "mvc",
    "rest",
    "simulate",
    "single_leg_squat",
    "standing_calibration",
    "step_down",
    "uv_from_codes",
    "walking",
    "world_from_body",
]
