"""EDF+ (or BDF+) export through pyedflib in which every sample is the stored sample.

Layout of the file:
- EDF+C, data records of 1 s. Signals: the 4 envelopes ("l_gmed env" ..., uV) and the 3 pelvis
  angles ("obliquity", "tilt", "rotation", deg, absolute; obliquity positive when the right side
  is lower), each at its own stream's rate.
- Each stream keeps its own time base. The file starts at the earliest stored sample of either
  stream (device clock S); sample k of a stream's signals lies at
      file start + offset + k / rate,
  where the offset (0 <= offset < one sample period) is that stream's phase against the file
  start: envelope and pelvis frames are usually a fraction of a sample apart (the demo: 5 ms).
  EDF has no header field for it, so it is written as an annotation at onset 0 ("signal offset
  pelvis +0.005 s") and in each signal's transducer field. Nothing is resampled, and no sample
  is moved onto another stream's grid.
- Values are written as digital integers in the wire units, with a scaling that gives them back
  exactly: envelope 1 digit = 1 uV (physical range = digital range, -32768..32767 uV);
  pelvis 1 digit = 0.01 deg (-327.68..327.67 deg). An envelope above 32767 uV does not fit
  EDF's 16-bit samples: BDF+ (24-bit, `bdf=True`) holds it, at the same 1 uV per digit.
  A SessionData loaded from the store is already in those units; one built in memory is rounded
  to them (what the store would keep).
- EDF+C needs a value at every grid position. A position without a stored sample holds 0 and is
  annotated: "data gap <stream>" where samples are missing between two received ones (lost),
  "no samples <stream>" before a stream's first and after its last sample (the stream had not
  started or had ended; the last data record is padded to its full second).
- Should a stream's phase change within the session (after a device restart the new epoch's
  clock is placed where the clock fit expects it, not on the old grid), its samples take the
  next free grid positions and each such stretch is annotated "time shift <stream> +0.003 s"
  (true time = grid time + shift). Values are never merged, dropped or interpolated.
- Device time in full precision (integer clock ticks, so 3 decimals of s are exact): annotation
  "device clock at start 1.059 s" at onset 0, and "dev_t0_1.059s" in the recording field.
  The start date is the session's started_at (host wall time of session creation, UTC; EDF keeps
  whole seconds): the device clock has no wall-time anchor in the store.
- Gait events: "IC L 3" (no number when the device did not know the stride); an event outside
  the file's span is left out. Tasks: "task
  <name>" clipped to the span that holds stored samples, " (clipped)" added when a task began
  before the first or ended after the last sample; a task entirely outside is left out.
- Exam repetitions the device found: "rep step_down L 2" from the repetition's start with its
  duration (" truncated", " shallow" added when flagged) and "rep low step_down L 2" at its lowest
  point or peak; a repetition starting outside the file's span is left out.
- Annotation texts are at most 40 bytes (edflib's limit); onsets are exact (100 us resolution,
  clock ticks are 1 ms).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyedflib

from hipwire import frames as wire
from hipwire import units

from ..session import EMG_CHANNELS, PELVIS_ANGLES, SessionData
from ..store.errors import OutputNotWritable
from .common import ExportError, event_text

TICKS_PER_S = units.CLOCK_HZ
RECORD_S = 1  # data record duration; holds a whole number of samples of every 100 Hz stream
ENVELOPE_DIGITS_PER_UV = 1
PELVIS_DIGITS_PER_DEG = units.ANGLE_CDEG_PER_DEG  # 100: the wire's 0.01 deg
EDF_DIGITAL = (-32768, 32767)
BDF_DIGITAL = (-8388608, 8388607)
ANNOTATION_MAX_BYTES = 40  # edflib writes at most 40 bytes of an annotation's text
MAX_ANNOTATION_SIGNALS = 64  # edflib: each holds one annotation per data record
_RECORD_FIELD_FREE = 52  # of the 80-char recording field, what "Startdate dd-MMM-yyyy X X " leaves


@dataclass
class _Stream:
    """One stream (envelope or pelvis) placed on its own signal grid."""

    name: str
    labels: list[str]
    dimension: str
    transducer: str
    prefilter: str
    rate_hz: float
    digits_per_unit: int
    digital_range: tuple[int, int]
    ticks: np.ndarray  # int64 device clock of each stored sample
    digital: np.ndarray  # (n, channels) int32, stored values in wire units
    period_ticks: int = 0
    per_record: int = 0
    offset_ticks: int = 0  # phase of the grid against the file start
    slots: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    shift_ticks: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def _ascii(text: str) -> str:
    return "".join(ch if 32 < ord(ch) < 127 else "_" for ch in text)


def _clip_text(text: str) -> str:
    return text.encode()[:ANNOTATION_MAX_BYTES].decode(errors="ignore")


def _stream(name, labels, dimension, transducer, prefilter, rate_hz, t_s, values, digits_per_unit,
            digital_range) -> _Stream:
    if not (np.all(np.isfinite(t_s)) and np.all(np.isfinite(values))):
        raise ExportError(f"{name} holds non-finite times or values: nothing to write for them")
    ticks = np.rint(np.asarray(t_s) * TICKS_PER_S).astype(np.int64)
    dig = np.rint(np.asarray(values, float) * digits_per_unit)
    lo, hi = digital_range
    if dig.size and (dig.min() < lo or dig.max() > hi):
        bad = dig.max() if dig.max() > hi else dig.min()
        raise ExportError(
            f"{name} value {bad / digits_per_unit:g} {dimension} does not fit the file's "
            f"{lo}..{hi} digital range at 1/{digits_per_unit} {dimension} per digit"
            + (": export as BDF+ (--format bdf), which holds 24-bit samples"
               if digital_range == EDF_DIGITAL else ""))
    s = _Stream(name, labels, dimension, transducer, prefilter, float(rate_hz), digits_per_unit,
                digital_range, ticks, dig.astype(np.int32).reshape(len(ticks), len(labels)))
    period = TICKS_PER_S / s.rate_hz
    per_record = s.rate_hz * RECORD_S
    if period != int(period) or per_record != int(per_record):
        raise ExportError(f"{name} rate {rate_hz} Hz: EDF export needs a whole number of clock "
                          f"ticks per sample and of samples per {RECORD_S}-s data record")
    s.period_ticks, s.per_record = int(period), int(per_record)
    return s


def _place(s: _Stream, start_tick: int) -> None:
    """Grid position (slot) of each sample: slot k lies at start + offset + k * period. Samples
    off the stream's first phase take the next free slot and keep their true shift."""
    if len(s.ticks) == 0:
        return
    rel = s.ticks - start_tick
    s.offset_ticks = int(rel[0] % s.period_ticks)
    floor = (rel - s.offset_ticks) // s.period_ticks
    k = np.arange(len(rel))
    s.slots = np.maximum.accumulate(floor - k) + k  # strictly increasing: never two in one slot
    s.shift_ticks = rel - s.offset_ticks - s.slots * s.period_ticks


