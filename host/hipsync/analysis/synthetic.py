"""Synthetic sessions with known truth, built directly as SessionData (no firmware, no simulator):
the analysis tests, golden snapshots and the report benchmark use them.

Gait: stride time T (jittered per stride), left IC at 0, right FC at 0.10 T, right IC at 0.50 T,
left FC at 0.60 T; so left single support is 10-50 % of the left cycle (and mirrored for right).
Activation in %MVC, envelope uV = %MVC / 100 * MVC uV + resting noise. Obliquity relative to
standing is a half-sine in each single support with amplitude `drop_deg[side]` toward the swing
side (positive obliquity = right side lower)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hipwire import quality as q

from ..session import (
    EMG_CHANNELS,
    MVC_TASKS,
    Calibration,
    Metadata,
    SessionData,
    StatusLog,
    Task,
    make_events,
)

RATE_HZ = 100.0
MVC_UV = {"l_gmed": 220.0, "r_gmed": 240.0, "l_es": 160.0, "r_es": 150.0}
REST_UV = 4.0  # mean resting envelope
REST_SD_UV = 0.8
STANDING_DEG = (1.5, 8.0, -0.5)  # obliquity, tilt, rotation while standing
SS_START, SS_END, FC_OWN = 0.10, 0.50, 0.60  # fractions of the stance side's cycle
GMED_CENTRE, GMED_WIDTH = 0.15, 0.09  # Gaussian bump over the own cycle (phase fraction)


@dataclass
class SyntheticSpec:
    seed: int = 1
    walk_s: float = 120.0
    stride_s: float = 1.1
    stride_jitter: float = 0.03
    # peak stance GMed %MVC per side (a weak GMed may need a higher %MVC: Penney 2014)
    gmed_peak_pct: dict = field(default_factory=lambda: {"left": 30.0, "right": 30.0})
    # extra ES %MVC during single support of that stance side: (ipsilateral, contralateral)
    es_comp_pct: dict = field(default_factory=lambda: {"left": (0.0, 0.0), "right": (0.0, 0.0)})
    es_base_pct: float = 8.0  # ES bursts around each IC, both sides
    drop_deg: dict = field(default_factory=lambda: {"left": 2.0, "right": 2.0})
    with_mvc: bool = True
    loss_fraction: float = 0.0  # fraction of 1-s blocks removed from the streams
    lead_off: tuple | None = None  # (channel name, t_start_s, t_end_s)
    noise_rel: float = 0.1  # multiplicative envelope noise, SD as a fraction of the activation
    patient_id: str = "P-SYN"
    # seconds of quiet standing between the MVCs and the walk (room for other tasks, e.g. the
    # exam of synthetic_exam.py)
    walk_offset_s: float = 0.0


def healthy(seed: int = 1, **kw) -> SyntheticSpec:
    return SyntheticSpec(seed=seed, **kw)


def weak_left_compensating(seed: int = 2, **kw) -> SyntheticSpec:
    """Weak left GMed: in left stance the stance-side (left) ES and the contralateral (right) ES
    work above the GMed, and the right side drops 7 deg."""
    spec = SyntheticSpec(seed=seed, **kw)
    spec.gmed_peak_pct = {"left": 18.0, "right": 30.0}
    spec.es_comp_pct = {"left": (28.0, 22.0), "right": (0.0, 0.0)}
    spec.drop_deg = {"left": 7.0, "right": 2.0}
    return spec


def _gauss_circ(p: np.ndarray, centre: float, width: float) -> np.ndarray:
    d = (p - centre + 0.5) % 1.0 - 0.5
    return np.exp(-0.5 * (d / width) ** 2)


def _phase(t: np.ndarray, ic: np.ndarray) -> np.ndarray:
    """Phase 0..1 of each t within its stride [ic[k], ic[k+1]); NaN outside."""
    k = np.searchsorted(ic, t, side="right") - 1
    ok = (k >= 0) & (k < len(ic) - 1)
    ph = np.full(len(t), np.nan)
    kk = k[ok]
    ph[ok] = (t[ok] - ic[kk]) / (ic[kk + 1] - ic[kk])
    return ph


def make_session(spec: SyntheticSpec) -> SessionData:
    rng = np.random.default_rng(spec.seed)
    tasks: list[Task] = []
    t = 0.0
    tasks.append(Task("standing", t, t + 10.0))
    t += 12.0
    if spec.with_mvc:
        for ch in EMG_CHANNELS:
            tasks.append(Task(MVC_TASKS[ch], t, t + 4.0))
            t += 6.0
    walk0 = t + 2.0 + spec.walk_offset_s
    walk1 = walk0 + spec.walk_s
    tasks.append(Task("walk", walk0, walk1))
    end = walk1 + 3.0
    tt = np.arange(0.0, end, 1.0 / RATE_HZ)
    n = len(tt)

    # gait events: left IC times with jitter; everything else as fractions of the left stride
    lic = [walk0 + 0.5]
    while lic[-1] < walk1 - 2 * spec.stride_s:
        lic.append(lic[-1] + spec.stride_s * (1 + spec.stride_jitter * rng.standard_normal()))
    lic = np.array(lic)
    ev = []
    for k in range(len(lic) - 1):
        T = lic[k + 1] - lic[k]
        a = lic[k]
        ev += [(a, "IC", "L", k), (a + 0.10 * T, "FC", "R", k), (a + 0.50 * T, "IC", "R", k),
               (a + 0.60 * T, "FC", "L", k)]
    ev.append((lic[-1], "IC", "L", len(lic) - 1))
    events = make_events(ev)
    ric = events["t_s"][(events["kind"] == "IC") & (events["side"] == "R")]

    act = np.zeros((n, 4))  # %MVC
    obl_rel = np.zeros(n)
    for side, ic, own, other in (("left", lic, 0, 3), ("right", ric, 1, 2)):
        ph = _phase(tt, ic)
        walking = np.isfinite(ph)
        p = np.where(walking, ph, 0.0)
        act[:, own] += np.where(walking, spec.gmed_peak_pct[side] * _gauss_circ(p, GMED_CENTRE,
                                                                                GMED_WIDTH), 0)
        es_own = 2 + own  # l_es = 2, r_es = 3
        burst = spec.es_base_pct * _gauss_circ(p, 0.03, 0.05)
        act[:, es_own] += np.where(walking, burst, 0)
        in_ss = walking & (p >= SS_START) & (p <= SS_END)
        ss_shape = np.where(in_ss, np.sin(np.pi * (p - SS_START) / (SS_END - SS_START)), 0.0)
        ipsi, contra = spec.es_comp_pct[side]
        act[:, es_own] += ipsi * ss_shape
        act[:, other if other in (2, 3) else 0] += contra * ss_shape
        sign = 1.0 if side == "left" else -1.0  # left stance: right drops = positive obliquity
        obl_rel += sign * spec.drop_deg[side] * ss_shape

    # MVC tasks: 80 % ramp-hold at 100 %MVC on the tested channel
    for task in tasks:
        if task.name.startswith("mvc_"):
            ch = EMG_CHANNELS.index(task.name[4:])
            sel = (tt >= task.t_start_s + 0.5) & (tt <= task.t_end_s - 0.5)
            act[sel, ch] = 100.0
    mvc = np.array([MVC_UV[c] for c in EMG_CHANNELS])
    noise = spec.noise_rel * rng.standard_normal((n, 4)) * act
    env = np.clip(act + noise, 0, None) / 100.0 * mvc
    env += REST_UV + REST_SD_UV * rng.standard_normal((n, 4))
    env = np.clip(env, 0, None)
    pelvis = np.empty((n, 3))
    pelvis[:] = STANDING_DEG
    pelvis[:, 0] += obl_rel + 0.15 * rng.standard_normal(n)
    pelvis[:, 1] += 0.2 * rng.standard_normal(n)
    pelvis[:, 2] += 4.0 * np.sin(2 * np.pi * tt / spec.stride_s) * ((tt > walk0) & (tt < walk1))

    # status once a second; lead-off window sets the flag on that channel
    st_t = np.arange(0.0, end, 1.0)
    fields = []
    for ts in st_t:
        qual = [0, 0, 0, 0]
        if spec.lead_off is not None:
            ch, a, b = spec.lead_off
            if a <= ts <= b:
                qual[EMG_CHANNELS.index(ch)] = q.LEAD_OFF
        fields.append({"battery_pct": int(95 - 10 * ts / max(end, 1.0)), "quality": qual,
                       "emg_lost_samples": 0, "imu_lost_samples": 0})
    keep = np.ones(n, bool)
    n_blocks = int(end)
    if spec.loss_fraction > 0:
        drop = rng.random(n_blocks) < spec.loss_fraction
        block = (tt // 1.0).astype(int)
        keep = ~drop[np.clip(block, 0, n_blocks - 1)]
    lost = 1.0 - keep.mean()
    meta = Metadata(patient_id=spec.patient_id, device_id="SYN-0001", firmware_version="synthetic",
                    started_at="2024-01-01T09:00:00+00:00",
                    filters={"highpass_hz": 20, "lowpass_hz": 450, "notch_hz": 50,
                             "envelope": "synthetic (no filter)", "envelope_delay_ms": 0},
                    normalisation="MVC",
                    link_stats={"loss_fraction": round(float(lost), 6)})
    cal = Calibration(mvc_uv={c: None for c in EMG_CHANNELS})  # derived from the tasks
    return SessionData(tt[keep], env[keep], tt[keep], pelvis[keep], events,
                       StatusLog(st_t, fields), tasks, cal, meta)


def expected_onset_ms(spec: SyntheticSpec, side: str, stride_s: float | None = None) -> float:
    """Noise-free GMed onset relative to IC for the synthetic bump and the 3-SD rest threshold."""
    ch = "l_gmed" if side == "left" else "r_gmed"
    thr_uv = 3.0 * REST_SD_UV  # above the resting mean
    frac = thr_uv / (spec.gmed_peak_pct[side] / 100.0 * MVC_UV[ch])
    d = GMED_WIDTH * np.sqrt(-2.0 * np.log(frac))
    return (GMED_CENTRE - d) * (stride_s or spec.stride_s) * 1000.0
