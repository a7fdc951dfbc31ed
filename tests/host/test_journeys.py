"""The clinic's journeys through the CLI, as a therapist types them, against a virtual device that a
second terminal runs (`hipsync virtual-device`), worn by a simulated patient who does what the
prompts ask.

One journey runs at 1x (the device's clock runs at wall-clock speed, a 90 s walk): nothing in the
host may depend on a speed-up. The others run the device faster; their checks are on device time
and on what was stored, never on how long they took."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hipsync.sim.terminal import VirtualDeviceCommand
from hipsync.store import open_store

pytestmark = pytest.mark.slow


def _device_time_at_start(stdout: str) -> float:
    line = next(ln for ln in stdout.splitlines() if "device time" in ln and "recording to" in ln)
    return float(line.rsplit("device time", 1)[1].split()[0])


def _tasks(store: Path, session: int = 1) -> dict[str, tuple[float, float]]:
    s = open_store(store, create=False).load_session(session)
    return {t.name: (t.t_start_s, t.t_end_s) for t in s.tasks}


@pytest.fixture
def device_1x(tmp_path):
    dev = VirtualDeviceCommand(tmp_path, "--speed", "1", "--seed", "4")
    yield dev
    dev.close()


def test_clinic_session_at_real_speed_on_a_device_already_on(device_1x, tmp_path):
    """At 1x: the device has been on (the patient walking about) before the therapist starts;
    the walk of 90 s completes, every step is placed at the device time it really ran."""
    time.sleep(8.0)  # the device is on, worn, before anyone connects
    store = tmp_path / "clinic.sqlite3"
    run = device_1x.hipsync("--store", str(store), "stream", "--patient", "P-1X",
                            "--protocol", "clinic", "--walk-s", "90")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    t_connect = _device_time_at_start(out)
    assert t_connect > 5.0  # device time is the device's, not 0 at connection
    assert "standing: calibration accepted" in out
    for muscle in ("l_gmed", "r_gmed", "l_es", "r_es"):
        assert f"mvc_{muscle}: MVC" in out and "x rest" in out
    tasks = _tasks(store)
    assert set(tasks) >= {"standing", "mvc_l_gmed", "mvc_r_gmed", "mvc_l_es", "mvc_r_es", "walk"}
    assert tasks["standing"][0] >= t_connect
    assert tasks["walk"][1] - tasks["walk"][0] >= 90.0
    assert [ln for ln in out.splitlines() if ln.startswith("  walk:") and "of 90 s" in ln]
    # the findings close the session, and the report is there for the asking
    assert "Left stance:" in out
    report = device_1x.hipsync("--store", str(store), "report", "1", "--out",
                               str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    doc = json.loads((tmp_path / "report" / "session_1.json").read_text()) \
        if (tmp_path / "report" / "session_1.json").exists() else \
        json.loads(next((tmp_path / "report").glob("*.json")).read_text())
    assert doc["sides"]["left"]["strides"] >= 30


def test_a_bad_mvc_and_a_restless_calibration_are_refused_and_asked_again(tmp_path):
    dev = VirtualDeviceCommand(tmp_path, "--speed", "6", "--seed", "5", "--idle", "stand",
                               "--bad-mvc", "l_gmed", "--restless-calibration")
    try:
        store = tmp_path / "s.sqlite3"
        run = dev.hipsync("--store", str(store), "stream", "--patient", "P-BAD", "--protocol",
                          "clinic", "--walk-s", "30")
    finally:
        dev.close()
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert "calibration refused by the device" in out and "standing: calibration accepted" in out
    assert "mvc_l_gmed: MVC" in out and "do it again" in out
    assert "(attempt 2 of 3)" in out
    tasks = _tasks(store)
    assert "standing:refused" in tasks and "standing" in tasks
    assert "mvc_l_gmed:refused" in tasks and "mvc_l_gmed" in tasks
    # the refused trial came first, and the accepted one is the one the report normalises to
    assert tasks["mvc_l_gmed:refused"][1] <= tasks["mvc_l_gmed"][0]


def test_a_device_on_for_minutes_then_a_short_stream(tmp_path):
    """`stream --duration 30` on a device that has run for minutes: 30 s of device time stored,
    starting where the device was, not at 0."""
    dev = VirtualDeviceCommand(tmp_path, "--speed", "8", "--seed", "6")
    try:
        time.sleep(25.0)  # at 8x: over three minutes of device time, walking about
        store = tmp_path / "s.sqlite3"
        run = dev.hipsync("--store", str(store), "stream", "--patient", "P-ON", "--duration", "30")
    finally:
        dev.close()
    assert run.returncode == 0, run.stderr[-3000:]
    t_connect = _device_time_at_start(run.stdout)
    assert t_connect > 120.0
    s = open_store(store, create=False).load_session(1)
    assert s.envelope_t_s[0] >= t_connect - 10.0  # what the device had buffered, at most
    assert s.envelope_t_s[-1] - s.envelope_t_s[0] >= 29.0


def test_the_clinic_session_survives_a_link_that_loses_a_tenth_of_its_packets(tmp_path):
    dev = VirtualDeviceCommand(tmp_path, "--speed", "4", "--seed", "8", "--idle", "stand",
                               "--loss", "0.10")
    try:
        store = tmp_path / "s.sqlite3"
        run = dev.hipsync("--store", str(store), "stream", "--patient", "P-LOSS", "--protocol",
                          "clinic", "--walk-s", "40")
        report = dev.hipsync("--store", str(store), "report", "1", "--out", str(tmp_path / "r"))
    finally:
        dev.close()
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "standing: calibration accepted" in run.stdout
    assert set(_tasks(store)) >= {"standing", "mvc_l_gmed", "mvc_r_gmed", "mvc_l_es", "mvc_r_es",
                                  "walk"}
    assert report.returncode == 0, report.stderr
    doc = json.loads(next((tmp_path / "r").glob("*.json")).read_text())
    assert "HIGH_LOSS" in json.dumps(doc)


def test_a_device_restart_during_the_walk_pauses_the_step(tmp_path):
    """The device resets (flat battery, watchdog) in the middle of the walk: the stream reconnects,
    the session keeps one time line, the walk goes on until it has its 40 s of data."""
    from hipsync.commands._device import Wearer, virtual_device
    from hipsync.secrets import SecretStore
    from hipsync.sim import PatientConfig

    secrets = tmp_path / "secrets.json"
    wearer = Wearer(PatientConfig(weak_side="left", es_compensation="stance", seed=9), None)
    with virtual_device(tmp_path / "fs", wearer=wearer, speed=4.0, idle="stand",
                        secrets=SecretStore(secrets)) as rig:
        env = {**os.environ, "HIPSYNC_SECRETS": str(secrets), "HIPSYNC_BACKEND": "virtual",
               "HIPSYNC_AIR": rig.air.address}
        env.pop("HIPSYNC_STORE", None)
        store = tmp_path / "s.sqlite3"
        proc = subprocess.Popen([sys.executable, "-m", "hipsync.cli", "--store", str(store),
                                 "stream", "--patient", "P-RST", "--protocol", "clinic",
                                 "--walk-s", "40"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                env=env)
        out: list[str] = []
        restarted = False
        for line in proc.stdout:
            out.append(line)
            if not restarted and line.startswith("  walk:") and " of 40 s" in line:
                rig.device.stop()  # the reset: the firmware process ends, its flash stays
                rig.device.start()
                rig.device.wait_advertising(timeout_s=30)
                restarted = True
        proc.wait(60)
    text = "".join(out)
    assert proc.returncode == 0, text[-3000:]
    assert restarted and "walk:" in text and "walked" in text
    reconnects = int(text.rsplit(" reconnects", 1)[0].rsplit(",", 1)[1].split()[0])
    assert reconnects >= 1
    walk = _tasks(store)["walk"]
    assert walk[1] - walk[0] >= 40.0
    s = open_store(store, create=False).load_session(1)
    assert s.metadata.link_stats["device_restarts"] >= 1
    # after the restart the angles still refer to the standing pose (the device's flash kept it)
    after = s.pelvis_t_s > walk[1] - 10
    assert abs(float(np.median(s.pelvis_deg[after, 0]))) < 3.0


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MiB filesystem of its own (tmpfs), so the store's disk can be filled and freed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill_disk(disk: Path) -> Path:
    ballast = disk / "ballast"
    with open(ballast, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    return ballast


def test_a_disk_that_fills_during_the_session_loses_nothing_once_space_returns(tmp_path, small_disk):
    """The store's disk fills as the clinic session starts and the therapist frees space before
    the walk: the session goes on, what arrived meanwhile is written, nothing is lost. The
    second time nobody frees it: the session still ends with what is stored and an exact count."""
    from hipsync.commands._device import Wearer, virtual_device
    from hipsync.secrets import SecretStore
    from hipsync.sim import PatientConfig

    secrets = tmp_path / "secrets.json"
    wearer = Wearer(PatientConfig(seed=12), None)
    store = small_disk / "s.sqlite3"
    with virtual_device(tmp_path / "fs", wearer=wearer, speed=4.0, idle="walk_about",
                        secrets=SecretStore(secrets)) as rig:
        env = {**os.environ, "HIPSYNC_SECRETS": str(secrets), "HIPSYNC_BACKEND": "virtual",
               "HIPSYNC_AIR": rig.air.address}
        env.pop("HIPSYNC_STORE", None)

        def stream(store: Path, *args: str) -> subprocess.Popen:
            return subprocess.Popen([sys.executable, "-m", "hipsync.cli", "--store", str(store),
                                     "stream", *args], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    text=True, env=env)

        proc = stream(store, "--patient", "P-DISK", "--protocol", "clinic", "--walk-s", "40")
        out: list[str] = []
        ballast = None
        told = False
        for line in proc.stdout:
            out.append(line)
            if ballast is None and "recording to" in line:
                time.sleep(1.0)
                ballast = _fill_disk(small_disk)  # full from the standing calibration on
            told = told or "cannot be written" in line
            if told and line.startswith("Step 6/6") and ballast.exists():
                ballast.unlink()  # the therapist makes room before the walk
        proc.wait(60)
        first = "".join(out)
        # the second session, into a new store (whose journal has not grown yet): the disk fills
        # and stays full
        ballast = None
        store2 = small_disk / "s2.sqlite3"
        proc = stream(store2, "--patient", "P-DISK", "--duration", "20")
        out = []
        for line in proc.stdout:
            out.append(line)
            if ballast is None and "recording to" in line:
                time.sleep(1.0)
                ballast = _fill_disk(small_disk)
        proc.wait(60)
        second = "".join(out)
    assert proc.returncode == 1, second[-3000:]
    assert "Traceback" not in first + second
    assert told, first[-3000:]
    assert "the store was full for a while" in first and "walked" in first, first[-3000:]
    ballast.unlink()  # (reading a WAL store needs room for its journal too)
    s = open_store(store, create=False).load_session(1)
    assert s.metadata.link_stats["frames_lost"] == 0
    steps = np.diff(s.envelope_t_s)
    assert steps.max() < 0.05, "a gap in the stored envelope"
    tasks = _tasks(store)
    walk = tasks["walk"]
    assert walk[1] - walk[0] >= 40.0 and s.envelope_t_s[-1] >= walk[1] - 0.5
    # the marks made while the disk was full waited and went in
    assert {"standing", "mvc_l_gmed", "mvc_r_gmed", "mvc_l_es", "mvc_r_es"} <= set(tasks)
    assert s.calibration.source.startswith("device calibration (standing")
    # the second: exactly what is stored and what is not
    msg = second.strip().splitlines()[-1]
    assert "session 1: the store" in msg and "could not be written since device time" in msg, msg
    stored, unwritten = (int(x) for x in
                         __import__("re").search(r"(\d+) frames are stored, (\d+) frames", msg)
                         .groups())
    assert unwritten > 0
    with open_store(store2, create=False) as st:
        rows = sum(st.conn.execute(f"SELECT count(*) FROM {t} WHERE session=1").fetchone()[0]
                   for t in ("batches", "events", "reps", "status"))
    assert rows == stored
