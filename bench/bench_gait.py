"""Gait events of the device detector (firmware/dsp/gait.py, run in MicroPython) against the INDIP
reference of the mobgap lab recordings (all trials of HA/001, HA/002, MS/001; tolerance 50 ms,
scored inside the reference walking bouts), and mobgap's own IC detectors on the same bouts.

Prints BENCH ic_f1_mobgap, ic_mae_ms_mobgap, fc_f1_mobgap, laterality_acc_mobgap and
ic_f1_mobgap_reference_<best mobgap detector>. Needs ../shared/data and, for the reference line,
mobgap (bench extra)."""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "firmware"))

import numpy as np  # noqa: E402

import gait_reference as ref  # noqa: E402

TOL = 5  # samples at 100 Hz = 50 ms
MOBGAP_CONTEXT = 100  # samples of signal either side of a bout given to mobgap's detectors


def device_events(trial, tmp: Path):
    from test_gait import run_device, to_counts

    return run_device(to_counts(trial.acc_g, trial.gyr_dps), tmp)


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


def mobgap_reference(trials) -> None:
    warnings.filterwarnings("ignore")
    import pandas as pd
    from mobgap.initial_contacts import IcdHKLeeImproved, IcdIonescu, IcdShinImproved

    g = 9.80665
    best = None
    for algo in (IcdShinImproved(), IcdIonescu(), IcdHKLeeImproved()):
        total = ref.Score()
        for trial in trials:
            # Our body frame (x anterior, y left, z up) -> mobgap body frame (is, ml = right, pa).
            data = pd.DataFrame({
                "acc_is": trial.acc_g[:, 2] * g, "acc_ml": -trial.acc_g[:, 1] * g,
                "acc_pa": trial.acc_g[:, 0] * g, "gyr_is": trial.gyr_dps[:, 2],
                "gyr_ml": -trial.gyr_dps[:, 1], "gyr_pa": trial.gyr_dps[:, 0]})
            events = []
            for wb in trial.wbs:
                lo = max(0, wb["start"] - MOBGAP_CONTEXT)
                hi = wb["end"] + MOBGAP_CONTEXT
                found = algo.clone().detect(data.iloc[lo:hi], sampling_rate_hz=ref.FS_HZ).ic_list_
                events += [(int(i) + lo, ref.IC, 0, 0) for i in found["ic"].to_numpy()]
            ic, _ = ref.score_trial(trial, sorted(set(events)), tol=TOL)
            total.add(ic)
        name = type(algo).__name__
        print(f"mobgap {name} IC tp {total.tp} fp {total.fp} fn {total.fn} F1 {total.f1:.3f} "
              f"MAE {total.mae_ms:.1f} ms", file=sys.stderr)
        if best is None or total.f1 > best[1]:
            best = (name, total.f1)
    print(f"BENCH ic_f1_mobgap_reference_{best[0]} {best[1]:.3f} ratio")


def check_loader_against_mobgap(trials) -> None:
    """Our loader and mobgap's give the same reference ICs (same files, same index convention)."""
    with tempfile.TemporaryDirectory() as tmp:
        # mobgap reads MOBGAP_DATA_DIR at import; without it its loader downloads (fails offline).
        os.symlink(ref.DATA_ROOT, Path(tmp) / "v1.2.0")
        os.environ["MOBGAP_DATA_DIR"] = tmp
        from mobgap.data import LabExampleDataset

        ds = LabExampleDataset(reference_system="INDIP")
        theirs = {}
        for dp in ds:
            lab = dp.group_label
            ics = dp.reference_parameters_.ic_list
            theirs[f"{lab.cohort}/{lab.participant_id}/{lab.test}/{lab.trial}"] = (
                np.sort(ics["ic"].to_numpy()) if len(ics) else np.array([], int))
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
    try:
        check_loader_against_mobgap(trials)
        mobgap_reference(trials)
    except Exception as e:  # noqa: BLE001 - the reference line is optional; say why it is missing
        print(f"BENCH-ERROR mobgap reference not run: {type(e).__name__}: {e}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
