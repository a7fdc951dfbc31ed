"""Collects firmware tests that run inside MicroPython.

Files `tests/firmware/mp_test_*.py` are MicroPython code: each top-level `def test_*` becomes one
pytest item that runs `micropython mprunner.py MODULE FUNCTION` with the firmware import path; a
failure shows the MicroPython traceback.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import micropython_port  # noqa: E402

_PASS = "MPTEST-RESULT PASS"


class MicroPythonTestFailed(Exception):
    pass


class MicroPythonFile(pytest.File):
    def collect(self):
        tree = ast.parse(self.path.read_text(), filename=str(self.path))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                yield MicroPythonItem.from_parent(self, name=node.name)


class MicroPythonItem(pytest.Item):
    def runtest(self):
        proc = micropython_port.run([str(micropython_port.MP_TESTS / "mprunner.py"),
                                     self.path.stem, self.name], timeout_s=600)
        out = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
        if proc.returncode != 0 or _PASS not in out:
            raise MicroPythonTestFailed(out)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, MicroPythonTestFailed):
            return f"MicroPython test {self.path.name}::{self.name} failed:\n{excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, f"[micropython] {self.name}"


def pytest_collect_file(parent, file_path: Path):
    if file_path.suffix == ".py" and file_path.name.startswith("mp_test_"):
        return MicroPythonFile.from_parent(parent, path=file_path)
    return None


class _NotForCPython(pytest.File):
    """Keeps pytest's Python plugin from importing a MicroPython test file named on the command line."""

    def collect(self):
        return []


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path: Path, parent):
    if module_path.name.startswith("mp_test_"):
        return _NotForCPython.from_parent(parent, path=module_path)
    return None
