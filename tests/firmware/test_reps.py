"""RepDetector (firmware/dsp/reps.py) run inside MicroPython, behind the device's own
PelvisEstimator, on the simulated exam (host/hipsync/sim): against the float twin
(reps_reference.py) fed the same counts and angles, and against the simulator's per-repetition
truth (Recording.reps: start/end at 10 % of the repetition's own movement peak, low at the peak)."""

from __future__ import annotations

import numpy as np
import pytest
import reps_reference as ref

from micropython_port import check_code

sim = pytest.importorskip("hipsync.sim")

from hipwire import commands as cmd  # noqa: E402
from hipwire import frames as wire  # noqa: E402

ACC_LSB_PER_G = 4096
GYR_LSB_PER_DPS = 32.8
CLOCK0 = 7000
TICKS = 10
BLOCK = 5  # the IMU FIFO watermark: the app's usual block
TOL = 15  # samples: 150 ms, the benchmark's window for start and end

# Replays counts (int16, 6 per sample) through PelvisEstimator and RepDetector like
# App._imu_block, with the host's marks: (sample, 'cal_begin' | 'cal_end' | 'task', code, side).
# Writes the angles and prints each repetition.
_REPLAY = """
from array import array
from dsp.pelvis import PelvisEstimator
from dsp.reps import RepDetector
pel = PelvisEstimator()
det = RepDetector()
marks = {marks!r}
buf = array('h', bytes(2 * 6 * {block}))
pout = array('i', bytes(4 * 3 * {block}))
out = array('i', bytes(4 * 8))
clock = {clock0}
s = 0
fo = open({outp!r}, 'wb')
with open({inp!r}, 'rb') as f:
    while True:
        for m in marks.get(s, ()):
            if m[0] == 'cal_begin':
                pel.begin_standing_calibration()
            elif m[0] == 'cal_end':
                print('CAL', pel.end_standing_calibration())
            elif m[1] == 0:
                det.end(clock)
            else:
                det.begin(m[1], m[2], 5, clock)
        n = f.readinto(buf) // 12
        if n == 0:
            break
        pel.process(buf, n, pout, 0)
        fo.write(memoryview(pout)[:3 * n])
        det.process(buf, n, pout, 0, clock)
        clock += n * {ticks}
        s += n
        while det.pop(out):
            print('REP', ' '.join(str(x) for x in out))
fo.close()
print('DROPPED', det.dropped)
"""


def to_counts(acc_g: np.ndarray, gyr_dps: np.ndarray) -> np.ndarray:
    acc = np.clip(np.round(acc_g * ACC_LSB_PER_G), -32768, 32767)
    gyr = np.clip(np.round(gyr_dps * GYR_LSB_PER_DPS), -32768, 32767)
    return np.c_[acc, gyr].astype("<i2")


def exam_marks(rec) -> list[tuple[int, str, int, int]]:
    """The host's marks for a simulated recording: a standing calibration over the calibration
    segment, OP_TASK at each exam segment's start, task 0 at its end."""
    marks = []
    fs = ref.FS_HZ
    for seg in rec.segments:
        a, b = int(round(seg.t_start_s * fs)), int(round(seg.t_end_s * fs))
        if seg.kind == "standing":
            marks += [(a + 50, "cal_begin", 0, 0), (b - 50, "cal_end", 0, 0)]
        elif seg.kind in cmd.EXAM_TASKS:
            code = 1 + cmd.EXAM_TASKS.index(seg.kind)
            side = wire.LEFT if seg.side == "L" else wire.RIGHT
            marks += [(a, "task", code, side), (b, "task", 0, 0)]
    return marks


def _block_aligned(marks, block):
    out = {}
    for s, *m in marks:
        out.setdefault(int(round(s / block)) * block, []).append(tuple(m))
    return out


def run_device(counts: np.ndarray, marks, tmp_path, block=BLOCK):
    """(repetitions as (start, low, end sample, task, side, index, flags, depth), angles cdeg)."""
    inp, outp = tmp_path / "imu.bin", tmp_path / "pel.bin"
    inp.write_bytes(np.ascontiguousarray(counts, dtype="<i2").tobytes())
    code = _REPLAY.format(marks=_block_aligned(marks, block), block=block, clock0=CLOCK0,
                          inp=str(inp), outp=str(outp), ticks=TICKS)
    out = check_code(code, heap="2m", timeout_s=300)
    reps = []
    for line in out.splitlines():
        if line.startswith("REP"):
            v = list(map(int, line.split()[1:]))
            for k in range(3):
                assert (v[k] - CLOCK0) % TICKS == 0
                v[k] = (v[k] - CLOCK0) // TICKS
            reps.append(tuple(v))
        elif line.startswith("DROPPED"):
            assert line.split()[1] == "0"
        elif line.startswith("CAL"):
            assert line.split()[1] == "True", "the standing calibration was refused"
    angles = np.frombuffer(outp.read_bytes(), "<i4").reshape(-1, 3)
    return reps, angles


def run_reference(counts, marks, block=BLOCK):
    """The float twin on the same counts."""
    tasks = [(s, code, side) for s, kind, code, side in marks if kind == "task"]
    return ref.detect(counts, tasks, block=block)


def truth_of(rec):
    """Truth repetitions as (start, low, end sample, task code, side) of the exam tasks."""
    fs = ref.FS_HZ
    out = []
    for r in rec.reps:
        out.append((r["t_start_s"] * fs, r["t_low_s"] * fs, r["t_end_s"] * fs,
                    1 + cmd.EXAM_TASKS.index(str(r["task"])),
                    wire.LEFT if r["side"] == "L" else wire.RIGHT, float(r["depth"])))
    return out


