# The standing calibration survives a restart (store/calibration.py, app.py). Runs in MicroPython.
import os

import bluetooth
import hardware_clock
from board import hw
from hipwire import commands as cmd
from store import calibration

import app as app_module

# in /tmp, one name per run: other test runs may share it
_PATH = "/tmp/hscal-%s.bin" % "".join("%02x" % b for b in os.urandom(4))
_M = (16000, 2500, -1800, 900)  # a mounting quaternion, Q14: norm within 1 % of 1


def _remove(path):
    for p in (path, path + ".tmp"):
        try:
            os.remove(p)
        except OSError:
            pass


def test_calibration_round_trips_and_anything_damaged_reads_as_none():
    _remove(_PATH)
    try:
        assert calibration.load(_PATH) is None  # missing
        calibration.save(_M, _PATH)
        assert calibration.load(_PATH) == _M
        calibration.save((16384, 0, 0, 0), _PATH)  # a second save replaces the first
        assert calibration.load(_PATH) == (16384, 0, 0, 0)
        with open(_PATH, "rb") as f:
            good = f.read()
        for bad in (good[:-1], good + b"\x00", b"", bytes([good[0] ^ 1]) + good[1:],
                    good[:6] + bytes([good[6] ^ 0x40]) + good[7:]):
            with open(_PATH, "wb") as f:
                f.write(bad)
            assert calibration.load(_PATH) is None, bad
        calibration.save((8000, 0, 0, 0), _PATH)  # not a rotation: refused on load
        assert calibration.load(_PATH) is None
    finally:
        _remove(_PATH)


def _app():
    hardware_clock.install(None)
    return app_module.App(hw.build(), bluetooth.BLE(), b"\x01\x02\x03\x04\x05\x06",
                          log=lambda m: None, calibration_path=_PATH)


def test_a_restarted_app_measures_against_the_saved_standing_pose():
    _remove(_PATH)
    try:
        a = _app()
        assert not a.pelvis.calibrated

        def held_still(p=a.pelvis):
            p.set_mounting(_M)
            return True

        a.pelvis.end_standing_calibration = held_still
        assert a._cmd_calibrate((cmd.CAL_STANDING_END,), 1) == (cmd.OK, (cmd.CAL_STANDING_END, 1))
        b = _app()  # the device restarted
        assert b.pelvis.calibrated and b.pelvis.mounting() == _M
        # a failed calibration keeps the saved one
        b.pelvis.end_standing_calibration = lambda: False
        assert b._cmd_calibrate((cmd.CAL_STANDING_END,), 1) == (cmd.OK, (cmd.CAL_STANDING_END, 0))
        assert calibration.load(_PATH) == _M
    finally:
        _remove(_PATH)
