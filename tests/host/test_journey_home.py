"""A home recording from the clinic's calibration to the report, through the CLI as a user types it.

At the clinic the device is calibrated (standing pose, an MVC per muscle: the clinic protocol's
commands, run here with LiveSession) and given the accepted MVCs (SET_MVC). The device restarts
(flat battery) before the patient goes home. At home: `hipsync record start --patient P`, the
patient walks with it, `record stop`, back at the clinic `hipsync sync --patient P` and
`hipsync report SESSION`, which must use the device's calibration. Then a second recording with
the button only, whose flash is damaged (one flipped bit), and a third: the sync salvages the
second, keeps it on the device, syncs the third, and the therapist releases the second. The virtual device is the real firmware; waits are in device time (REC_STATUS),
so the test does not depend on the speed-up."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from hipsync import ble
from hipsync.acquire import LiveSession
from hipsync.commands._device import VIRTUAL_DEVICE_ID
from hipsync.provision import provision_virtual
from hipsync.secrets import SecretStore
from hipsync.sim import PatientConfig, scenario
from hipsync.sim import tasks as T
from hipsync.sim.air import Air, LinkModel
from hipsync.sim.bleak_backend import VIRTUAL_BACKEND
from hipsync.sim.virtual_device import REPO, VirtualDevice
from hipsync.store import open_store
from hipsync.sync import authenticate
from hipwire import commands as cmd

pytestmark = pytest.mark.slow
DEVICE_ID = bytes.fromhex(VIRTUAL_DEVICE_ID)
HIPSYNC = REPO / ".venv" / "bin" / "hipsync"
PATIENT = "HOME-042"
SPEED = 4.0  # device seconds per wall second; every wait below is in device time
WEAR_S = 45.0  # device time the patient wears it for the CLI recording
BUTTON_WEAR_S = 30.0
THIRD_WEAR_S = 10.0  # a recording after the damaged one


class User:
    """Runs `hipsync ...` as a user types it, against the virtual device on HIPSYNC_AIR."""

    def __init__(self, tmp: Path, air_address: str):
        self.env = dict(os.environ, HIPSYNC_AIR=air_address,
                        HIPSYNC_SECRETS=str(tmp / "secrets.json"),
                        HIPSYNC_STORE=str(tmp / "store.sqlite3"),
                        XDG_DATA_HOME=str(tmp / "data"))  # the sync archive and patient map
        self.env.pop("HIPSYNC_BACKEND", None)
        self.log: list[str] = []

    def __call__(self, *args: str, expect: int = 0, timeout: float = 120) -> str:
        t0 = time.monotonic()
        proc = subprocess.run([str(HIPSYNC), "--virtual", *args], capture_output=True, text=True,
                              env=self.env, timeout=timeout)
        self.log.append(f"$ hipsync {' '.join(args)}  ({time.monotonic() - t0:.1f} s)\n"
                        f"{proc.stdout}{proc.stderr}")
        assert proc.returncode == expect, "\n".join(self.log[-3:])
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc.stdout + proc.stderr

    def wait_recorded(self, device_s: float, timeout_s: float = 120) -> str:
        """Poll `record status` until the recording has run device_s of device time."""
        deadline = time.monotonic() + timeout_s
        while True:
            out = self("record", "status")
            m = re.search(r"recording: yes, .*?, (\d+):(\d\d):(\d\d)", out)
            assert m, out
            if int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3]) >= device_s:
                return out
            assert time.monotonic() < deadline, out
            time.sleep(1.0)


def _clinic(tmp: Path, air: Air, secret: bytes) -> dict[str, int]:
    """The clinic's calibration through the library, as the clinic protocol runs it: standing,
    the four MVCs, each accepted MVC given to the device. Returns the MVCs (uV)."""
    scen = _CLINIC[0]
    store = open_store(tmp / "clinic.sqlite3")

    async def go():
        os.environ["HIPSYNC_AIR"] = air.address  # the library reads the air's address there
        found = await ble.scan(timeout_s=5, backend=VIRTUAL_BACKEND, stop_after=1)
        assert found, "the virtual device was not found"
        link = ble.DeviceLink(found[0], backend=VIRTUAL_BACKEND, auto_reconnect=True)
        await link.connect()
        sid = store.create_session(PATIENT, found[0].address, notes="clinic calibration")

        async def auth(lk) -> None:
            await authenticate(lk, secret, DEVICE_ID)

        session = LiveSession(link, store, sid, authenticate=auth)
        await session.start()
        accepted = {"l_gmed": 0, "r_gmed": 0, "l_es": 0, "r_es": 0}
        for step in scen.steps:
            if step.name == "standing" or step.name.startswith("mvc_"):
                result = await session.run_step(step)
                assert result.value and result.value > 0, (step.name, result)
                if step.name.startswith("mvc_"):
                    accepted[step.name[4:]] = result.value
                    await link.command(cmd.OP_SET_MVC, *accepted.values())
        await session.stop()
        _, cal = await link.command(cmd.OP_CAL_INFO)
        await link.disconnect()
        assert cal[0] == cmd.CAL_HAS_STANDING and list(cal[2:6]) == list(accepted.values())
        return accepted

    before = os.environ.get("HIPSYNC_AIR")
    try:
        return asyncio.run(asyncio.wait_for(go(), 180))
    finally:
        store.close()
        if before is None:
            os.environ.pop("HIPSYNC_AIR", None)
        else:
            os.environ["HIPSYNC_AIR"] = before


_CLINIC: list = []


@pytest.fixture(scope="module")
def journey(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("journey")
    config = PatientConfig(weak_side="left", es_compensation="stance", seed=8)
    _CLINIC.append(scenario.build(config, tmp / "clinic-patient",
                                  tasks=scenario.clinic_tasks(walk_s=4.0)))
    home = scenario.build(config, tmp / "home-patient",
                          tasks=[T.rest(2.0), T.walking(WEAR_S + BUTTON_WEAR_S + 120.0)])
    fs = tmp / "device-fs"
    secret = provision_virtual(fs, DEVICE_ID, store=SecretStore(tmp / "secrets.json")).secret
    timings: dict[str, float] = {}
    with Air(LinkModel(speed=SPEED)) as air:
        user = User(tmp, air.address)
        with VirtualDevice(air, feed_path=_CLINIC[0].feed_path, fs_dir=fs,
                           device_id=VIRTUAL_DEVICE_ID) as clinic:
            clinic.wait_advertising(timeout_s=20)
            mvc = _clinic(tmp, air, secret)
        # the battery ran flat on the way home: the device starts again on the same flash,
        # worn by the patient walking about at home
        t0 = time.monotonic()
        with VirtualDevice(air, feed_path=home.feed_path, fs_dir=fs,
                           device_id=VIRTUAL_DEVICE_ID) as device:
            device.wait_advertising(timeout_s=20)
            out = {"start": user("record", "start", "--patient", PATIENT)}
            out["status"] = user.wait_recorded(WEAR_S)
            out["start_again"] = user("record", "start", "--patient", PATIENT, expect=1)
            out["stop"] = user("record", "stop")
            out["stop_again"] = user("record", "stop", expect=1)
            out["idle_status"] = user("record", "status")
            out["sync"] = user("sync", "--patient", PATIENT)
            timings["cli_recording_wall_s"] = time.monotonic() - t0
            # the second recording: the button only
            device.press_button(2.5)
            out["button_status"] = user.wait_recorded(BUTTON_WEAR_S)
            device.press_button(2.5)
            out["button_idle"] = user("record", "status")
            seg = fs / "log" / "s00002" / "00000.seg"
            flash = bytearray(seg.read_bytes())
            flash[len(flash) // 2] ^= 0x08  # the flash wears out under the second recording
            seg.write_bytes(bytes(flash))
            device.press_button(2.5)
            user.wait_recorded(THIRD_WEAR_S)
            device.press_button(2.5)
            out["sync_other"] = user("sync", "--patient", "SOMEONE-ELSE", expect=1)
            out["sync_button"] = user("sync", "--patient", PATIENT)
            out["sync_again"] = user("sync", "--patient", PATIENT)
            out["release_wrong"] = user("sync", "--patient", PATIENT, "--accept-damaged", "3",
                                        expect=1)
            out["release"] = user("sync", "--patient", PATIENT, "--accept-damaged", "2")
        timings["home_wall_s"] = time.monotonic() - t0
    sessions = {s["notes"]: s for s in _store_sessions(tmp)}
    return tmp, user, out, mvc, sessions, timings, fs


def _store_sessions(tmp: Path) -> list[dict]:
    store = open_store(tmp / "store.sqlite3", create=False)
    try:
        rows = []
        for s in store.list_sessions():
            meta = store.load_metadata(s["session_id"])
            rows.append({**s, "notes": meta.notes,
                         "calibration": store.load_calibration(s["session_id"])})
        return rows
    finally:
        store.close()


def test_a_home_recording_started_from_the_cli_is_synced_and_reported_with_the_device_calibration(
        journey):
    tmp, user, out, mvc, sessions, timings, fs = journey
    assert "recording: session 1 " in out["start"] and PATIENT in out["start"]
    assert "calibration: standing 20" in out["start"] and "MVCs l_gmed" in out["start"]
    assert f"(patient {PATIENT})" in out["status"] and "calibration attached: standing" in out["status"]
    assert re.search(r"flash free: [\d.]+ MiB, about [\d.]+ h of recording", out["status"])
    assert "already recording (session 1" in out["start_again"]
    assert "stopped: session 1" in out["stop"] and f"--patient {PATIENT}" in out["stop"]
    assert "not recording" in out["stop_again"]
    assert "recording: no" in out["idle_status"]
    assert "1 new session(s)" in out["sync"]
    session = sessions["synced from device session 1"]
    assert session["patient_id"] == PATIENT
    cal = session["calibration"]
    assert list(cal.standing_deg) == [0.0, 0.0, 0.0]
    assert cal.mvc_uv == {ch: float(v) for ch, v in mvc.items()}
    assert cal.source.startswith("device calibration (standing 20") and "MVCs 20" in cal.source
    report = user("report", str(session["session_id"]), "--out", str(tmp / "report"))
    assert "report:" in report
    doc = json.loads((tmp / "report" / f"session_{session['session_id']}.json").read_text())
    assert doc["session"]["calibration"]["source"] == cal.source
    assert doc["session"]["calibration"]["standing_deg"] == {"obliquity": 0.0, "tilt": 0.0,
                                                             "rotation": 0.0}
    norm = doc["session"]["normalisation"]
    assert norm["used"] == "MVC" and norm["mvc_uv"] == {ch: float(v) for ch, v in mvc.items()}
    left, right = doc["sides"]["left"], doc["sides"]["right"]
    assert left["strides"] >= 15 and right["strides"] >= 15, (left, right)


def test_a_recording_started_and_stopped_with_the_button_is_the_same_patients(journey):
    tmp, user, out, mvc, sessions, timings, fs = journey
    assert f"session 2 (patient {PATIENT})" in out["button_status"]
    assert "recording: no" in out["button_idle"]
    assert "sessions 2, 3 were recorded for HOME-042, not SOMEONE-ELSE" in out["sync_other"]
    # the damaged second recording is salvaged, kept on the device, and blocks nothing
    assert "1 new session(s), 1 damaged kept on the device" in out["sync_button"]
    assert re.search(r"session 2: DAMAGED on the device's flash: \d+ bytes unreadable in 1 "
                     r"place\. \d+ records salvaged -> store session \d+", out["sync_button"])
    assert "--accept-damaged 2" in out["sync_button"]
    assert re.search(r"session 3: \d+ bytes, \d+ frames -> store session", out["sync_button"])
    assert "0 new session(s), 1 damaged kept on the device" in out["sync_again"]
    assert "no unsynced session 3" in out["release_wrong"]
    assert re.search(r"session 2: .*\(damaged: \d+ bytes unreadable in 1 place; confirmed on "
                     r"the device\)", out["release"])
    session = sessions["synced from device session 2"]
    assert session["patient_id"] == PATIENT
    assert session["calibration"].source.startswith("device calibration (standing")
    assert sessions["synced from device session 3"]["patient_id"] == PATIENT
    user("report", str(session["session_id"]), "--out", str(tmp / "report-button"))
    doc = json.loads((tmp / "report-button" / f"session_{session['session_id']}.json").read_text())
    damage = doc["quality"]["flash_damage"]
    assert damage["bytes_lost"] > 0 and len(damage["lost"]) == 1
    assert any(w.startswith("Recovered from damaged device flash") for w in doc["warnings"])
    assert doc["quality"]["link"]["frames_lost"] >= 1
    # flash per recorded minute, from the device's own log
    seg = sorted((fs / "log" / "s00001").glob("*.seg"))
    size = sum(p.stat().st_size for p in seg)
    m = re.search(r"stopped: session 1, (\d+):(\d\d):(\d\d)", out["stop"])
    seconds = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])
    print(f"JOURNEY wall {timings['home_wall_s']:.1f} s (CLI recording part "
          f"{timings['cli_recording_wall_s']:.1f} s); session 1: {seconds} s of device time, "
          f"{size} B of flash, {size * 60 / seconds / 1024:.1f} KiB per recorded minute")
    print("\n".join(user.log))
