"""The single-leg tasks of the clinical exam: names, how many repetitions, what is stored.

One definition for the guide (what the therapist asks), the analysis (what it looks for in a stored
session) and the simulated patient (what they do when asked). The task codes the device knows are
`hipwire.commands.EXAM_TASKS` (code = 1 + index); the names here are the same.

A task is stored under `<task>_<left|right>` (the stance side), e.g. `step_down_left`, with the
device times the host marked it with; an attempt the therapist redid is kept as
`<task>_<side>:redone`, a skipped one as `<task>_<side>:skipped` (analysis ignores both, the report
lists them).
"""

from __future__ import annotations

from dataclasses import dataclass

from hipwire import commands as cmd

SIDES = ("left", "right")
REDONE = "redone"
SKIPPED = "skipped"


@dataclass(frozen=True)
class ExamTask:
    name: str  # one of hipwire.commands.EXAM_TASKS
    reps: int  # repetitions asked for (single-leg stance: one hold)
    hold_s: float = 0.0  # single-leg stance: how long the hold lasts
    # the longest a repetition may take (device time) before the step ends without it
    max_rep_s: float = 8.0

    @property
    def code(self) -> int:
        return cmd.EXAM_TASKS.index(self.name) + 1

    def stored_name(self, side: str) -> str:
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        return f"{self.name}_{side}"


SINGLE_LEG_STANCE = ExamTask("single_leg_stance", reps=1, hold_s=30.0, max_rep_s=45.0)
STEP_DOWN = ExamTask("step_down", reps=5)
SINGLE_LEG_SQUAT = ExamTask("single_leg_squat", reps=5)
HIP_ABDUCTION_WB = ExamTask("hip_abduction_wb", reps=5)
EXAM_TASKS: tuple[ExamTask, ...] = (SINGLE_LEG_STANCE, STEP_DOWN, SINGLE_LEG_SQUAT, HIP_ABDUCTION_WB)
BY_NAME = {t.name: t for t in EXAM_TASKS}
assert tuple(BY_NAME) == cmd.EXAM_TASKS, "exam tasks and the device's task codes must agree"


def parse_stored_name(name: str) -> tuple[ExamTask, str] | None:
    """(task, side) of a stored exam task name such as 'step_down_left'; None for any other name
    (including redone or skipped attempts)."""
    if ":" in name:
        return None
    for side in SIDES:
        suffix = "_" + side
        if name.endswith(suffix) and name[: -len(suffix)] in BY_NAME:
            return BY_NAME[name[: -len(suffix)]], side
    return None
