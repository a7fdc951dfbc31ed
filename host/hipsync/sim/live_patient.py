"""The simulated person wearing the virtual device, live: they do what they are asked, when asked.

    patient = LivePatient(PatientConfig(weak_side="left", es_compensation="stance"), fifo_path)
    patient.start()                      # the device's fake chips read the pipe (hipwire.feed)
    patient.hear({"task": "mvc_l_gmed", "duration_s": 5})   # what the host's prompt asks
    patient.hear({"task": "rest"})

Instructions use the store's task names (`hipsync.acquire.Step.name`): "standing" (the standing
calibration), "mvc_<muscle>", "walk", "rest", and the single-leg tasks of the simulator
("step_down_L", ...). Between instructions the person does what a person would: at first (the
device just put on, nobody asking anything) `idle` = "walk_about" walks and stands in bouts, or
"stand" stands; once someone has given an instruction they stand and wait for the next one, for
`attentive_s`, then go back to their own business.

What they do is simulated a piece at a time (`simulate(..., part=n)`: new draws, the same
electrodes) and written to a pipe in 100 ms blocks. The pipe holds about one block, so a decision
reaches the chips within `reaction_s` plus a block or two of device time, at any device speed: the
device reads the pipe as its sample clock runs, and the writer waits for it.

A person sometimes does a step badly: `Behaviour` makes the first MVC attempt of some muscles
weak, or the first standing calibration restless (they shift about), so that tests can check that
the host notices and asks again.
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
from .patient import simulate
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

    def __post_init__(self) -> None:
        bad = set(self.weak_mvc) - set(units.EMG_CHANNELS)
        if bad:
            raise ValueError(f"weak_mvc muscles must be in {units.EMG_CHANNELS}, got {sorted(bad)}")
        if not 0 <= self.reaction_s <= 5:
            raise ValueError(f"reaction_s must be within 0..5 s, got {self.reaction_s}")


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
        kind, _, side = name.rpartition("_")
        makers = {"step_down": T.step_down, "single_leg_squat": T.single_leg_squat,
                  "hip_abduction": T.hip_abduction}
        if kind in makers and side in ("L", "R"):
            reps = int(instruction.get("reps") or 5)
            return [makers[kind](side, reps=reps), T.rest(5.0)]
        log.warning("the patient does not know how to %r; they stand", name)
        return None

    def _idle_tasks(self, attentive: bool) -> list[T.Task]:
        if attentive or self.idle == "stand":
            return [T.rest(20.0)]
        walk_s = float(self._rng.uniform(20.0, _PIECE_S))
        stand_s = float(self._rng.uniform(8.0, 30.0))
        return [T.walking(walk_s), T.rest(stand_s)]

    def _simulate(self, tasks: list[T.Task]) -> tuple[Recording, list[bytes]]:
        self._piece += 1
        rounded = [dataclasses.replace(t, duration_s=max(_BLOCK_S, round(t.duration_s / _BLOCK_S)
                                                          * _BLOCK_S))
                   if t.kind not in T.REP_KINDS else t for t in tasks]
        recording = simulate(self.config, rounded, part=self._piece)
        return recording, _blocks(*feed_arrays(recording, self._mounting))

    def _begin(self, piece: tuple[Recording, list[bytes]]) -> Iterator[bytes]:
        recording, blocks = piece
        if self.keep_truth:
            self.truth.append((self.device_time_s, recording))
        return iter(blocks)

    # ------------------------------------------------------------ the pipe
    def _run(self) -> None:
        blocks: Iterator[bytes] = iter(())
        what = "idle"
        first_block = 0
        last_instruction_block: int | None = None
        pending: tuple[Heard, concurrent.futures.Future] | None = None
        idle_next = self._pool.submit(self._simulate, self._idle_tasks(False))
        while not self._stop.is_set():
            if not self._open():
                continue
            try:
                while not self._stop.is_set():
                    with self._lock:
                        heard, self._instruction = self._instruction, None
                    if heard is not None:
                        tasks = self._tasks_for(heard.instruction)
                        pending = (heard, self._pool.submit(self._simulate, tasks or [T.rest(20.0)]))
                        last_instruction_block = heard.at_block
                    react = int(round(self.behaviour.reaction_s / _BLOCK_S))
                    if (pending is not None and pending[1].done()
                            and self.blocks_written >= pending[0].at_block + react):
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
