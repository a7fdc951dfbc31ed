"""Start-up cost of the firmware's runtime: the MicroPython unix port used for every firmware test."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import micropython_port  # noqa: E402


def main() -> None:
    runs = 20
    t0 = time.perf_counter()
    for _ in range(runs):
        micropython_port.check_code("import hipwire.units")
    per_run_ms = (time.perf_counter() - t0) / runs * 1e3
    print(f"BENCH micropython_startup_ms {per_run_ms:.1f} ms")


if __name__ == "__main__":
    main()
