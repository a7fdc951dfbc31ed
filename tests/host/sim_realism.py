"""The simulated sacrum IMU against the real lower-back recordings, feature by feature.

Real: the mobgap lab recordings of the healthy adults HA/001 and HA/002 (shared/data/README.md),
every INDIP initial contact inside an INDIP walking bout. Simulated: a healthy patient walking at
the real median cadence and mean bout speed. Both go through the same code:

- body frame x anterior, y left, z up (mobgap's (x up, y right, z forward) -> (z, -y, x), done by
  tests/firmware/gait_reference.py);
- every channel minus its centred moving mean over `DETREND_S` (about one stride): this removes the
  mounting tilt's share of gravity and the slow yaw rate of turns, which the simulator's straight
  walk does not have, and leaves the within-stride pattern;
- windows of -300..+700 ms around each left and each right IC -> IC-locked mean and SD per side.

`features()` reduces that to the numbers the test compares (each defined where it is computed);
`python tests/host/sim_realism.py` prints real, simulated and the tolerance for each.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import uniform_filter1d

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "firmware"))

import gait_reference as gref  # noqa: E402

FS_HZ = 100
PRE, POST = 30, 70  # samples before / after IC: -300..+700 ms
DETREND_S = 1.21
CHANNELS = ("ax", "ay", "az", "gx", "gy", "gz")
HEALTHY = ("HA/001", "HA/002")


def data_available() -> bool:
    return all((gref.DATA_ROOT / "data" / "lab" / s / "data.mat").exists() for s in HEALTHY)


@dataclass
class Walks:
    """IMU of some walking with its ICs (sample indices into the arrays)."""

    imu: list  # per recording: (n, 6) acc g, gyro dps, body frame
    ics: list  # per recording: list of (ic sample array, side array) per bout (0 left, 1 right)
    fcs: list  # same for FCs
    steady_strides_s: list  # stride times of each steady bout (for the stride CV)
    cadence_spm: float = 0.0
    speed_mps: float = 0.0


def _detrend(x: np.ndarray) -> np.ndarray:
    w = int(round(DETREND_S * FS_HZ)) | 1
    return x - uniform_filter1d(x, w, axis=0, mode="nearest")


def real_walks() -> Walks:
    """INDIP bouts of the healthy lab recordings. Steady bouts (for stride CV and double support):
    no turn in the bout (INDIP Turning_Flag 0), at least 4 strides, speed >= 0.7 m/s."""
    import scipy.io

    imu, ics, fcs, steady, steps, speeds = [], [], [], [], [], []
    for trial in gref.load_lab_trials("INDIP"):
        if not trial.name.startswith(HEALTHY):
            continue
        imu.append(np.c_[trial.acc_g, trial.gyr_dps])
        ics.append([(wb["ic"], wb["ic_side"]) for wb in trial.wbs])
        fcs.append([(wb["fc"], wb["fc_side"]) for wb in trial.wbs])
    for subject in HEALTHY:
        mat = scipy.io.loadmat(gref.DATA_ROOT / "data" / "lab" / subject / "data.mat",
                               simplify_cells=True)["data"]["TimeMeasure1"]
        for test in mat.values():
            for tr in test.values():
                for wb in gref._as_list(tr["Standards"]["INDIP"]["MicroWB"]):
                    n_ic = len(np.atleast_1d(wb["InitialContact_Event"]))
                    t_ic = np.atleast_1d(wb["InitialContact_Event"]).astype(float)
                    steps.append(np.diff(np.sort(t_ic[np.isfinite(t_ic)])))
                    speeds += [float(wb["WalkingSpeed"])] * n_ic
                    st = np.atleast_1d(wb["Stride_Duration"]).astype(float)
                    st = st[np.isfinite(st)]
                    if wb["Turning_Flag"] == 0 and len(st) >= 4 and wb["WalkingSpeed"] >= 0.7:
                        steady.append(st)
    cadence = 60.0 / float(np.median(np.concatenate(steps)))
    return Walks(imu, ics, fcs, steady, cadence, float(np.mean(speeds)))


def stereo_double_support() -> float:
    """Double support (both periods, fraction of the stride) of the steady healthy bouts by the
    optical reference: INDIP's final contacts are late against it (bench/bench_gait.py)."""
    import scipy.io

    ds = []
    for subject in HEALTHY:
        mat = scipy.io.loadmat(gref.DATA_ROOT / "data" / "lab" / subject / "data.mat",
                               simplify_cells=True)["data"]["TimeMeasure1"]
        for test in mat.values():
            for tr in test.values():
                for wb in gref._as_list(tr["Standards"]["Stereophoto"]["MicroWB"]):
                    st = np.atleast_1d(wb["Stride_Duration"]).astype(float)
                    d = np.atleast_1d(wb["DoubleSupport_Duration"]).astype(float) / st
                    if wb["Turning_Flag"] == 0 and len(st) >= 4 and wb["WalkingSpeed"] >= 0.7:
                        ds += list(d[np.isfinite(d)])
    return float(np.mean(ds))


