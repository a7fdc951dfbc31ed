"""Simulated patient: sEMG of both gluteus medius and lumbar erector spinae plus a sacrum IMU,
with the ground truth behind them. Assumptions and sources: ASSUMPTIONS.md in this folder."""

from .chips import SensorCounts, body_from_counts, uv_from_codes
from .config import PENNEY_HIGHER_PCT_FACTOR, LeadOff, PatientConfig
from .exam import REP_TRUTH_DTYPE
from .gait_kinematics import EVENT_DTYPE, world_from_body
from .patient import simulate
from .recording import Recording
from .tasks import (
    Segment,
    Task,
    default_protocol,
    exam_protocol,
    exam_task,
    hip_abduction,
    hip_abduction_wb,
    mvc,
    rest,
    single_leg_squat,
    single_leg_stance,
    standing_calibration,
    step_down,
    walking,
)

__all__ = [
    "EVENT_DTYPE",
    "PENNEY_HIGHER_PCT_FACTOR",
    "REP_TRUTH_DTYPE",
    "LeadOff",
    "PatientConfig",
    "Recording",
    "Segment",
    "SensorCounts",
    "Task",
    "body_from_counts",
    "default_protocol",
    "exam_protocol",
    "exam_task",
    "hip_abduction",
    "hip_abduction_wb",
    "mvc",
    "rest",
    "simulate",
    "single_leg_squat",
    "single_leg_stance",
    "standing_calibration",
    "step_down",
    "uv_from_codes",
    "walking",
    "world_from_body",
]
