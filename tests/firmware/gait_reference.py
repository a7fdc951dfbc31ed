"""CPython reference for firmware/dsp/gait.py, plus the mobgap lab data loader and the scoring.

The reference does the same causal method as the device in floating point with numpy/scipy:
- vertical minus anterior acceleration (az - ax, g) -> two 5-sample moving averages (a Gaussian-like
  smoother, sigma about 2 samples, 4 samples delay) -> central difference `d` (jerk) -> central
  difference `dd`;
- vertical acceleration -> three 15-sample moving averages (sigma about 7.5 samples, 21 samples
  delay) minus a one-pole running mean (time constant 64 samples) = `coarse`; one positive lobe of
  `coarse` above a threshold is one step (McCamley et al. 2012: the heel-strike peak of the smoothed
  vertical acceleration), and the initial contact is the steepest rise of the lightly smoothed
  vertical-minus-anterior acceleration (maximum of `d`) just before the lobe's peak;
- final contact (of the other foot) is the maximum of `dd` 50..400 ms after the initial contact,
  shifted by a fixed offset measured on the mobgap lab data;
- side evidence from the sign of the smoothed yaw + roll rate (gz + gx) minus a one-pole running
  mean, 150 ms before the initial contact (McCamley et al. 2012 used the yaw sign; on the mobgap lab
  data the roll rate swings the same way before an IC); the steps of a bout alternate, so a clamped
  counter of the evidence (flipped on odd steps) decides the side.

The event logic (bout start/end, step-interval checks, stride counters) is written a second time
here, sample by sample over the precomputed float signals, so that the MicroPython integer code is
checked against an independent implementation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

FS_HZ = 100
IC, FC = 1, 2
LEFT, RIGHT = 0, 1

# Filter geometry (samples at 100 Hz); the device uses the same numbers.
FINE_W = 5
COARSE_W = 15
LAT_W = 11
FINE_DELAY = FINE_W - 1 + 1  # two boxes (2 * (W-1)/2) + central difference (1)
DD_DELAY = FINE_DELAY + 1
COARSE_DELAY = 3 * (COARSE_W - 1) // 2
LAT_DELAY = 3 * (LAT_W - 1) // 2
BASE_SHIFT = 6  # coarse running mean: alpha = 2^-6
LAT_BASE_SHIFT = 4
STEP_THR_G = 0.03  # minimum lobe height of `coarse` (g) for a step
LOBE_ENTER_G = 0.005  # a lobe starts above this (standing noise stays below) and ends at <= 0
IC_BEFORE_PEAK = 25  # IC search window: [lobe peak - 25, lobe peak + 5]
IC_AFTER_PEAK = 5
FC_FROM = 5  # FC feature search window after IC: [IC + 5, IC + 40]
FC_TO = 40
FC_OFFSET = 5  # FC = feature + 5 samples
LAT_LAG = 15  # side evidence taken 150 ms before IC
VOTE_MAX = 4  # side vote: the alternating-step evidence counter is clamped to +-VOTE_MAX
MIN_STEP = 25  # 0.25 s: closer candidates are one step
MAX_STEP = 150  # 1.5 s: a longer gap is not a step of the same bout
END_GAP = 200  # 2.0 s without a step ends the bout
MAX_LOBE = 100  # a positive lobe longer than 1 s is posture drift, not a step


def _boxes(x: np.ndarray, width: int, n: int) -> np.ndarray:
    """n causal moving averages of `width` samples (output k uses inputs up to k)."""
    y = np.asarray(x, dtype=float)
    kernel = np.ones(width) / width
    for _ in range(n):
        y = np.convolve(np.concatenate([np.full(width - 1, y[0]), y]), kernel, mode="valid")
    return y


def _running_mean(x: np.ndarray, shift: int) -> np.ndarray:
    alpha = 2.0 ** -shift
    return lfilter([alpha], [1, -(1 - alpha)], x, zi=[x[0] * (1 - alpha)])[0]


@dataclass
class Signals:
    d: np.ndarray  # jerk of the lightly smoothed vertical acc; d[k] describes sample k - FINE_DELAY
    dd: np.ndarray
    coarse: np.ndarray  # coarse[k] describes sample k - COARSE_DELAY
    lat: np.ndarray  # lat[k] describes sample k - LAT_DELAY


def signals(acc_g: np.ndarray, gyr_dps: np.ndarray) -> Signals:
    """Float filter outputs, indexed by the sample at which the device has them."""
    fine = _boxes(acc_g[:, 2] - acc_g[:, 0], FINE_W, 2)
    d = np.zeros_like(fine)
    d[2:] = fine[2:] - fine[:-2]
    dd = np.zeros_like(d)
    dd[2:] = d[2:] - d[:-2]
    c = _boxes(acc_g[:, 2], COARSE_W, 3)
    coarse = c - _running_mean(c, BASE_SHIFT)
    w = _boxes(gyr_dps[:, 2] + gyr_dps[:, 0], LAT_W, 3)
    lat = w - _running_mean(w, LAT_BASE_SHIFT)
    return Signals(d, dd, coarse, lat)


def detect(acc_g: np.ndarray, gyr_dps: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Events (sample, kind, side, stride_index) in emission order, as the device reports them."""
    s = signals(acc_g, gyr_dps)
    n_total = len(s.d)
    events: list[tuple[int, int, int, int]] = []
    strides = [0, 0]
    walking = False
    pending = -1  # first step of a possible bout, held until a second step confirms it
    pending_vote = 0  # its side evidence, +1 right / -1 left
    last_ic = -10_000
    last_side = 1
    fc_ic = -1  # IC whose following FC is still being searched
    in_lobe = False
    lobe_peak_t = 0
    lobe_peak_v = 0.0
    lobe_len = 0
    parity = 0  # step number within the bout, modulo 2
    vote = 0  # evidence that the bout's even steps are right steps, clamped to +-VOTE_MAX

    def evidence(ic: int) -> int:
        return 1 if s.lat[ic - LAT_LAG + LAT_DELAY] > 0 else -1

    def side_of(own: int) -> int:
        # own: this step's evidence in the even-steps-are-right frame; it breaks a tie.
        even_right = vote > 0 if vote != 0 else own > 0
        return RIGHT if even_right == (parity == 0) else LEFT

    def step_side(ev: int) -> int:
        nonlocal vote, parity
        own = ev if parity == 0 else -ev
        vote = max(-VOTE_MAX, min(VOTE_MAX, vote + own))
        side = side_of(own)
        parity ^= 1
        return side

    def emit_fc(ic: int, limit_t: int) -> None:
        hi = min(ic + FC_TO, limit_t)
        lo = ic + FC_FROM
        if hi < lo:
            return
        seg = s.dd[lo + DD_DELAY:hi + DD_DELAY + 1]
        k = lo + int(np.argmax(seg))
        side_fc = 1 - last_side
        events.append((k + FC_OFFSET, FC, side_fc, strides[side_fc] - 1))

    def emit_ic(ic: int, side: int) -> None:
        nonlocal last_side
        events.append((ic, IC, side, strides[side]))
        strides[side] += 1
        last_side = side

    for n in range(COARSE_DELAY, n_total):
        t = n - COARSE_DELAY
        v = s.coarse[n]
        # Finish the FC search once its whole window has passed.
        if fc_ic >= 0 and n - DD_DELAY >= fc_ic + FC_TO:
            emit_fc(fc_ic, fc_ic + FC_TO)
            fc_ic = -1
        if walking and t - last_ic > END_GAP:
            walking = False
        if pending >= 0 and t - pending > MAX_STEP:
            pending = -1
        if v > LOBE_ENTER_G or (in_lobe and v > 0):
            if not in_lobe:
                in_lobe = True
                lobe_peak_v = v
                lobe_peak_t = t
                lobe_len = 0
            lobe_len += 1
            if v > lobe_peak_v:
                lobe_peak_v = v
                lobe_peak_t = t
            continue
        if not in_lobe:
            continue
        in_lobe = False
        if lobe_peak_v < STEP_THR_G or lobe_len > MAX_LOBE:
            continue
        lo = max(0, lobe_peak_t - IC_BEFORE_PEAK)
        hi = lobe_peak_t + IC_AFTER_PEAK
        seg = s.d[lo + FINE_DELAY:hi + FINE_DELAY + 1]
        ic = lo + int(np.argmax(seg))
        if ic - max(last_ic, pending) < MIN_STEP:
            continue
        if walking:
            if fc_ic >= 0:
                emit_fc(fc_ic, ic - 1)
                fc_ic = -1
            emit_ic(ic, step_side(evidence(ic)))
            last_ic = ic
            fc_ic = ic
        elif pending >= 0 and ic - pending <= MAX_STEP:
            walking = True
            # A new bout: both held steps vote before either side is decided.
            parity = 0
            vote = pending_vote
            second = -evidence(ic)
            vote = max(-VOTE_MAX, min(VOTE_MAX, vote + second))
            first_side = side_of(second)
            parity = 1
            second_side = side_of(second)
            parity = 0
            emit_ic(pending, first_side)
            emit_fc(pending, ic - 1)
            emit_ic(ic, second_side)
            last_ic = ic
            fc_ic = ic
            pending = -1
        else:
            pending = ic
            pending_vote = evidence(ic)
    return events


