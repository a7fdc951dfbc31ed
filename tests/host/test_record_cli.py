"""`hipsync record`: what a user sees for each device answer, and the exit codes (cli.py: 2 wrong
argument, 1 device/link/store problem), never a traceback. The device is a scripted link here; the
real firmware behind the real CLI is tests/host/test_journey_home.py."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import pytest

from hipsync import cli
from hipsync.ble import CommandError
from hipsync.commands import _device
from hipwire import commands as cmd

DEVICE = bytes.fromhex("02a1b2c3d4e5")
NO_CAL = (cmd.OK, (0, 0, 0, 0, 0, 0, 0))
FULL_CAL = (cmd.OK, (cmd.CAL_HAS_STANDING, 1764600000, 412, 388, 151, 164, 1764600300))


class ScriptedLink:
    """Answers commands from a table op -> (status, values) or a list of them (one per call);
    raises CommandError for an error status, as hipsync.ble.DeviceLink does."""

    def __init__(self, answers: dict):
        self.answers = {cmd.OP_TIME_SYNC: (cmd.OK, (1000,)), cmd.OP_CAL_INFO: NO_CAL,
                        cmd.OP_SESSION_LIST: [(cmd.OK, ()), (cmd.OK, ())], **answers}
        self.sent: list[tuple] = []

    async def command(self, op, *args):
        self.sent.append((op, *args))
        a = self.answers[op]
        if isinstance(a, list):
            a = a.pop(0) if len(a) > 1 else a[0]
        if isinstance(a, Exception):
            raise a
        status, values = a
        if status != cmd.OK:
            raise CommandError(op, status)
        return status, values


@pytest.fixture
def device(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    holder: dict = {}

    @contextlib.asynccontextmanager
    async def connected(address=None, timeout_s=5.0, auto_reconnect=True):
        yield holder["link"]

    def authenticator(secrets=None):
        async def run(link):
            return DEVICE
        return run

    monkeypatch.setattr(_device, "connected", connected)
    monkeypatch.setattr(_device, "authenticator", authenticator)

    def use(answers: dict) -> ScriptedLink:
        holder["link"] = ScriptedLink(answers)
        return holder["link"]

    return use


def _main(capsys, *args):
    code = cli.main(["record", *args])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.out, out.err


def test_start_records_the_patient_and_says_what_calibration_the_recording_carries(device, capsys):
    link = device({cmd.OP_REC_START: (cmd.OK, (7,)), cmd.OP_CAL_INFO: FULL_CAL})
    code, out, err = _main(capsys, "start", "--patient", "P-9")
    assert code == 0, err
    assert "recording: session 7 of device 02a1b2c3d4e5 for patient P-9" in out
    assert "LED blinks slowly" in out
    assert ("calibration: standing 2025-12-01 14:40 UTC; MVCs l_gmed 412 uV, r_gmed 388 uV, "
            "l_es 151 uV, r_es 164 uV (2025-12-01 14:45 UTC)") in out
    assert link.sent[1][0] == cmd.OP_TIME_SYNC and link.sent[2] == (cmd.OP_REC_START,)
    from hipsync.sync import patients_of
    assert patients_of(DEVICE, [7, 8, 6]) == {7: "P-9", 8: "P-9", 6: None}


def test_start_without_a_calibration_says_the_report_will_need_one(device, capsys):
    device({cmd.OP_REC_START: (cmd.OK, (1,))})
    code, out, _ = _main(capsys, "start", "--patient", "P-9")
    assert code == 0 and "calibration: none" in out and "calibrate at the clinic first" in out


def test_a_link_drop_during_start_or_stop_is_resolved_by_asking_the_device(device, capsys):
    from hipsync.ble import CommandInterrupted

    device({cmd.OP_REC_START: CommandInterrupted(cmd.OP_REC_START),
            cmd.OP_REC_STATUS: (cmd.OK, (cmd.REC_RECORDING, 5, 0, 40, 9000))})
    code, out, err = _main(capsys, "start", "--patient", "P-9")
    assert code == 0 and "recording: session 5 " in out, err
    device({cmd.OP_REC_STOP: CommandInterrupted(cmd.OP_REC_STOP),
            cmd.OP_REC_STATUS: [(cmd.OK, (cmd.REC_RECORDING, 5, 61, 9000, 9000)),
                                (cmd.OK, (0, 0, 0, 0, 9000))]})
    code, out, err = _main(capsys, "stop")
    assert code == 0 and "stopped: session 5, 0:01:01" in out, err


def test_start_while_recording_is_refused(device, capsys):
    device({cmd.OP_REC_START: (cmd.ERR_BUSY, ()),
            cmd.OP_REC_STATUS: (cmd.OK, (cmd.REC_RECORDING, 3, 3725, 900000, 9000))})
    code, _, err = _main(capsys, "start", "--patient", "P-9")
    assert code == cli.EXIT_FAILED
    assert "already recording (session 3, 1:02:05): `hipsync record stop` first" in err


def test_a_full_flash_is_freed_of_synced_sessions_or_refused(device, capsys):
    synced = (cmd.OK, ((1, 5000, 1, cmd.SESSION_SYNCED, 0),))
    link = device({cmd.OP_SESSION_LIST: [synced, (cmd.OK, ())],
                   cmd.OP_REC_START: [(cmd.ERR_STORAGE, ()), (cmd.OK, (2,))],
                   cmd.OP_ERASE: (cmd.OK, (1,))})
    code, out, err = _main(capsys, "start", "--patient", "P-9")
    assert code == 0, err
    assert "erased 1 session(s) already synced" in out and "session 2" in out
    assert (cmd.OP_ERASE, cmd.ERASE_ALL_SYNCED) in link.sent
    link = device({cmd.OP_REC_START: (cmd.ERR_STORAGE, ())})  # nothing synced: nothing erased
    code, _, err = _main(capsys, "start", "--patient", "P-9")
    assert code == cli.EXIT_FAILED and "flash is full" in err and "hipsync sync --patient P-9" in err
    assert not any(s[0] == cmd.OP_ERASE for s in link.sent)


def test_start_for_a_patient_while_another_patients_sessions_wait_is_refused(device, capsys):
    from hipsync.sync import assign_patient
    assign_patient(DEVICE, 4, "P-OLD")
    pending = (cmd.OK, ((4, 5000, 1, 0, 0), (5, 4000, 2, 0, 0)))
    link = device({cmd.OP_SESSION_LIST: [pending, (cmd.OK, ())]})
    code, _, err = _main(capsys, "start", "--patient", "P-NEW")
    assert code == cli.EXIT_FAILED
    assert "sessions 4, 5 of patient P-OLD" in err and "hipsync sync --patient P-OLD" in err
    assert not any(s[0] == cmd.OP_REC_START for s in link.sent)


def test_stop_says_what_was_recorded_and_refuses_when_nothing_records(device, capsys):
    from hipsync.sync import assign_patient
    assign_patient(DEVICE, 3, "P-9")
    device({cmd.OP_REC_STATUS: (cmd.OK, (cmd.REC_RECORDING, 3, 125, 120 * 1024, 9000)),
            cmd.OP_REC_STOP: (cmd.OK, (3,))})
    code, out, _ = _main(capsys, "stop")
    assert code == 0 and "stopped: session 3, 0:02:05, 120 KiB" in out
    assert "`hipsync sync --patient P-9`" in out
    device({cmd.OP_REC_STATUS: (cmd.OK, (0, 0, 0, 0, 9000)), cmd.OP_REC_STOP: (cmd.OK, (0,))})
    code, _, err = _main(capsys, "stop")
    assert code == cli.EXIT_FAILED and "not recording: nothing to stop" in err


def test_status_shows_the_recording_the_flash_left_and_the_calibration(device, capsys):
    # 1 h recorded, 3.6 MB: 1000 B/s; 10 MiB free less the 96 KiB segment reserve
    device({cmd.OP_REC_STATUS: (cmd.OK, (cmd.REC_RECORDING, 12, 3600, 3_600_000, 10 * 1024)),
            cmd.OP_CAL_INFO: FULL_CAL})
    code, out, _ = _main(capsys, "status")
    assert code == 0
    assert "recording: yes, session 12 (started with the button), 1:00:00, 3516 KiB, 59 KiB/min" in out
    assert "flash free: 10.0 MiB, about 2.9 h of recording at this recording's rate" in out
    assert "calibration attached: standing 2025-12-01 14:40 UTC" in out
    device({cmd.OP_REC_STATUS: (cmd.OK, (cmd.REC_FLASH_FULL, 0, 0, 0, 40))})
    code, out, _ = _main(capsys, "status")
    assert "recording: no (the flash is full)" in out and "about 0.0 h" in out
    assert "a recording will carry: none" in out


def test_wrong_arguments_exit_2_and_no_device_exits_1(tmp_path):
    env = dict(os.environ, HIPSYNC_SECRETS=str(tmp_path / "s.json"),
               XDG_DATA_HOME=str(tmp_path / "data"))
    env.pop("HIPSYNC_AIR", None)

    def run(*args, extra=None):
        return subprocess.run([sys.executable, "-m", "hipsync.cli", *args], capture_output=True,
                              text=True, env={**env, **(extra or {})}, timeout=60)

    for args, message in ((["record"], "required: ACTION"),
                          (["record", "start"], "--patient"),
                          (["record", "start", "--patient", " "], "non-empty"),
                          (["record", "pause"], "invalid choice")):
        proc = run(*args)
        assert proc.returncode == cli.EXIT_USAGE and message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    from hipsync.sim.air import Air
    with Air() as air:  # a radio with no device on it
        proc = run("--virtual", "record", "status", extra={"HIPSYNC_AIR": air.address})
    assert proc.returncode == cli.EXIT_FAILED and "no hipsync device found" in proc.stderr
    assert "Traceback" not in proc.stderr
