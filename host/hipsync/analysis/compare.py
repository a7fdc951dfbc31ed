"""Before/after: how much each measure changed between two sessions of one person, and whether the
change is larger than what varies between sessions anyway.

Pure: plain dicts in, plain dicts out, no I/O. The measures of a session are a plain dict

    {section: {side: {measure: {"median": float | None, "n": int | None}}}}

with section "walking" (single-leg support in walking: `session_measures` reads it from the
session report's `sides`) or an exam task (`single_leg_stance`, `step_down`, `single_leg_squat`,
`hip_abduction_wb`; read from the report's `exam.<task>.<left|right>`, or from
`SessionAnalysis.exam`), side "left" or "right" (the stance side). Any source that fills this dict
plugs in; `compare(before, after)` never looks further.

The rules (RULE_TEXT, printed in both outputs; sources in docs/REFERENCES.md):
- sEMG (%MVC and GMed/ES ratios): beyond the detectable change when the larger of before and after
  is more than EMG_FACTOR = 1 + EMG_BETWEEN_SESSION_VARIATION_PCT / 100 times the smaller: a rise of
  more than 40 % or a fall of more than 29 %. Amplitude varies by a factor (electrode contact,
  tissue), so the rule is the same whichever session is called before. Surface EMG
  amplitude varies about 41 % between sessions (coefficient of variation of the average rectified
  EMG, surface electrodes re-applied on another day) against about 14 % within a session (Colyer &
  McGuigan, J Sports Sci Med 2018). Only sessions each normalised to its own MVC are compared
  (Burden, J Electromyogr Kinesiol 2010): `NotMvcNormalised` otherwise.
- Pelvic drop: the change in degrees is beyond the detectable change when its size is more than
  PELVIC_DROP_SDC_DEG, the minimal detectable change of the pelvis-on-femur angle in single-leg
  stance (4 deg, SEM 2 deg; Youdas et al., J Sport Rehabil 2007), which is also about the error of
  a sacrum IMU against optical capture (2.7-4.5 deg RMS; Bolink et al., Med Eng Phys 2016).
- Onsets and durations: shown, not judged: no between-session detectable change is established for
  them here.
A change exactly at a threshold is within it ("more than", as in rules.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..store.errors import HipsyncDataError
from . import rules

# ---- the thresholds
# Between-session variation of sEMG amplitude: 41.2 % (surface electrodes) in Colyer & McGuigan
# 2018, rounded to the 40 % the project uses. It is the size of the usual variation, not a 95 %
# limit for one person (that would be about 1.96 * sqrt(2) * 41 % = 114 %): a change beyond it is
# worth a look, not proof. The source normalised to walking, not to an MVC; MVC normalisation
# removes electrode and skin factors only within a session, so the figure is a floor, not a ceiling.
EMG_BETWEEN_SESSION_VARIATION_PCT = 40.0
# Within one session (same electrodes): printed for contrast, not used in a rule.
EMG_WITHIN_SESSION_VARIATION_PCT = 14.0
# The rule as a factor: after / before above EMG_FACTOR or below 1 / EMG_FACTOR.
EMG_FACTOR = 1.0 + EMG_BETWEEN_SESSION_VARIATION_PCT / 100.0
EMG_FALL_PCT = 100.0 * (1.0 - 1.0 / EMG_FACTOR)  # 28.6 %: the same factor, downwards
# One definition with the PELVIC_DROP flag's detectable change.
PELVIC_DROP_SDC_DEG = rules.PELVIC_DROP_DEG

EMG, ANGLE, NOT_JUDGED = "emg", "angle", "not_judged"  # how a measure's change is judged
SIDES = ("left", "right")
WALKING = "walking"
# hipwire.commands.EXAM_TASKS, in protocol order (kept literal: this module imports no wire code)
EXAM_TASKS = ("single_leg_stance", "step_down", "single_leg_squat", "hip_abduction_wb")
SECTION_LABELS = {WALKING: "Walking (single-leg support)",
                  "single_leg_stance": "Single-leg stance", "step_down": "Step-down",
                  "single_leg_squat": "Single-leg squat",
                  "hip_abduction_wb": "Weight-bearing hip abduction"}


@dataclass(frozen=True)
class Measure:
    name: str  # the key in the session report
    label: str
    kind: str  # EMG | ANGLE | NOT_JUDGED
    unit: str


WALKING_MEASURES = (
    Measure("stance_gmed_pct_mvc", "Stance GMed, mean", EMG, "%MVC"),
    Measure("stance_es_ipsi_pct_mvc", "Stance-side ES, mean", EMG, "%MVC"),
    Measure("stance_es_contra_pct_mvc", "Opposite ES, mean", EMG, "%MVC"),
    Measure("gmed_es_ratio_ipsi", "GMed / stance-side ES", EMG, "ratio"),
    Measure("gmed_es_ratio_contra", "GMed / opposite ES", EMG, "ratio"),
    Measure("pelvic_drop_deg", "Swing-side pelvic drop beyond standing", ANGLE, "deg"),
    Measure("gmed_onset_ms", "GMed onset relative to IC", NOT_JUDGED, "ms"),
    # walking speed changes activation (DOMAIN: confounders): shown so a reader can see it
    Measure("stride_time_s", "Stride time", NOT_JUDGED, "s"),
)
EXAM_MEASURES = (
    Measure("stance_gmed_pct_mvc", "Stance GMed, mean", EMG, "%MVC"),
    Measure("es_ipsi_pct_mvc", "Stance-side ES, mean", EMG, "%MVC"),
    Measure("es_contra_pct_mvc", "Opposite ES, mean", EMG, "%MVC"),
    Measure("gmed_es_ratio_ipsi", "GMed / stance-side ES", EMG, "ratio"),
    Measure("gmed_es_ratio_contra", "GMed / opposite ES", EMG, "ratio"),
    Measure("pelvic_drop_deg", "Swing-side pelvic drop beyond standing", ANGLE, "deg"),
    Measure("gmed_onset_ms", "GMed onset relative to the repetition's start", NOT_JUDGED, "ms"),
    Measure("es_onset_ms", "ES onset relative to the repetition's start", NOT_JUDGED, "ms"),
    Measure("duration_s", "Repetition duration", NOT_JUDGED, "s"),
)

RULE_TEXT = {
    EMG: (f"sEMG (%MVC and GMed/ES ratios, each session normalised to its own MVC): beyond the "
          f"detectable change when the larger of before and after is more than "
          f"{EMG_FACTOR:g} times the smaller (a rise of more than "
          f"{EMG_BETWEEN_SESSION_VARIATION_PCT:g} % or a fall of more than {EMG_FALL_PCT:.0f} %; "
          f"change_pct = 100 * (after - before) / before), the between-session variation of "
          f"surface EMG amplitude (41 % between sessions against "
          f"{EMG_WITHIN_SESSION_VARIATION_PCT:g} % within one; Colyer & McGuigan, J Sports Sci "
          f"Med 2018). A threshold at the usual variation, not a 95 % limit for one person."),
    ANGLE: (f"Pelvic drop: beyond the detectable change when after - before is more than "
            f"{PELVIC_DROP_SDC_DEG:g} deg either way, the minimal detectable change of the "
            f"pelvis-on-femur angle in single-leg stance (Youdas et al., J Sport Rehabil 2007); "
            f"a sacrum IMU differs from optical capture by 2.7-4.5 deg RMS (Bolink et al., Med "
            f"Eng Phys 2016)."),
    NOT_JUDGED: ("Onsets, stride time and repetition duration: shown, not judged (no "
                 "between-session detectable change is established for them here)."),
}
SOURCES = (
    {"key": "Colyer2018", "text": "Colyer SL, McGuigan PM. Textile electrodes embedded in clothing: "
     "a practical alternative to traditional surface electromyography when assessing muscle "
     "excitation during functional movements. J Sports Sci Med. 2018;17(1):101-109.",
     "used_for": "between-session (about 41 %) and within-session (about 14 %) variation of sEMG "
                 "amplitude"},
    {"key": "Youdas2007", "text": "Youdas JW, Mraz ST, Norstad BJ, Schinke JJ, Hollman JH. "
     "Determining meaningful changes in pelvic-on-femoral position during the Trendelenburg test. "
     "J Sport Rehabil. 2007;16(4):326-335.",
     "used_for": "smallest detectable change of the pelvis-on-femur angle, 4 deg"},
    {"key": "Bolink2016", "text": "Bolink SAAN, Naisas H, Senden R, Essers H, Heyligers IC, Meijer "
     "K, Grimm B. Validity of an inertial measurement unit to assess pelvic orientation angles "
     "during gait, sit-stand transfers and step-up transfers: comparison with an optoelectronic "
     "motion capture system. Med Eng Phys. 2016;38(3):225-231.",
     "used_for": "error of a sacrum IMU's pelvic angles against optical capture, 2.7-4.5 deg RMS"},
    {"key": "Burden2010", "text": "Burden A. How should we normalize electromyograms obtained from "
     "healthy participants? What we have learned from over 25 years of research. J Electromyogr "
     "Kinesiol. 2010;20(6):1023-1035.",
     "used_for": "normalising each session to its own MVC before comparing"},
    {"key": "Penney2014", "text": "Penney T, Ploughman M, Austin MW, Behm DG, Byrne JM. Determining "
     "the activation of gluteus medius and the validity of the single leg stance test in chronic, "
     "nonspecific low back pain. Arch Phys Med Rehabil. 2014;95(10):1969-1976.",
     "used_for": "a weaker gluteus medius can show higher %MVC: a change of %MVC is not a change "
                 "of strength"},
)


# ---- refusals
class NotComparable(HipsyncDataError):
    """These two sessions cannot be compared (the message says why and what to do)."""


class SameSession(NotComparable):
    def __init__(self, session_id):
        super().__init__(f"session {session_id} was given twice: name the session before and the "
                         f"session after (see `hipsync sessions`).")


class DifferentPatients(NotComparable):
    def __init__(self, before_id, before_patient, after_id, after_patient):
        super().__init__(
            f"session {before_id} belongs to patient {before_patient}, session {after_id} to "
            f"{after_patient}: a before/after compares one person with themselves (the detectable "
            f"changes are within-person figures). List a patient's sessions with `hipsync "
            f"sessions --patient {before_patient}`.")


class NotMvcNormalised(NotComparable):
    def __init__(self, session_id, detail: str):
        super().__init__(
            f"session {session_id} is not normalised to its own MVC ({detail}), so the change of "
            f"%MVC and of the GMed/ES ratios is not comparable between the sessions. Compare "
            f"sessions that each recorded an MVC of every muscle.")
        self.session_id = session_id


def check_pair(before_id, before_patient: str, after_id, after_patient: str) -> None:
    """Raise SameSession or DifferentPatients when the two sessions are not a before/after of one
    person. There is no override for other patients: every threshold here is a within-person
    figure, and a patient code entered wrongly is to be corrected in the store, not compared."""
    if before_id == after_id:
        raise SameSession(before_id)
    if before_patient != after_patient:
        raise DifferentPatients(before_id, before_patient, after_id, after_patient)


def check_normalisation(session_id, used: str, mvc_checks: dict | None = None) -> None:
    """Raise NotMvcNormalised unless the session report says its activation is %MVC. mvc_checks:
    the report's `session.normalisation.mvc_checks` (channel -> {status, reason}), for the
    message."""
    if used == "MVC":
        return
    bad = [f"{ch}: {c.get('reason') or c.get('status')}" for ch, c in (mvc_checks or {}).items()
           if c.get("status") not in ("ok", None)]
    detail = "; ".join(bad) if bad else f"normalisation used: {used}"
    raise NotMvcNormalised(session_id, detail)


# ---- reading a session's measures
def _get(obj, key):
    """obj[key] for a dict, obj.key for anything else; None when absent."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