# --- mobgap lab data ---------------------------------------------------------------------------

DATA_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "mobgap_lowerback_imu"
LAB_TRIALS = ("HA/001", "HA/002", "MS/001")


@dataclass
class Trial:
    name: str
    acc_g: np.ndarray  # body frame x anterior, y left, z up
    gyr_dps: np.ndarray
    wbs: list[dict] = field(default_factory=list)  # reference walking bouts, sample indices


def mobgap_to_body(v: np.ndarray) -> np.ndarray:
    """mobgap/Mobilise-D sensor frame (x up, y right, z forward; upright acc x ~ +1 g)
    -> our sacrum body frame (x anterior, y left, z up): ours = (z, -y, x)."""
    return np.c_[v[:, 2], -v[:, 1], v[:, 0]]


def _as_list(v) -> list:
    if isinstance(v, dict):
        return [v]
    return list(v)


def _samples(t_s) -> tuple[np.ndarray, np.ndarray]:
    t = np.atleast_1d(np.asarray(t_s, dtype=float))
    ok = np.isfinite(t)
    # Same convention as mobgap's loader: reference times in s -> 0-based index round(t * fs) - 1.
    return np.round(t[ok] * FS_HZ).astype(int) - 1, ok


def load_lab_trials(reference: str = "INDIP") -> list[Trial]:
    import scipy.io

    trials = []
    for subject in LAB_TRIALS:
        mat = scipy.io.loadmat(DATA_ROOT / "data" / "lab" / subject / "data.mat",
                               simplify_cells=True)["data"]["TimeMeasure1"]
        for test, test_v in mat.items():
            for trial, tr in test_v.items():
                lb = tr["SU"]["LowerBack"]
                wbs = []
                for wb in _as_list(tr["Standards"][reference]["MicroWB"]):
                    ic, ok = _samples(wb["InitialContact_Event"])
                    ic_lr = np.atleast_1d(wb["InitialContact_LeftRight"])[ok]
                    fc, ok = _samples(wb["FinalContact_Event"])
                    fc_lr = np.atleast_1d(wb["FinalContact_LeftRight"])[ok]
                    start, _ = _samples(wb["Start"])
                    end, _ = _samples(wb["End"])
                    wbs.append({"start": int(start[0]), "end": int(end[0]),
                                "ic": ic, "ic_side": np.where(ic_lr == "Left", LEFT, RIGHT),
                                "fc": fc, "fc_side": np.where(fc_lr == "Left", LEFT, RIGHT)})
                trials.append(Trial(f"{subject}/{test}/{trial}", mobgap_to_body(np.asarray(lb["Acc"])),
                                    mobgap_to_body(np.asarray(lb["Gyr"])), wbs))
    return trials