def match(truth, found, tol=TOL):
    """One-to-one: a found repetition of the same task and side whose start AND end are within tol
    samples of a truth repetition's. Returns (tp, fp, fn, pairs)."""
    used = set()
    pairs = []
    for t in truth:
        best, best_err = None, None
        for j, f in enumerate(found):
            if j in used or f[3] != t[3] or f[4] != t[4]:
                continue
            err = max(abs(f[0] - t[0]), abs(f[2] - t[2]))
            if err <= tol and (best_err is None or err < best_err):
                best, best_err = j, err
        if best is not None:
            used.add(best)
            pairs.append((t, found[best]))
    tp = len(pairs)
    return tp, len(found) - tp, len(truth) - tp, pairs


def exam_recording(cfg, reps=5, hold_s=10.0):
    tasks = [sim.standing_calibration(5.0), sim.rest(2.0)]
    for side in ("L", "R"):
        tasks += [sim.single_leg_stance(side, hold_s=hold_s), sim.rest(2.0)]
        for make in (sim.step_down, sim.single_leg_squat, sim.hip_abduction_wb):
            tasks += [make(side, reps), sim.rest(2.0)]
    return sim.simulate(cfg, tasks)


PATIENTS = [  # seed, weak side, tempo, bad repetition fraction
    (1, None, 1.0, 0.1),
    (2, "left", 1.0, 0.1),
    (3, "right", 1.4, 0.3),
    (4, None, 0.7, 0.0),
]


@pytest.fixture(scope="module")
def sim_runs(tmp_path_factory):
    runs = []
    for seed, weak, tempo, bad in PATIENTS:
        cfg = sim.PatientConfig(seed=seed, weak_side=weak, exam_tempo=tempo, bad_rep_fraction=bad)
        rec = exam_recording(cfg)
        counts = to_counts(rec.acc_g, rec.gyr_dps)
        marks = exam_marks(rec)
        device, _ = run_device(counts, marks, tmp_path_factory.mktemp(f"reps{seed}"))
        runs.append((cfg, rec, counts, marks, device))
    return runs


def test_device_matches_reference(sim_runs):
    # Not bit-exact: the 10 % crossings of a slowly changing m, the 12 cdeg stillness limit and the
    # entry level move with the integer rounding (1 cdeg angles, Q5 baselines), so a repetition
    # found by one may be split, merged or missed by the other. Measured agreement on these four
    # patients: see the print; the floor is a little under it.
    tp = fp = fn = 0
    depth_diff = []
    for _, _, counts, marks, device in sim_runs:
        reference = run_reference(counts, marks)
        a, b, c, pairs = match(reference, device, tol=3)
        tp, fp, fn = tp + a, fp + b, fn + c
        depth_diff += [abs(f[7] - r[7]) for r, f in pairs]
    agreement = 2 * tp / (2 * tp + fp + fn)
    print("device vs float twin: agreement", agreement, "tp", tp, "fp", fp, "fn", fn,
          "depth difference median", np.median(depth_diff))
    assert agreement >= FLOOR_AGREEMENT
    assert np.median(depth_diff) <= 10  # cdeg or mm


def test_simulated_repetitions_are_found(sim_runs):
    tp = fp = fn = 0
    depth_err = {}
    for cfg, rec, _, _, device in sim_runs:
        a, b, c, pairs = match(truth_of(rec), device)
        print("PATIENT", cfg.seed, cfg.weak_side, "tp", a, "fp", b, "fn", c)
        tp, fp, fn = tp + a, fp + b, fn + c
        for t, f in pairs:
            depth_err.setdefault(t[3], []).append(f[7] - t[5])
        # indices count each task's repetitions from 0
        for task in range(1, 5):
            for side in (wire.LEFT, wire.RIGHT):
                idx = [f[5] for f in device if f[3] == task and f[4] == side]
                assert idx == list(range(len(idx))), idx
    f1 = 2 * tp / (2 * tp + fp + fn)
    print("F1", f1, "tp", tp, "fp", fp, "fn", fn)
    for task, errs in sorted(depth_err.items()):
        print("depth error", cmd.EXAM_TASKS[task - 1], np.median(errs), np.percentile(np.abs(errs), 90))
    assert f1 >= FLOOR_F1
    assert fp <= FLOOR_FP
    # abduction: swing-side obliquity at the low (cdeg); step-down / squat: descent (mm), the
    # vertical velocity (zeroed whenever the person is still) integrated from the onset. Measured
    # median errors -10 mm, -14 mm, +2 cdeg; 90th percentile of |error| 20 mm, 31 mm, 39 cdeg.
    assert abs(np.median(depth_err[2])) <= 25 and abs(np.median(depth_err[3])) <= 25
    assert np.percentile(np.abs(depth_err[2]), 90) <= 40
    assert np.percentile(np.abs(depth_err[3]), 90) <= 50
    assert abs(np.median(depth_err[4])) <= 30


# A little under what the detector measures on these four patients: F1 0.87 (tp 105, fp 9, fn 23).
# The misses are mostly single-leg stances (the hold is found from the sway of one leg, whose
# edges fall within 150 ms in about one hold in five; bench/bench_reps.py scores the holds at 1 s
# too) and slow repetitions whose 60 % rate crossings the sway moves by more than 150 ms.
FLOOR_F1 = 0.84
FLOOR_AGREEMENT = 0.95  # measured 1.00 (tp 114, fp 0, fn 0), depth difference median 1
FLOOR_FP = 12