def _stream_annotations(s: _Stream, end_ticks: int) -> list[tuple[int, int, str]]:
    """(onset_ticks, duration_ticks, text) of the offset, gaps, padding and time shifts."""
    out = [(0, -1, f"signal offset {s.name} +{s.offset_ticks / TICKS_PER_S:.3f} s")]
    if len(s.slots) == 0:
        return out + [(0, end_ticks, f"no samples {s.name}")]
    at = s.offset_ticks + s.slots * s.period_ticks  # grid time of each sample
    if s.slots[0] > 0:
        out.append((0, int(at[0]), f"no samples {s.name}"))
    step = np.diff(s.slots)
    for i in np.flatnonzero(step > 1):
        out.append((int(at[i]) + s.period_ticks, int(step[i] - 1) * s.period_ticks,
                    f"data gap {s.name}"))
    tail = int(at[-1]) + s.period_ticks
    if tail < end_ticks:
        out.append((tail, end_ticks - tail, f"no samples {s.name}"))
    change = np.flatnonzero(np.diff(s.shift_ticks)) + 1
    for a, b in zip([0, *change.tolist()], [*change.tolist(), len(at)]):
        if s.shift_ticks[a]:
            out.append((int(at[a]), int(at[b - 1] - at[a]) + s.period_ticks,
                        f"time shift {s.name} {s.shift_ticks[a] / TICKS_PER_S:+.3f} s"))
    return out


def _task_annotations(session: SessionData, start_tick: int, data_end_tick: int):
    out = []
    for task in session.tasks:
        a = round(task.t_start_s * TICKS_PER_S)
        b = round(task.t_end_s * TICKS_PER_S)
        lo, hi = max(a, start_tick), min(b, data_end_tick)
        if hi <= lo:
            continue  # entirely outside the recorded span
        text = f"task {task.name}"
        if (lo, hi) != (a, b):
            text = _clip_text(text)[:ANNOTATION_MAX_BYTES - 10] + " (clipped)"
        out.append((lo - start_tick, hi - lo, text))
    return out


