"""The protocol: a list of tasks run back to back, and the segments they leave in a recording.

The single-leg exam tasks carry the names of `hipsync.exam_tasks` (`hipwire.commands.EXAM_TASKS`)
and are stored as `<task>_<left|right>` (the stance side). How long one takes is decided when it is
simulated (the person's own tempo, each repetition its own duration and pause; sim/exam.py), so
their `duration_s` is only the nominal length.
"""

from __future__ import annotations

from dataclasses import dataclass

from hipwire import commands as cmd
from hipwire import units

from .config import side_letter

EXAM_KINDS: tuple[str, ...] = cmd.EXAM_TASKS  # single_leg_stance, step_down, single_leg_squat, hip_abduction_wb
KINDS = ("standing", "rest", "mvc", "walking", *EXAM_KINDS)
# Every exam task is done in repetitions (single-leg stance: one hold).
REP_KINDS = EXAM_KINDS
# Old simulator name of weight-bearing hip abduction, still understood.
KIND_ALIASES = {"hip_abduction": "hip_abduction_wb"}
# Single-leg tasks: 1 s shifting weight onto the stance leg, the repetitions, 1 s shifting back.
WEIGHT_SHIFT_S = 1.0
# Nominal movement time of one repetition (s, at tempo 1), and of the single-leg stance hold.
NOMINAL_REP_S = {"step_down": 2.6, "single_leg_squat": 2.8, "hip_abduction_wb": 2.2}
NOMINAL_HOLD_S = 30.0
SIDE_NAMES = {"L": "left", "R": "right"}


@dataclass(frozen=True)
class Task:
    kind: str
    duration_s: float
    muscle: str | None = None  # mvc only: a name from units.EMG_CHANNELS
    side: str | None = None  # single-leg tasks: stance side "L"/"R"
    reps: int = 0
    rep_s: float = 0.0  # exam tasks: nominal movement time of one repetition (0: the task's own)
    # mvc only: the fraction of a maximal effort the person really gives (1.0: a true MVC; a
    # patient who holds back, or a strap that slips, gives much less)
    effort: float = 1.0
    hold_s: float = 0.0  # single-leg stance: how long the foot stays up
    # exam tasks done badly (a first attempt): too few repetitions, all shallow; a stance whose
    # foot comes down early
    sloppy: bool = False
    # exam tasks: told to stop this long after the task began (s): the repetition in progress is
    # finished (a stance: the foot comes down), no new one is begun; None: all of them
    stop_s: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", KIND_ALIASES.get(self.kind, self.kind))
        if self.kind not in KINDS:
            raise ValueError(f"task kind must be one of {KINDS}, got {self.kind!r}")
        if not self.duration_s > 0:
            raise ValueError(f"task duration must be > 0 s, got {self.duration_s}")
        if self.kind == "mvc" and self.muscle not in units.EMG_CHANNELS:
            raise ValueError(f"an MVC task needs muscle in {units.EMG_CHANNELS}, got {self.muscle!r}")
        if not 0.0 <= self.effort <= 1.0:
            raise ValueError(f"effort must be within 0..1, got {self.effort}")
        if self.kind in REP_KINDS:
            object.__setattr__(self, "side", side_letter(self.side))
            if self.side is None or self.reps < 1 or self.rep_s < 0:
                raise ValueError(f"{self.kind} needs a stance side, reps >= 1 and rep_s >= 0")
            if self.kind == "single_leg_stance" and not self.hold_s > 0:
                raise ValueError("single_leg_stance needs hold_s > 0")

    @property
    def name(self) -> str:
        if self.kind == "standing":
            return "standing_calibration"
        if self.kind == "mvc":
            return f"mvc_{self.muscle}"
        if self.kind in REP_KINDS:
            return f"{self.kind}_{SIDE_NAMES[self.side]}"
        return self.kind


@dataclass(frozen=True)
class Segment:
    """Where one task sits in the recording (seconds from the first sample)."""

    name: str
    t_start_s: float
    t_end_s: float
    kind: str
    side: str | None = None
    muscle: str | None = None

    @property
    def duration_s(self) -> float:
        return self.t_end_s - self.t_start_s


