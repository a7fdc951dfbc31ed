"""Analysis + report of a whole synthetic exam session: standing, the four MVCs, per side single-leg
stance (30 s) and 5 repetitions each of step-down, single-leg squat and weight-bearing hip
abduction (8 task sides), then a 2-minute walk.

Prints `BENCH exam_report_s` (analyse, write HTML + JSON, from the SessionData in memory; the
session is built before the clock starts). Target: <= 3 s."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "host"))

from hipsync.analysis import synthetic_exam
from hipsync.report import write_session_report

RUNS = 3  # the median of a few runs: one cold run carries the imports' first-call costs


def main() -> None:
    session, _ = synthetic_exam.make_exam_session(synthetic_exam.weak_left_exam(seed=42,
                                                                                walk_s=120.0))
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(RUNS):
            t0 = time.perf_counter()
            html_path, json_path = write_session_report(session, Path(tmp) / f"out{k}", "exam")
            times.append(time.perf_counter() - t0)
        sizes = html_path.stat().st_size / 1e6, json_path.stat().st_size / 1e6
    times.sort()
    print(f"BENCH exam_report_s {times[len(times) // 2]:.2f} s")
    print(f"(slowest run {times[-1]:.2f} s, html {sizes[0]:.2f} MB, "
          f"json {sizes[1]:.2f} MB, {session.duration_s:.0f} s session)", file=sys.stderr)


if __name__ == "__main__":
    main()
