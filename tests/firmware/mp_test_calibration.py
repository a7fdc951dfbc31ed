# The standing calibration and the MVCs survive a restart (store/calibration.py, app.py), and every
# recording starts with a record of them. Runs in MicroPython.
import os
import struct

import app as app_module
import bluetooth
import hardware_clock
from board import hw
from store import calibration

from hipwire import commands as cmd
from hipwire import records
from hipwire.frames import crc16

# in /tmp, one name per run: other test runs may share it
_TAG = "".join("%02x" % b for b in os.urandom(4))
_PATH = "/tmp/hscal-%s.bin" % _TAG
_M = (16000, 2500, -1800, 900)  # a mounting quaternion, Q14: norm within 1 % of 1
_MVC = (412, 388, 151, 164)


def _remove(path):
    for p in (path, path + ".tmp"):
        try:
            os.remove(p)
        except OSError:
            pass


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def test_calibration_and_mvcs_round_trip_and_anything_damaged_reads_as_nothing():
    _remove(_PATH)
    try:
        empty = calibration.load(_PATH)  # missing
        assert empty.mounting is None and not empty.has_mvc() and empty.flags() == 0
        full = calibration.Calibration(_M, 1764600000, _MVC, 1764600300)
        calibration.save(full, _PATH)
        assert calibration.load(_PATH) == full
        assert len(_read(_PATH)) == 39
        mvc_only = calibration.Calibration(None, 0, (0, 250, 0, 0), 1764600400)
        calibration.save(mvc_only, _PATH)  # a second save replaces the first
        got = calibration.load(_PATH)
        assert got == mvc_only and got.mounting is None and got.mvc_uv == [0, 250, 0, 0]
        calibration.save(full, _PATH)
        good = _read(_PATH)
        for bad in (good[:-1], good + b"\x00", b"", bytes([good[0] ^ 1]) + good[1:],
                    good[:6] + bytes([good[6] ^ 0x40]) + good[7:],
                    good[:20] + bytes([good[20] ^ 1]) + good[21:]):
            _write(_PATH, bad)
            assert calibration.load(_PATH) == calibration.Calibration(), bad
        calibration.save(calibration.Calibration((8000, 0, 0, 0)), _PATH)  # not a rotation
        assert calibration.load(_PATH).mounting is None
    finally:
        _remove(_PATH)


def test_the_first_file_format_still_loads_as_a_standing_calibration_without_mvcs():
    _remove(_PATH)
    try:
        old = bytearray(struct.pack("<4s4hH", b"HSC1", _M[0], _M[1], _M[2], _M[3], 0))
        struct.pack_into("<H", old, 12, crc16(old, 12))
        _write(_PATH, old)
        got = calibration.load(_PATH)
        assert got.mounting == _M and got.standing_unix == 0 and not got.has_mvc()
        _write(_PATH, old[:13])  # torn
        assert calibration.load(_PATH).mounting is None
    finally:
        _remove(_PATH)


def test_a_save_cut_short_leaves_the_previous_file():
    _remove(_PATH)
    try:
        full = calibration.Calibration(_M, 1764600000, _MVC, 1764600300)
        calibration.save(full, _PATH)
        # power lost while the next one was written: only its temporary file is torn
        _write(_PATH + ".tmp", _read(_PATH)[:17])
        assert calibration.load(_PATH) == full
        calibration.save(calibration.Calibration(_M, 1764700000, _MVC, 1764600300), _PATH)
        assert calibration.load(_PATH).standing_unix == 1764700000
    finally:
        _remove(_PATH)


def _app(**kw):
    import gc

    gc.collect()  # the app a test restarts from is garbage by now: a restart in one heap
    hardware_clock.install(None)
    return app_module.App(hw.build(), bluetooth.BLE(), b"\x01\x02\x03\x04\x05\x06",
                          log=lambda m: None, calibration_path=_PATH, **kw)


def _hold_still(a):
    def held_still(p=a.pelvis):
        p.set_mounting(_M)
        return True

    a.pelvis.end_standing_calibration = held_still


def test_a_restarted_app_keeps_the_standing_pose_and_the_mvcs():
    _remove(_PATH)
    try:
        a = _app()
        assert not a.pelvis.calibrated
        assert a._cmd_cal_info((), 1) == (cmd.OK, (0, 0, 0, 0, 0, 0, 0))
        a._cmd_time_sync((1764600000500,), 1)  # the clinic's host: unix ms
        _hold_still(a)
        assert a._cmd_calibrate((cmd.CAL_STANDING_END,), 1) == (cmd.OK, (cmd.CAL_STANDING_END, 1))
        assert a._cmd_set_mvc(_MVC, 1) == cmd.OK
        assert a._cmd_set_mvc((1 << 30, 0, 0, 0), 1) == cmd.ERR_BAD_ARG  # nothing changed
        a = None
        b = _app()  # the device restarted: no TIME_SYNC since, the times come from the file
        assert b.pelvis.calibrated and b.pelvis.mounting() == _M
        status, (flags, t_st, l_g, r_g, l_e, r_e, t_mvc) = b._cmd_cal_info((), 1)
        assert status == cmd.OK and flags == cmd.CAL_HAS_STANDING
        assert (l_g, r_g, l_e, r_e) == _MVC
        assert 1764600000 <= t_st <= 1764600002 and 1764600000 <= t_mvc <= 1764600002
        # a failed calibration keeps the saved one
        b.pelvis.end_standing_calibration = lambda: False
        assert b._cmd_calibrate((cmd.CAL_STANDING_END,), 1) == (cmd.OK, (cmd.CAL_STANDING_END, 0))
        assert calibration.load(_PATH).mounting == _M
        # new MVCs replace the four (0 = none); the standing calibration stays
        assert b._cmd_set_mvc((0, 300, 0, 0), 1) == cmd.OK
        b = None
        c = _app()
        assert c.pelvis.calibrated and c.cal.mvc_uv == [0, 300, 0, 0]
        assert c.cal.mvc_unix == 0  # b had no TIME_SYNC: when they were given is unknown
    finally:
        _remove(_PATH)


