"""EDF+ export exactness: a session written to the store, exported with hipsync.export.to_edf and
read back with pyedflib.

BENCH edf_sample_mismatch  stored samples x channels whose value in the EDF differs from the store
                           or that have no place in it (hipsync.export.edf.check_edf, which
                           reads only the file: its signal headers and annotations). Target 0.
BENCH edf_false_gaps       "data gap" / "no samples" annotations with a stored sample inside.
                           Target 0.

The session (default): one hour of synthetic walking (analysis.synthetic.weak_left_compensating)
with the streams as the device sends them, NOT on one grid: envelope samples 5 ms (half a sample)
after the pelvis ones, as in `hipsync demo`; each stream loses 1 % of its 50-sample frames
independently, as a lossy link does; the standing task began before the first sample; the first
right FC has an unknown stride. `--store FILE [--session N]` checks a stored session instead
(a real stream, e.g. the demo.sqlite3 that `hipsync demo` leaves; default its last session)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "host"))

from hipsync.analysis import synthetic  # noqa: E402
from hipsync.export.edf import check_edf, to_edf  # noqa: E402
from hipsync.session import Task  # noqa: E402
from hipsync.store import open_store  # noqa: E402

FRAME = 50
FRAME_LOSS = 0.01


def synthetic_session():
    s = synthetic.make_session(synthetic.weak_left_compensating(seed=42, walk_s=3600.0))
    rng = np.random.default_rng(42)

    def lose_frames(t, v):
        frame = np.arange(len(t)) // FRAME
        keep = ~(rng.random(frame[-1] + 1) < FRAME_LOSS)[frame]
        return t[keep], v[keep]

    s.envelope_t_s, s.envelope_uv = lose_frames(s.envelope_t_s + 0.005, s.envelope_uv)
    s.pelvis_t_s, s.pelvis_deg = lose_frames(s.pelvis_t_s, s.pelvis_deg)
    s.tasks = [Task(t.name, t.t_start_s - (1.0 if t.name == "standing" else 0.0), t.t_end_s)
               for t in s.tasks]
    fc_r = np.flatnonzero((s.events["kind"] == "FC") & (s.events["side"] == "R"))[0]
    s.events["stride"][fc_r] = -1
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, help="check a session of this store instead")
    ap.add_argument("--session", type=int, help="session id (default: the store's last)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hipsync-bench-export-") as tmp:
        if args.store is None:
            with open_store(Path(tmp) / "bench.sqlite3") as store:
                session = store.load_session(store.save_session_data(synthetic_session(),
                                                                     samples_per_frame=FRAME))
        else:
            with open_store(args.store, create=False) as store:
                session = store.load_session(args.session or store.session_ids()[-1])
        path = to_edf(session, Path(tmp) / "session.edf")
        check = check_edf(path, session)
    print(f"BENCH edf_sample_mismatch {check.samples_mismatched} samples")
    print(f"BENCH edf_false_gaps {check.false_gaps} gaps")
    print(f"({check.samples_compared} samples compared, {check.gaps} gap annotations)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
