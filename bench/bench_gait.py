"""Gait events of the device detector (firmware/dsp/gait.py, run in MicroPython) against the INDIP
reference of the mobgap lab recordings (all trials of HA/001, HA/002, MS/001), and mobgap's own IC
detectors on the same recordings.

Two evaluations:
- ours (BENCH ic_f1_mobgap, ic_mae_ms_mobgap, fc_f1_mobgap, laterality_acc_mobgap): one-to-one
  matching, closest pairs first, |error| <= 50 ms, detections inside each reference bout +- 50 ms.
- mobgap's (BENCH ic_f1_mobgapeval_<tol>_<detector>): what IcdEmulationPipeline +
  icd_per_datapoint_score do -- categorize_ic_list per reference walking bout, counts summed over
  recordings -- at mobgap's own tolerance (0.5 s) and at 50 ms. Published mobgap IC F1 figures of
  ~0.8-0.9 are at 0.5 s.
Also BENCH ic_indip_vs_stereo_within_50ms: how often the two reference systems agree within 50 ms,
and a breakdown of our IC errors (stderr, plus per-subject and against-stereophotogrammetry BENCH
lines): per subject and test; misses by kind (first / last step of a bout, turn, slow step, other;
near: the nearest detection is 60..150 ms away, far: none within 150 ms); false detections near /
far; the signed timing error per subject and foot; and whether a constant timing shift fitted on
one subject carries over to the others.
Needs ../shared/data and, for the mobgap lines, mobgap (bench extra)."""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "firmware"))

import gait_reference as ref  # noqa: E402
import numpy as np  # noqa: E402

TOL = 5  # samples at 100 Hz = 50 ms
MOBGAP_CONTEXT = 100  # samples of signal either side of a bout given to mobgap's detectors


_EVENTS: dict[str, list] = {}  # trial name -> device events (one MicroPython run per trial)


def device_events(trial, tmp: Path):
    from test_gait import run_device, to_counts

    if trial.name not in _EVENTS:
        _EVENTS[trial.name] = run_device(to_counts(trial.acc_g, trial.gyr_dps), tmp)
    return _EVENTS[trial.name]


def ours(trials) -> None:
    ic_total, fc_total = ref.Score(), ref.Score()
    with tempfile.TemporaryDirectory() as tmp:
        for trial in trials:
            sub = Path(tmp) / trial.name.replace("/", "_")
            sub.mkdir()
            ic, fc = ref.score_trial(trial, device_events(trial, sub), tol=TOL)
            ic_total.add(ic)
            fc_total.add(fc)
    print(f"BENCH ic_f1_mobgap {ic_total.f1:.3f} ratio")
    print(f"BENCH ic_mae_ms_mobgap {ic_total.mae_ms:.1f} ms")
    print(f"BENCH fc_f1_mobgap {fc_total.f1:.3f} ratio")
    print(f"BENCH laterality_acc_mobgap {ic_total.side_accuracy:.3f} ratio")
    print(f"ours IC {ic_total.as_dict()} FC {fc_total.as_dict()}", file=sys.stderr)


TURN_DPS = 40  # |yaw rate| (1 s mean) above which a missed IC counts as in a turn
SLOW_STEP = 100  # samples: a missed IC next to a step interval above 1 s counts as a slow step
NEAR = 15  # samples: a miss with a detection within 150 ms is a timing miss, not a missed step


def _ic_samples(events) -> np.ndarray:
    return np.asarray([e[0] for e in events if e[1] == ref.IC], dtype=int)


def _nearest(x: int, arr: np.ndarray) -> int:
    """Signed offset of the element of arr nearest to x (a large number if arr is empty)."""
    return int(arr[np.argmin(np.abs(arr - x))] - x) if len(arr) else 10_000


