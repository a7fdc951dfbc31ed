"""The `hipsync` commands as a user runs them: output, files, exit codes, error messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hipsync.analysis import synthetic
from hipsync.store import open_store


def _run(*args, env_extra=None, timeout=180):
    env = dict(os.environ)
    env.pop("HIPSYNC_STORE", None)
    env.pop("HIPSYNC_AIR", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "hipsync.cli", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def store_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("store") / "s.sqlite3"
    store = open_store(path)
    store.save_session_data(synthetic.make_session(synthetic.weak_left_compensating(seed=2)))
    return path


def test_sessions_report_and_export(store_file, tmp_path):
    proc = _run("--store", str(store_file), "sessions")
    assert proc.returncode == 0 and "   1  " in proc.stdout
    proc = _run("--store", str(store_file), "report", "1", "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r" / "session_1.html").stat().st_size > 5000
    assert (tmp_path / "r" / "session_1.json").exists()
    proc = _run("--store", str(store_file), "export", "1", "--format", "edf", "--out",
                str(tmp_path / "e"))
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).suffix == ".edf" and Path(proc.stdout.strip()).exists()
    proc = _run("--store", str(store_file), "export", "1", "--out", str(tmp_path / "c"))
    names = sorted(p.name for p in (tmp_path / "c").glob("*.csv"))
    # health data: nobody but the owner may read what the CLI writes
    written = [*(tmp_path / "c").iterdir(), *(tmp_path / "e").iterdir()]
    assert written and all(f.stat().st_mode & 0o077 == 0 for f in written), \
        [(f.name, oct(f.stat().st_mode)) for f in written]
    assert proc.returncode == 0 and names == [f"session_1_{k}.csv" for k in
                                              ("envelope", "events", "pelvis", "reps", "status",
                                               "strides", "tasks")], names


@pytest.mark.parametrize("args, code, message", [
    (["report", "99"], 2, "No session 99"),
    (["report"], 2, "either a SESSION id or --patient"),
    (["report", "1", "--patient", "X"], 2, "either a SESSION id or --patient"),
    (["report", "--patient", "NOBODY"], 2, "NOBODY"),
    (["export", "1", "--format", "wav"], 2, "invalid choice"),
    (["stream"], 2, "--patient"),
    (["frobnicate"], 2, "invalid choice"),
    (["stream", "--patient", "P", "--duration", "nan"], 2, "--duration"),
    (["stream", "--patient", "P", "--protocol", "clinic", "--walk-s", "inf"], 2, "--walk-s"),
    (["stream", "--patient", "P", "--protocol", "clinic", "--duration", "30"], 2, "--walk-s"),
    (["demo", "--walk-s", "inf"], 2, "--walk-s"),
    (["demo", "--speed", "nan"], 2, "--speed"),
    (["virtual-device", "--minutes", "nan"], 2, "--minutes"),
])
def test_wrong_arguments_get_a_clear_error(store_file, args, code, message):
    proc = _run("--store", str(store_file), *args)
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_file_that_is_not_a_store_is_refused_and_left_alone(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list")
    proc = _run("--store", str(notes), "sessions")
    assert proc.returncode == 1 and "not a readable hipsync session store" in proc.stderr
    assert notes.read_text() == "shopping list"
    proc = _run("--store", str(tmp_path / "missing.sqlite3"), "report", "1")
    assert proc.returncode == 1 and "No session store" in proc.stderr


def test_report_into_a_folder_that_cannot_be_written(store_file, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = _run("--store", str(store_file), "report", "1", "--out", str(blocker / "sub"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and proc.stderr.strip()


@pytest.mark.slow
def test_stream_and_sync_reach_a_virtual_device(tmp_path):
    env = {"HIPSYNC_SECRETS": str(tmp_path / "secrets.json")}
    store = tmp_path / "v.sqlite3"
    proc = _run("--virtual", "--store", str(store), "stream", "--patient", "P-CLI", "--duration",
                "4", env_extra=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "frames stored" in proc.stdout and " 0 lost" in proc.stdout
    proc = _run("--store", str(store), "sessions")
    assert "P-CLI" in proc.stdout
    proc = _run("--virtual", "--store", str(store), "sync", "--patient", "P-CLI", env_extra=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "0 new session(s)" in proc.stdout


def test_stream_dashboard_writes_a_line_a_second_to_a_log_and_redraws_a_terminal(monkeypatch):
    import io
    from types import SimpleNamespace

    from hipsync.commands import stream
    from hipsync.protocol.assembler import LinkStats

    session = SimpleNamespace(device_time_s=1.0, assembler=SimpleNamespace(stats=LinkStats()),
                              writer=SimpleNamespace(error=None, rows_held=0))
    now = [100.0]
    monkeypatch.setattr(stream.time, "monotonic", lambda: now[0])

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    for out, per_s in ((io.StringIO(), 1), (Tty(), 4)):
        board = stream.Dashboard(out)
        for _ in range(160):  # 4 s of calls every 25 ms
            board.draw(session)
            now[0] += 0.025
        draws = out.getvalue().count("device time")
        assert per_s * 4 - 1 <= draws <= per_s * 4 + 1, (per_s, draws)
    # a store that cannot be written is what a log line says first
    log = io.StringIO()
    session.writer = SimpleNamespace(error=OSError("database or disk is full"), rows_held=812)
    stream.Dashboard(log).draw(session)
    assert log.getvalue() == ("STORE NOT WRITABLE (database or disk is full): 812 frames held in "
                              "memory; free disk space\n")
