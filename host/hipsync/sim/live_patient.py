"""The simulated person wearing the virtual device, live: they do what they are asked, when asked.

    patient = LivePatient(PatientConfig(weak_side="left", es_compensation="stance"), fifo_path)
    patient.start()                      # the device's fake chips read the pipe (hipwire.feed)
    patient.hear({"task": "mvc_l_gmed", "duration_s": 5})   # what the host's prompt asks
    patient.hear({"task": "rest"})

Instructions use the store's task names (`hipsync.acquire.Step.name`): "standing" (the standing
calibration), "mvc_<muscle>", "walk", "rest", and the exam tasks as stored, `<task>_<left|right>`
({"task": "step_down_right", "reps": 5}, {"task": "single_leg_stance_left", "duration_s": 30};
"step_down_R" and the old "hip_abduction_L" work too). An exam task is done in the person's own
time (sim/exam.py), then they stand. Told something else in the middle of one, they finish the
repetition they are in (a stance: they put the foot down) and shift their weight back first, as a
person does; the piece is simulated again from the same draws with the stop, so the movement
continues without a jump. Between instructions the person does what a person would: at first (the
device just put on, nobody asking anything) `idle` = "walk_about" walks and stands in bouts, or
"stand" stands; once someone has given an instruction they stand and wait for the next one, for
`attentive_s`, then go back to their own business.

What they do is simulated a piece at a time (`simulate(..., part=n)`: new draws, the same
electrodes) and written to a pipe in 100 ms blocks. The pipe holds about one block, so a decision
reaches the chips within `reaction_s` plus a block or two of device time, at any device speed: the
device reads the pipe as its sample clock runs, and the writer waits for it (and, when a piece is
not simulated yet by the time it is due, the device waits for the writer).

A person sometimes does a step badly: `Behaviour` makes the first MVC attempt of some muscles
weak, the first standing calibration restless (they shift about), or the first attempt of one exam
task sloppy (too few repetitions, all shallow; a stance: the foot comes down after a few seconds),
so that tests can check that the host notices and asks again.

keep_truth: `truth` holds every piece the chips received as (device time of its first sample,
Recording); `truth_reps()` the exam repetitions among them, on device time.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import errno
import fcntl
import logging
import os
import select
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hipwire import feed as fmt
from hipwire import units

from . import tasks as T
from .config import PatientConfig
from .exam import REP_TRUTH_DTYPE
from .patient import plan, simulate
from .recording import Recording
from .scenario import board_mounting, feed_arrays

log = logging.getLogger(__name__)

_F_SETPIPE_SZ = 1031  # Linux fcntl: the pipe buffer's size (one page is the smallest)
_PIPE_BYTES = 4096
_BLOCK_S = fmt.LIVE_BLOCK_EMG / units.EMG_RATE_HZ
_EMG_DTYPE = np.dtype([("codes", "<i4", (units.N_EMG,)), ("leadoff", "<u4")])
_POLL_S = 0.1

WEAK_EFFORT = 0.03  # a "maximal" contraction done badly: barely above rest
# Open-ended activities are simulated in pieces of at most this long (a walk that is not stopped
# goes on, with a pause where two pieces meet, as people do).
_PIECE_S = 60.0


@dataclass(frozen=True)
class Behaviour:
    """How well the person follows the instructions."""

    weak_mvc: frozenset[str] = frozenset()  # muscles whose first MVC attempt is weak
    restless_calibration: bool = False  # the first standing calibration: they shift about
    reaction_s: float = 0.4  # from hearing an instruction to doing it
    # an exam task (a name of hipwire.commands.EXAM_TASKS) whose first attempt, whichever side,
    # is done badly: too few repetitions and all shallow (a stance: the foot comes down early)
    sloppy_task: str | None = None

    def __post_init__(self) -> None:
        bad = set(self.weak_mvc) - set(units.EMG_CHANNELS)
        if bad:
            raise ValueError(f"weak_mvc muscles must be in {units.EMG_CHANNELS}, got {sorted(bad)}")
        if self.sloppy_task is not None:
            kind = T.KIND_ALIASES.get(self.sloppy_task, self.sloppy_task)
            if kind not in T.EXAM_KINDS:
                raise ValueError(f"sloppy_task must be one of {T.EXAM_KINDS}, got {self.sloppy_task!r}")
            object.__setattr__(self, "sloppy_task", kind)
        if not 0 <= self.reaction_s <= 5:
            raise ValueError(f"reaction_s must be within 0..5 s, got {self.reaction_s}")


@dataclass
class _Piece:
    """What the chips are receiving: a simulated piece from its first block."""

    recording: Recording
    blocks: list[bytes]
    tasks: list[T.Task]
    part: int
    first_block: int = 0

    @property
    def t0_s(self) -> float:
        return self.first_block * _BLOCK_S


@dataclass
class Heard:
    """What the person heard, with the block count (device time / 100 ms) when they heard it."""

    instruction: dict
    at_block: int


class LivePatient:
    def __init__(self, config: PatientConfig, fifo_path: str | os.PathLike, *,
                 behaviour: Behaviour | None = None, idle: str = "walk_about",
                 attentive_s: float = 120.0, mounting: np.ndarray | None = None,
                 keep_truth: bool = False):
        if idle not in ("walk_about", "stand"):
            raise ValueError(f"idle must be 'walk_about' or 'stand', got {idle!r}")
        # lead-off windows are times in one recording; the live person is simulated in pieces
        self.config = dataclasses.replace(config, lead_off=None)
        self.fifo_path = Path(fifo_path)
        self.behaviour = behaviour or Behaviour()
        self.idle = idle
        self.attentive_s = attentive_s
        self._mounting = board_mounting() if mounting is None else mounting
        self._rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0x11FE]))
        self._lock = threading.Lock()
        self._instruction: Heard | None = None
        self.heard: list[Heard] = []  # every instruction, for tests
        self.done: list[tuple[str, int, int]] = []  # (what, first block, end block) as performed
        # keep_truth (tests): (device time of the piece's first sample, its Recording) for every
        # piece the chips received; device tick t is sample t of the pipe while the device runs
        self.keep_truth = keep_truth
        self.truth: list[tuple[float, Recording]] = []
        self._attempts: dict[str, int] = {}
        self._piece = 0
        self._current: _Piece | None = None
        self.blocks_written = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="patient-sim")
        self._fd: int | None = None
        if not self.fifo_path.exists():
            os.mkfifo(self.fifo_path)

    # ------------------------------------------------------------ lifecycle
    def start(self) -> LivePatient:
        self._thread = threading.Thread(target=self._run, name="live-patient", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self._pool.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(OSError):
            self.fifo_path.unlink()

    def __enter__(self) -> LivePatient:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------ hearing (any thread)
    def hear(self, instruction: dict) -> None:
        """An instruction: {"task": name, "duration_s": s (optional), "reps": n (optional)}."""
        if not isinstance(instruction, dict) or not isinstance(instruction.get("task"), str):
            log.warning("the patient did not understand %r", instruction)
            return
        with self._lock:
            heard = Heard(dict(instruction), self.blocks_written)
            self._instruction = heard
            self.heard.append(heard)

    @property
    def device_time_s(self) -> float:
        """About where the chips are: the blocks written (the pipe holds one more at most)."""
        return self.blocks_written * _BLOCK_S

    # ------------------------------------------------------------ what to do
    def _tasks_for(self, instruction: dict) -> list[T.Task] | None:
        name = instruction["task"]
        duration_s = float(instruction.get("duration_s") or 0) or None
        attempt = self._attempts.get(name, 0)
        self._attempts[name] = attempt + 1
        if name == "rest":
            return [T.rest(10.0)]
        if name == "standing":
            d = (duration_s or 10.0) + 5.0  # they stand until told otherwise
            if self.behaviour.restless_calibration and attempt == 0:
                return [T.walking(d)]  # shifting about, a few steps
            return [T.standing_calibration(d)]
        if name.startswith("mvc_") and name[4:] in units.EMG_CHANNELS:
            muscle = name[4:]
            effort = WEAK_EFFORT if muscle in self.behaviour.weak_mvc and attempt == 0 else 1.0
            # they push for the time they were told, then let go and stand
            return [T.mvc(muscle, duration_s or 5.0, effort=effort), T.rest(10.0)]
        if name == "walk":
            return [T.walking(min(_PIECE_S * 10, (duration_s or _PIECE_S) + 20.0))]
        parsed = T.parse_exam_name(name)
        if parsed is not None:
            kind, side = parsed
            first = self._attempts.get("exam:" + kind, 0) == 0
            self._attempts["exam:" + kind] = self._attempts.get("exam:" + kind, 0) + 1
            sloppy = first and kind == self.behaviour.sloppy_task
            reps = int(instruction.get("reps") or 5)
            task = T.exam_task(kind, side, reps, hold_s=duration_s or T.NOMINAL_HOLD_S, sloppy=sloppy)
            return [task, T.rest(5.0)]  # then they stand
        log.warning("the patient does not know how to %r; they stand", name)
        return None

    def _idle_tasks(self, attentive: bool) -> list[T.Task]:
        if attentive or self.idle == "stand":
            return [T.rest(20.0)]
        walk_s = float(self._rng.uniform(20.0, _PIECE_S))
        stand_s = float(self._rng.uniform(8.0, 30.0))
        return [T.walking(walk_s), T.rest(stand_s)]

    def _simulate(self, tasks: list[T.Task], part: int | None = None) -> _Piece:
        """A new piece (part None), or piece `part` again with changed tasks (the same draws)."""
        if part is None:
            self._piece += 1
            part = self._piece
        rounded = [dataclasses.replace(t, duration_s=max(_BLOCK_S, round(t.duration_s / _BLOCK_S)
                                                          * _BLOCK_S))
                   if t.kind not in T.REP_KINDS else t for t in tasks]
        recording = simulate(self.config, rounded, part=part)
        return _Piece(recording, _blocks(*feed_arrays(recording, self._mounting)), rounded, part)

    def _begin(self, piece: _Piece, skip_blocks: int = 0) -> Iterator[bytes]:
        """Start sending `piece` now; skip_blocks > 0: it replaces the piece being sent, from the
        block where that one is (same first block, same truth slot)."""
        if skip_blocks:
            piece.first_block = self._current.first_block if self._current else 0
            if self.keep_truth and self.truth:
                self.truth[-1] = (piece.t0_s, piece.recording)
        else:
            piece.first_block = self.blocks_written
            if self.keep_truth:
                self.truth.append((piece.t0_s, piece.recording))
        self._current = piece
        return iter(piece.blocks[skip_blocks:])

    def _stop_exam_at(self, at_block: int) -> tuple[list[T.Task] | None, int]:
        """An instruction takes effect at `at_block` while the current piece may be an exam task:
        (the piece's tasks with that task told to stop, or None when nothing is left to cut; the
        first block at which the person is free, back on both feet)."""
        piece = self._current
        if piece is None:
            return None, at_block
        segments, plans = plan(self.config, piece.tasks, part=piece.part)
        t_at = at_block * _BLOCK_S - piece.t0_s
        for i, (seg, p) in enumerate(zip(segments, plans)):
            if p is None or t_at >= seg.t_end_s or t_at < seg.t_start_s - 1e-9:
                continue
            rel = t_at - seg.t_start_s
            if p.task.stop_s is not None:  # already told: they are finishing
                more = False
            elif p.task.kind == "single_leg_stance":
                more = bool(p.end_s[0] > rel)
            else:
                more = bool(np.any(p.onset_s >= rel))
            if not more:  # only the last pause or the weight shift back is left
                return None, int(np.ceil((piece.t0_s + seg.t_end_s) / _BLOCK_S - 1e-9))
            tasks = list(piece.tasks)
            tasks[i] = dataclasses.replace(p.task, stop_s=rel)
            new_segments, _ = plan(self.config, tasks, part=piece.part)
            return tasks, int(np.ceil((piece.t0_s + new_segments[i].t_end_s) / _BLOCK_S - 1e-9))
        return None, at_block

    def truth_reps(self) -> np.ndarray:
        """keep_truth: every exam repetition the chips received, times in device seconds."""
        rows = []
        for t0, rec in self.truth:
            r = rec.reps.copy()
            for col in ("t_start_s", "t_low_s", "t_end_s"):
                r[col] += t0
            rows.append(r)
        return np.concatenate(rows) if rows else np.zeros(0, dtype=REP_TRUTH_DTYPE)

    # ------------------------------------------------------------ the pipe
    def _run(self) -> None:
        blocks: Iterator[bytes] = iter(())
        what = "idle"
        first_block = 0
        last_instruction_block: int | None = None
        # (what was heard, its piece, the first block it may start at)
        pending: tuple[Heard, concurrent.futures.Future, int] | None = None
        # an exam task told to stop: (the piece again with the stop, the block it takes over at)
        cut: tuple[concurrent.futures.Future, int] | None = None
        idle_next = self._pool.submit(self._simulate, self._idle_tasks(False))
        while not self._stop.is_set():
            if not self._open():
                continue
            try:
                while not self._stop.is_set():
                    with self._lock:
                        heard, self._instruction = self._instruction, None
                    react = int(round(self.behaviour.reaction_s / _BLOCK_S))
                    if heard is not None:
                        tasks = self._tasks_for(heard.instruction)
                        at_block = max(heard.at_block + react, self.blocks_written)
                        cut_tasks, free_block = (self._stop_exam_at(at_block) if cut is None
                                                 else (None, pending[2] if pending else at_block))
                        if cut_tasks is not None:
                            cut = (self._pool.submit(self._simulate, cut_tasks, self._current.part),
                                   at_block)
                        pending = (heard, self._pool.submit(self._simulate, tasks or [T.rest(20.0)]),
                                   max(at_block, free_block))
                        last_instruction_block = heard.at_block
                    if cut is not None and self.blocks_written >= cut[1]:
                        # the same movement up to here: carry on with the stopped version
                        blocks = self._begin(cut[0].result(),
                                             skip_blocks=self.blocks_written - self._current.first_block)
                        cut = None
                    if pending is not None and cut is None and self.blocks_written >= pending[2]:
                        # the device waits for the pipe while the piece is simulated, so the
                        # reaction is the same in device time at any device speed
                        self.done.append((what, first_block, self.blocks_written))
                        what, first_block = pending[0].instruction["task"], self.blocks_written
                        blocks = self._begin(pending[1].result())
                        pending = None
                    block = next(blocks, None)
                    if block is None:  # this activity is over: the next piece of idling
                        self.done.append((what, first_block, self.blocks_written))
                        what, first_block = "idle", self.blocks_written
                        attentive = (last_instruction_block is not None and self.device_time_s
                                     - last_instruction_block * _BLOCK_S < self.attentive_s)
                        if idle_next is None:
                            idle_next = self._pool.submit(self._simulate,
                                                          self._idle_tasks(attentive))
                        blocks = self._begin(idle_next.result())
                        idle_next = None
                        continue
                    if idle_next is None:
                        idle_next = self._pool.submit(self._simulate, self._idle_tasks(True))
                    if not self._write(block):
                        break
                    self.blocks_written += 1
            except OSError as e:
                log.warning("live patient: %s", e)
            finally:
                self._close()

    def _open(self) -> bool:
        """Open the pipe for writing once the device has opened it (a restarted device opens it
        again); write the header. False when stopped or not yet open."""
        try:
            fd = os.open(self.fifo_path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno not in (errno.ENXIO, errno.ENOENT):
                raise
            self._stop.wait(0.02)  # no reader yet
            return False
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_BYTES)
        self._fd = fd
        header = struct.pack(fmt.HEADER_FORMAT, fmt.LIVE_MAGIC, units.EMG_RATE_HZ,
                             units.IMU_RATE_HZ, 0, 0)
        return self._write(header)

    def _write(self, data: bytes) -> bool:
        """Write all of data, waiting while the device has not read what came before; False when
        the device closed the pipe (it stopped or restarted) or the patient was stopped."""
        view = memoryview(data)
        while view and not self._stop.is_set():
            _, ready, _ = select.select([], [self._fd], [], _POLL_S)
            if not ready:
                continue
            try:
                n = os.write(self._fd, view)
            except BlockingIOError:
                continue
            except BrokenPipeError:
                self._close()
                return False
            view = view[n:]
        return not view

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _blocks(codes: np.ndarray, leadoff: np.ndarray, imu: np.ndarray) -> list[bytes]:
    """The live feed's 100 ms blocks of one simulated piece."""
    n = codes.shape[0] // fmt.LIVE_BLOCK_EMG
    emg = np.empty(codes.shape[0], dtype=_EMG_DTYPE)
    emg["codes"] = codes
    emg["leadoff"] = leadoff
    emg_b = emg[:n * fmt.LIVE_BLOCK_EMG].reshape(n, fmt.LIVE_BLOCK_EMG)
    imu_b = imu[:n * fmt.LIVE_BLOCK_IMU].astype("<i2").reshape(n, fmt.LIVE_BLOCK_IMU, 6)
    out = [emg_b[i].tobytes() + imu_b[i].tobytes() for i in range(n)]
    assert not out or len(out[0]) == fmt.LIVE_BLOCK_SIZE
    return out