def data_available() -> bool:
    return all((DATA_ROOT / "data" / "lab" / s / "data.mat").exists() for s in LAB_TRIALS)


# --- scoring -----------------------------------------------------------------------------------

@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    abs_err_samples: list = field(default_factory=list)
    side_ok: int = 0

    def add(self, other: "Score") -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.abs_err_samples += other.abs_err_samples
        self.side_ok += other.side_ok

    @property
    def f1(self) -> float:
        return 2 * self.tp / max(1, 2 * self.tp + self.fp + self.fn)

    @property
    def mae_ms(self) -> float:
        return float(np.mean(self.abs_err_samples)) * 1000 / FS_HZ if self.abs_err_samples else float("nan")

    @property
    def side_accuracy(self) -> float:
        return self.side_ok / max(1, self.tp)

    def as_dict(self) -> dict:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "f1": round(self.f1, 4),
                "mae_ms": round(self.mae_ms, 2), "side_accuracy": round(self.side_accuracy, 4)}


def match(ref: np.ndarray, ref_side: np.ndarray, det: np.ndarray, det_side: np.ndarray,
          tol: int) -> Score:
    """One-to-one matching, closest pairs first, |error| <= tol samples."""
    pairs = sorted((abs(int(r) - int(e)), i, j) for i, r in enumerate(ref) for j, e in enumerate(det)
                   if abs(int(r) - int(e)) <= tol)
    used_r, used_d = set(), set()
    sc = Score()
    for err, i, j in pairs:
        if i in used_r or j in used_d:
            continue
        used_r.add(i)
        used_d.add(j)
        sc.tp += 1
        sc.abs_err_samples.append(err)
        sc.side_ok += int(ref_side[i] == det_side[j])
    sc.fn = len(ref) - sc.tp
    sc.fp = len(det) - sc.tp
    return sc


def score_trial(trial: Trial, events, tol: int = 5) -> tuple[Score, Score]:
    """Score IC and FC events against the reference inside each reference walking bout.

    The reference systems only label walking bouts (Mobilise-D rules: at least two strides, turns
    included), so detections are scored inside [bout start - tol, bout end + tol]; walking between
    bouts that the reference did not label is not counted either way."""
    ev = np.asarray([e[:3] for e in events], dtype=int).reshape(-1, 3)
    ic_score, fc_score = Score(), Score()
    for wb in trial.wbs:
        lo, hi = wb["start"] - tol, wb["end"] + tol
        for kind, key, sc in ((IC, "ic", ic_score), (FC, "fc", fc_score)):
            sel = ev[(ev[:, 1] == kind) & (ev[:, 0] >= lo) & (ev[:, 0] <= hi)]
            sc.add(match(wb[key], wb[key + "_side"], sel[:, 0], sel[:, 2], tol))
    return ic_score, fc_score


def summary(scores: dict) -> str:
    return json.dumps(scores, indent=1)
