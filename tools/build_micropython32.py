"""Build the 32-bit MicroPython unix port (int and object layout as on the ESP32-S3) once.

    python tools/build_micropython32.py     # prints the binary's path, or a SKIP line

Source: ../shared/micropython/micropython-<version>-src.tar.gz beside the checkout (its README.md
has the recipe and what was learned building it). Output: build/micropython32/micropython, a
launcher that runs build/micropython32/micropython-i386 with MALLOC_MMAP_MAX_=0 (glibc then takes
the GC heap from the program break, below 2^30 as on the S3, where viper's ptr32 values stay small
ints; with mmap the heap lands at 0xf7... and a heap-locked viper call allocates). Point
HIPSYNC_MICROPYTHON at the launcher.

Cached: build/micropython32/stamp.json holds the tarball's sha256 and the build flags; a second
run with both unchanged does nothing. Needs gcc -m32 (Debian's gcc-multilib): installed with
apt-get when root and missing, as tools/ensure_chromium.py installs the browser.

Exit status 0 when the binary is there (built or cached) and when the build is skipped (no source,
no 32-bit compiler): callers test for the binary; 1 when a build was attempted and failed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE_DIR = REPO.parent / "shared" / "micropython"
OUT = REPO / "build" / "micropython32"
BINARY = OUT / "micropython-i386"
LAUNCHER = OUT / "micropython"
STAMP = OUT / "stamp.json"
JOBS = "2"

# The version banner without a git repository (py/makeversionhdr.py reads these).
GIT_ENV = {"MICROPY_GIT_TAG": "v1.28.0", "MICROPY_GIT_HASH": "e0e9fbb17e"}
# FFI, SSL and BTREE need git submodules the tarball does not carry (the firmware uses none).
# -no-pie: the binary's data (and with MALLOC_MMAP_MAX_=0 the heap) sit near 0x08..., below 2^30.
MAKE_FLAGS = ["VARIANT=standard", "MICROPY_FORCE_32BIT=1", "MICROPY_PY_FFI=0", "MICROPY_PY_SSL=0",
              "MICROPY_PY_BTREE=0", "CFLAGS_EXTRA=-fno-pie", "LDFLAGS_EXTRA=-no-pie"]
# The standard variant's manifest wants micropython-lib; extmod's asyncio is all the firmware needs
# frozen (the ESP32 port freezes it too).
MANIFEST = 'include("$(MPY_DIR)/extmod/asyncio")\n'
LAUNCHER_TEXT = '#!/bin/sh\nMALLOC_MMAP_MAX_=0 exec "$(dirname "$0")/micropython-i386" "$@"\n'


def say(message: str) -> None:
    print(f"build_micropython32: {message}", flush=True)


def skip(reason: str) -> int:
    print(f"SKIP build_micropython32: {reason}", flush=True)
    return 0


def find_source() -> Path | None:
    found = sorted(SOURCE_DIR.glob("micropython-*-src.tar.gz"))
    return found[-1] if found else None


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wanted_stamp(source: Path) -> dict:
    return {"source": source.name, "source_sha256": sha256(source), "env": GIT_ENV,
            "make_flags": MAKE_FLAGS, "manifest": MANIFEST, "launcher": LAUNCHER_TEXT}


def can_compile_32bit() -> bool:
    if not shutil.which("gcc"):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(["gcc", "-m32", "-x", "c", "-", "-o", os.path.join(tmp, "a.out")],
                              input="#include <stdio.h>\nint main(void){return 0;}\n",
                              capture_output=True, text=True)
        return proc.returncode == 0


def ensure_gcc_multilib() -> str | None:
    """None when gcc -m32 works (after installing gcc-multilib if needed), else the reason."""
    if can_compile_32bit():
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "gcc -m32 does not work and gcc-multilib cannot be installed (needs root and apt-get)"
    say("installing gcc-multilib (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "gcc-multilib"]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            return f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}"
    return None if can_compile_32bit() else "gcc-multilib installed but gcc -m32 still fails"


def build(source: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="mp32-", dir=OUT) as tmp:
        work = Path(tmp)
        with tarfile.open(source) as tar:
            if hasattr(tarfile, "data_filter"):  # Python 3.11.4+: refuse links and paths out of work
                tar.extractall(work, filter="data")
            else:
                tar.extractall(work)  # noqa: S202 - the project's own source tarball
        (top,) = [p for p in work.iterdir() if p.is_dir()]
        (work / "manifest.py").write_text(MANIFEST)
        lib = work / "no-micropython-lib"  # py/mkrules.mk only checks that its README.md exists
        lib.mkdir()
        (lib / "README.md").write_text("micropython-lib is not needed: see manifest.py\n")
        env = dict(os.environ, **GIT_ENV)
        for cmd in (["make", "-C", str(top / "mpy-cross"), f"-j{JOBS}"],
                    ["make", "-C", str(top / "ports" / "unix"), f"-j{JOBS}", *MAKE_FLAGS,
                     f"FROZEN_MANIFEST={work / 'manifest.py'}", f"MPY_LIB_DIR={lib}"]):
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{proc.stdout[-3000:]}"
                                   f"{proc.stderr[-3000:]}")
        shutil.copy2(top / "ports" / "unix" / "build-standard" / "micropython", BINARY)


def check(launcher: Path) -> str:
    """Run the result once: it must be a 32-bit port with x86 native code and a low heap."""
    code = ("import sys, micropython\n"
            "print(sys.maxsize, sys.implementation._mpy >> 10, sys.version.split(';')[1].strip())")
    proc = subprocess.run([str(launcher), "-c", code], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"the built binary does not run:\n{proc.stdout}{proc.stderr}")
    maxsize, arch, banner = proc.stdout.split(None, 2)
    if int(maxsize) != 2**31 - 1 or int(arch) != 1:  # MP_NATIVE_ARCH_X86
        raise RuntimeError(f"not a 32-bit x86 build: sys.maxsize={maxsize}, native arch {arch}")
    return banner.strip()


def main() -> int:
    source = find_source()
    if source is None:
        return skip(f"no MicroPython source at {SOURCE_DIR}/micropython-*-src.tar.gz")
    want = wanted_stamp(source)
    if LAUNCHER.exists() and BINARY.exists() and STAMP.exists():
        try:
            if json.loads(STAMP.read_text()) == want:
                print(LAUNCHER)
                return 0
        except ValueError:
            pass
    reason = ensure_gcc_multilib()
    if reason:
        return skip(reason)
    OUT.mkdir(parents=True, exist_ok=True)
    for old in (STAMP, LAUNCHER, BINARY):  # a failed build leaves no binary behind
        old.unlink(missing_ok=True)
    started = time.monotonic()
    say(f"building the 32-bit unix port from {source.name} (about a minute)")
    try:
        build(source)
        LAUNCHER.write_text(LAUNCHER_TEXT)
        LAUNCHER.chmod(0o755)
        banner = check(LAUNCHER)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        BINARY.unlink(missing_ok=True)
        LAUNCHER.unlink(missing_ok=True)
        print(f"build_micropython32: build failed: {e}", file=sys.stderr)
        return 1
    STAMP.write_text(json.dumps(want, indent=1) + "\n")
    say(f"built {banner} in {time.monotonic() - started:.0f} s")
    print(LAUNCHER)
    return 0


if __name__ == "__main__":
    sys.exit(main())
