"""Everything that ships to the ESP32 compiles with mpy-cross for its CPU (xtensawin), so viper and
native code is checked for the real target, not only for the unix port."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from micropython_port import FIRMWARE, SHARED, UNIX_BOARD

SHIPPED = sorted(p for root in (FIRMWARE, SHARED) for p in root.rglob("*.py")
                 if UNIX_BOARD not in p.parents and "__pycache__" not in p.parts)


def mpy_cross() -> str:
    return str(Path(sys.executable).parent / "mpy-cross")


def test_there_is_firmware_to_ship():
    assert any(p.name == "app.py" for p in SHIPPED) or len(SHIPPED) >= 2


@pytest.mark.parametrize("source", SHIPPED, ids=lambda p: str(p.relative_to(FIRMWARE.parent)))
def test_compiles_for_esp32(source: Path, tmp_path: Path):
    out = tmp_path / (source.stem + ".mpy")
    proc = subprocess.run([mpy_cross(), "-march=xtensawin", "-o", str(out), str(source)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0
