"""CSV export: one table per file, as a spreadsheet opens it.

Every file has one header row; column names carry their unit (`_s`, `_uv`, `_deg`, `_ms`,
`_pct`); times are device time in seconds (the device sample clock, 3 decimals = exact clock
ticks). An empty cell means "not known" (never 0 or a wrapped number).

    <prefix>envelope.csv  t_s, l_gmed_uv, r_gmed_uv, l_es_uv, r_es_uv (one row per stored sample;
                          lost samples are absent rows, not zeros)
    <prefix>pelvis.csv    t_s, obliquity_deg, tilt_deg, rotation_deg (absolute; obliquity
                          positive when the right side is lower)
    <prefix>events.csv    t_s, kind (IC/FC), side (L/R), stride (empty when the device did not
                          know the stride: an FC before that foot's first IC)
    <prefix>reps.csv      one row per exam repetition the device found (REP frames): task (exam
                          task name), side (stance side L/R), index (the device's count within
                          the task, from 0), t_start_s, t_low_s (lowest point or peak), t_end_s,
                          duration_s, flags ("truncated", "shallow", joined with "+"; empty when
                          none), depth_mm (step-down, single-leg squat) or depth_deg (single-leg
                          stance, weight-bearing hip abduction; + = the swing side drops), the
                          other one empty; sorted by t_start_s
    <prefix>tasks.csv     task, t_start_s, t_end_s, duration_s
    <prefix>status.csv    t_s, then the device status fields: battery_pct, state (names of the
                          flags set, e.g. "streaming+recording"), battery_mv, quality_<channel>
                          ("ok" or flag names such as "lead_off+mains"), lost-sample and drop
                          counters, flash_free_kib, mains_<channel>_uv, ... A status frame
                          carries only some pages, so a row leaves the fields it lacks empty.
    <prefix>strides.csv   one row per detected stride of the analysis (hipsync.analysis.analyse):
                          side (stance side), stride (device index of the opening IC),
                          t_ic_s, t_next_ic_s, t_single_support_start_s, t_single_support_end_s,
                          t_fc_s, emg_valid and excluded_quality (yes/no), normalisation (MVC or
                          peak_dynamic: what the *_pct_mvc columns are a percentage of), then the
                          per-stride metrics (analysis.PER_STRIDE_METRICS); sorted by t_ic_s.
                          Not written when the session cannot be analysed (no standing
                          calibration, no gait events): the reason is in CsvExport.notes.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hipwire import frames as wire
from hipwire import quality

from ..session import EMG_CHANNELS, PELVIS_ANGLES, SessionData
from ..store.errors import MissingCalibration, NoGaitData, OutputNotWritable
from .common import known_stride

# status fields whose value is one entry per EMG channel
_PER_CHANNEL = {"quality": "quality_{}", "mains_uv": "mains_{}_uv"}


@dataclass
class CsvExport:
    """The files written (in the order of the module docstring) and notes about what was not."""

    paths: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __iter__(self):
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, name: str) -> Path:
        """The path of one table, e.g. path("strides")."""
        for p in self.paths:
            if p.name.endswith(f"{name}.csv"):
                return p
        raise KeyError(name)


def to_csv(session: SessionData, out_dir, prefix: str = "") -> CsvExport:
    """Write the tables of the module docstring into out_dir (created if needed)."""
    out = Path(out_dir)
    result = CsvExport()
    try:
        out.mkdir(parents=True, exist_ok=True)

        def target(name: str) -> Path:
            p = out / f"{prefix}{name}.csv"
            result.paths.append(p)
            return p

        _matrix(target("envelope"), ["t_s", *[f"{c}_uv" for c in EMG_CHANNELS]],
                session.envelope_t_s, session.envelope_uv, "%.3f", "%.1f")
        _matrix(target("pelvis"), ["t_s", *[f"{a}_deg" for a in PELVIS_ANGLES]],
                session.pelvis_t_s, session.pelvis_deg, "%.3f", "%.2f")
        _rows(target("events"), ["t_s", "kind", "side", "stride"],
              ([f"{e['t_s']:.3f}", e["kind"], e["side"], _cell(known_stride(e["stride"]))]
               for e in session.events))
        _rows(target("reps"), *rep_table(session))
        _rows(target("tasks"), ["task", "t_start_s", "t_end_s", "duration_s"],
              ([t.name, f"{t.t_start_s:.3f}", f"{t.t_end_s:.3f}", f"{t.duration_s:.3f}"]
               for t in session.tasks))
        header, rows = status_table(session)
        _rows(target("status"), header, rows)
        try:
            header, rows = stride_table(session)
        except (MissingCalibration, NoGaitData) as e:
            result.notes.append(f"strides.csv not written: {e}")
        else:
            _rows(target("strides"), header, rows)
    except OSError as e:
        raise OutputNotWritable(out, e.strerror or str(e)) from None
    return result


def rep_table(session: SessionData) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the repetitions the device found, in start order."""
    from hipwire.commands import EXAM_TASKS

    header = ["task", "side", "index", "t_start_s", "t_low_s", "t_end_s", "duration_s", "flags",
              "depth_mm", "depth_deg"]
    rows = []
    for r in np.sort(session.reps, order=["t_start_s", "t_end_s"]):
        task = str(r["task"])
        unit = (wire.REP_DEPTH_UNITS[EXAM_TASKS.index(task)] if task in EXAM_TASKS else None)
        depth = float(r["depth"])
        rows.append([task, str(r["side"]), str(int(r["index"])), f"{r['t_start_s']:.3f}",
                     f"{r['t_low_s']:.3f}", f"{r['t_end_s']:.3f}",
                     f"{r['t_end_s'] - r['t_start_s']:.3f}",
                     "+".join(name for bit, name in wire.REP_FLAGS if int(r["flags"]) & bit),
                     _cell(depth) if unit == "mm" else "",
                     f"{depth / 100:.2f}" if unit == "cdeg" else ""])
    return header, rows