def breakdown(trials) -> None:
    """Where our IC errors come from (stderr), with per-subject and stereophotogrammetry figures."""
    stereo = {t.name: t for t in ref.load_lab_trials("Stereophoto")}
    per_subject: dict[str, ref.Score] = {}
    per_test: dict[str, ref.Score] = {}
    vs_stereo = ref.Score()
    kinds: dict[str, int] = {}
    signed: dict[str, list] = {}
    for trial in trials:
        if not trial.wbs:
            continue
        events = _EVENTS[trial.name]
        subject, test = trial.name.rsplit("/", 2)[0], trial.name.split("/")[2]
        ic, _ = ref.score_trial(trial, events, tol=TOL)
        per_subject.setdefault(subject, ref.Score()).add(ic)
        per_test.setdefault(test, ref.Score()).add(ic)
        if stereo[trial.name].wbs:
            vs_stereo.add(ref.score_trial(stereo[trial.name], events, tol=TOL)[0])
        ics = _ic_samples(events)
        yaw_dps = np.convolve(trial.gyr_dps[:, 2], np.ones(100) / 100, mode="same")
        for wb in trial.wbs:
            det = ics[(ics >= wb["start"] - TOL) & (ics <= wb["end"] + TOL)]
            intervals = np.diff(wb["ic"])
            for k, (x, side) in enumerate(zip(wb["ic"], wb["ic_side"])):
                off = _nearest(x, det)
                if abs(off) <= 10:
                    signed.setdefault(f"{subject} {'LR'[side]}", []).append(off)
                if abs(off) <= TOL:
                    continue
                if k == 0:
                    kind = "first"
                elif k == len(wb["ic"]) - 1:
                    kind = "last"
                elif abs(yaw_dps[x]) > TURN_DPS:
                    kind = "turn"
                elif max(intervals[k - 1], intervals[k]) > SLOW_STEP:
                    kind = "slow"
                else:
                    kind = "other"
                key = f"miss {kind} {'near' if abs(off) <= NEAR else 'far'}"
                kinds[key] = kinds.get(key, 0) + 1
            for x in det:
                off = abs(_nearest(x, wb["ic"]))
                if off > TOL:
                    key = f"false {'near' if off <= NEAR else 'far'}"
                    kinds[key] = kinds.get(key, 0) + 1
    for name, sc in sorted(per_subject.items()):
        print(f"ours {name}: {sc.as_dict()}", file=sys.stderr)
        print(f"BENCH ic_f1_mobgap_{name.replace('/', '')} {sc.f1:.3f} ratio")
    for name, sc in sorted(per_test.items()):
        print(f"ours {name}: {sc.as_dict()}", file=sys.stderr)
    print(f"ours vs stereophotogrammetry: {vs_stereo.as_dict()}", file=sys.stderr)
    print(f"BENCH ic_f1_stereo_mobgap {vs_stereo.f1:.3f} ratio")
    print(f"IC errors by kind (turn: |yaw| > {TURN_DPS} dps; slow: a step interval > "
          f"{SLOW_STEP * 10} ms; near: a detection within {NEAR * 10} ms): {dict(sorted(kinds.items()))}",
          file=sys.stderr)
    for key, offs in sorted(signed.items()):
        print(f"signed IC error {key} (detected - INDIP, within 100 ms): n {len(offs)} mean "
              f"{np.mean(offs) * 10:+.0f} ms median {np.median(offs) * 10:+.0f} ms", file=sys.stderr)
    _shift_transfer(trials, sorted(per_subject))


def _shift_transfer(trials, subjects) -> None:
    """A constant IC shift fitted on one subject (best F1 over -50..+30 ms), scored on each subject:
    a real timing bias would help every subject with the same sign."""
    shifts = range(-5, 4)
    f1 = {}
    for subject in subjects:
        for shift in shifts:
            sc = ref.Score()
            for trial in trials:
                if trial.name.startswith(subject + "/"):
                    ev = [(e[0] + shift,) + tuple(e[1:]) if e[1] == ref.IC else e for e in _EVENTS[trial.name]]
                    sc.add(ref.score_trial(trial, ev, tol=TOL)[0])
            f1[subject, shift] = sc.f1
    for fit in subjects:
        best = max(shifts, key=lambda s: (f1[fit, s], -abs(s)))
        others = " ".join(f"{o} {f1[o, 0]:.3f}->{f1[o, best]:.3f}" for o in subjects if o != fit)
        print(f"IC shift fitted on {fit}: {best * 10:+d} ms (F1 {f1[fit, 0]:.3f}->{f1[fit, best]:.3f}); "
              f"on the others: {others}", file=sys.stderr)


