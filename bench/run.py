"""Runs every bench/bench_*.py and passes through their `BENCH <name> <value> <unit>` lines.

Each benchmark script is independent; one that fails prints `BENCH-ERROR <script> <reason>` and the
others still run, so one broken figure does not hide the rest. Exit status is non-zero if any failed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failed = 0
    for script in sorted(HERE.glob("bench_*.py")):
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              cwd=HERE.parent)
        for line in proc.stdout.splitlines():
            if line.startswith("BENCH"):
                print(line, flush=True)
        if proc.returncode != 0:
            failed += 1
            reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"BENCH-ERROR {script.name} {reason}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