def sim_walks(cadence_spm: float, speed_mps: float, seeds=(0, 1, 2), walk_s: float = 60.0,
              **config) -> Walks:
    from hipsync import sim

    imu, ics, fcs, steady = [], [], [], []
    for seed in seeds:
        cfg = sim.PatientConfig(cadence_spm=cadence_spm, speed_mps=speed_mps, seed=seed, **config)
        rec = sim.simulate(cfg, [sim.standing_calibration(3.0), sim.walking(walk_s), sim.rest(2.0)])
        imu.append(np.c_[rec.acc_g, rec.gyr_dps])
        ev = rec.events
        per = []
        for kind in ("IC", "FC"):
            e = ev[ev["kind"] == kind]
            per.append((np.round(e["t_s"] * FS_HZ).astype(int), (e["side"] == "R").astype(int)))
        ics.append([per[0]])
        fcs.append([per[1]])
        left = np.sort(ev[(ev["kind"] == "IC") & (ev["side"] == "L")]["t_s"])
        steady.append(np.diff(left))
    return Walks(imu, ics, fcs, steady, cadence_spm, speed_mps)


def ic_locked(walks: Walks) -> dict:
    """side (0 left, 1 right) -> (n_ic, PRE + POST + 1, 6) detrended windows."""
    out = {0: [], 1: []}
    for imu, bouts in zip(walks.imu, walks.ics):
        sig = _detrend(imu)
        for ic, side in bouts:
            for k, s in zip(ic, side):
                if PRE <= k < len(sig) - POST:
                    out[int(s)].append(sig[k - PRE:k + POST + 1])
    return {s: np.array(v) for s, v in out.items()}