def _number(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        try:  # numpy scalars
            v = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
    v = float(v)
    return v if math.isfinite(v) else None


def _value(entry) -> dict:
    """{"median", "n"} of a summary dict ({median, n, ...}), an object with .median, or a bare
    number; None values when absent."""
    if entry is None:
        return {"median": None, "n": None}
    if isinstance(entry, dict) or hasattr(entry, "median"):
        n = _get(entry, "n")
        return {"median": _number(_get(entry, "median")),
                "n": int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) else None}
    return {"median": _number(entry), "n": None}


def walking_measures(sides: dict | None) -> dict:
    """{side: {measure: value}} from a session report's `sides` (summaries per stance side)."""
    out = {}
    for side in SIDES:
        s = _get(sides, side)
        out[side] = {m.name: _value(_get(s, m.name)) for m in WALKING_MEASURES}
    return out


def _has(obj, key) -> bool:
    if obj is None or isinstance(obj, str):  # a side's "summary" may be its plain sentence
        return False
    return key in obj if isinstance(obj, dict) else hasattr(obj, key)


def _exam_side_value(side_entry, name: str) -> dict:
    """The median of one measure of an exam side: from the side itself, or its `medians`,
    `summaries` or `summary` (the first that holds a number); failing those, the median of the
    repetitions that have the measure. n: the repetitions with the measure, when not given."""
    found = None
    for where in (side_entry, _get(side_entry, "medians"), _get(side_entry, "summaries"),
                  _get(side_entry, "summary")):
        if _has(where, name):
            v = _value(_get(where, name))
            if v["n"] is None:
                v["n"] = _reps_count(side_entry, name)
            if v["median"] is not None:
                return v
            found = found or v
    if found is not None:  # a median given as null stays null: the analysis had none
        return found
    reps = _get(side_entry, "reps")
    if isinstance(reps, (list, tuple)):
        vals = sorted(x for x in (_number(_get(r, name)) for r in reps) if x is not None)
        if vals:
            k = len(vals)
            med = vals[k // 2] if k % 2 else 0.5 * (vals[k // 2 - 1] + vals[k // 2])
            return {"median": med, "n": k}
    return {"median": None, "n": None}


def _reps_count(side_entry, name: str) -> int | None:
    reps = _get(side_entry, "reps")
    if not isinstance(reps, (list, tuple)):
        return None
    return sum(1 for r in reps if _number(_get(r, name)) is not None)


def _exam_side(exam, entry, task: str, side: str):
    for s in (_get(entry, side), _get(_get(entry, "sides"), side), _get(exam, f"{task}_{side}")):
        if s is not None:
            return s
    return None


def exam_measures(exam) -> dict:
    """{task: {side: {measure: value}}} of the exam tasks present in `exam`: the report's `exam`
    object or SessionAnalysis.exam (dicts or objects: task -> side -> medians, by the names of
    EXAM_MEASURES; or keyed by the stored names `<task>_<side>`). A task is present when the exam
    lists it (the exam analysis lists the tasks the session stored), even with nothing measured; a
    side the therapist skipped (status "skipped") has its measures noted so."""
    out = {}
    if exam is None:
        return out
    for task in EXAM_TASKS:
        entry = _get(exam, task)
        if entry is None:
            entry = _get(_get(exam, "tasks"), task)
        sides, present = {}, entry is not None
        for side in SIDES:
            s = _exam_side(exam, entry, task, side)
            present = present or s is not None
            if s is None or _get(s, "status") == "skipped":
                note = "not recorded" if s is None else "skipped"
                sides[side] = {m.name: {"median": None, "n": None, "note": note}
                               for m in EXAM_MEASURES}
            else:
                sides[side] = {m.name: _exam_side_value(s, m.name) for m in EXAM_MEASURES}
        if present:
            out[task] = sides
    return out


def session_measures(report: dict, exam=None) -> dict:
    """The measures of one session: walking from the report's `sides`, the exam from `exam` when
    given (SessionAnalysis.exam), else from the report's `exam`."""
    out = {WALKING: walking_measures(report.get("sides"))}
    out.update(exam_measures(exam if exam is not None else report.get("exam")))
    return out


# ---- the comparison
def measure_change(m: Measure, before: dict | None, after: dict | None) -> dict:
    """One measure's before, after, change (after - before, in its unit), change_pct (sEMG only)
    and beyond_detectable_change (True/False; None when not available or not judged)."""
    b = (before or {}).get("median")
    a = (after or {}).get("median")
    out = {"label": m.label, "unit": m.unit, "judged_by": m.kind, "before": b, "after": a,
           "n_before": (before or {}).get("n"), "n_after": (after or {}).get("n"),
           "change": None, "change_pct": None, "beyond_detectable_change": None,
           "not_available": None}
    if b is None or a is None:
        why = [f"{(v or {}).get('note') or 'not measured'} in the {role} session"
               for role, v, x in (("before", before, b), ("after", after, a)) if x is None]
        out["not_available"] = "; ".join(why)
        return out
    change = a - b
    out["change"] = change
    if m.kind == EMG:
        if b > 0:
            out["change_pct"] = 100.0 * change / b
        lo, hi = min(a, b), max(a, b)
        if lo > 0:
            out["beyond_detectable_change"] = hi > EMG_FACTOR * lo
        elif a == b:
            out["beyond_detectable_change"] = False
        else:  # a muscle silent in one session: no factor of change can be given
            out["not_available"] = "0 in one session: a relative change is not defined"
    elif m.kind == ANGLE:
        out["beyond_detectable_change"] = abs(change) > PELVIC_DROP_SDC_DEG
    return out


def _measures_of(section: str) -> tuple[Measure, ...]:
    return WALKING_MEASURES if section == WALKING else EXAM_MEASURES


def compare(before: dict, after: dict) -> dict:
    """{section: {"label", "sides": {side: {"measures": {name: measure_change}, "sentence"}}}}
    for walking and every exam task either session has, in protocol order."""
    sections = [WALKING] + [t for t in EXAM_TASKS if t in before or t in after]
    out = {}
    for sec in sections:
        sides = {}
        for side in SIDES:
            b = (before.get(sec) or {}).get(side) or {}
            a = (after.get(sec) or {}).get(side) or {}
            measures = {m.name: measure_change(m, b.get(m.name), a.get(m.name))
                        for m in _measures_of(sec)}
            sides[side] = {"measures": measures,
                           "sentence": side_sentence(sec, side, measures)}
        missing = [w for w, d in (("before", before), ("after", after)) if sec not in d]
        out[sec] = {"label": SECTION_LABELS[sec], "sides": sides,
                    "not_recorded_in": missing}
    return out


def format_change(c: dict) -> str:
    """'0.62 -> 1.10 ratio (+77 %)' / '7.1 -> 2.3 deg (-4.8 deg)'."""
    digits = 2 if c["unit"] == "ratio" else 0 if c["unit"] == "ms" else 1
    unit = "" if c["unit"] == "ratio" else f" {c['unit']}"
    text = f"{c['before']:.{digits}f} -> {c['after']:.{digits}f}{unit}"
    if c["change_pct"] is not None:
        return text + f" ({c['change_pct']:+.0f} %)"
    return text + f" ({c['change']:+.{digits}f}{unit})"


def side_sentence(section: str, side: str, measures: dict) -> str:
    """One plain sentence: which judged measures changed beyond the detectable change, which did
    not, and which are not available."""
    where = f"{side.capitalize()} stance, {SECTION_LABELS[section].split(' (')[0].lower()}"
    beyond = [f"{c['label']} {format_change(c)}" for c in measures.values()
              if c["beyond_detectable_change"] is True]
    within = [c["label"] for c in measures.values() if c["beyond_detectable_change"] is False]
    missing = [c["label"] for c in measures.values()
               if c["not_available"] and c["judged_by"] != NOT_JUDGED]
    parts = []
    if beyond:
        parts.append("beyond the detectable change: " + "; ".join(beyond))
    if within:
        parts.append(("within the detectable change: " if not beyond else "within it: ")
                     + ", ".join(within))
    if missing:
        parts.append("not available: " + ", ".join(missing))
    if not parts:
        parts.append("nothing to compare")
    return f"{where}: " + "; ".join(parts) + "."
