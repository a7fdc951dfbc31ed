"""Analysis + report of a synthetic one-hour walking session stored in a fresh session store.

Prints `BENCH report_1h_s` (load from the store, analyse, write HTML + JSON) and
`BENCH report_1h_peak_mb` (peak RSS of the whole process, building the session included).
Targets: <= 5 s and <= 500 MB."""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "host"))

from hipsync.analysis import synthetic
from hipsync.report import write_report
from hipsync.store import open_store


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "bench.sqlite3")
        spec = synthetic.weak_left_compensating(seed=42, walk_s=3600.0, loss_fraction=0.01)
        sid = store.save_session_data(synthetic.make_session(spec))
        t0 = time.perf_counter()
        html_path, json_path = write_report(store, sid, Path(tmp) / "out")
        elapsed = time.perf_counter() - t0
        sizes = html_path.stat().st_size / 1e6, json_path.stat().st_size / 1e6
        store.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    print(f"BENCH report_1h_s {elapsed:.2f} s")
    print(f"BENCH report_1h_peak_mb {peak_mb:.0f} MB")
    print(f"(html {sizes[0]:.1f} MB, json {sizes[1]:.1f} MB)", file=sys.stderr)


if __name__ == "__main__":
    main()
