"""Exam repetitions found on the device (firmware/dsp/reps.py, run in MicroPython behind the
device's PelvisEstimator, as App._imu_block runs it) against the simulator's per-repetition truth.

A repetition counts as found when one of the same task and side starts AND ends within 150 ms of
a truth repetition's start and end (truth: 10 % of the repetition's own movement peak; stance:
foot off / foot down), one to one. Cohort: healthy and weak-side patients, slow and hurried tempo,
some with many bad (shallow, hurried) repetitions and some doing every task badly (sloppy: fewer,
shallow repetitions, a short stance), both sides, all four tasks, several seeds.

Prints BENCH rep_detection_f1 (target >= 0.98), the same per task, the false repetitions per
task and side, and rep_detector_us_per_sample (unix port, viper; ESP32 ~50x slower). A stance
hold is also scored as the analysis uses it (2 s epochs over the hold): rep_stance_hold_found, the
share of truth holds found with both edges within 1 s (half an epoch), and the median and 90th
percentile of the edges' error of the holds found."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "firmware"))

from test_reps import exam_marks, match, run_device, to_counts, truth_of  # noqa: E402

from hipsync import sim  # noqa: E402
from hipwire import commands as cmd  # noqa: E402
from micropython_port import check_code  # noqa: E402

# seed, weak side, tempo, bad repetition fraction, sloppy (every task done badly)
HOLD_S = 12.0
COHORT = [
    (11, None, 1.0, 0.1, False),
    (12, "left", 1.0, 0.1, False),
    (13, "right", 1.0, 0.1, False),
    (14, None, 0.7, 0.1, False),  # hurried
    (15, "left", 1.6, 0.1, False),  # slow
    (16, "right", 2.0, 0.0, False),  # very slow
    (17, None, 1.0, 0.5, False),  # half the repetitions shallow and hurried
    (18, "left", 0.8, 0.3, False),
    (19, None, 1.0, 0.1, True),
    (20, "right", 1.2, 0.2, True),
    (21, "left", 1.0, 0.1, False),
    (22, None, 1.3, 0.2, False),
]

_TIMING = """
import time
from array import array
from dsp.reps import RepDetector
det = RepDetector()
imu = array('h', [0, 0, 4096, 3, -2, 1] * 5)
pel = array('i', bytes(4 * 15))
for k in range(500):
    det.process(imu, 5, pel, 0, 50 * k)
det.begin(3, 0, 5, 0)
t0 = time.ticks_us()
for k in range(4000):
    det.process(imu, 5, pel, 0, 50 * k)
print(time.ticks_diff(time.ticks_us(), t0) / 20000)
"""


def recording(seed, weak, tempo, bad, sloppy):
    cfg = sim.PatientConfig(seed=seed, weak_side=weak, exam_tempo=tempo, bad_rep_fraction=bad)
    tasks = [sim.standing_calibration(5.0), sim.rest(2.0)]
    for side in ("L", "R"):
        tasks += [sim.single_leg_stance(side, hold_s=HOLD_S, sloppy=sloppy), sim.rest(2.0)]
        for make in (sim.step_down, sim.single_leg_squat, sim.hip_abduction_wb):
            tasks += [make(side, 5, sloppy=sloppy), sim.rest(2.0)]
    return sim.simulate(cfg, tasks)


def main() -> None:
    per_task = {t: [0, 0, 0] for t in range(1, 5)}
    holds = [0, 0]  # found within 1 s, truth
    edge_err_ms: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, patient in enumerate(COHORT):
            rec = recording(*patient)
            sub = Path(tmp) / f"p{k}"
            sub.mkdir()
            found, _ = run_device(to_counts(rec.acc_g, rec.gyr_dps), exam_marks(rec), sub)
            truth = truth_of(rec)
            stance = [t for t in truth if t[3] == 1]
            tp, _, _, pairs = match(stance, [f for f in found if f[3] == 1], tol=100)
            holds[0] += tp
            holds[1] += len(stance)
            edge_err_ms += [10.0 * abs(f[k] - t[k]) for t, f in pairs for k in (0, 2)]
            for task in per_task:
                tp, fp, fn, _ = match([t for t in truth if t[3] == task],
                                      [f for f in found if f[3] == task])
                s = per_task[task]
                s[0], s[1], s[2] = s[0] + tp, s[1] + fp, s[2] + fn
            print("patient", patient, {cmd.EXAM_TASKS[t - 1]: match(
                [x for x in truth if x[3] == t], [f for f in found if f[3] == t])[:3]
                for t in per_task}, file=sys.stderr)
    tp = sum(s[0] for s in per_task.values())
    fp = sum(s[1] for s in per_task.values())
    fn = sum(s[2] for s in per_task.values())
    print(f"BENCH rep_detection_f1 {2 * tp / max(1, 2 * tp + fp + fn):.3f} ratio")
    for task, (a, b, c) in per_task.items():
        name = cmd.EXAM_TASKS[task - 1]
        print(f"BENCH rep_detection_f1_{name} {2 * a / max(1, 2 * a + b + c):.3f} ratio")
        print(f"BENCH rep_false_{name} {b} count")
    print(f"BENCH rep_stance_hold_found {holds[0] / max(1, holds[1]):.3f} ratio")
    if edge_err_ms:
        print(f"BENCH rep_stance_edge_err_p50 {np.median(edge_err_ms):.0f} ms")
        print(f"BENCH rep_stance_edge_err_p90 {np.percentile(edge_err_ms, 90):.0f} ms")
    print(f"repetitions: truth {tp + fn}, found {tp + fp}, matched {tp}", file=sys.stderr)
    us = float(check_code(_TIMING).strip().splitlines()[-1])
    print(f"BENCH rep_detector_us_per_sample {us:.2f} us")


if __name__ == "__main__":
    main()
