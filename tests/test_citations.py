"""No tracked file cites the domain notes kept beside the project: a reader of the repository does
not have them. Code, docs and reports cite the primary sources, listed in docs/REFERENCES.md."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Spelled in two parts so that this file does not match itself.
OUTSIDE_FILE = "DOMAIN" + ".md"


def _tracked_files() -> list[Path]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True)
    return [REPO / p for p in out.stdout.decode().split("\0") if p]


def test_no_tracked_file_cites_the_outside_domain_notes():
    citing = []
    for path in _tracked_files():
        if not path.is_file():  # deleted in the work tree, not yet committed
            continue
        if OUTSIDE_FILE.encode() in path.read_bytes():
            citing.append(str(path.relative_to(REPO)))
    assert not citing, (f"{OUTSIDE_FILE} is not in the repository; cite the primary source "
                        f"(author, year, journal) and docs/REFERENCES.md instead: {citing}")


def test_the_references_document_exists():
    assert (REPO / "docs" / "REFERENCES.md").is_file()
