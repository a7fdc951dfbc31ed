"""Flash MicroPython, deploy the hipsync firmware and open a REPL on the ESP32-S3 board.

    python tools/device.py flash  --port /dev/ttyACM0 --firmware ESP32_GENERIC_S3-....bin
    python tools/device.py deploy --port /dev/ttyACM0 [--dry-run]
    python tools/device.py repl   --port /dev/ttyACM0

Exit codes: 0 done; 1 the operation failed (compile error, wrong chip, esptool/mpremote error,
provisioning not available); 2 usage error or no device on the port.

The deploy file set is computed by `deploy_set()` alone; tests/firmware/test_deploy_set.py imports
it so the test proves exactly what `deploy` copies.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
HIPWIRE = REPO / "shared" / "hipwire"
BUILD = REPO / "build" / "deploy"
BIN = Path(sys.executable).parent

CHIP_NAME = "ESP32-S3"
FLASH_OFFSET = 0x0          # MicroPython ESP32-S3 images include the bootloader: written at 0.
FLASH_BAUD = 460800
ESP_IMAGE_MAGIC = 0xE9      # first byte of an ESP bootloader/app image
TARGET_ARCH = "xtensawin"   # ESP32-S3 cores (LX7, windowed ABI)

# Not shipped: the unix fake board, the freeze manifest, tests and caches.
_EXCLUDED_DIRS = {"unixboard", "tests", "__pycache__"}
_EXCLUDED_FILES = {"manifest.py"}
# MicroPython runs these as source at boot, never as .mpy.
_SOURCE_ONLY = {"boot.py", "main.py"}

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class DeviceError(Exception):
    """A failure with a message for the user and an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class DeployFile:
    source: Path            # file in the repository
    device_path: str        # path on the device filesystem, e.g. "drivers/ads1294r.mpy"
    compile: bool           # True: mpy-cross it; False: copy the source as is

    @property
    def module(self) -> str | None:
        """Import name of a Python module ("drivers.ads1294r"), None for data files."""
        path = PurePosixPath(self.device_path)
        if path.suffix not in (".py", ".mpy"):
            return None
        parts = list(path.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        return ".".join(parts)


def _is_shipped(rel: PurePosixPath) -> bool:
    if any(part in _EXCLUDED_DIRS or part.startswith(".") for part in rel.parts[:-1]):
        return False
    name = rel.name
    if name.startswith(".") or name.endswith((".pyc", ".md")):
        return False
    return not name.startswith(("test_", "mp_test_"))


def deploy_set(firmware: Path = FIRMWARE, hipwire: Path = HIPWIRE) -> list[DeployFile]:
    """Every file `deploy` puts on the device, with its device path, in a stable order.

    firmware/X.py -> X.mpy at the device root (boot.py/main.py stay source); shared/hipwire/Y.py ->
    hipwire/Y.mpy. Only Python ships: data files beside hipwire (golden.json test vectors) are for the
    host and the tests, and the firmware reads none at run time.
    """
    files: list[DeployFile] = []
    for path in sorted(firmware.rglob("*")):
        rel = PurePosixPath(path.relative_to(firmware).as_posix())
        if not path.is_file() or path.suffix != ".py" or not _is_shipped(rel):
            continue
        if len(rel.parts) == 1 and rel.name in _EXCLUDED_FILES:
            continue
        if len(rel.parts) == 1 and rel.name in _SOURCE_ONLY:
            files.append(DeployFile(path, str(rel), compile=False))
        else:
            files.append(DeployFile(path, str(rel.with_suffix(".mpy")), compile=True))
    for path in sorted(hipwire.rglob("*")):
        rel = PurePosixPath("hipwire") / path.relative_to(hipwire).as_posix()
        if not path.is_file() or path.suffix != ".py" or not _is_shipped(rel):
            continue
        files.append(DeployFile(path, str(rel.with_suffix(".mpy")), compile=True))
    seen: dict[str, Path] = {}
    for f in files:
        if f.device_path in seen:
            raise DeviceError(f"two files map to {f.device_path} on the device: {seen[f.device_path]} and {f.source}")
        seen[f.device_path] = f.source
    return files


def mpy_cross() -> str:
    found = BIN / "mpy-cross"
    if found.exists():
        return str(found)
    which = shutil.which("mpy-cross")
    if which is None:
        raise DeviceError("mpy-cross not found: run `make venv` (it installs the pinned mpy-cross)")
    return which


def build(files: list[DeployFile], out_dir: Path, march: str | None = TARGET_ARCH) -> list[Path]:
    """Compile/copy the deploy set into out_dir laid out like the device filesystem."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    compiler = mpy_cross()
    written = []
    errors = []
    for f in files:
        dest = out_dir / f.device_path
        dest.parent.mkdir(parents=True, exist_ok=True)
        if f.compile:
            cmd = [compiler, *([f"-march={march}"] if march else []), "-o", str(dest),
                   "-s", f.device_path[:-4] + ".py", str(f.source)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                errors.append(f"{f.source}:\n{proc.stderr.strip()}")
                continue
        else:
            shutil.copyfile(f.source, dest)
        written.append(dest)
    if errors:
        raise DeviceError("mpy-cross failed:\n" + "\n".join(errors))
    return written


def romfs_image(files: list[DeployFile], march: str | None = TARGET_ARCH) -> bytes:
    """The deploy set as a ROMFS image (MicroPython's read-only, memory-mapped filesystem).

    Imported from a ROMFS, .mpy bytecode and its constants run in place from flash, as frozen
    modules do (firmware/manifest.py): only the modules' objects take heap. The unix port mounts
    the image from a buffer (vfs.VfsRom), which is how the firmware benchmark measures the heap of
    the deployed firmware; an ESP32 build with a ROMFS partition takes it with `mpremote romfs deploy`.
    """
    import tempfile

    from mpremote.romfs import VfsRomWriter

    writer = VfsRomWriter()

    def add(folder: Path) -> None:
        for path in sorted(folder.iterdir()):
            if path.is_dir():
                writer.opendir(path.name)
                add(path)
                writer.closedir()
            else:
                writer.mkfile(path.name, path.read_bytes())

    with tempfile.TemporaryDirectory(prefix="hipsync-romfs-") as tmp:
        build(files, Path(tmp) / "rom", march)
        add(Path(tmp) / "rom")
    return bytes(writer.finalise())


def _require_port(port: str | None) -> str:
    if not port:
        raise DeviceError("--port is required, e.g. --port /dev/ttyACM0 (make ... PORT=/dev/ttyACM0)",
                          EXIT_USAGE)
    is_windows_com = port.upper().startswith("COM") and port[3:].isdigit()
    if not is_windows_com and not os.path.exists(port):
        raise DeviceError(f"no device on {port}: plug the board in over USB, check the port "
                          f"(ls /dev/ttyACM* /dev/ttyUSB*) and your permission to open it", EXIT_USAGE)
    return port


def _mpremote(port: str, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mpremote", "connect", port, *args]
    try:
        return subprocess.run(cmd, capture_output=capture, text=True, check=False)
    except FileNotFoundError as e:  # pragma: no cover - sys.executable always exists
        raise DeviceError(f"cannot run mpremote: {e}") from e


def _require_module(name: str, extra: str) -> None:
    import importlib.util
    if importlib.util.find_spec(name) is None:
        raise DeviceError(f"{name} is not installed: run `make venv` (host[{extra}] extra) or "
                          f"`.venv/bin/pip install -e 'host[{extra}]'`")


# --- commands -------------------------------------------------------------------------------------

def cmd_flash(port: str | None, firmware: str | None) -> int:
    port = _require_port(port)
    if not firmware:
        raise DeviceError("--firmware is required: a MicroPython ESP32_GENERIC_S3 .bin "
                          "(or a build from firmware/manifest.py, see hardware/firmware-build.md)", EXIT_USAGE)
    image = Path(firmware)
    if not image.is_file():
        raise DeviceError(f"firmware file not found: {firmware}", EXIT_USAGE)
    with image.open("rb") as fh:
        first = fh.read(1)
    if first != bytes([ESP_IMAGE_MAGIC]):
        raise DeviceError(f"{firmware} is not an ESP32 flash image (first byte "
                          f"{first.hex() or 'missing'}, expected {ESP_IMAGE_MAGIC:02x})", EXIT_USAGE)
    _require_module("esptool", "device")
    from esptool.cmds import (
        attach_flash,
        detect_chip,
        erase_flash,
        reset_chip,
        run_stub,
        write_flash,
    )
    from esptool.util import FatalError

    try:
        with detect_chip(port, FLASH_BAUD) as esp:
            if esp.CHIP_NAME != CHIP_NAME:
                raise DeviceError(f"{port} is an {esp.CHIP_NAME}, not an {CHIP_NAME}: refusing to flash")
            esp = run_stub(esp)
            attach_flash(esp)
            print(f"erasing flash of the {esp.CHIP_NAME} on {port}")
            erase_flash(esp)
            print(f"writing {image} at 0x{FLASH_OFFSET:x}")
            write_flash(esp, [(FLASH_OFFSET, str(image))])
            reset_chip(esp, "hard-reset")
    except FatalError as e:
        raise DeviceError(f"esptool failed on {port}: {e}") from e
    except OSError as e:
        raise DeviceError(f"cannot talk to {port}: {e}") from e
    print("flashed; next: make deploy PORT=" + port)
    return EXIT_OK


def _hipsync_cli() -> str | None:
    """Path of the hipsync CLI (the venv's, else one on PATH), None when it is not installed."""
    exe = BIN / "hipsync"
    return str(exe) if exe.exists() else shutil.which("hipsync")


_VERSION_SNIPPET = "import app; print('FIRMWARE_VERSION=' + str(app.FIRMWARE_VERSION))"


def _read_version(output: str) -> str | None:
    for line in output.splitlines():
        if line.startswith("FIRMWARE_VERSION="):
            return line.split("=", 1)[1].strip()
    return None


def _cleanup_snippet(files: list[DeployFile]) -> str:
    """Remove stale twins on the device: a left-over X.py shadows a new X.mpy (MicroPython tries .py first)."""
    stale = []
    for f in files:
        if f.device_path.endswith(".mpy"):
            stale.append(f.device_path[:-4] + ".py")
        elif f.device_path.endswith(".py"):
            stale.append(f.device_path[:-3] + ".mpy")
    return f"import os\nfor p in {stale!r}:\n    try:\n        os.remove(p)\n    except OSError:\n        pass\n"


def cmd_deploy(port: str | None, dry_run: bool) -> int:
    if not dry_run:
        port = _require_port(port)
    files = deploy_set()
    build(files, BUILD)
    if dry_run:
        shown = BUILD.relative_to(REPO) if BUILD.is_relative_to(REPO) else BUILD
        print(f"# {len(files)} files built into {shown}/, would copy:")
        for f in files:
            print(f"{shown}/{f.device_path} -> :{f.device_path}")
        return EXIT_OK
    assert port is not None
    _require_module("mpremote", "device")
    top_level = sorted({PurePosixPath(f.device_path).parts[0] for f in files})
    proc = _mpremote(port, "exec", _cleanup_snippet(files), "+",
                     "fs", "cp", "-r", *[str(BUILD / entry) for entry in top_level], ":")
    if proc.returncode != 0:
        raise DeviceError(f"copying to {port} failed (mpremote exit {proc.returncode})")
    print(f"copied {len(files)} files to {port}")
    hipsync = _hipsync_cli()
    if hipsync is None:
        raise DeviceError("files copied, but the hipsync CLI is not installed (run `make venv`), so "
                          "`hipsync provision` could not run: the device has no identity/settings, "
                          "deploy is incomplete")
    proc = subprocess.run([hipsync, "provision", "--port", port], check=False)
    if proc.returncode != 0:
        raise DeviceError(f"hipsync provision --port {port} failed (exit {proc.returncode})")
    proc = _mpremote(port, "exec", _VERSION_SNIPPET, capture=True)
    version = _read_version(proc.stdout)
    if proc.returncode != 0 or version is None:
        raise DeviceError(f"could not read the firmware version back from {port}:\n{proc.stdout}{proc.stderr}")
    print(f"device on {port} runs firmware {version}")
    return EXIT_OK


def cmd_repl(port: str | None) -> int:
    port = _require_port(port)
    _require_module("mpremote", "device")
    return _mpremote(port, "repl").returncode


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="tools/device.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="{flash,deploy,repl}")
    p_flash = sub.add_parser("flash", help="erase and write a MicroPython image (esptool)")
    p_flash.add_argument("--port", help="serial port of the board, e.g. /dev/ttyACM0")
    p_flash.add_argument("--firmware", help="MicroPython ESP32-S3 .bin written at offset 0")
    p_deploy = sub.add_parser("deploy", help="compile firmware + hipwire with mpy-cross and copy them (mpremote)")
    p_deploy.add_argument("--port", help="serial port of the board (not needed with --dry-run)")
    p_deploy.add_argument("--dry-run", action="store_true", help="build and list the files, copy nothing")
    p_repl = sub.add_parser("repl", help="open the MicroPython REPL (mpremote)")
    p_repl.add_argument("--port", help="serial port of the board")
    return parser, {"flash": p_flash, "deploy": p_deploy, "repl": p_repl}


def main(argv: list[str] | None = None) -> int:
    parser, subparsers = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "flash":
            return cmd_flash(args.port, args.firmware)
        if args.command == "deploy":
            return cmd_deploy(args.port, args.dry_run)
        return cmd_repl(args.port)
    except DeviceError as e:
        if e.exit_code == EXIT_USAGE and str(e).startswith("--"):
            subparsers[args.command].print_usage(sys.stderr)
        print(f"device.py {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
