"""Wall time of `hipsync demo` as `make demo` runs it (the CLI with its defaults: a 2-minute walk at
6x, the real firmware in MicroPython, the virtual radio, bleak, the report), into a temporary folder.

demo_wall_s: from starting the CLI process to its exit, start-up and report writing included."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    cli = Path(sys.executable).parent / "hipsync"
    with tempfile.TemporaryDirectory(prefix="hipsync-bench-demo-") as tmp:
        out = Path(tmp) / "demo"
        t0 = time.monotonic()
        proc = subprocess.run([str(cli), "demo", "--out", str(out)], capture_output=True,
                              text=True, timeout=300, cwd=tmp)
        wall = time.monotonic() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"hipsync demo failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        report = json.loads((out / "report.json").read_text())
        if not report:
            raise RuntimeError("hipsync demo wrote an empty report")
    print(f"BENCH demo_wall_s {wall:.1f} s")


if __name__ == "__main__":
    main()