def _rep_annotations(session: SessionData, start_tick: int, end_ticks: int):
    out = []
    for r in session.reps:
        a = round(float(r["t_start_s"]) * TICKS_PER_S) - start_tick
        if not 0 <= a < end_ticks:
            continue
        b = round(float(r["t_end_s"]) * TICKS_PER_S) - start_tick
        low = round(float(r["t_low_s"]) * TICKS_PER_S) - start_tick
        name = f"{r['task']} {r['side']} {int(r['index'])}"
        flags = "".join(f" {n}" for bit, n in wire.REP_FLAGS if int(r["flags"]) & bit)
        out.append((a, max(0, b - a), f"rep {name}{flags}"))
        out.append((low, -1, f"rep low {name}"))
    return out


def to_edf(session: SessionData, path, *, bdf: bool = False) -> Path:
    """Write the session to `path` as EDF+ (BDF+ with bdf=True); see the module docstring for the
    layout. Raises ExportError when it cannot be written exactly, OutputNotWritable when the
    place cannot be written."""
    path = Path(path)
    m = session.metadata
    digital_range = BDF_DIGITAL if bdf else EDF_DIGITAL
    prefilter = "; ".join(f"{k}:{v}" for k, v in m.filters.items() if k != "envelope")[:80]
    env = _stream("envelope", [f"{c} env" for c in EMG_CHANNELS], "uV", "sEMG bipolar envelope",
                  prefilter, m.envelope_rate_hz, session.envelope_t_s, session.envelope_uv,
                  ENVELOPE_DIGITS_PER_UV, digital_range)
    pel = _stream("pelvis", list(PELVIS_ANGLES), "deg", "sacrum IMU", "", m.pelvis_rate_hz,
                  session.pelvis_t_s, session.pelvis_deg, PELVIS_DIGITS_PER_DEG, EDF_DIGITAL)
    streams = [env, pel]
    firsts = [int(s.ticks[0]) for s in streams if len(s.ticks)]
    if not firsts:
        raise ExportError(f"session {m.session_id} has no envelope or pelvis samples to export")
    start = min(firsts)
    for s in streams:
        _place(s, start)
    n_records = max(math.ceil((int(s.slots[-1]) + 1) / s.per_record) for s in streams
                    if len(s.slots))
    end_ticks = n_records * RECORD_S * TICKS_PER_S
    data_end = max(int(s.ticks[-1]) + s.period_ticks for s in streams if len(s.ticks))

    headers, columns = [], []
    for s in streams:
        lo, hi = s.digital_range
        d = s.digits_per_unit  # ints when 1: "-8388608.0" would overflow the 8-char field
        phys = (lo, hi) if d == 1 else (lo / d, hi / d)
        when = f"t=start+{s.offset_ticks / TICKS_PER_S:.3f}s+k/{s.rate_hz:g}s"
        for c, label in enumerate(s.labels):
            headers.append({"label": label, "dimension": s.dimension,
                            "sample_frequency": s.rate_hz, "physical_min": phys[0],
                            "physical_max": phys[1], "digital_min": lo, "digital_max": hi,
                            "transducer": f"{s.transducer}; {when}"[:80],
                            "prefilter": s.prefilter})
            col = np.zeros(n_records * s.per_record, np.int32)
            col[s.slots] = s.digital[:, c]
            columns.append(col.reshape(n_records, s.per_record))
    records = np.ascontiguousarray(np.hstack(columns), dtype=np.int32)

    annotations = [(0, -1, f"device clock at start {start / TICKS_PER_S:.3f} s"),
                   (0, -1, f"hipsync device {m.device_id}"),
                   (0, -1, f"hipsync firmware {m.firmware_version}")]
    for s in streams:
        annotations += _stream_annotations(s, end_ticks)
    annotations += _task_annotations(session, start, data_end)
    for e in session.events:
        onset = round(float(e["t_s"]) * TICKS_PER_S) - start
        if 0 <= onset < end_ticks:
            annotations.append((onset, -1, event_text(e["kind"], e["side"], e["stride"])))
    annotations += _rep_annotations(session, start, end_ticks)
    annotations.sort(key=lambda a: a[0])
    n_signals = max(1, math.ceil(len(annotations) / n_records))
    if n_signals > MAX_ANNOTATION_SIGNALS:
        raise ExportError(f"{len(annotations)} annotations do not fit {n_records} data records "
                          f"(edflib holds at most {MAX_ANNOTATION_SIGNALS} per record)")

    file_type = pyedflib.FILETYPE_BDFPLUS if bdf else pyedflib.FILETYPE_EDFPLUS
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        w = pyedflib.EdfWriter(str(path), len(headers), file_type=file_type)
    except OSError as e:
        raise OutputNotWritable(path, e.strerror or str(e)) from None
    try:
        w.set_number_of_annotation_signals(n_signals)
        w.setSignalHeaders(headers)
        w.setPatientCode(_ascii(m.patient_id or "X")[:40])
        additional = f"dev_t0_{start / TICKS_PER_S:.3f}s"
        w.setRecordingAdditional(additional)
        w.setEquipment(_ascii(f"hipsync_{m.device_id}")[:_RECORD_FIELD_FREE - 1 - len(additional)])
        try:
            started = datetime.fromisoformat(m.started_at)
        except (TypeError, ValueError):
            pass  # no usable start date: edflib's default
        else:
            if started.tzinfo is not None:
                started = started.astimezone(UTC)
            w.setStartdatetime(started.replace(tzinfo=None))
        if w.record_duration != RECORD_S:
            raise ExportError(f"pyedflib chose {w.record_duration}-s data records, not {RECORD_S} s")
        for row in records:
            if w.blockWriteDigitalSamples(row) < 0:
                raise OSError(0, "edflib could not write a data record")
        for onset, duration, text in annotations:
            w.writeAnnotation(onset / TICKS_PER_S, duration / TICKS_PER_S if duration >= 0 else -1,
                              _clip_text(text))
    except BaseException as e:
        w.close()
        path.unlink(missing_ok=True)  # no half-written file that looks like an export
        if isinstance(e, OSError):
            raise OutputNotWritable(path, e.strerror or str(e)) from None
        raise
    w.close()
    return path


