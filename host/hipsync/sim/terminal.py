"""`hipsync virtual-device` in a second process, as a second terminal runs it, for tests and
benchmarks that drive the CLI as a user types it.

    with VirtualDeviceCommand(tmp, "--speed", "6") as dev:
        run = dev.hipsync("--store", "s.sqlite3", "stream", "--patient", "P", "--protocol", "clinic")

The device prints `HIPSYNC_AIR=host:port`; `hipsync()` runs a command with that address, the
virtual backend and the device's secrets file, stdin not a terminal (so guided steps run
unattended). `close()` stops the device with SIGTERM (SIGINT is ignored under a background job)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

CLI = [sys.executable, "-m", "hipsync.cli"]


class VirtualDeviceCommand:
    def __init__(self, tmp: Path, *args: str, ready_timeout_s: float = 60.0):
        tmp = Path(tmp)
        self.env = {**os.environ, "HIPSYNC_SECRETS": str(tmp / "secrets.json")}
        for name in ("HIPSYNC_AIR", "HIPSYNC_STORE", "HIPSYNC_BACKEND"):
            self.env.pop(name, None)
        self.proc = subprocess.Popen([*CLI, "virtual-device", "--fs", str(tmp / "fs"), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True, env=self.env, cwd=tmp)
        self.lines: list[str] = []
        self.air = ""
        ready = threading.Event()

        def read() -> None:
            for line in self.proc.stdout:
                self.lines.append(line.rstrip())
                if line.startswith("HIPSYNC_AIR=") and not self.air:
                    self.air = line.strip().split("=", 1)[1]
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        ready.wait(ready_timeout_s)
        if not self.air:
            self.close()
            raise RuntimeError("virtual-device printed no HIPSYNC_AIR line:\n"
                               + "\n".join(self.lines[-30:]))

    def hipsync(self, *args: str, timeout: float = 600.0) -> subprocess.CompletedProcess:
        """`hipsync <args>` against this device (raises subprocess.TimeoutExpired)."""
        env = {**self.env, "HIPSYNC_BACKEND": "virtual", "HIPSYNC_AIR": self.air}
        return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> VirtualDeviceCommand:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