def _win(ms0: int, ms1: int) -> slice:
    return slice(PRE + ms0 // 10, PRE + ms1 // 10 + 1)


def features(walks: Walks) -> dict:
    """Named numbers compared between real and simulated walking (units in the names)."""
    ens = ic_locked(walks)
    f = {}
    for s, side in ((0, "L"), (1, "R")):
        m = ens[s].mean(axis=0)
        sd = ens[s].std(axis=0)
        # Rates and accelerations just before / at IC: what a causal side rule can use.
        f[f"gx_pre_dps_{side}"] = m[_win(-150, 0), 3].mean()
        f[f"gz_pre_dps_{side}"] = m[_win(-150, 0), 5].mean()
        f[f"gy_pre_dps_{side}"] = m[_win(-150, 0), 4].mean()
        f[f"gy_post_dps_{side}"] = m[_win(50, 150), 4].mean()
        f[f"ay_ic_g_{side}"] = m[_win(-150, 50), 1].mean()
        f[f"ay_stance_g_{side}"] = m[_win(100, 300), 1].mean()
        f[f"ax_pre_g_{side}"] = m[_win(-150, 0), 0].mean()
        f[f"ax_brake_g_{side}"] = m[_win(0, 150), 0].min()
        f[f"az_peak_g_{side}"] = m[_win(0, 150), 2].max()
        f[f"az_peak_ms_{side}"] = 10.0 * (int(np.argmax(m[_win(0, 150), 2])))
        # Stride-to-stride variability: SD across ICs, averaged over -100..+100 ms.
        for c, name in enumerate(CHANNELS):
            unit = "g" if name[0] == "a" else "dps"
            f[f"{name}_sd_{unit}_{side}"] = sd[_win(-100, 100), c].mean()
    # ML sway: RMS of the detrended ML acceleration over the bouts (both sides' windows).
    ay = np.concatenate([ens[0][:, :, 1].ravel(), ens[1][:, :, 1].ravel()])
    f["ay_rms_g"] = float(np.sqrt(np.mean(ay ** 2)))
    # Stride time variability from successive differences (insensitive to slow speed changes).
    cvs = [np.sqrt(np.mean(np.diff(st) ** 2) / 2) / np.mean(st) for st in walks.steady_strides_s if len(st) >= 3]
    f["stride_cv"] = float(np.median(cvs))
    return {k: float(v) for k, v in f.items()}


def double_support(walks: Walks) -> float:
    """Both double supports (IC -> contralateral FC) as a fraction of the stride, from events."""
    out = []
    for bouts_ic, bouts_fc in zip(walks.ics, walks.fcs):
        for (ic, ic_side), (fc, fc_side) in zip(bouts_ic, bouts_fc):
            o = np.argsort(ic)
            ic, ic_side = ic[o], ic_side[o]
            for k in range(len(ic) - 2):
                other = fc[(fc_side != ic_side[k]) & (fc > ic[k]) & (fc < ic[k + 1])]
                other2 = fc[(fc_side != ic_side[k + 1]) & (fc > ic[k + 1]) & (fc < ic[k + 2])]
                if len(other) and len(other2) and ic_side[k + 2] == ic_side[k]:
                    out.append(((other[0] - ic[k]) + (other2[0] - ic[k + 1])) / (ic[k + 2] - ic[k]))
    return float(np.mean(out))


# What "realistic" means here: name -> (kind, tolerance). "sign_ratio": same sign as the real value
# and |sim / real| within [1/t, t]; "abs": |sim - real| <= t; "ratio": sim / real within [1/t, t].
TOLERANCES = {}
for _side in "LR":
    TOLERANCES.update({
        f"gx_pre_dps_{_side}": ("sign_ratio", 2.0),
        f"gz_pre_dps_{_side}": ("sign_ratio", 1.6),
        f"gy_pre_dps_{_side}": ("sign_ratio", 2.5),
        f"gy_post_dps_{_side}": ("sign_ratio", 2.5),
        f"ay_ic_g_{_side}": ("sign_ratio", 2.0),
        f"ay_stance_g_{_side}": ("sign_ratio", 2.0),
        f"ax_pre_g_{_side}": ("sign_ratio", 2.0),
        f"ax_brake_g_{_side}": ("sign_ratio", 2.0),
        f"az_peak_g_{_side}": ("ratio", 1.5),
        f"az_peak_ms_{_side}": ("abs", 40.0),
    })
    for _c in CHANNELS:
        TOLERANCES[f"{_c}_sd_{'g' if _c[0] == 'a' else 'dps'}_{_side}"] = ("ratio", 1.6)
TOLERANCES["ay_rms_g"] = ("ratio", 1.4)
TOLERANCES["stride_cv"] = ("abs", 0.012)


def within(kind: str, tol: float, real: float, simulated: float) -> bool:
    if kind == "abs":
        return abs(simulated - real) <= tol
    if kind == "sign_ratio" and np.sign(simulated) != np.sign(real):
        return False
    ratio = abs(simulated) / max(abs(real), 1e-12)
    return 1.0 / tol <= ratio <= tol


def compare(real: dict, simulated: dict) -> list[tuple[str, float, float, str, bool]]:
    rows = []
    for name, (kind, tol) in TOLERANCES.items():
        ok = within(kind, tol, real[name], simulated[name])
        rows.append((name, real[name], simulated[name], f"{kind} {tol:g}", ok))
    return rows


def main() -> None:
    real = real_walks()
    sim = sim_walks(round(real.cadence_spm, 1), round(real.speed_mps, 2))
    fr, fs = features(real), features(sim)
    n = {s: len(v) for s, v in ic_locked(real).items()}
    print(f"real: HA ICs left {n[0]} right {n[1]}, median cadence {real.cadence_spm:.1f} steps/min, "
          f"mean speed {real.speed_mps:.2f} m/s")
    bad = 0
    for name, r, s, tol, ok in compare(fr, fs):
        bad += not ok
        print(f"{name:20s} real {r:+8.3f}  sim {s:+8.3f}  {tol:14s} {'ok' if ok else 'FAIL'}")
    print(f"double support: real (stereophotogrammetry, steady bouts) {stereo_double_support():.3f}, "
          f"real (INDIP) {double_support(real):.3f}, sim {double_support(sim):.3f}")
    print(f"{bad} outside tolerance")


if __name__ == "__main__":
    main()
