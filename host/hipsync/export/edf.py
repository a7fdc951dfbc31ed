"""EDF+ export (pyedflib): envelope and pelvis channels on one 100 Hz grid, gait events and tasks
as annotations. EDF needs continuous samples: lost samples are written as 0 and each gap is
annotated ("data gap"), so a reader can tell a gap from a true zero."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pyedflib

from ..session import EMG_CHANNELS, PELVIS_ANGLES, SessionData
from ..store.errors import OutputNotWritable

ANGLE_RANGE_DEG = 90.0  # physical range of the angle channels: +-90 deg (0.0027 deg resolution)
MIN_ENVELOPE_RANGE_UV = 1000.0


def _grid(t_s: np.ndarray, t0: float, rate: float, n: int, values: np.ndarray):
    out = np.zeros((n, values.shape[1]))
    have = np.zeros(n, bool)
    idx = np.rint((t_s - t0) * rate).astype(np.int64)
    ok = (idx >= 0) & (idx < n)
    out[idx[ok]] = values[ok]
    have[idx[ok]] = True
    return out, have


def _gaps(have: np.ndarray, t0: float, rate: float) -> list[tuple[float, float]]:
    d = np.diff(np.concatenate([[1], have.astype(int), [1]]))
    starts, ends = np.flatnonzero(d == -1), np.flatnonzero(d == 1)
    return [(s / rate, (e - s) / rate) for s, e in zip(starts, ends)]


def _ascii(text: str) -> str:
    return "".join(ch if 32 < ord(ch) < 127 else "_" for ch in text)


def to_edf(session: SessionData, path) -> Path:
    path = Path(path)
    m = session.metadata
    rate = float(m.envelope_rate_hz)
    if m.pelvis_rate_hz != rate:
        raise ValueError("EDF export expects envelope and pelvis at the same rate")
    starts = [a[0] for a in (session.envelope_t_s, session.pelvis_t_s) if len(a)]
    ends = [a[-1] for a in (session.envelope_t_s, session.pelvis_t_s) if len(a)]
    if not starts:
        raise ValueError("session has no envelope or pelvis samples to export")
    t0, t1 = min(starts), max(ends)
    n = math.ceil((t1 - t0) * rate + 1)
    n = int(math.ceil(n / rate) * rate)  # whole 1-s data records
    env, env_have = _grid(session.envelope_t_s, t0, rate, n, session.envelope_uv)
    pel, pel_have = _grid(session.pelvis_t_s, t0, rate, n, session.pelvis_deg)
    env_max = max(MIN_ENVELOPE_RANGE_UV, float(np.ceil(env.max()))) if env.size else MIN_ENVELOPE_RANGE_UV
    prefilter = "; ".join(f"{k}:{v}" for k, v in m.filters.items() if k != "envelope")[:80]
    headers = [{"label": f"{c} env", "dimension": "uV", "sample_frequency": rate,
                "physical_min": 0.0, "physical_max": env_max, "digital_min": -32768,
                "digital_max": 32767, "transducer": "sEMG bipolar", "prefilter": prefilter}
               for c in EMG_CHANNELS]
    headers += [{"label": a, "dimension": "deg", "sample_frequency": rate,
                 "physical_min": -ANGLE_RANGE_DEG, "physical_max": ANGLE_RANGE_DEG,
                 "digital_min": -32768, "digital_max": 32767, "transducer": "sacrum IMU",
                 "prefilter": ""} for a in PELVIS_ANGLES]
    pel = np.clip(pel, -ANGLE_RANGE_DEG, ANGLE_RANGE_DEG)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        w = pyedflib.EdfWriter(str(path), len(headers), file_type=pyedflib.FILETYPE_EDFPLUS)
    except OSError as e:
        raise OutputNotWritable(path, e.strerror or str(e)) from None
    try:
        n_annotations = len(session.events) + len(session.tasks) + 2 * len(_gaps(env_have, t0, rate))
        n_records = n // int(rate)
        # edflib stores at most one annotation per record per annotation signal
        w.set_number_of_annotation_signals(int(min(64, math.ceil(n_annotations / max(1, n_records)) + 1)))
        w.setSignalHeaders(headers)
        w.setPatientCode((m.patient_id or "X").replace(" ", "_")[:40])
        w.setEquipment(_ascii(f"hipsync_{m.device_id}_fw_{m.firmware_version}")[:36])
        w.setRecordingAdditional(_ascii(f"t0={t0:.3f}s_session_{m.session_id}")[:36])
        try:
            w.setStartdatetime(datetime.fromisoformat(m.started_at).replace(tzinfo=None))
        except (TypeError, ValueError):
            pass
        w.writeSamples([np.ascontiguousarray(env[:, i]) for i in range(env.shape[1])]
                       + [np.ascontiguousarray(pel[:, i]) for i in range(pel.shape[1])])
        for e in session.events:
            w.writeAnnotation(float(e["t_s"] - t0), -1, f"{e['kind']} {e['side']} {int(e['stride'])}")
        for task in session.tasks:
            w.writeAnnotation(max(0.0, task.t_start_s - t0), task.duration_s, f"task {task.name}")
        for name, have in (("envelope", env_have), ("pelvis", pel_have)):
            last = int(np.flatnonzero(have)[-1]) + 1 if have.any() else 0
            for onset, dur in _gaps(have[:last], t0, rate):
                w.writeAnnotation(onset, dur, f"data gap {name}")
    finally:
        w.close()
    return path
