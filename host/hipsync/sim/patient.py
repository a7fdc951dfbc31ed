"""simulate(config, tasks) -> Recording: the simulated patient, end to end.

Each source of randomness draws from its own child of SeedSequence(config.seed), so a recording
is a pure function of (config, tasks), and changing e.g. the mains frequency does not reshuffle the
gait.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hipwire import units

from . import emg_model, exam, gait_kinematics, noise
from .config import PatientConfig
from .recording import Recording
from .tasks import REP_KINDS, Segment, Task, default_protocol

# New streams go at the end: a child of SeedSequence.spawn does not depend on how many there are,
# so the earlier streams (and the recordings of earlier versions) stay as they were.
_STREAMS = ("gait", "sway", "emg", "mains", "drift", "artefact", "electronic", "imu", "offset", "reps")


def _layout(tasks: Sequence[Task], durations_s: Sequence[float]) -> list[Segment]:
    """Back-to-back segments, each a whole number of IMU samples long."""
    segments, t = [], 0.0
    for task, duration_s in zip(tasks, durations_s):
        d = round(duration_s * units.IMU_RATE_HZ) / units.IMU_RATE_HZ
        if d <= 0:
            raise ValueError(f"task {task.name} is shorter than one IMU sample")
        segments.append(Segment(task.name, t, round(t + d, 6), task.kind, task.side, task.muscle))
        t = round(t + d, 6)
    return segments


def _rngs(seed: int, part: int | None) -> dict[str, np.random.Generator]:
    whole = dict(zip(_STREAMS, (np.random.default_rng(s)
                                for s in np.random.SeedSequence(seed).spawn(len(_STREAMS)))))
    if part is None:
        return whole
    # One part of a longer recording: fresh noise and movement, but the same person wearing the
    # same electrodes and the same IMU (the DC electrode offsets and the sensor biases stay those
    # of the whole recording; a bias that jumped at every part would look like drift).
    parts = dict(zip(_STREAMS, (np.random.default_rng(s)
                                for s in np.random.SeedSequence([seed, part]).spawn(len(_STREAMS)))))
    parts["offset"] = whole["offset"]
    parts["imu_noise"] = parts["imu"]
    parts["imu"] = whole["imu"]
    return parts


def _plans(cfg: PatientConfig, tasks: Sequence[Task], rng: np.random.Generator) -> list:
    # Exam tasks are planned first: how long one lasts is this person's own doing.
    return [exam.plan_task(cfg, task, rng) if task.kind in REP_KINDS else None for task in tasks]


def plan(config: PatientConfig, tasks: Sequence[Task], *, part: int | None = None
         ) -> tuple[list[Segment], list]:
    """The segments `simulate(config, tasks, part=part)` will lay out and the plan of each exam
    task (None for the others), without simulating anything."""
    plans = _plans(config, tasks, _rngs(config.seed, part)["reps"])
    return _layout(tasks, [p.duration_s if p else t.duration_s for p, t in zip(plans, tasks)]), plans


def simulate(config: PatientConfig | None = None, tasks: Sequence[Task] | None = None, *,
             part: int | None = None) -> Recording:
    """`part`: this recording is part `part` of a longer one that is simulated piece by piece
    (the live patient): new random draws, the same electrode offsets."""
    cfg = config if config is not None else PatientConfig()
    tasks = list(tasks) if tasks is not None else default_protocol()
    if not tasks:
        raise ValueError("simulate needs at least one task")
    rngs = _rngs(cfg.seed, part)
    fs = float(units.EMG_RATE_HZ)
    plans = _plans(cfg, tasks, rngs["reps"])
    segments = _layout(tasks, [p.duration_s if p else task.duration_s for p, task in zip(plans, tasks)])
    n = int(round(segments[-1].t_end_s * fs))
    t_s = np.arange(n) / fs

    angles = np.zeros((n, 3))
    disp = np.zeros((n, 3))
    impacts = np.zeros((n, 3))
    activation = np.empty((n, 4))
    events = []
    ic_for_artefacts = {"L": ([], []), "R": ([], [])}
    for seg, task, plan in zip(segments, tasks, plans):
        sl = slice(int(round(seg.t_start_s * fs)), int(round(seg.t_end_s * fs)))
        tt = t_s[sl]
        t_rel = tt - seg.t_start_s
        if task.kind == "walking":
            gait = gait_kinematics.make_walk_gait(cfg, seg.t_start_s, seg.t_end_s, rngs["gait"])
            fade = gait_kinematics.fade_window(tt, seg.t_start_s, seg.t_end_s, gait_kinematics.WALK_RAMP_S)
            angles[sl], disp[sl], impacts[sl] = gait_kinematics.walking_kinematics(cfg, gait, tt)
            activation[sl] = emg_model.walking_activation(cfg, gait, tt, fade)
            events.append(gait.events())
            for side in ("L", "R"):
                ics = gait.ic_s[side]
                ic_for_artefacts[side][0].extend(ics)
                ic_for_artefacts[side][1].extend(np.interp(ics, tt, fade, left=0.0, right=0.0))
        elif task.kind == "mvc":
            angles[sl], disp[sl] = gait_kinematics.mvc_kinematics(task, t_rel)
            activation[sl] = emg_model.mvc_activation(cfg, task, t_rel)
        elif plan is not None:
            angles[sl], disp[sl] = exam.kinematics(cfg, plan, t_rel)
            activation[sl] = exam.activation(cfg, plan, t_rel)
        else:  # standing, rest
            activation[sl] = emg_model.standing_activation(cfg, len(tt))

    # --- pelvis and IMU ---------------------------------------------------------------------
    sway_angles, sway_disp = gait_kinematics.postural_sway(t_s, rngs["sway"])
    pelvis_1k = np.asarray(cfg.standing_pose_deg, dtype=float) + sway_angles + angles
    acc_1k, gyr_1k = gait_kinematics.imu_from_motion(pelvis_1k, disp + sway_disp, impacts, fs)
    step = units.TICKS_PER_IMU_SAMPLE
    acc_true, gyr_true, pelvis = acc_1k[::step], gyr_1k[::step], pelvis_1k[::step]
    acc_bias, acc_noise, gyr_bias, gyr_noise = noise.imu_errors(len(acc_true), cfg, rngs["imu"],
                                                                 rngs.get("imu_noise"))

    pelvis_rel = pelvis - np.asarray(cfg.standing_pose_deg, dtype=float)
    rep_rows = [exam.truth_rows(cfg, plan, seg.t_start_s, activation, pelvis_rel)
                for seg, plan in zip(segments, plans) if plan is not None]
    reps = np.concatenate(rep_rows) if rep_rows else np.zeros(0, dtype=exam.REP_TRUTH_DTYPE)

    # --- sEMG ---------------------------------------------------------------------------------
    mvc_uv = np.asarray(cfg.mvc_uv_rms, dtype=float).copy()
    weak = cfg.weak_side_letter
    if weak is not None:
        mvc_uv[emg_model.GMED[weak]] *= cfg.weak_gmed_mvc_uv_factor
    envelope = activation * mvc_uv
    emg = envelope * emg_model.semg_carrier(n, fs, rngs["emg"])
    emg += noise.mains(t_s, cfg, rngs["mains"])
    emg += noise.baseline_drift(t_s, cfg, rngs["drift"])
    ics = {s: (np.asarray(v[0]), np.asarray(v[1])) for s, v in ic_for_artefacts.items()}
    emg += noise.motion_artefacts(n, fs, ics, cfg, rngs["artefact"])
    emg += noise.electronic_noise(n, cfg, rngs["electronic"])
    lead_off_mask = noise.apply_lead_off(emg, t_s, cfg)
    offset_uv = rngs["offset"].uniform(-1.0, 1.0, 4) * cfg.electrode_offset_mv * 1000.0

    all_events = np.concatenate(events) if events else np.zeros(0, dtype=gait_kinematics.EVENT_DTYPE)
    return Recording(
        config=cfg,
        emg_uv=emg,
        acc_g=acc_true + acc_bias + acc_noise,
        gyr_dps=gyr_true + gyr_bias + gyr_noise,
        activation=activation,
        envelope_uv=envelope,
        mvc_uv_rms=mvc_uv,
        pelvis_deg=pelvis,
        events=all_events,
        segments=segments,
        reps=reps,
        acc_true_g=acc_true,
        gyr_true_dps=gyr_true,
        acc_bias_g=acc_bias,
        gyr_bias_dps=gyr_bias,
        lead_off_mask=lead_off_mask,
        electrode_offset_uv=offset_uv,
    )
