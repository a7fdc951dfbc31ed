"""`hipsync decode`: JSON lines out, malformed frames reported with offset and reason, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from array import array

from hipwire import frames as f
from hipwire import records as r


def _frames():
    buf = bytearray(f.MAX_FRAME)
    out = []
    n = f.encode_batch(buf, 244, f.ENVELOPE, 1, 100, 10, array("i", range(40)), 0, 10, 4)
    out.append(bytes(buf[:n]))
    n = f.encode_event(buf, 2, 150, f.IC, f.LEFT, 3)
    out.append(bytes(buf[:n]))
    return out


def _run(*args):
    return subprocess.run([sys.executable, "-m", "hipsync.cli", *args], capture_output=True,
                          text=True)


def test_decode_prints_json_lines(tmp_path):
    cap = tmp_path / "ok.hscap"
    cap.write_bytes(r.CAPTURE_MAGIC + b"".join(r.encode_capture_entry(1000 + i, fr)
                                               for i, fr in enumerate(_frames())))
    proc = _run("decode", str(cap))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [x["type"] for x in lines] == ["envelope", "event"]
    assert lines[0]["channels"][1][:3] == [1, 5, 9]
    assert lines[1] == {**lines[1], "kind": "IC", "side": "L", "stride": 3, "clock": 150}


def test_decode_reports_malformed_frames_and_goes_on(tmp_path):
    good, event = _frames()
    bad = bytearray(event)
    bad[9] ^= 0x40
    unknown = bytearray(event)
    unknown[0] = 0x37
    f.seal(unknown, len(unknown) - 2)
    data = (r.CAPTURE_MAGIC + r.encode_capture_entry(1, good) + r.encode_capture_entry(2, bytes(bad))
            + r.encode_capture_entry(3, bytes(unknown)) + r.encode_capture_entry(4, event))
    cap = tmp_path / "mixed.hscap"
    cap.write_bytes(data + b"\x01\x02")  # and a torn tail
    proc = _run("decode", str(cap))
    assert proc.returncode == 1
    assert [json.loads(x)["type"] for x in proc.stdout.splitlines()] == ["envelope", "event"]
    bad_offset = len(r.CAPTURE_MAGIC) + r.CAPTURE_ENTRY_SIZE + len(good)
    assert f"offset {bad_offset}: malformed frame: CRC mismatch" in proc.stderr
    assert "skipped: unknown frame type 0x37" in proc.stderr
    assert "truncated entry header" in proc.stderr


def test_decode_rejects_files_that_are_not_captures(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    proc = _run("decode", str(other))
    assert proc.returncode == 2 and "not a hipsync capture" in proc.stderr
    proc = _run("decode", str(tmp_path / "missing.hscap"))
    assert proc.returncode == 2 and "no such file" in proc.stderr
    proc = _run("decode")
    assert proc.returncode == 2 and "capture" in proc.stderr
