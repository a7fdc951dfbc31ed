"""The clinic protocol as a person runs it: instruction, ready, countdown, the step, its result.

    guide = Guide(session, ui, say=voice)            # say: None on a real device
    results = await guide.run(clinic_protocol(walk_s=120))

Each step: the instruction is shown (and said to the virtual patient, who hears it like a person
hearing the therapist); "ready" is Enter on a terminal, a printed countdown otherwise, so scripts
and tests run unattended; then a 3-2-1 countdown, the step, and its result: a standing
calibration accepted or refused by the device, each MVC's value against rest, the walk's strides.
A refused step is asked again (up to `MAX_ATTEMPTS`); a skipped or finally refused one is stored
under its refused name, so the report says what it normalised to and why.

Every time here is device time, read from the frames: a step starts where the device was when the
person was told "go", whatever its uptime, and lasts its duration of device time. Waiting fails only
when the device stops sending (`LiveSession.wait_device_time`). Samples lost on the link during a
step pause it: the step goes on until it has its full duration of data (at most twice as long); a
calibration or MVC whose link dropped is done again.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from hipwire import commands as cmd
from hipwire import frames as wire
from hipwire import units

from .acquire import MUSCLE_CHANNELS, LiveSession, calibration_codes
from .analysis.calibration import MVC_WINDOW_S
from .analysis.mvc_check import WALK_PERCENTILE, check_mvc, refused_task_name
from .ble import CommandInterrupted
from .exam_tasks import EXAM_TASKS, REDONE, SIDES, SKIPPED, ExamTask
from .protocol import Envelope, Event, Received, Rep

MAX_ATTEMPTS = 3
# An exam task the device found too few repetitions in is done again once when nobody is at the
# keyboard (a therapist decides at the terminal): more attempts tire the person and change the task.
EXAM_ATTEMPTS = 2
# After the last repetition asked for, or after "foot down" in single-leg stance, the device needs
# a moment to close the repetition it is in (it ends when the pelvis is back at rest; a stance
# hold is sent 3 s after the sway of one leg has stopped).
EXAM_SETTLE_S = 5.0
EXAM_LATE_S = 1.0  # device time the REP frames of a search that end() closed take to arrive
SKIP_MARK_S = 0.01
COUNTDOWN_S = 3
REST_BETWEEN_MVC_S = 10.0
REST_BEFORE_S = 2.0  # the resting envelope an MVC is compared with: the seconds before "go"
PROGRESS_EVERY_S = 10.0
_MUSCLE_WORDS = {"l_gmed": "left gluteus medius", "r_gmed": "right gluteus medius",
                 "l_es": "left lumbar erector spinae", "r_es": "right lumbar erector spinae"}


@dataclass(frozen=True)
class GuidedStep:
    name: str  # store task name: "standing", "mvc_l_gmed", "walk", "step_down_left"
    duration_s: float  # exam tasks: what it usually takes (the step ends with its repetitions)
    instruction: str
    rest_after_s: float = 0.0
    exam: ExamTask | None = None
    side: str | None = None  # exam: the stance side, "left" | "right"

    @property
    def kind(self) -> str:
        if self.exam is not None:
            return "exam"
        return "mvc" if self.name.startswith("mvc_") else self.name

    @property
    def muscle(self) -> str | None:
        return self.name[4:] if self.kind == "mvc" else None


def clinic_protocol(walk_s: float = 120.0, rest_s: float = REST_BETWEEN_MVC_S) -> list[GuidedStep]:
    """Standing calibration, an MVC per muscle with rests between them, then the walk."""
    steps = [GuidedStep("standing", 10.0, "Stand still, feet hip-width apart, arms relaxed, looking "
                                           "ahead.")]
    for muscle in units.EMG_CHANNELS:
        side = "left" if muscle.startswith("l_") else "right"
        if "gmed" in muscle:
            how = (f"Stand on the {'right' if side == 'left' else 'left'} leg and push the {side} "
                   f"leg out sideways against the strap")
        else:
            how = (f"Standing, strap across the shoulders, extend the back against it, pressing "
                   f"with the {side} side")
        steps.append(GuidedStep(f"mvc_{muscle}", 5.0, f"MVC of the {_MUSCLE_WORDS[muscle]}: {how}, "
                                                      f"as hard as you can, for 5 seconds.",
                                rest_after_s=rest_s))
    steps.append(walk_step(walk_s))
    return steps


def walk_step(walk_s: float) -> GuidedStep:
    return GuidedStep("walk", walk_s, f"Walk at your usual pace, for {walk_s:g} s, turning where "
                                      f"you need to.")


_EXAM_WORDS = {
    "single_leg_stance": "stand on the {side} leg, lift the {other} foot a little off the floor, "
                         "hands on the hips, and hold for {hold:g} s until told to put it down",
    "step_down": "stand on the step on the {side} leg and slowly lower the {other} heel to the "
                 "floor and back up, {reps} times, pausing at the top",
    "single_leg_squat": "stand on the {side} leg and squat slowly as far as is comfortable and "
                        "back up, {reps} times, pausing at the top",
    "hip_abduction_wb": "stand on the {side} leg and lift the {other} leg out sideways and back, "
                        "{reps} times, keeping the pelvis level",
}
_TYPICAL_REP_S = 3.0


def exam_step(task: ExamTask, side: str, rest_after_s: float = REST_BETWEEN_MVC_S) -> GuidedStep:
    other = SIDES[1 - SIDES.index(side)]
    words = _EXAM_WORDS[task.name].format(side=side, other=other, reps=task.reps, hold=task.hold_s)
    title = task.name.replace("_wb", " (weight-bearing)").replace("_", " ")
    duration_s = task.hold_s if task.hold_s else task.reps * _TYPICAL_REP_S
    return GuidedStep(task.stored_name(side), duration_s, f"{side.capitalize()} {title}: "
                                                          f"{words}.",
                      rest_after_s=rest_after_s, exam=task, side=side)


def exam_protocol(walk_s: float = 120.0, rest_s: float = REST_BETWEEN_MVC_S) -> list[GuidedStep]:
    """The clinical exam: standing calibration, the four MVCs, then on each side single-leg stance,
    step-down, single-leg squat and weight-bearing hip abduction, then the walk."""
    steps = clinic_protocol(walk_s, rest_s)[:-1]
    steps += [exam_step(task, side, rest_s) for side in SIDES for task in EXAM_TASKS]
    steps.append(walk_step(walk_s))
    return steps


PROTOCOLS = {"clinic": clinic_protocol, "exam": exam_protocol}


@dataclass
class StepOutcome:
    name: str
    t_start_s: float
    t_end_s: float
    accepted: bool
    attempts: int
    detail: str  # what the person is shown
    value_uv: float | None = None  # MVC: the 500 ms window maximum of the envelope
    reps_found: int | None = None  # exam: repetitions the device found (of step.exam.reps)


@dataclass
class GuideResult:
    steps: list[StepOutcome] = field(default_factory=list)

    def outcome(self, name: str) -> StepOutcome | None:
        found = [s for s in self.steps if s.name == name]
        return found[-1] if found else None


class TerminalUI:
    """Prompts on a terminal (Enter when ready, s to skip) or, when stdin is not a terminal, a
    printed countdown so that scripts and tests run unattended. `show` lines also go to `sink`
    (the live dashboard) when one is set."""

    def __init__(self, out=None, interactive: bool | None = None):
        self.out = out or sys.stdout
        self.interactive = sys.stdin.isatty() if interactive is None else interactive
        self.sink: Callable[[str], None] | None = None
        self.waiting = False  # at the ready prompt: a live view must not redraw over it
        self.recent: deque[str] = deque(maxlen=2)  # the last result and the instruction

    def show(self, text: str) -> None:
        self.recent.append(text)
        if self.sink is not None:
            self.sink(text)
        else:
            print(text, file=self.out, flush=True)

    async def ready(self, label: str) -> str:
        """'go' or 'skip'."""
        if not self.interactive:
            return "go"
        self.waiting = True
        try:
            # the live view stops redrawing, so the instruction is repeated above the prompt
            shown = "\n" + "\n".join(self.recent) + "\n" if self.sink is not None else ""
            answer = await asyncio.to_thread(input, f"{shown}{label}: press Enter when ready "
                                                    f"(s + Enter to skip) ")
        except EOFError:  # stdin closed: go on unattended
            self.interactive = False
            answer = ""
        finally:
            self.waiting = False
        return "skip" if answer.strip().lower().startswith("s") else "go"

    async def review(self, label: str) -> str | None:
        """After an exam task: 'next' or 'redo' from the therapist; None when nobody is at the
        keyboard (the guide then decides by the repetitions found)."""
        if not self.interactive:
            return None
        self.waiting = True
        try:
            shown = "\n" + "\n".join(self.recent) + "\n" if self.sink is not None else ""
            answer = await asyncio.to_thread(input, f"{shown}{label}: Enter to go on, r + Enter "
                                                    f"to do it again ")
        except EOFError:
            self.interactive = False
            return None
        finally:
            self.waiting = False
        return "redo" if answer.strip().lower().startswith("r") else "next"


class Guide:
    def __init__(self, session: LiveSession, ui: TerminalUI,
                 say: Callable[[dict], Awaitable[None]] | None = None):
        self.session = session
        self.ui = ui
        self.say = say
        self.result = GuideResult()
        self._env_t: list[np.ndarray] = []
        self._env_v: list[np.ndarray] = []
        self._strides = 0
        self._reps: list[tuple[float, Rep]] = []  # (device time of the start, frame)
        session.listeners.append(self._on_frame)

    # ------------------------------------------------------------ what arrives
    def _on_frame(self, received: Received) -> None:
        frame = received.frame
        if isinstance(frame, Envelope) and not received.clock_suspect:
            t = (received.clock + frame.period_ticks * np.arange(frame.n_samples)) / units.CLOCK_HZ
            self._env_t.append(t)
            self._env_v.append(np.asarray(frame.channels, dtype=float).T)
        elif isinstance(frame, Event) and frame.kind == "IC" and frame.side == "L":
            self._strides += 1
        elif isinstance(frame, Rep) and not received.clock_suspect:
            self._reps.append((received.clock / units.CLOCK_HZ, frame))

    def envelope_between(self, t0_s: float, t1_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(t, envelope (n, 4) uV) received for device times in [t0_s, t1_s)."""
        if not self._env_t:
            return np.zeros(0), np.zeros((0, units.N_EMG))
        t = np.concatenate(self._env_t)
        v = np.concatenate(self._env_v)
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        sel = (t >= t0_s) & (t < t1_s)
        return t[sel], v[sel]

    def _lost_s(self) -> float:
        stats = self.session.assembler.stats
        return stats.samples_lost(wire.ENVELOPE) / units.ENVELOPE_RATE_HZ

    # ------------------------------------------------------------ the protocol
    async def run(self, steps: list[GuidedStep]) -> GuideResult:
        if any(step.kind == "mvc" for step in steps):
            await self._give_device_mvcs()  # a new protocol: the device forgets the old MVCs
        for i, step in enumerate(steps, 1):
            await self.run_step(step, f"Step {i}/{len(steps)}")
            if step.rest_after_s and i < len(steps):
                await self._rest(step.rest_after_s)
        await self._check_mvcs_against_walk(steps)
        return self.result

    async def run_step(self, step: GuidedStep, label: str) -> StepOutcome:
        if step.exam is not None:
            return await self._run_exam_step(step, label)
        outcome = None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            again = f" (attempt {attempt} of {MAX_ATTEMPTS})" if attempt > 1 else ""
            self.ui.show(f"{label}: {step.instruction}{again}")
            if await self.ui.ready(label) == "skip":
                outcome = self._store(step, self.session.device_time_s, self.session.device_time_s,
                                      False, attempt, "skipped by the therapist")
                break
            outcome = await self._perform(step, attempt)
            self.ui.show(f"  {step.name}: {outcome.detail}")
            if outcome.accepted:
                if step.kind == "mvc":
                    await self._give_device_mvcs()
                break
        assert outcome is not None
        if not outcome.accepted and outcome.detail != "skipped by the therapist":
            self.ui.show(f"  {step.name}: not accepted after {MAX_ATTEMPTS} attempts; the report "
                         f"will say so")
        return outcome

    async def _countdown(self) -> None:
        for n in range(COUNTDOWN_S, 0, -1):
            self.ui.show(f"  {n}...")
            await self.session.wait_device_time(self.session.device_time_s + 1.0)
        self.ui.show("  go")

    async def _rest(self, rest_s: float) -> None:
        self.ui.show(f"Rest for {rest_s:g} s.")
        await self._tell({"task": "rest"})
        await self.session.wait_device_time(self.session.device_time_s + rest_s)

    async def _tell(self, instruction: dict) -> None:
        if self.say is not None:
            await self.say(instruction)

    async def _perform(self, step: GuidedStep, attempt: int) -> StepOutcome:
        session = self.session
        await self._countdown()
        begin, end = calibration_codes(step.name) or (None, None)
        if begin is not None:
            await session.link.command(cmd.OP_CALIBRATE, begin)
        t0 = session.device_time_s
        reconnects0, lost0 = session.result.reconnects, self._lost_s()
        await self._tell({"task": step.name, "duration_s": step.duration_s})
        next_progress = t0 + PROGRESS_EVERY_S
        while True:
            paused_s = min(step.duration_s, self._lost_s() - lost0)
            target = t0 + step.duration_s + paused_s
            if session.device_time_s >= target:
                break
            await session.wait_device_time(min(target, next_progress))
            if session.device_time_s >= next_progress:
                extra = (f" (+{paused_s:.0f} s for data lost on the link)"
                         if paused_s >= 0.5 else "")
                if step.duration_s > 2 * PROGRESS_EVERY_S:
                    self.ui.show(f"  {step.name}: {session.device_time_s - t0:5.0f} of "
                                 f"{step.duration_s:g} s{extra}, strides {self._strides}, "
                                 f"device time {session.device_time_s:.0f} s")
                next_progress = session.device_time_s + PROGRESS_EVERY_S
        value = None
        dropped_end = False
        if end is not None:
            try:
                _, values = await session.link.command(cmd.OP_CALIBRATE, end)
                value = values[1]
            except CommandInterrupted:  # the link dropped with the step's end in flight
                dropped_end = True
        t1 = session.device_time_s
        if step.kind != "walk":
            await self._tell({"task": "rest"})
        dropped = session.result.reconnects > reconnects0 or dropped_end
        if dropped and step.kind != "walk":
            return self._store(step, t0, t1, False, attempt,
                               "the link dropped during the step: it is done again")
        if step.kind == "standing":
            if value:
                session.device_calibrated(t0, t1)
                return self._store(step, t0, t1, True, attempt, "calibration accepted")
            return self._store(step, t0, t1, False, attempt,
                               "calibration refused by the device: the pelvis was not still")
        if step.kind == "mvc":
            return self._judge_mvc(step, t0, t1, attempt)
        strides = self._strides
        return self._store(step, t0, t1, True, attempt, f"{t1 - t0:.0f} s walked, {strides} "
                                                        f"strides counted live")

    # ------------------------------------------------------------ exam tasks
    async def _run_exam_step(self, step: GuidedStep, label: str) -> StepOutcome:
        """An exam task: the device looks for its repetitions between the host's marks; the
        step ends when it found them all (or after the longest they may take). The therapist may
        do it again; unattended, a task with repetitions missing is done again once. Every attempt
        is kept: the earlier ones as redone."""
        assert step.exam is not None
        outcome: StepOutcome | None = None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            again = f" (attempt {attempt})" if attempt > 1 else ""
            self.ui.show(f"{label}: {step.instruction}{again}")
            if await self.ui.ready(label) == "skip":
                if outcome is not None:  # the therapist keeps what they had
                    break
                now = self.session.device_time_s
                outcome = StepOutcome(step.name, now, now, False, attempt, "skipped by the therapist")
                # a mark of when it was skipped (a task needs an end after its start), no data
                self.session.store.add_task(self.session.session_id, f"{step.name}:{SKIPPED}",
                                            now, now + SKIP_MARK_S)
                self.result.steps.append(outcome)
                return outcome
            if outcome is not None:
                self._mark_redone(outcome)
            outcome = await self._perform_exam(step, attempt)
            self.ui.show(f"  {step.name}: {outcome.detail}")
            if outcome.detail.startswith("the link dropped"):
                continue
            choice = await self.ui.review(label)
            if choice == "next" or (choice is None and (outcome.accepted or
                                                        attempt >= EXAM_ATTEMPTS)):
                break
            if choice is None:
                self.ui.show(f"  {step.name}: repetitions missing; it is done once more")
        assert outcome is not None
        return outcome

    def _reps_since(self, t0_s: float, step: GuidedStep) -> list[tuple[float, Rep]]:
        side = step.side[0].upper() if step.side else ""
        return [(t, r) for t, r in self._reps if t >= t0_s - 1.0 and r.side == side
                and r.task == step.exam.name]  # type: ignore[union-attr]

    async def _perform_exam(self, step: GuidedStep, attempt: int) -> StepOutcome:
        session, task = self.session, step.exam
        assert task is not None and step.side is not None
        await self._countdown()
        reconnects0 = session.result.reconnects
        t0 = await session.set_task(task.name, step.side, task.reps)
        if task.hold_s:
            await self._tell({"task": step.name, "duration_s": task.hold_s})
            deadline = t0 + task.hold_s
        else:
            await self._tell({"task": step.name, "reps": task.reps})
            deadline = t0 + task.reps * task.max_rep_s
        shown = 0
        next_progress = t0 + PROGRESS_EVERY_S
        while session.device_time_s < deadline and len(self._reps_since(t0, step)) < task.reps:
            await session.wait_device_time(min(deadline, session.device_time_s + 0.5))
            found = self._reps_since(t0, step)
            for _, rep in found[shown:]:
                shown += 1
                self.ui.show(f"  {step.name}: repetition {shown} of {task.reps} "
                             f"({rep.end_ticks / units.CLOCK_HZ:.1f} s)")
            if task.hold_s and session.device_time_s >= next_progress:
                self.ui.show(f"  {step.name}: {session.device_time_s - t0:4.0f} of "
                             f"{task.hold_s:g} s held")
                next_progress += PROGRESS_EVERY_S
        if task.hold_s:
            self.ui.show("  foot down")
        await self._tell({"task": "rest"})
        # the repetition in progress ends when the pelvis is back at rest
        settle_until = session.device_time_s + EXAM_SETTLE_S
        while session.device_time_s < settle_until and len(self._reps_since(t0, step)) < task.reps:
            await session.wait_device_time(min(settle_until, session.device_time_s + 0.5))
        t1 = await session.set_task(None, None)
        # a repetition closed by the end of the search is sent with the next frames
        late_until = session.device_time_s + EXAM_LATE_S
        while len(self._reps_since(t0, step)) < task.reps and session.device_time_s < late_until:
            await session.wait_device_time(min(late_until, session.device_time_s + 0.25))
        found = self._reps_since(t0, step)
        dropped = session.result.reconnects > reconnects0
        if dropped:
            outcome = StepOutcome(step.name, t0, t1, False, attempt,
                                  "the link dropped during the task: it is done again",
                                  reps_found=len(found))
            session.store.add_task(session.session_id, f"{step.name}:{REDONE}", t0, t1)
            self.result.steps.append(outcome)
            return outcome
        n = min(len(found), task.reps)
        what = "hold" if task.hold_s else "repetitions"
        detail = (f"{n} of {task.reps} {what} found by the device" if not task.hold_s else
                  ("hold found by the device" if n else "no hold found by the device"))
        if n < task.reps:
            detail += "; the report counts the missing ones"
        outcome = StepOutcome(step.name, t0, t1, n >= task.reps, attempt, detail, reps_found=n)
        session.store.add_task(session.session_id, step.name, t0, t1)
        self.result.steps.append(outcome)
        return outcome

    def _mark_redone(self, outcome: StepOutcome) -> None:
        """The attempt before a redo is kept, under its redone name (analysis ignores it)."""
        if outcome.detail.startswith("the link dropped"):
            return  # stored as redone already
        store, sid = self.session.store, self.session.session_id
        store.remove_task(sid, outcome.name, outcome.t_start_s)
        store.add_task(sid, f"{outcome.name}:{REDONE}", outcome.t_start_s, outcome.t_end_s)

    # ------------------------------------------------------------ MVCs
    def _judge_mvc(self, step: GuidedStep, t0: float, t1: float, attempt: int) -> StepOutcome:
        ch = MUSCLE_CHANNELS[step.muscle]
        _, trial = self.envelope_between(t0, t1)
        _, rest = self.envelope_between(t0 - REST_BEFORE_S - COUNTDOWN_S, t0)
        mvc_uv = _window_max(trial[:, ch], round(MVC_WINDOW_S * units.ENVELOPE_RATE_HZ))
        rest_uv = float(rest[:, ch].mean()) if len(rest) else None
        ok, reason = check_mvc(mvc_uv, rest_uv)
        if not ok:
            reason += "; do it again, as hard as you can"
        return self._store(step, t0, t1, ok, attempt, reason, value_uv=mvc_uv)

    async def _give_device_mvcs(self) -> None:
        """The accepted MVCs so far (0: none) to the device, which keeps them in its flash for
        the recordings it makes at home."""
        values = []
        for ch in units.EMG_CHANNELS:
            got = self.result.outcome(f"mvc_{ch}")
            values.append(int(round(got.value_uv)) if got and got.accepted and got.value_uv else 0)
        await self.session.link.command(cmd.OP_SET_MVC, *values)

    async def _check_mvcs_against_walk(self, steps: list[GuidedStep]) -> None:
        """After the walk: an MVC below what the same muscle reached walking was not maximal, so
        it is asked again (once)."""
        walk = self.result.outcome("walk")
        if walk is None or not walk.accepted:
            return
        _, walking = self.envelope_between(walk.t_start_s, walk.t_end_s)
        if not len(walking):
            return
        for step in steps:
            mvc = self.result.outcome(step.name) if step.kind == "mvc" else None
            if mvc is None or not mvc.accepted:
                continue
            ch = MUSCLE_CHANNELS[step.muscle]
            p95 = float(np.percentile(walking[:, ch], WALK_PERCENTILE))
            ok, reason = check_mvc(mvc.value_uv, None, p95)
            if ok:
                continue
            self.ui.show(f"  {step.name}: {reason}; it is asked again")
            self._unstore(mvc)
            again = await self.run_step(step, "Repeat")
            if again.accepted:
                ok, reason = check_mvc(again.value_uv, None, p95)
                if not ok:
                    self._unstore(again)
                    self.ui.show(f"  {step.name}: still {reason}; the report will say so")
            await self._give_device_mvcs()

    # ------------------------------------------------------------ the store
    def _store(self, step: GuidedStep, t0: float, t1: float, accepted: bool, attempt: int,
               detail: str, value_uv: float | None = None) -> StepOutcome:
        outcome = StepOutcome(step.name, t0, t1, accepted, attempt, detail, value_uv)
        if t1 > t0:
            self.session.store.add_task(self.session.session_id, self._stored_name(outcome), t0, t1)
        self.result.steps.append(outcome)
        return outcome

    def _stored_name(self, outcome: StepOutcome) -> str:
        if outcome.accepted:
            return outcome.name
        if outcome.name.startswith("mvc_"):
            return refused_task_name(outcome.name[4:])
        return outcome.name + ":refused"

    def _unstore(self, outcome: StepOutcome) -> None:
        """An accepted trial found implausible later: stored again under its refused name."""
        store, sid = self.session.store, self.session.session_id
        store.remove_task(sid, outcome.name, outcome.t_start_s)
        outcome.accepted = False
        store.add_task(sid, self._stored_name(outcome), outcome.t_start_s, outcome.t_end_s)


def _window_max(x: np.ndarray, n: int) -> float | None:
    """Highest mean over n consecutive samples (the analysis's MVC definition), or None."""
    if len(x) < n or n < 1:
        return None
    return float(np.max(np.convolve(x, np.ones(n) / n, mode="valid")))
