"""Runs every bench/bench_*.py and passes through their `BENCH <name> <value> <unit>` lines.

Each benchmark script is independent; one that fails prints `BENCH-ERROR <script> <reason>` and the
others still run, so one broken figure does not hide the rest. Exit status is non-zero if any failed.

The firmware benchmarks (ON_BOTH) run twice: on the pinned 64-bit port, then with HIPSYNC_MICROPYTHON
set to the 32-bit build (tools/build_micropython32.py), whose figures they name `..._32bit`; without
that build a `BENCH-SKIP` line says so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MP32 = HERE.parent / "build" / "micropython32" / "micropython"
ON_BOTH = ("bench_firmware.py",)


def runs() -> list[tuple[Path, dict[str, str] | None]]:
    todo: list[tuple[Path, dict[str, str] | None]] = []
    for script in sorted(HERE.glob("bench_*.py")):
        todo.append((script, None))
        if script.name in ON_BOTH and MP32.exists():
            todo.append((script, dict(os.environ, HIPSYNC_MICROPYTHON=str(MP32))))
        elif script.name in ON_BOTH:
            print(f"BENCH-SKIP {script.name} 32-bit: no {MP32.relative_to(HERE.parent)} "
                  "(make micropython32)", flush=True)
    return todo


def main() -> int:
    failed = 0
    for script, env in runs():
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              cwd=HERE.parent, env=env)
        for line in proc.stdout.splitlines():
            if line.startswith("BENCH"):
                print(line, flush=True)
        if proc.returncode != 0:
            failed += 1
            reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"BENCH-ERROR {script.name}{' 32-bit' if env else ''} {reason}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