def _mobgap_dataset(tmp: str):
    """mobgap's own loader over the same files (it reads MOBGAP_DATA_DIR at import; without it, it
    downloads, which fails offline). `tmp` must outlive the dataset."""
    os.symlink(ref.DATA_ROOT, Path(tmp) / "v1.2.0")
    os.environ["MOBGAP_DATA_DIR"] = tmp
    from mobgap.data import LabExampleDataset

    return LabExampleDataset(reference_system="INDIP")


def _label(dp) -> str:
    lab = dp.group_label
    return f"{lab.cohort}/{lab.participant_id}/{lab.test}/{lab.trial}"


def _mobgap_score(detected_per_dp: dict, ds, tol_samples: int) -> dict:
    """Score IC lists exactly as mobgap's icd_per_datapoint_score does, but at `tol_samples`:
    categorize_ic_list per reference walking bout (mutual nearest neighbours within the tolerance),
    detected ICs outside every reference bout ignored, counts summed over all recordings (the
    `combined__` figures of icd_final_agg), MAE over the true positives."""
    import pandas as pd
    from mobgap.initial_contacts.evaluation import categorize_ic_list

    tp = fp = fn = 0
    errors = []
    side_ok = 0
    for dp in ds:
        reference = dp.reference_parameters_.ic_list.reset_index()
        det = detected_per_dp.get(_label(dp), pd.DataFrame({"wb_id": [], "ic": [], "lr_label": []}))
        for wb_id, ref_wb in reference.groupby("wb_id"):
            det_wb = det[det["wb_id"] == wb_id]
            r = ref_wb[["ic"]].reset_index(drop=True).rename_axis("ic_id")
            d = det_wb[["ic"]].reset_index(drop=True).rename_axis("ic_id")
            if len(d) == 0:
                fn += len(r)
                continue
            m = categorize_ic_list(ic_list_detected=d, ic_list_reference=r, tolerance_samples=tol_samples)
            tp_rows = m[m["match_type"] == "tp"]
            tp += len(tp_rows)
            fp += int((m["match_type"] == "fp").sum())
            fn += int((m["match_type"] == "fn").sum())
            for _, row in tp_rows.iterrows():
                i, j = int(row["ic_id_detected"]), int(row["ic_id_reference"])
                errors.append(abs(int(d["ic"].iloc[i]) - int(r["ic"].iloc[j])))
                side_ok += int(det_wb["lr_label"].iloc[i] == ref_wb["lr_label"].iloc[j])
    return {"tp": tp, "fp": fp, "fn": fn, "f1": 2 * tp / max(1, 2 * tp + fp + fn),
            "mae_ms": float(np.mean(errors)) * 1000 / ref.FS_HZ if errors else float("nan"),
            "side": side_ok / max(1, tp)}