def parse_exam_name(name: str) -> tuple[str, str] | None:
    """(kind, side letter) of an exam task name: 'step_down_left', 'step_down_R' and the old
    'hip_abduction_L' all work; None for anything else."""
    kind, _, side = name.rpartition("_")
    kind = KIND_ALIASES.get(kind, kind)
    if kind not in EXAM_KINDS:
        return None
    try:
        letter = side_letter(side)
    except ValueError:
        return None
    return (kind, letter) if letter else None


def standing_calibration(duration_s: float = 10.0) -> Task:
    """Quiet standing: the device takes this pose as its zero."""
    return Task("standing", duration_s)


def rest(duration_s: float = 3.0) -> Task:
    """Quiet standing between tasks (not a calibration)."""
    return Task("rest", duration_s)


def mvc(muscle: str, duration_s: float = 5.0, effort: float = 1.0) -> Task:
    """Standing isometric maximal contraction of one muscle against a strap (see ASSUMPTIONS.md);
    `effort` < 1 for one done badly."""
    return Task("mvc", duration_s, muscle=muscle, effort=effort)


def walking(duration_s: float = 120.0) -> Task:
    return Task("walking", duration_s)


def exam_task(kind: str, side: str, reps: int = 5, rep_s: float | None = None, *,
              hold_s: float = NOMINAL_HOLD_S, sloppy: bool = False) -> Task:
    """Any exam task by name (`hipwire.commands.EXAM_TASKS`, or the old 'hip_abduction')."""
    kind = KIND_ALIASES.get(kind, kind)
    if kind == "single_leg_stance":
        return Task(kind, 2 * WEIGHT_SHIFT_S + hold_s + 1.0, side=side, reps=1, hold_s=hold_s,
                    sloppy=sloppy)
    if kind not in NOMINAL_REP_S:
        raise ValueError(f"exam task must be one of {EXAM_KINDS}, got {kind!r}")
    rep = NOMINAL_REP_S[kind] if rep_s is None else rep_s
    return Task(kind, 2 * WEIGHT_SHIFT_S + reps * (rep + 1.0), side=side, reps=reps,
                rep_s=rep, sloppy=sloppy)


def single_leg_stance(side: str, hold_s: float = NOMINAL_HOLD_S, sloppy: bool = False) -> Task:
    """Shift the weight onto `side`, lift the other foot, hold `hold_s`, put it down (Trendelenburg)."""
    return exam_task("single_leg_stance", side, hold_s=hold_s, sloppy=sloppy)


def step_down(side: str, reps: int = 5, rep_s: float | None = None, sloppy: bool = False) -> Task:
    """Stand on `side` on a step, lower the other heel to the floor and back, `reps` times."""
    return exam_task("step_down", side, reps, rep_s, sloppy=sloppy)


def single_leg_squat(side: str, reps: int = 5, rep_s: float | None = None, sloppy: bool = False) -> Task:
    return exam_task("single_leg_squat", side, reps, rep_s, sloppy=sloppy)


def hip_abduction_wb(side: str, reps: int = 5, rep_s: float | None = None, sloppy: bool = False) -> Task:
    """Weight-bearing: stand on `side`, abduct the other leg and return (stance GMed holds the pelvis)."""
    return exam_task("hip_abduction_wb", side, reps, rep_s, sloppy=sloppy)


hip_abduction = hip_abduction_wb  # the old name


def exam_protocol(rest_s: float = 3.0, reps: int = 5, hold_s: float = NOMINAL_HOLD_S) -> list[Task]:
    """The exam's single-leg part: per side (left, then right) single-leg stance, step-down,
    single-leg squat, weight-bearing hip abduction, with rests."""
    tasks: list[Task] = []
    for side in ("L", "R"):
        tasks += [single_leg_stance(side, hold_s), rest(rest_s)]
        for make in (step_down, single_leg_squat, hip_abduction_wb):
            tasks += [make(side, reps), rest(rest_s)]
    return tasks


def default_protocol(walk_s: float = 120.0, rest_s: float = 3.0) -> list[Task]:
    """Calibration, the four MVCs, a walk, then each single-leg task on both sides, with rests."""
    tasks: list[Task] = [standing_calibration(10.0), rest(rest_s)]
    for muscle in units.EMG_CHANNELS:
        tasks += [mvc(muscle), rest(rest_s)]
    tasks += [walking(walk_s), rest(rest_s)]
    for make in (step_down, single_leg_squat, hip_abduction_wb):
        for side in ("L", "R"):
            tasks += [make(side), rest(rest_s)]
    return tasks
