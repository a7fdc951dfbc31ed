# mypy: ignore-errors
# MicroPython freeze manifest: bakes the hipsync firmware and shared/hipwire into a custom ESP32-S3
# build, so the modules run from flash (no RAM for bytecode, no .mpy files to copy).
#
#   cd micropython/ports/esp32
#   make BOARD=ESP32_GENERIC_S3 FROZEN_MANIFEST=/path/to/hipsync/firmware/manifest.py
#
# Needs ESP-IDF; the steps, versions and checks are in hardware/firmware-build.md.
#
# The file set is the deploy set of tools/device.py (one definition): every firmware module except
# the unix fake board, the tests and this manifest, plus every hipwire module. boot.py and main.py
# are not frozen: the board runs them from the filesystem, so `make deploy` still puts main.py there.
# Filesystem modules come before frozen ones on sys.path, so a later `make deploy` overrides the
# frozen copy of a module during development.
#
# This file is executed by MicroPython's tools/makemanifest.py with the manifest directory
# (firmware/) as the working directory; include/module come from that tool.
import importlib.util
import os
import sys

include("$(PORT_DIR)/boards/manifest.py")  # noqa: F821 - the port's own frozen modules (_boot, inisetup, ...)

_FIRMWARE_DIR = os.getcwd()
_spec = importlib.util.spec_from_file_location(
    "hipsync_device_tool", os.path.join(_FIRMWARE_DIR, "..", "tools", "device.py"))
_device = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _device  # dataclasses look their module up there
_spec.loader.exec_module(_device)

for _f in _device.deploy_set():
    if not _f.compile:
        continue  # boot.py / main.py stay on the filesystem
    _target = _f.device_path[: -len(".mpy")] + ".py"  # e.g. drivers/ads1294r.py, hipwire/units.py
    _base = str(_f.source)[: -len(_target)]
    module(_target, base_path=_base)  # noqa: F821