def _recording_app(root):
    import gc

    from link.sync_service import SyncService
    from security.authenticator import Authenticator
    from store.flashlog import FlashLog

    gc.collect()
    clock = hardware_clock.install(None)
    board = hw.build()
    svc = SyncService(FlashLog(root), Authenticator(b"\x11" * 32, board.device_id),
                      clock=lambda: board.drdy_counter.value() - 1)
    a = app_module.App(board, bluetooth.BLE(), board.device_id, auth=svc, sessions=svc,
                       log=lambda msg: None, calibration_path=_PATH)
    a.start()
    return clock, a, svc


def _first_records(svc, sid, n=3):
    info = svc.log.find(sid)
    reader = svc.log.open_reader(sid)
    buf = bytearray(info[1])
    mv = memoryview(buf)
    got = 0
    while got < len(buf):
        k = reader.read_into(got, mv[got:], len(buf) - got)
        if not k:
            break
        got += k
    reader.close()
    frames, end, why = records.scan_records(buf)
    assert why is None
    return [f for _, f in frames[:n]]


def test_every_recording_starts_with_a_record_of_the_calibration():
    from binascii import hexlify

    root = "/tmp/hipsync-mp-calrec-" + hexlify(os.urandom(6)).decode()
    _remove(_PATH)
    try:
        clock, a, svc = _recording_app(root)
        for _ in range(5):
            clock.advance(100)
            a.step()
        # nothing calibrated: the record says so
        sid = svc.start_recording()
        for _ in range(20):
            clock.advance(100)
            a.step()
        svc.log.stop()
        first = _first_records(svc, sid)
        assert records.is_calibration(first[0]) and not records.is_calibration(first[1])
        t0, flags, t_st, mvc, t_mvc = records.decode_calibration(first[0])
        assert flags == 0 and t_st == 0 and mvc == (0, 0, 0, 0) and t_mvc == 0
        assert 400 <= t0 <= 600  # the device clock at the start
        # the clinic calibrates; the device restarts; a recording at home carries it
        a._cmd_time_sync((1764600000000,), 1)
        _hold_still(a)
        a._cmd_calibrate((cmd.CAL_STANDING_END,), 1)
        a._cmd_set_mvc(_MVC, 1)
        a = svc = clock = None
        clock, b, svc = _recording_app(root)
        for _ in range(5):
            clock.advance(100)
            b.step()
        sid2 = svc.start_recording()
        assert sid2 == sid + 1
        for _ in range(10):
            clock.advance(100)
            b.step()
        svc.log.stop()
        t0, flags, t_st, mvc, t_mvc = records.decode_calibration(_first_records(svc, sid2)[0])
        assert flags == cmd.CAL_HAS_STANDING and mvc == _MVC
        assert 1764600000 <= t_st <= 1764600001 and 1764600000 <= t_mvc <= 1764600001
    finally:
        _remove(_PATH)
        _remove_tree(root)


def _remove_tree(path):
    try:
        entries = list(os.ilistdir(path))
    except OSError:
        return
    for name, kind, *_ in entries:
        full = path + "/" + name
        if kind == 0x4000:
            _remove_tree(full)
        else:
            os.remove(full)
    os.rmdir(path)


def test_a_stranger_can_neither_set_nor_read_the_calibration():
    from binascii import hexlify

    root = "/tmp/hipsync-mp-calauth-" + hexlify(os.urandom(6)).decode()
    _remove(_PATH)
    try:
        clock, a, svc = _recording_app(root)
        for op, args in ((cmd.OP_SET_MVC, (1, 2, 3, 4)), (cmd.OP_CAL_INFO, ()),
                         (cmd.OP_REC_STATUS, ())):
            n = a.control.handle(cmd.encode_command(op, 9, *args), 1, 244)
            assert cmd.decode_response(bytes(a.control.reply[:n]))[2] == cmd.ERR_AUTH_REQUIRED
        assert a.cal.mvc_uv == [0, 0, 0, 0] and calibration.load(_PATH).mvc_uv == [0, 0, 0, 0]
    finally:
        _remove(_PATH)
        _remove_tree(root)
