"""A simulated cohort through the clinical exam: does the report flag, per task and side, what the
patient really did?

Each patient (a PatientConfig with a fixed seed) wears the virtual device (the real firmware in the
MicroPython unix port, reached through bleak's virtual backend) and is guided through the exam as
`hipsync demo --protocol exam` does (hipsync.commands.demo.run_demo): standing calibration, the
four MVCs, per side single-leg stance, step-down, single-leg squat and weight-bearing hip
abduction, then a short walk; rests shortened to REST_S. The patient hears each instruction and
does it, with their own tempo and variation, sometimes badly.

The cohort varies what the exam must tell apart: healthy people; a weak left or right gluteus
medius with stance-side, contralateral or no erector compensation; compensation in every task or
only in some (`compensated_tasks`), in all or most repetitions; an extra swing-side drop below or
well above the 4 deg detectable change; a weak GMed reading lower or (Penney et al. 2014) higher
%MVC than the healthy side; slow and hurried people.

Truth per (patient, task, side, flag) comes from what the simulated person did in the repetitions
the report analysed (the simulator's per-repetition truth, `LivePatient.truth_reps`, inside the
stored task window), judged by the report's own rule definitions (hipsync.analysis.rules), so the
score says whether the device and the analysis measure right, not whether the thresholds are wise:
- ES_DOMINANT_IPSI / _CONTRA expected where the patient's compensation is of that kind and at
  least EXAM_CONSISTENT_FRACTION of the task's repetitions were compensated; expected absent where
  none was; no judgement in between.
- PELVIC_DROP expected where the true median swing-side drop exceeds the clinical drop and the
  other side's by more than the detectable change (or the clinical drop by more than it), each by
  a margin of DROP_MARGIN_DEG; expected absent where every condition misses by that margin; no
  judgement within the margin (there a flag is a coin toss by construction).
A task side the device found too few repetitions in (FEW_REPS) counts as a miss when a flag was
expected there: the exam must find them.

Prints `BENCH exam_cohort_sensitivity`, `BENCH exam_cohort_specificity` (targets >= 0.95), one
line per flag, `BENCH exam_cohort_patients`, `BENCH exam_cohort_wall_s`. Two patients run at once.

    python bench/bench_exam_cohort.py [--n 60] [--speed 6] [--keep out/exam-cohort]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "host"))

import numpy as np  # noqa: E402

FLAGS = ("ES_DOMINANT_IPSI", "ES_DOMINANT_CONTRA", "PELVIC_DROP")
SIDES = ("left", "right")
MASTER_SEED = 16
WALK_S = 20.0
REST_S = 3.0
DROP_MARGIN_DEG = 1.0
TASK_SUBSETS = (None, frozenset({"step_down", "single_leg_squat"}),
                frozenset({"single_leg_stance", "hip_abduction_wb", "walk"}))


def cohort(n: int) -> list[dict]:
    rng = np.random.default_rng(MASTER_SEED)
    groups = [(None, None)] + [(w, c) for w in ("left", "right") for c in ("stance", "contra", None)]
    out = []
    for i in range(n):
        weak, comp = groups[i % len(groups)]
        k = i // len(groups)
        spec = {"id": f"X{i:03d}", "seed": 2000 + i, "weak_side": weak, "es_compensation": comp,
                "pelvic_drop_deg": 0.0 if weak is None else
                (float(rng.uniform(0.0, 2.0)) if k % 3 == 2 else float(rng.uniform(6.0, 10.0))),
                "compensated_tasks": None, "compensated_rep_fraction": 1.0,
                "weak_gmed_pct_factor": 0.8,
                "exam_tempo": float(rng.uniform(0.8, 1.3))}
        if comp is not None:
            subset = TASK_SUBSETS[k % len(TASK_SUBSETS)]
            spec["compensated_tasks"] = sorted(subset) if subset is not None else None
            spec["compensated_rep_fraction"] = 1.0 if rng.random() < 0.5 else 0.8
        if weak is not None and rng.random() < 0.4:
            spec["weak_gmed_pct_factor"] = 1.3  # Penney 2014: a weak GMed may read higher %MVC
        out.append(spec)
    return out


def wearer_of(spec: dict):
    from hipsync.commands._device import Wearer
    from hipsync.sim import PatientConfig
    from hipsync.sim.live_patient import Behaviour

    kw = {k: spec[k] for k in ("seed", "weak_side", "es_compensation", "pelvic_drop_deg",
                               "compensated_rep_fraction", "weak_gmed_pct_factor", "exam_tempo")}
    if spec["compensated_tasks"] is not None:
        kw["compensated_tasks"] = frozenset(spec["compensated_tasks"])
    return Wearer(PatientConfig(**kw), Behaviour())


def _median(x) -> float | None:
    x = np.asarray(x, float)
    return float(np.median(x)) if len(x) else None


def expected_flags(report_exam: dict, truth: np.ndarray, spec: dict) -> dict:
    """{(task, side): {flag: True | False | None}} from the truth of the analysed repetitions."""
    from hipsync.analysis import rules

    out = {}
    drops: dict[tuple[str, str], float | None] = {}
    for task, entry in report_exam.items():
        for side in SIDES:
            e = entry.get(side)
            if not e or e.get("t_start_s") is None:
                continue
            sel = (truth["task"] == task) & (truth["side"] == side[0].upper()) & \
                  (truth["t_start_s"] >= e["t_start_s"] - 0.5) & (truth["t_start_s"] < e["t_end_s"])
            reps = truth[sel]
            drops[(task, side)] = _median(reps["drop_deg"])
            frac = float(np.mean(reps["compensated"])) if len(reps) else 0.0
            weak_here = spec["weak_side"] == side
            t = {}
            for flag, kind in (("ES_DOMINANT_IPSI", "stance"), ("ES_DOMINANT_CONTRA", "contra")):
                if weak_here and spec["es_compensation"] == kind and \
                        frac >= rules.EXAM_CONSISTENT_FRACTION:
                    t[flag] = True
                elif not weak_here or spec["es_compensation"] != kind or frac == 0.0:
                    t[flag] = False
                else:
                    t[flag] = None
            out[(task, side)] = t
    m = DROP_MARGIN_DEG
    clinical, sdc = rules.EXAM_CLINICAL_DROP_DEG, rules.PELVIC_DROP_DEG
    for (task, side), t in out.items():
        d = drops[(task, side)]
        o = drops.get((task, SIDES[1 - SIDES.index(side)]))
        if d is None:
            t["PELVIC_DROP"] = None
            continue
        beyond = d - clinical - sdc
        asym = None if o is None else d - o - sdc
        over = d - clinical
        clearly = over > m and (beyond > m or (asym is not None and asym > m))
        clearly_not = over < -m or (beyond < -m and (asym is None or asym < -m))
        t["PELVIC_DROP"] = True if clearly else (False if clearly_not else None)
    return out


async def _visit(spec: dict, out: Path, speed: float) -> tuple[dict, np.ndarray]:
    from hipsync.commands.demo import run_demo

    result = await run_demo(out, wearer_of(spec), walk_s=WALK_S, speed=speed,
                            patient_id=spec["id"], keep_truth=True, protocol="exam",
                            rest_s=REST_S)
    report = json.loads(Path(result["json"]).read_text())
    return report, result["patient"].truth_reps()


def run_patient(spec: dict, speed: float, keep: str | None) -> dict:
    t0 = time.monotonic()
    base = Path(keep) / spec["id"] if keep else Path(tempfile.mkdtemp(prefix="hipsync-exam-"))
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    try:
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):  # the guide's lines
            report, truth = asyncio.run(_visit(spec, base, speed))
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    exam = report.get("exam", {})
    expected = expected_flags(exam, truth, spec)
    scored = []
    for (task, side), t in expected.items():
        raised = set(exam[task][side].get("flags", []))
        for flag in FLAGS:
            if t[flag] is not None:
                scored.append((task, side, flag, t[flag], flag in raised, spec["id"]))
    return {"id": spec["id"], "scored": scored, "wall_s": time.monotonic() - t0,
            "few_reps": sum("FEW_REPS" in exam[task][s].get("flags", [])
                            for task in exam for s in SIDES if s in exam[task])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--speed", type=float, default=6.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", default=None, help="keep each patient's store and report here")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    specs = cohort(args.n)
    results = []
    with ProcessPoolExecutor(args.workers) as pool:
        futures = {pool.submit(run_patient, s, args.speed, args.keep): s for s in specs}
        for fut in as_completed(futures):
            spec = futures[fut]
            try:
                r = fut.result()
            except Exception as e:  # one patient's failure is reported, the cohort goes on
                print(f"{spec['id']}: failed: {e!r}", file=sys.stderr, flush=True)
                continue
            results.append(r)
            print(f"{r['id']}: {len(r['scored'])} judgements, {r['wall_s']:.0f} s", file=sys.stderr,
                  flush=True)
    rows = [row for r in results for row in r["scored"]]
    total = {}
    for flag in (*FLAGS, "all"):
        sel = [row for row in rows if flag == "all" or row[2] == flag]
        pos = [row for row in sel if row[3]]
        neg = [row for row in sel if not row[3]]
        sens = sum(row[4] for row in pos) / len(pos) if pos else float("nan")
        spec_ = sum(not row[4] for row in neg) / len(neg) if neg else float("nan")
        total[flag] = (sens, spec_, len(pos), len(neg))
    print(f"BENCH exam_cohort_sensitivity {total['all'][0]:.3f} ratio")
    print(f"BENCH exam_cohort_specificity {total['all'][1]:.3f} ratio")
    for flag in FLAGS:
        sens, spec_, npos, nneg = total[flag]
        print(f"BENCH exam_cohort_sensitivity_{flag.lower()} {sens:.3f} ratio  # {npos} expected")
        print(f"BENCH exam_cohort_specificity_{flag.lower()} {spec_:.3f} ratio  # {nneg} absent")
    misses = [row for row in rows if row[3] != row[4]]
    for row in misses[:40]:
        print(f"# wrong: {row[5]} {row[0]} {row[1]} {row[2]} expected={row[3]} raised={row[4]}",
              file=sys.stderr)
    print(f"BENCH exam_cohort_patients {len(results)} patients  # of {len(specs)}")
    print(f"BENCH exam_cohort_few_reps {sum(r['few_reps'] for r in results)} task_sides")
    print(f"BENCH exam_cohort_wall_s {time.monotonic() - t0:.0f} s")
    return 0 if len(results) == len(specs) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
