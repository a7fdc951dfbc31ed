"""Run code inside the real MicroPython unix port (the firmware's test runtime).

The `micropython` binary (HIPSYNC_MICROPYTHON chooses another, e.g. the 32-bit build), its native
arch for .mpy files, and the firmware's import path (the unix board's fakes first, so that
`machine` and `bluetooth` are the fakes) come from hipsync.sim.virtual_device, the one place that
knows them; the firmware tests' own folder is added here.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hipsync.sim.virtual_device import (  # noqa: F401
    FIRMWARE,
    REPO,
    SHARED,
    UNIX_BOARD,
    micropython_binary,
    micropython_native_arch,
)
from hipsync.sim.virtual_device import micropython_path as _firmware_path

MP_TESTS = REPO / "tests" / "firmware"
# Heap like an ESP32-S3 without PSRAM gives MicroPython (about 150-300 kB free after boot).
DEFAULT_HEAP = "512k"


def micropython_path(*extra: Path) -> str:
    return _firmware_path(*extra, MP_TESTS)


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
