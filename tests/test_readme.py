"""Every command example in README.md runs as written, in a fresh folder, in the README's order.

The `make` lines are the set-up itself (this suite is what `make test` runs) and are not run again.
`hipsync virtual-device` is the README's "first terminal": it runs in the background, and the
`127.0.0.1:PORT` the README asks the reader to copy is the address it printed."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def _commands() -> list[str]:
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith((".venv/bin/", "export ")):
                lines.append(line)
    return lines


def test_the_readme_has_the_examples_this_test_runs():
    cmds = _commands()
    assert any("virtual-device" in c for c in cmds)
    assert any("--protocol clinic" in c for c in cmds)
    assert any(" report " in c for c in cmds) and any("record start" in c for c in cmds)


@pytest.mark.slow
def test_every_readme_example_runs_as_written(tmp_path):
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    (tmp_path / "tests").symlink_to(REPO / "tests")
    env = {**os.environ, "HIPSYNC_SECRETS": str(tmp_path / "secrets.json")}
    for key in ("HIPSYNC_AIR", "HIPSYNC_BACKEND", "HIPSYNC_STORE"):
        env.pop(key, None)
    device = None
    air = ""
    try:
        for line in _commands():
            if line.startswith("export "):
                for assignment in shlex.split(line)[1:]:
                    key, _, value = assignment.partition("=")
                    env[key] = value.replace("127.0.0.1:PORT", air)
                continue
            if " virtual-device" in line:
                device, air = _start_device(line, tmp_path, env)
                continue
            if "pytest" in line and "tests/" in line:
                run = subprocess.run(line, shell=True, cwd=REPO, env=env, capture_output=True,
                                     text=True, timeout=600)
            else:
                run = subprocess.run(line, shell=True, cwd=tmp_path, env=env, capture_output=True,
                                     text=True, timeout=900, stdin=subprocess.DEVNULL)
            assert run.returncode == 0, f"{line}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
            assert "Traceback" not in run.stderr, line
    finally:
        if device is not None:
            device.send_signal(signal.SIGTERM)
            try:
                device.wait(20)
            except subprocess.TimeoutExpired:
                device.kill()
    assert (tmp_path / "out" / "report").is_dir()


def _start_device(line: str, cwd: Path, env: dict) -> tuple[subprocess.Popen, str]:
    # the command itself, not a shell around it: the signal at the end must reach the device
    proc = subprocess.Popen(shlex.split(line), cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for out in proc.stdout:
            if out.startswith("HIPSYNC_AIR=") and not found:
                found.append(out.strip().split("=", 1)[1])
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    ready.wait(60)
    assert found, f"{line}: printed no HIPSYNC_AIR line"
    return proc, found[0]
