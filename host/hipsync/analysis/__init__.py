"""Strides, single-leg-support windows, %MVC activation, GMed:ES ratios, pelvic drop and flags.

`analyse(session) -> SessionAnalysis`; thresholds live in `rules`, definitions in `core`'s
docstring and docs/report_schema.md."""

from . import rules
from .calibration import resolve_calibration, rest_baseline
from .core import (
                   PER_STRIDE_METRICS,
                   SessionAnalysis,
                   SideResult,
                   analyse,
                   summary,
                   symmetry_index,
)
from .gait import Strides, find_strides

__all__ = ["PER_STRIDE_METRICS", "SessionAnalysis", "SideResult", "Strides", "analyse",
           "find_strides", "resolve_calibration", "rest_baseline", "rules", "summary",
           "symmetry_index"]
