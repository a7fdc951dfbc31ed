"""tools/device.py without a board: usage errors, "no device" errors, the dry-run listing, the
deploy file set rules, and the flash/deploy sequences against stand-ins for esptool and mpremote."""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "device.py"
sys.path.insert(0, str(REPO / "tools"))

import device

MISSING_PORT = "/dev/hipsync-no-such-port"
_REAL_RUN = subprocess.run  # device.subprocess is this module: keep the real one for mpy-cross


def run_tool(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True,
                          timeout=timeout_s, cwd=str(REPO), check=False)


# --- usage errors ---------------------------------------------------------------------------------

def test_no_command_prints_usage():
    proc = run_tool()
    assert proc.returncode == 2
    assert "usage:" in proc.stderr and "flash,deploy,repl" in proc.stderr


@pytest.mark.parametrize("args", [("flash",), ("deploy",), ("repl",),
                                  ("flash", "--port", ""), ("repl", "--port", "")])
def test_missing_port_prints_usage(args):
    proc = run_tool(*args)
    assert proc.returncode == 2, proc.stderr
    assert "usage:" in proc.stderr and "--port is required" in proc.stderr


def test_flash_without_firmware_prints_usage():
    proc = run_tool("flash", "--port", "/dev/null", "--firmware", "")
    assert proc.returncode == 2
    assert "--firmware is required" in proc.stderr


def test_flash_refuses_a_file_that_is_not_an_esp_image(tmp_path):
    image = tmp_path / "micropython.bin"
    image.write_bytes(b"PK\x03\x04 a zip, not an image")
    proc = run_tool("flash", "--port", "/dev/null", "--firmware", str(image))
    assert proc.returncode == 2
    assert "not an ESP32 flash image" in proc.stderr


def test_flash_reports_a_missing_firmware_file(tmp_path):
    proc = run_tool("flash", "--port", "/dev/null", "--firmware", str(tmp_path / "nope.bin"))
    assert proc.returncode == 2
    assert "firmware file not found" in proc.stderr


# --- no device --------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ("flash", "--port", MISSING_PORT, "--firmware", "whatever.bin"),
    ("deploy", "--port", MISSING_PORT),
    ("repl", "--port", MISSING_PORT),
])
def test_no_device_fails_at_once_with_a_clear_message(args):
    start = time.monotonic()
    proc = run_tool(*args)
    assert proc.returncode == 2
    assert f"no device on {MISSING_PORT}" in proc.stderr
    assert time.monotonic() - start < 15   # no esptool/mpremote retry loop


