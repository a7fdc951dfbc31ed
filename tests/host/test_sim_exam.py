"""The simulated exam: per-repetition truth against what the recording really holds, compensation
per task and per repetition, the Penney option, and the live patient doing an exam instruction."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from hipsync import sim
from hipsync.sim import exam
from hipsync.sim.live_patient import Behaviour, LivePatient
from hipwire import commands, units
from hipwire import feed as fmt

FS_IMU = units.IMU_RATE_HZ
SIDE_SIGN = {"L": 1.0, "R": -1.0}


def _exam(cfg):
    return sim.simulate(cfg, [sim.standing_calibration(5.0), *sim.exam_protocol(reps=5)])


@pytest.fixture(scope="module")
def healthy():
    return _exam(sim.PatientConfig(seed=21))


@pytest.fixture(scope="module")
def weak_left():
    return _exam(sim.PatientConfig(weak_side="left", es_compensation="stance", seed=22))


def test_truth_counts_names_and_order(healthy):
    r = healthy.reps
    assert r.dtype == sim.REP_TRUTH_DTYPE
    for kind in commands.EXAM_TASKS:
        for side, name in (("L", "left"), ("R", "right")):
            rows = healthy.reps_of(f"{kind}_{name}")
            assert len(rows) == (1 if kind == "single_leg_stance" else 5), (kind, side)
            assert list(rows["index"]) == list(range(len(rows)))
            seg = healthy.segment(f"{kind}_{name}")
            assert seg.t_start_s < rows["t_start_s"][0] and rows["t_end_s"][-1] < seg.t_end_s
    assert np.all(r["t_start_s"] < r["t_low_s"]) and np.all(r["t_low_s"] < r["t_end_s"])
    assert np.all(np.diff(r["t_start_s"]) > 0) and np.all(r["t_start_s"][1:] > r["t_end_s"][:-1])


def test_repetitions_vary_and_pause(healthy):
    rows = healthy.reps_of("single_leg_squat_left")
    durations = rows["t_end_s"] - rows["t_start_s"]
    assert np.std(durations) > 0.03  # each repetition its own duration
    pauses = rows["t_start_s"][1:] - rows["t_end_s"][:-1]
    assert np.all(pauses > exam.MIN_PAUSE_S)
    stance = healthy.reps_of("single_leg_stance_left")[0]
    assert stance["t_end_s"] - stance["t_start_s"] == pytest.approx(sim.tasks.NOMINAL_HOLD_S, abs=0.02)


def test_sacrum_moves_as_the_truth_says(healthy):
    """Start/end at 10 % of the repetition's own movement peak, low at its peak, seen in the
    pelvis truth and the noise-free accelerometer (descent: vertical, from tilt)."""
    rel = healthy.pelvis_relative_deg()
    for name in ("step_down_left", "single_leg_squat_right"):
        seg = healthy.segment(name)
        base = rel[int(seg.t_start_s * FS_IMU) + 5, 1]  # on both feet (the weight shift does not tilt)
        for row in healthy.reps_of(name):
            k = [int(round(row[c] * FS_IMU)) for c in ("t_start_s", "t_low_s", "t_end_s")]
            tilt = rel[:, 1] - base
            peak = tilt[k[0]:k[2] + 1].max()
            # the low is at the top (postural sway of a few tenths of a degree moves the argmax of
            # a flat 4 deg top by up to 0.2 s, so compare values)
            assert tilt[k[1]] > peak - 0.4
            assert tilt[k[0]] == pytest.approx(0.1 * peak, abs=0.06 * peak + 0.35)
            assert tilt[k[2]] == pytest.approx(0.1 * peak, abs=0.06 * peak + 0.35)
    # single-leg stance: the foot off / down are where the swing side's drop starts / ends, and the
    # low is the largest drop of the hold
    rows = healthy.reps_of("single_leg_stance_right")
    row = rows[0]
    drop = SIDE_SIGN["R"] * rel[:, 0]
    i0, i1 = int(round(row["t_start_s"] * FS_IMU)), int(round(row["t_end_s"] * FS_IMU))
    assert drop[int(round(row["t_low_s"] * FS_IMU))] == pytest.approx(drop[i0:i1 + 1].max(), abs=1e-9)
    assert row["drop_deg"] == pytest.approx(drop[i0:i1 + 1].max(), abs=1e-9)


def test_weak_side_drops_in_stance_and_healthy_does_not(healthy, weak_left):
    weak = weak_left.reps_of("single_leg_stance_left")[0]
    other = weak_left.reps_of("single_leg_stance_right")[0]
    ok = healthy.reps_of("single_leg_stance_left")[0]
    assert weak["drop_deg"] > 4.0  # a positive Trendelenburg, beyond the 4 deg detectable change
    assert ok["drop_deg"] < 2.5 and other["drop_deg"] < 2.5
    for name in ("step_down_left", "single_leg_squat_left", "hip_abduction_wb_left"):
        w, h = weak_left.reps_of(name), healthy.reps_of(name)
        assert np.median(w["drop_deg"]) - np.median(h["drop_deg"]) > 3.0, name


def test_healthy_stance_gmed_above_both_es_in_every_task(healthy):
    assert not healthy.reps["compensated"].any()
    r = healthy.reps
    assert np.all(r["stance_gmed_pct_mvc"] > 1.5 * r["es_ipsi_pct_mvc"])
    assert np.all(r["stance_gmed_pct_mvc"] > 1.5 * r["es_contra_pct_mvc"])
    # literature ranges: dynamic single-leg tasks above the stance hold
    sq = healthy.reps_of("single_leg_squat_left")
    assert 35 < np.max(sq["stance_gmed_peak_pct_mvc"]) < 90


def test_compensated_fraction_and_es_above_weak_gmed(weak_left):
    for name in ("step_down_left", "single_leg_squat_left", "hip_abduction_wb_left"):
        rows = weak_left.reps_of(name)
        assert rows["compensated"].sum() == round(0.8 * len(rows)), name  # not all of them
        comp, plain = rows[rows["compensated"]], rows[~rows["compensated"]]
        ratio = comp["es_ipsi_pct_mvc"] / comp["stance_gmed_pct_mvc"]
        # a full compensated repetition: ES above the weak GMed; a shallow one loads less
        assert np.all(ratio[~comp["shallow"]] > 1.0), name
        assert np.all(plain["es_ipsi_pct_mvc"] < 0.6 * plain["stance_gmed_pct_mvc"]), name
        assert ratio.min() > 1.3 * np.max(plain["es_ipsi_pct_mvc"] / plain["stance_gmed_pct_mvc"])
    assert not weak_left.reps[weak_left.reps["side"] == "R"]["compensated"].any()


def test_compensation_only_in_the_tasks_named():
    cfg = sim.PatientConfig(weak_side="right", es_compensation="contra", seed=4,
                            compensated_tasks={"step_down"}, compensated_rep_fraction=1.0)
    rec = sim.simulate(cfg, [sim.step_down("R"), sim.single_leg_squat("R"), sim.walking(20.0)])
    sd, sq = rec.reps_of("step_down_right"), rec.reps_of("single_leg_squat_right")
    assert sd["compensated"].all() and not sq["compensated"].any()
    assert np.all(sd["es_contra_pct_mvc"] > sd["stance_gmed_pct_mvc"])
    assert np.all(sq["es_contra_pct_mvc"] < 0.6 * sq["stance_gmed_pct_mvc"])
    # no "walk" in the set: the walk is not compensated either
    plain = sim.simulate(sim.PatientConfig(weak_side="right", seed=4),
                         [sim.step_down("R"), sim.single_leg_squat("R"), sim.walking(20.0)])
    walk = rec.emg_slice(rec.segment("walking"))
    np.testing.assert_allclose(rec.activation[walk], plain.activation[plain.emg_slice(plain.segment("walking"))])
    # and the compensating patient moves exactly as the one who does not
    np.testing.assert_allclose(rec.pelvis_deg, plain.pelvis_deg)
    with pytest.raises(ValueError):
        sim.PatientConfig(compensated_tasks={"jumping"})


def test_penney_option_raises_the_weak_gmed_everywhere():
    tasks = [sim.step_down("L"), sim.single_leg_stance("L", hold_s=8.0), sim.walking(20.0)]
    low = sim.simulate(sim.PatientConfig(weak_side="left", seed=9), tasks)
    high = sim.simulate(sim.PatientConfig(weak_side="left", seed=9,
                                          weak_gmed_pct_factor=sim.PENNEY_HIGHER_PCT_FACTOR), tasks)
    healthy = sim.simulate(sim.PatientConfig(seed=9), tasks)
    for name in ("step_down_left", "single_leg_stance_left"):
        h, lo, hi = (r.reps_of(name)["stance_gmed_pct_mvc"] for r in (healthy, low, high))
        assert np.all(hi > h) and np.all(lo < h), name
    walk = high.emg_slice(high.segment("walking"))
    assert high.activation[walk, 0].max() > healthy.activation[walk, 0].max() \
        > low.activation[walk, 0].max()
    # and the weak MVC (uV) is the same in both: the %MVC is what differs
    np.testing.assert_allclose(high.mvc_uv_rms, low.mvc_uv_rms)


def test_old_name_and_sloppy_repetitions():
    a = sim.simulate(sim.PatientConfig(seed=3), [sim.Task("hip_abduction", 10.0, side="L", reps=3)])
    assert a.segments[0].name == "hip_abduction_wb_left" and len(a.reps) == 3
    s = sim.simulate(sim.PatientConfig(seed=3), [sim.step_down("L", sloppy=True)])
    assert len(s.reps) == 3 and s.reps["shallow"].all()
    assert np.all(s.reps["depth"] < 0.65 * 1000 * exam.POSE["step_down"]["down_m"])


def _read_blocks(fd, n):
    out = []
    for _ in range(n):
        buf = b""
        while len(buf) < fmt.LIVE_BLOCK_SIZE:
            chunk = os.read(fd, fmt.LIVE_BLOCK_SIZE - len(buf))
            assert chunk
            buf += chunk
        out.append(buf)
    return out


def _imu(blocks):
    emg_bytes = fmt.LIVE_BLOCK_EMG * (fmt.LIVE_BLOCK_SIZE - fmt.LIVE_BLOCK_IMU * 12) // fmt.LIVE_BLOCK_EMG
    return np.concatenate([np.frombuffer(b[emg_bytes:], dtype="<i2").reshape(-1, 6) for b in blocks])


def test_live_patient_performs_an_exam_instruction_and_stops_when_told():
    work = Path(tempfile.mkdtemp())
    cfg = sim.PatientConfig(weak_side="left", es_compensation="stance", seed=5)
    patient = LivePatient(cfg, work / "chips.fifo", idle="stand", keep_truth=True,
                          behaviour=Behaviour(sloppy_task="step_down"))
    patient.start()
    fd = os.open(work / "chips.fifo", os.O_RDONLY)
    try:
        os.read(fd, 24)  # header
        blocks = _read_blocks(fd, 20)
        patient.hear({"task": "single_leg_stance_left", "duration_s": 30})
        blocks += _read_blocks(fd, 200)  # 20 s into a 30 s hold: told to stop
        patient.hear({"task": "rest"})
        blocks += _read_blocks(fd, 100)
        patient.hear({"task": "step_down_right", "reps": 5})  # first step-down: sloppy
        blocks += _read_blocks(fd, 300)
        patient.hear({"task": "step_down_right", "reps": 5})
        blocks += _read_blocks(fd, 400)
    finally:
        os.close(fd)
        patient.stop()
    reps = patient.truth_reps()
    stance = reps[reps["task"] == "single_leg_stance"]
    assert len(stance) == 1
    react = Behaviour().reaction_s
    # foot off after the reaction and the weight shift; foot down when told, after the reaction
    assert stance["t_start_s"][0] == pytest.approx(2.0 + react + exam.WEIGHT_SHIFT_S + exam.STANCE_SETTLE_S,
                                                   abs=0.15)
    assert stance["t_end_s"][0] == pytest.approx(22.0 + react, abs=0.15)
    assert stance["compensated"][0] and stance["drop_deg"][0] > 4.0
    sd = reps[reps["task"] == "step_down"]
    first, second = sd[sd["t_start_s"] < 45.0], sd[sd["t_start_s"] >= 45.0]
    assert len(first) == 3 and first["shallow"].all()  # done badly the first time
    assert len(second) == 5 and not second["compensated"].any()  # right side is not weak
    # what the chips received moves as the truth says: no jump where the hold was cut (the
    # gyro stays at postural-sway size), and the trunk descends at each step-down's low point
    gyr = _imu(blocks)[:, 3:] * units.GYR_DPS_PER_LSB
    cut = int(round(stance["t_end_s"][0] * FS_IMU))
    assert np.abs(gyr[cut - 30:cut + 30]).max() < 40.0
    mag = np.linalg.norm(gyr, axis=1)  # the board mounting permutes the axes: the magnitude
    for row in second:
        a, b = int(row["t_start_s"] * FS_IMU), int(row["t_end_s"] * FS_IMU)
        assert mag[a:b].max() > 2 * np.median(mag[int(second["t_end_s"][-1] * FS_IMU) + 300:][:200])