def mobgap_evaluation(trials, ds) -> None:
    """Ours and mobgap's IC detectors, both scored the way mobgap's IcdEmulationPipeline +
    icd_per_datapoint_score does (its tolerance is 0.5 s; we add 50 ms, the issue's target).

    mobgap's detectors get the data of each reference walking bout only (GsIterator over the
    reference wb_list, converted to mobgap's body frame), as in IcdEmulationPipeline. Ours runs
    causally over the whole recording on the device; its ICs are assigned to the reference bout they
    fall in (start..end inclusive)."""
    warnings.filterwarnings("ignore")
    import pandas as pd
    from mobgap.initial_contacts import IcdHKLeeImproved, IcdIonescu, IcdShinImproved
    from mobgap.initial_contacts.pipeline import IcdEmulationPipeline

    by_name = {t.name: t for t in trials}
    results = {}
    ours_per_dp = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dp in ds:
            trial = by_name[_label(dp)]
            sub = Path(tmp) / trial.name.replace("/", "_")
            sub.mkdir()
            ev = [e for e in device_events(trial, sub) if e[1] == ref.IC]
            rows = []
            for wb_id, wb in dp.reference_parameters_.wb_list.iterrows():
                rows += [{"wb_id": wb_id, "ic": e[0], "lr_label": "left" if e[2] == ref.LEFT else "right"}
                         for e in ev if wb["start"] <= e[0] <= wb["end"]]
            ours_per_dp[_label(dp)] = pd.DataFrame(rows, columns=["wb_id", "ic", "lr_label"])
    results["ours"] = ours_per_dp
    for algo in (IcdShinImproved(), IcdIonescu(), IcdHKLeeImproved()):
        per_dp = {}
        for dp in ds:
            ic = IcdEmulationPipeline(algo).safe_run(dp).ic_list_.reset_index()
            ic["lr_label"] = ""
            per_dp[_label(dp)] = ic
        results[type(algo).__name__] = per_dp
    for tol_ms in (50, 500):
        for name, per_dp in results.items():
            sc = _mobgap_score(per_dp, ds, tol_ms * ref.FS_HZ // 1000)
            side = f" side {sc['side']:.3f}" if name == "ours" else ""
            print(f"mobgap-eval tol {tol_ms} ms {name}: IC tp {sc['tp']} fp {sc['fp']} fn {sc['fn']} "
                  f"F1 {sc['f1']:.3f} MAE {sc['mae_ms']:.1f} ms{side}", file=sys.stderr)
            key = "ours" if name == "ours" else f"mobgap_{name}"
            print(f"BENCH ic_f1_mobgapeval_{tol_ms}ms_{key} {sc['f1']:.3f} ratio")
            if name == "ours":
                print(f"BENCH ic_mae_ms_mobgapeval_{tol_ms}ms_ours {sc['mae_ms']:.1f} ms")


def reference_agreement() -> None:
    """How far the two reference systems agree: INDIP against stereophotogrammetry, on the ICs both
    labelled (pairs within 150 ms); a ceiling for any detector scored against one of them."""
    indip = ref.load_lab_trials("INDIP")
    stereo = {t.name: t for t in ref.load_lab_trials("Stereophoto")}
    errors = []
    signed: dict[str, list] = {}  # INDIP - stereo per subject and foot
    for t in indip:
        s = stereo[t.name]
        if not t.wbs or not s.wbs:
            continue
        a = np.concatenate([wb["ic"] for wb in t.wbs])
        a_side = np.concatenate([wb["ic_side"] for wb in t.wbs])
        b = np.concatenate([wb["ic"] for wb in s.wbs])
        errors += [int(np.min(np.abs(b - x))) for x in a if np.min(np.abs(b - x)) <= 15]
        for x, side in zip(a, a_side):
            off = _nearest(int(x), b)
            if abs(off) <= 15:
                signed.setdefault(f"{t.name.rsplit('/', 2)[0]} {'LR'[side]}", []).append(-off)
    for key, offs in sorted(signed.items()):
        print(f"INDIP - stereophotogrammetry IC {key}: n {len(offs)} median {np.median(offs) * 10:+.0f} ms",
              file=sys.stderr)
    errors = np.asarray(errors)
    within = float(np.mean(errors <= TOL))
    print(f"INDIP vs stereophotogrammetry: {len(errors)} common ICs, {within:.3f} within 50 ms, "
          f"MAE {errors.mean() * 10:.1f} ms", file=sys.stderr)
    print(f"BENCH ic_indip_vs_stereo_within_50ms {within:.3f} ratio")


def check_loader_against_mobgap(trials, ds) -> None:
    """Our loader and mobgap's give the same reference ICs (same files, same index convention)."""
    theirs = {}
    for dp in ds:
        ics = dp.reference_parameters_.ic_list
        theirs[_label(dp)] = np.sort(ics["ic"].to_numpy()) if len(ics) else np.array([], int)
    for trial in trials:
        mine = np.sort(np.concatenate([wb["ic"] for wb in trial.wbs] or [np.array([], int)]))
        other = theirs.get(trial.name)
        if other is None or len(np.unique(other)) != len(np.unique(mine)) or \
                not np.array_equal(np.unique(other), np.unique(mine)):
            raise RuntimeError(f"reference ICs of {trial.name} differ from mobgap's loader")


def main() -> int:
    if not ref.data_available():
        print(f"BENCH-ERROR bench_gait no data under {ref.DATA_ROOT}", file=sys.stderr)
        return 1
    trials = ref.load_lab_trials("INDIP")
    ours(trials)
    reference_agreement()
    breakdown(trials)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ds = _mobgap_dataset(tmp)
            check_loader_against_mobgap(trials, ds)
            mobgap_evaluation(trials, ds)
    except Exception as e:  # noqa: BLE001 - the reference line is optional; say why it is missing
        print(f"BENCH-ERROR mobgap reference not run: {type(e).__name__}: {e}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