def test_no_device_never_starts_esptool_or_mpremote(monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError(f"external tool started: {a}")
    monkeypatch.setattr(device.subprocess, "run", forbidden)
    assert device.main(["deploy", "--port", MISSING_PORT]) == 2
    assert device.main(["repl", "--port", MISSING_PORT]) == 2
    assert device.main(["flash", "--port", MISSING_PORT, "--firmware", "x.bin"]) == 2


# --- deploy file set --------------------------------------------------------------------------------

def _touch(path: Path, text: str = "X = 1\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_deploy_set_rules(tmp_path):
    fw, hw = tmp_path / "firmware", tmp_path / "hipwire"
    for rel in ("app.py", "main.py", "boot.py", "manifest.py", "unixboard/machine.py",
                "drivers/__init__.py", "drivers/ads1294r.py", "tests/mp_test_x.py",
                "dsp/test_helpers.py", "README.md", "board/pins.py"):
        _touch(fw / rel)
    (fw / "__pycache__").mkdir()
    (fw / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    for rel in ("__init__.py", "units.py", "golden.json"):
        _touch(hw / rel)
    files = device.deploy_set(fw, hw)
    assert [(f.device_path, f.compile) for f in files] == [
        ("app.mpy", True),
        ("board/pins.mpy", True),
        ("boot.py", False),
        ("drivers/__init__.mpy", True),
        ("drivers/ads1294r.mpy", True),
        ("main.py", False),
        ("hipwire/__init__.mpy", True),
        ("hipwire/units.mpy", True),
    ]
    assert [f.module for f in files] == ["app", "board.pins", "boot", "drivers", "drivers.ads1294r",
                                         "main", "hipwire", "hipwire.units"]


def test_deploy_set_of_the_repository_ships_firmware_and_hipwire_only():
    files = device.deploy_set()
    paths = [f.device_path for f in files]
    assert "board/pins.mpy" in paths and "hipwire/units.mpy" in paths
    assert all("unixboard" not in f.source.parts for f in files)
    assert all(f.source.name != "manifest.py" for f in files)
    assert len(paths) == len(set(paths))


def test_dry_run_lists_exactly_the_deploy_set():
    before = [f.device_path for f in device.deploy_set()]
    proc = run_tool("deploy", "--dry-run", timeout_s=300)
    assert proc.returncode == 0, proc.stderr
    if [f.device_path for f in device.deploy_set()] != before:
        pytest.skip("firmware/ changed while the test ran")
    listed = [line.split(" -> :")[1] for line in proc.stdout.splitlines() if " -> :" in line]
    assert listed == before
    for path in listed:
        assert (device.BUILD / path).is_file()


def test_build_compiles_native_code_for_the_esp32_s3(tmp_path):
    src = tmp_path / "fast.py"
    src.write_text("import micropython\n\n@micropython.viper\ndef inc(x: int) -> int:\n    return x + 1\n")
    written = device.build([device.DeployFile(src, "dsp/fast.mpy", compile=True)], tmp_path / "out")
    assert written == [tmp_path / "out" / "dsp" / "fast.mpy"]
    header = written[0].read_bytes()[:3]
    assert header[:1] == b"M"
    assert header[2] >> 2 == 10       # MP_NATIVE_ARCH_XTENSAWIN: viper code built for the S3


def test_build_reports_a_compile_error(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def broken(:\n")
    with pytest.raises(device.DeviceError, match="mpy-cross failed"):
        device.build([device.DeployFile(bad, "bad.mpy", compile=True)], tmp_path / "out")


# --- deploy and flash sequences against stand-ins -----------------------------------------------

class FakeRun:
    """Records subprocess calls; answers mpremote like a device would."""

    def __init__(self, version_line: str = "FIRMWARE_VERSION=0.1.0"):
        self.calls: list[list[str]] = []
        self.version_line = version_line

    def __call__(self, cmd, **kwargs):
        cmd = [str(c) for c in cmd]
        self.calls.append(cmd)
        if cmd[0].endswith("mpy-cross"):
            return _REAL_RUN(cmd, **kwargs)
        if "mpremote" in cmd and "exec" in cmd and "FIRMWARE_VERSION" in cmd[-1]:
            return subprocess.CompletedProcess(cmd, 0, self.version_line + "\n", "")
        return subprocess.CompletedProcess(cmd, 0, "", "")


@pytest.fixture()
def fake_device(tmp_path, monkeypatch):
    port = tmp_path / "ttyACM0"
    port.touch()
    monkeypatch.setattr(device, "BUILD", tmp_path / "build")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "hipsync").touch()
    monkeypatch.setattr(device, "BIN", fake_bin)
    monkeypatch.setattr(device, "mpy_cross", lambda: str(Path(sys.executable).parent / "mpy-cross"))
    # A small firmware tree of our own, so these tests do not depend on the real modules compiling.
    fw, hw = tmp_path / "firmware", tmp_path / "hipwire"
    for rel in ("app.py", "main.py", "drivers/ads1294.py"):
        _touch(fw / rel, "FIRMWARE_VERSION = '0.1.0'\n" if rel == "app.py" else "import app\n")
    _touch(hw / "units.py")
    small_set = device.deploy_set(fw, hw)
    monkeypatch.setattr(device, "deploy_set", lambda: small_set)
    return str(port)


def test_deploy_copies_then_stops_when_the_hipsync_cli_is_not_installed(fake_device, monkeypatch,
                                                                        capsys):
    (device.BIN / "hipsync").unlink()
    monkeypatch.setattr(device.shutil, "which", lambda name: None)
    fake = FakeRun()
    monkeypatch.setattr(device.subprocess, "run", fake)
    assert device.main(["deploy", "--port", fake_device]) == 1
    assert "hipsync CLI is not installed" in capsys.readouterr().err
    assert not any(c[0].endswith("hipsync") for c in fake.calls)
    mpremote = [c for c in fake.calls if "mpremote" in c]
    assert len(mpremote) == 1
    copy = mpremote[0]
    assert copy[copy.index("connect") + 1] == fake_device
    assert "os.remove" in copy[copy.index("exec") + 1]        # stale .py twins removed first
    cp_args = copy[copy.index("cp") + 2:]                     # after "cp -r"
    assert cp_args[-1] == ":"
    assert [Path(a).name for a in cp_args[:-1]] == ["app.mpy", "drivers", "hipwire", "main.py"]
    assert "'app.py'" in copy[copy.index("exec") + 1] and "'main.mpy'" in copy[copy.index("exec") + 1]


def test_deploy_provisions_and_reads_the_version_back(fake_device, monkeypatch, capsys):
    fake = FakeRun()
    monkeypatch.setattr(device.subprocess, "run", fake)
    assert device.main(["deploy", "--port", fake_device]) == 0
    assert [c[1:] for c in fake.calls if c[0].endswith("hipsync")] == [
        ["provision", "--port", fake_device]]
    assert "runs firmware 0.1.0" in capsys.readouterr().out


def test_deploy_fails_when_the_version_cannot_be_read(fake_device, monkeypatch, capsys):
    fake = FakeRun(version_line="Traceback: no module named app")
    monkeypatch.setattr(device.subprocess, "run", fake)
    assert device.main(["deploy", "--port", fake_device]) == 1
    assert "could not read the firmware version" in capsys.readouterr().err


class FakeEsp:
    def __init__(self, chip: str, log: list):
        self.CHIP_NAME = chip
        self.log = log


@contextmanager
def _detect(chip, log):
    log.append("detect")
    yield FakeEsp(chip, log)
    log.append("close")


def _fake_esptool(monkeypatch, chip: str) -> list:
    cmds = pytest.importorskip("esptool.cmds")
    log: list = []
    monkeypatch.setattr(cmds, "detect_chip", lambda port, baud: _detect(chip, log))
    monkeypatch.setattr(cmds, "run_stub", lambda esp: esp)
    monkeypatch.setattr(cmds, "attach_flash", lambda esp: log.append("attach"))
    monkeypatch.setattr(cmds, "erase_flash", lambda esp: log.append("erase"))
    monkeypatch.setattr(cmds, "write_flash", lambda esp, addr_data: log.append(("write", addr_data)))
    monkeypatch.setattr(cmds, "reset_chip", lambda esp, mode: log.append(("reset", mode)))
    return log


def _image(tmp_path: Path) -> Path:
    image = tmp_path / "fw.bin"
    image.write_bytes(bytes([0xE9]) + bytes(31))
    return image


def test_flash_erases_then_writes_at_offset_zero(fake_device, tmp_path, monkeypatch):
    log = _fake_esptool(monkeypatch, "ESP32-S3")
    image = _image(tmp_path)
    assert device.main(["flash", "--port", fake_device, "--firmware", str(image)]) == 0
    assert log == ["detect", "attach", "erase", ("write", [(0, str(image))]), ("reset", "hard-reset"), "close"]


def test_flash_refuses_another_chip(fake_device, tmp_path, monkeypatch, capsys):
    log = _fake_esptool(monkeypatch, "ESP32")
    assert device.main(["flash", "--port", fake_device, "--firmware", str(_image(tmp_path))]) == 1
    assert "not an ESP32-S3" in capsys.readouterr().err
    assert "erase" not in log


def test_dry_run_needs_no_port_and_copies_nothing(fake_device, monkeypatch, capsys):
    fake = FakeRun()
    monkeypatch.setattr(device.subprocess, "run", fake)
    assert device.main(["deploy", "--dry-run"]) == 0
    out = capsys.readouterr().out
    listed = [line.split(" -> :")[1] for line in out.splitlines() if " -> :" in line]
    assert listed == ["app.mpy", "drivers/ads1294.mpy", "main.py", "hipwire/units.mpy"]
    assert not any("mpremote" in c or c[0].endswith("hipsync") for c in fake.calls)
    assert (device.BUILD / "drivers" / "ads1294.mpy").is_file()
