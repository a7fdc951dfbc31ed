"""The host package installs from a wheel with every module of hipsync and hipwire in it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_holds_every_module(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "-q", "-w", str(tmp_path), str(ROOT / "host")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = tmp_path.glob("hipsync-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {str(p.relative_to(ROOT / "host")) for p in (ROOT / "host/hipsync").rglob("*.py")}
    expected |= {"hipwire/" + str(p.relative_to(ROOT / "shared/hipwire"))
                 for p in (ROOT / "shared/hipwire").rglob("*.py")}
    expected.add("hipwire/golden.json")
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel: {missing}"