def status_table(session: SessionData) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the status table: t_s, then the wire's status fields in page order,
    per-channel fields as one column per channel; fields of a newer firmware at the end."""
    names = [n for page in wire.PAGE_FIELDS for n in page]
    seen = {n for f in session.status.fields for n in f}
    names += sorted(seen - set(names))
    header = ["t_s"]
    for n in names:
        header += ([_PER_CHANNEL[n].format(c) for c in EMG_CHANNELS] if n in _PER_CHANNEL
                   else [n])
    rows = []
    for t, fields in zip(session.status.t_s, session.status.fields):
        row = [f"{t:.3f}"]
        for n in names:
            v = fields.get(n)
            if n in _PER_CHANNEL:
                vals = list(v) if v is not None else [None] * len(EMG_CHANNELS)
                if n == "quality":
                    row += ["" if b is None else "+".join(quality.describe(int(b))) or "ok"
                            for b in vals]
                else:
                    row += [_cell(b) for b in vals]
            elif n == "state" and v is not None:
                row.append("+".join(name for bit, name in wire.STATE_NAMES if int(v) & bit)
                           or "none")
            else:
                row.append(_cell(v))
        rows.append(row)
    return header, rows


def stride_table(session: SessionData) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the per-stride results of hipsync.analysis.analyse. Raises
    MissingCalibration / NoGaitData when the session cannot be analysed."""
    from ..analysis import PER_STRIDE_METRICS, analyse

    result = analyse(session)
    header = ["side", "stride", "t_ic_s", "t_next_ic_s", "t_single_support_start_s",
              "t_single_support_end_s", "t_fc_s", "emg_valid", "excluded_quality",
              "normalisation", *PER_STRIDE_METRICS]
    keyed = []
    for res in result.sides.values():
        st = res.strides
        for k in range(len(st)):
            row = [res.side, _cell(known_stride(st.stride[k])),
                   *(f"{a[k]:.3f}" for a in (st.t_ic_s, st.t_next_ic_s, st.t_ss_start_s,
                                             st.t_ss_end_s, st.t_fc_s)),
                   "yes" if res.emg_valid[k] else "no", "yes" if res.quality_bad[k] else "no",
                   result.normalisation.method,
                   *(_cell(res.per_stride[m][k]) for m in PER_STRIDE_METRICS)]
            keyed.append((float(st.t_ic_s[k]), row))
    keyed.sort(key=lambda x: x[0])
    return header, [row for _, row in keyed]


def _cell(v) -> str:
    """A spreadsheet cell: empty for unknown (None, NaN), integers as integers, floats with 6
    significant digits."""
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "" if not np.isfinite(v) else f"{float(v):.6g}"
    return str(v)


def _rows(path: Path, header: list[str], rows) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def _matrix(path: Path, header: list[str], t: np.ndarray, values: np.ndarray, tfmt: str, vfmt: str):
    data = np.column_stack([t, values]) if len(t) else np.zeros((0, len(header)))
    np.savetxt(path, data, delimiter=",", header=",".join(header), comments="",
               fmt=[tfmt] + [vfmt] * (len(header) - 1))
