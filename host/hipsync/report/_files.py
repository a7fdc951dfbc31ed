"""Writing report files: the output folder checked first, each file replaced whole."""

from __future__ import annotations

import os
from pathlib import Path

from ..store.errors import OutputNotWritable


def prepare_dir(out_dir) -> Path:
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputNotWritable(out, e.strerror or str(e)) from None
    if not out.is_dir():
        raise OutputNotWritable(out, "it is not a folder")
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputNotWritable(out, "permission denied")
    return out


def write_text(path: Path, text: str) -> None:
    try:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)  # a reader never sees half a report
    except OSError as e:
        raise OutputNotWritable(path, e.strerror or str(e)) from None
