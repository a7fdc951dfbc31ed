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
from .protocol import Envelope, Event, Received

MAX_ATTEMPTS = 3
COUNTDOWN_S = 3
REST_BETWEEN_MVC_S = 10.0
REST_BEFORE_S = 2.0  # the resting envelope an MVC is compared with: the seconds before "go"
PROGRESS_EVERY_S = 10.0
_MUSCLE_WORDS = {"l_gmed": "left gluteus medius", "r_gmed": "right gluteus medius",
                 "l_es": "left lumbar erector spinae", "r_es": "right lumbar erector spinae"}


@dataclass(frozen=True)
class GuidedStep:
    name: str  # store task name: "standing", "mvc_l_gmed", "walk"
    duration_s: float
    instruction: str
    rest_after_s: float = 0.0

    @property
    def kind(self) -> str:
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
    steps.append(GuidedStep("walk", walk_s, f"Walk at your usual pace, for {walk_s:g} s, turning "
                                            f"where you need to."))
    return steps


@dataclass
class StepOutcome:
    name: str
    t_start_s: float
    t_end_s: float
    accepted: bool
    attempts: int
    detail: str  # what the person is shown
    value_uv: float | None = None  # MVC: the 500 ms window maximum of the envelope


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
