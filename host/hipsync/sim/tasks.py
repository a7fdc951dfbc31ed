"""The protocol: a list of tasks run back to back, and the segments they leave in a recording."""

from __future__ import annotations

from dataclasses import dataclass

from hipwire import units

from .config import side_letter

KINDS = ("standing", "rest", "mvc", "walking", "step_down", "single_leg_squat", "hip_abduction")
REP_KINDS = ("step_down", "single_leg_squat", "hip_abduction")
# Single-leg tasks: 1 s shifting weight onto the stance leg, the repetitions, 1 s shifting back.
WEIGHT_SHIFT_S = 1.0


@dataclass(frozen=True)
class Task:
    kind: str
    duration_s: float
    muscle: str | None = None  # mvc only: a name from units.EMG_CHANNELS
    side: str | None = None  # single-leg tasks: stance side "L"/"R"
    reps: int = 0
    rep_s: float = 0.0
    # mvc only: the fraction of a maximal effort the person really gives (1.0: a true MVC; a
    # patient who holds back, or a strap that slips, gives much less)
    effort: float = 1.0

    def __post_init__(self) -> None:
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
            if self.side is None or self.reps < 1 or self.rep_s <= 0:
                raise ValueError(f"{self.kind} needs a stance side, reps >= 1 and rep_s > 0")

    @property
    def name(self) -> str:
        if self.kind == "standing":
            return "standing_calibration"
        if self.kind == "mvc":
            return f"mvc_{self.muscle}"
        if self.kind in REP_KINDS:
            return f"{self.kind}_{self.side}"
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


def _reps_task(kind: str, side: str, reps: int, rep_s: float) -> Task:
    return Task(kind, 2 * WEIGHT_SHIFT_S + reps * rep_s, side=side, reps=reps, rep_s=rep_s)


def step_down(side: str, reps: int = 5, rep_s: float = 3.0) -> Task:
    """Stand on `side` on a step, lower the other heel to the floor and back, `reps` times."""
    return _reps_task("step_down", side, reps, rep_s)


def single_leg_squat(side: str, reps: int = 5, rep_s: float = 3.0) -> Task:
    return _reps_task("single_leg_squat", side, reps, rep_s)


def hip_abduction(side: str, reps: int = 5, rep_s: float = 3.0) -> Task:
    """Weight-bearing: stand on `side`, abduct the other leg and return (stance GMed holds the pelvis)."""
    return _reps_task("hip_abduction", side, reps, rep_s)


def default_protocol(walk_s: float = 120.0, rest_s: float = 3.0) -> list[Task]:
    """Calibration, the four MVCs, a walk, then each single-leg task on both sides, with rests."""
    tasks: list[Task] = [standing_calibration(10.0), rest(rest_s)]
    for muscle in units.EMG_CHANNELS:
        tasks += [mvc(muscle), rest(rest_s)]
    tasks += [walking(walk_s), rest(rest_s)]
    for make in (step_down, single_leg_squat, hip_abduction):
        for side in ("L", "R"):
            tasks += [make(side), rest(rest_s)]
    return tasks
