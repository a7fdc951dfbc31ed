"""CSV export: one file per stream, a header row with units, device time in seconds."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..session import EMG_CHANNELS, PELVIS_ANGLES, SessionData
from ..store.errors import OutputNotWritable


def to_csv(session: SessionData, out_dir, prefix: str = "") -> list[Path]:
    """Write <prefix>envelope.csv (t_s, <channel>_uv), <prefix>pelvis.csv (t_s, <angle>_deg,
    absolute, obliquity positive when the right side is lower) and <prefix>events.csv
    (t_s, kind, side, stride) into out_dir. Returns the three paths."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / f"{prefix}envelope.csv", out / f"{prefix}pelvis.csv", out / f"{prefix}events.csv"]
        _matrix(paths[0], ["t_s", *[f"{c}_uv" for c in EMG_CHANNELS]], session.envelope_t_s,
                session.envelope_uv, "%.3f", "%.1f")
        _matrix(paths[1], ["t_s", *[f"{a}_deg" for a in PELVIS_ANGLES]], session.pelvis_t_s,
                session.pelvis_deg, "%.3f", "%.2f")
        with open(paths[2], "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["t_s", "kind", "side", "stride"])
            for e in session.events:
                w.writerow([f"{e['t_s']:.3f}", e["kind"], e["side"], int(e["stride"])])
    except OSError as e:
        raise OutputNotWritable(out, e.strerror or str(e)) from None
    return paths


def _matrix(path: Path, header: list[str], t: np.ndarray, values: np.ndarray, tfmt: str, vfmt: str):
    data = np.column_stack([t, values]) if len(t) else np.zeros((0, len(header)))
    np.savetxt(path, data, delimiter=",", header=",".join(header), comments="",
               fmt=[tfmt] + [vfmt] * (len(header) - 1))
