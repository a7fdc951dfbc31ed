"""A simulated visit: a patient's recording turned into the virtual device's chip feed, plus the
recording protocol the host runs alongside it (the same tasks, at the device times the patient
performs them)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hipsync.acquire import Step

from . import tasks as T
from .config import PatientConfig
from .feed import write_feed
from .patient import simulate
from .recording import Recording

REPO = Path(__file__).resolve().parents[3]
PINMAP = REPO / "hardware" / "pinmap.json"
# The host needs a moment to find and connect to the device before the patient starts.
LEAD_IN_S = 6.0

# simulator segment name -> store task name understood by the analysis
_TASK_NAMES = {"standing_calibration": "standing", "walking": "walk"}


def board_mounting(pinmap: Path = PINMAP) -> np.ndarray:
    """The IMU mounting matrix of the board (body = M @ sensor), from the one pin map."""
    data = json.loads(pinmap.read_text())
    return np.array(data["imu_mounting"]["sensor_to_body"], dtype=int)


def clinic_tasks(walk_s: float = 120.0, rest_s: float = 3.0) -> list[T.Task]:
    """Lead-in, standing calibration, one MVC per muscle, a walk."""
    tasks = [T.rest(LEAD_IN_S), T.standing_calibration(10.0), T.rest(rest_s)]
    for muscle in ("l_gmed", "r_gmed", "l_es", "r_es"):
        tasks += [T.mvc(muscle), T.rest(rest_s)]
    tasks += [T.walking(walk_s), T.rest(1.0)]
    return tasks


@dataclass
class Scenario:
    recording: Recording
    feed_path: Path
    steps: list[Step]

    @property
    def duration_s(self) -> float:
        return self.recording.duration_s


def steps_from_recording(recording: Recording) -> list[Step]:
    steps = []
    for seg in recording.segments:
        if seg.name == "rest":
            continue
        name = _TASK_NAMES.get(seg.name, seg.name)
        steps.append(Step(name, seg.t_end_s - seg.t_start_s, start_s=seg.t_start_s))
    return steps


def feed_arrays(recording: Recording, mounting: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the chips convert: AFE codes (n, 4), lead-off bit masks (n,), IMU counts (m, 6) in the
    sensor frame of the board."""
    counts = recording.to_sensor_counts(board_mounting() if mounting is None else mounting)
    bits = (recording.lead_off_mask.astype(np.uint32) << np.arange(4, dtype=np.uint32)).sum(axis=1)
    imu = np.concatenate([counts.acc_counts, counts.gyr_counts], axis=1).astype(np.int16)
    return counts.afe_codes, bits.astype(np.uint32), imu


def write_recording_feed(recording: Recording, path: Path, mounting: np.ndarray | None = None) -> Path:
    write_feed(path, *feed_arrays(recording, mounting))
    return path


def build(config: PatientConfig, out_dir: Path, walk_s: float = 120.0,
          tasks: list[T.Task] | None = None) -> Scenario:
    out_dir.mkdir(parents=True, exist_ok=True)
    recording = simulate(config, tasks if tasks is not None else clinic_tasks(walk_s))
    feed = write_recording_feed(recording, out_dir / "feed.bin")
    return Scenario(recording, feed, steps_from_recording(recording))