@dataclass
class EdfCheck:
    """An EDF read back with pyedflib against the session it was written from."""

    samples_compared: int = 0  # stored samples x channels
    samples_mismatched: int = 0  # ... whose value in the file differs or that have no place in it
    gaps: int = 0  # "data gap" annotations
    false_gaps: int = 0  # gap or "no samples" annotations with a stored sample inside


def check_edf(path, session: SessionData) -> EdfCheck:
    """Compare every stored sample with the file, using only what a reader of the file has: the
    signal headers and the annotations (device clock at start, signal offsets, time shifts). A
    value counts as different when it is off by more than a millionth of one digit."""
    check = EdfCheck()
    with pyedflib.EdfReader(str(path)) as r:
        onsets, durations, texts = r.readAnnotations()
        texts = [str(t) for t in texts]
        start_s = next(float(t.split()[-2]) for t in texts
                       if t.startswith("device clock at start "))
        labels = r.getSignalLabels()
        for name, chan_labels, t_s, values in (
                ("envelope", [f"{c} env" for c in EMG_CHANNELS], session.envelope_t_s,
                 session.envelope_uv),
                ("pelvis", list(PELVIS_ANGLES), session.pelvis_t_s, session.pelvis_deg)):
            offset = next(float(t.split()[-2]) for t in texts
                          if t.startswith(f"signal offset {name} "))
            first = labels.index(chan_labels[0])
            rate = r.getSampleFrequency(first)
            rel = np.asarray(t_s) - start_s - offset  # time on the signal's grid
            for o, d, t in zip(onsets, durations, texts):
                if t.startswith(f"time shift {name} "):
                    shift = float(t.split()[-2])
                    sel = (rel - shift > o - 0.25 / rate) & (rel - shift < o + d - 0.25 / rate)
                    rel[sel] -= shift
            idx = np.rint(rel * rate).astype(np.int64)
            placed = np.abs(idx - rel * rate) < 1e-6
            n_file = r.getNSamples()[first]
            inside = placed & (idx >= 0) & (idx < n_file)
            inside[1:] &= np.diff(idx) > 0  # two samples in one place: the second is lost
            for c, label in enumerate(chan_labels):
                i = labels.index(label)
                phys = r.readSignal(i)
                h = r.getSignalHeader(i)
                digit = (h["physical_max"] - h["physical_min"]) / (h["digital_max"] - h["digital_min"])
                ok = inside.copy()
                ok[inside] = np.abs(phys[idx[inside]] - values[inside, c]) <= 1e-6 * digit
                check.samples_compared += len(ok)
                check.samples_mismatched += int(np.sum(~ok))
            grid_s = idx / rate
            for o, d, t in zip(onsets, durations, texts):
                if t in (f"data gap {name}", f"no samples {name}"):
                    check.gaps += t.startswith("data gap")
                    half = 0.5 / rate
                    if np.any((grid_s > o - half) & (grid_s < o + d - half)):
                        check.false_gaps += 1
    return check
