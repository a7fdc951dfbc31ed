# RepDetector inside MicroPython: no allocation with the heap locked, repetitions of a synthetic
# movement at their 10 % crossings, nothing from standing, walking or an MVC, truncation by end(),
# and the app's TASK command and REP frames. The simulated exam is in test_reps.py.
import math
from array import array

import micropython
from dsp.reps import RepDetector

from hipwire import commands as cmd
from hipwire import frames as wire

_FS = 100
_BLOCK = 5
_SQUAT = 3
_ABDUCTION = 4


def _rng(state):
    return (state * 1103515245 + 12345) & 0x7FFFFFFF


def movement(segments, seed=3):
    """(imu counts array('h'), angles cdeg array('i') and the gyro rates that make them, true reps
    [(start, low, end)]) for segments:
    ("rep", descent s, return s, tilt cdeg, obliquity cdeg) - a raised-cosine rise and fall (and a
    sacrum descent of 150 mm per 9 deg of tilt);
    ("still", s); ("walk", s) - obliquity +-300 cdeg at the stride, 0.4 g heel strikes;
    ("hold", ramp s, hold s, obliquity cdeg) - a held contraction like an MVC;
    ("stance", s, obliquity cdeg) - one leg: a 0.4 s lift to the obliquity, then sway (+-1.5 deg
    at 0.7 and 1.3 Hz), a 0.4 s return. Small noise."""
    n_total = 0
    # lengths in samples
    lens = []
    for seg in segments:
        if seg[0] == "rep":
            lens.append(int((seg[1] + seg[2]) * _FS))
        elif seg[0] == "hold":
            lens.append(int((2 * seg[1] + seg[2]) * _FS))
        elif seg[0] == "stance":
            lens.append(int((seg[1] + 0.8) * _FS))
        else:
            lens.append(int(seg[1] * _FS))
        n_total += lens[-1]
    imu = array("h", bytes(12 * n_total))
    ang = array("i", bytes(12 * n_total))
    truth = []
    state = seed
    i = 0
    prev_obl = 0.0
    prev_tilt = 0.0
    u10 = math.acos(0.8) / math.pi  # 10 % crossing of a raised-cosine ramp
    for seg, n in zip(segments, lens):
        kind = seg[0]
        if kind == "rep":
            d_n, r_n = int(seg[1] * _FS), int(seg[2] * _FS)
            truth.append((i + u10 * d_n, i + d_n, i + d_n + (1 - u10) * r_n))
        elif kind == "stance":
            truth.append((i, i + n // 2, i + n))
        for j in range(n):
            env = 0.0
            az = 4096
            obl = 0.0
            tilt = 0.0
            if kind == "rep":
                # the sacrum descends with the tilt: 150 mm at 9 deg; its vertical acceleration
                # (m/s^2) is -descent x the envelope's second derivative
                down_m = 0.15 * seg[3] / 900
                if j < d_n:
                    env = 0.5 * (1 - math.cos(math.pi * j / d_n))
                    curv = 0.5 * (math.pi * _FS / d_n) ** 2 * math.cos(math.pi * j / d_n)
                else:
                    env = 0.5 * (1 + math.cos(math.pi * (j - d_n) / r_n))
                    curv = -0.5 * (math.pi * _FS / r_n) ** 2 * math.cos(math.pi * (j - d_n) / r_n)
                az += int(-down_m * curv * 4096 / 9.80665)
                tilt = seg[3] * env
                obl = seg[4] * env
            elif kind == "walk":
                obl = 300 * math.sin(2 * math.pi * j / 110)
                tilt = 150 * math.sin(4 * math.pi * j / 110)
                if j % 55 < 8:
                    az += 1600
            elif kind == "hold":
                ramp = int(seg[1] * _FS)
                hold = int(seg[2] * _FS)
                if j < ramp:
                    env = 0.5 * (1 - math.cos(math.pi * j / ramp))
                elif j < ramp + hold:
                    env = 1.0
                else:
                    env = 0.5 * (1 + math.cos(math.pi * (j - ramp - hold) / ramp))
                obl = seg[3] * env
            elif kind == "stance":
                lift = 40
                if j < lift:
                    env = 0.5 * (1 - math.cos(math.pi * j / lift))
                elif j < n - lift:
                    env = 1.0
                else:
                    env = 0.5 * (1 + math.cos(math.pi * (j - n + lift) / lift))
                t = j / _FS
                obl = env * (seg[2] + 100 * math.sin(2 * math.pi * 0.7 * t)
                             + 50 * math.sin(2 * math.pi * 1.3 * t + 1.0))
                tilt = env * 80 * math.sin(2 * math.pi * 0.9 * t + 2.0)
            state = _rng(state)
            noise = ((state >> 16) & 0xFF) - 128
            k = 3 * (i + j)
            ang[k] = int(obl) + noise // 16
            ang[k + 1] = int(tilt) + noise // 32
            k = 6 * (i + j)
            imu[k + 2] = az + noise // 8
            # the roll and pitch rates of these angles: cdeg per sample = deg/s, 32.8 counts each
            imu[k + 3] = int((obl - prev_obl) * 32.8) + noise // 16
            imu[k + 4] = int((tilt - prev_tilt) * 32.8)
            prev_obl = obl
            prev_tilt = tilt
        i += n
    return imu, ang, truth


def feed(det, imu, ang, clock0=1000, record=None, lock=False):
    n_total = len(imu) // 6
    buf = array("h", bytes(12 * _BLOCK))
    pel = array("i", bytes(12 * _BLOCK))
    out = array("i", bytes(4 * 8))
    i = 0
    popped = 0
    if lock:
        micropython.heap_lock()
    try:
        while i + _BLOCK <= n_total:
            k = 0
            while k < 6 * _BLOCK:
                buf[k] = imu[6 * i + k]
                k += 1
            k = 0
            while k < 3 * _BLOCK:
                pel[k] = ang[3 * i + k]
                k += 1
            det.process(buf, _BLOCK, pel, 0, clock0 + 10 * i)
            while det.pop(out):
                popped += 1
                if record is not None:
                    record.append(tuple((out[j] - clock0) // 10 if j < 3 else out[j]
                                        for j in range(8)))
            i += _BLOCK
    finally:
        if lock:
            micropython.heap_unlock()
    return popped


def _squats(n=5):
    segs = [("still", 2.0)]
    for k in range(n):
        segs += [("rep", 1.2 + 0.1 * k, 1.0, 900, 300), ("still", 1.0)]
    return segs


def test_process_and_pop_allocate_nothing():
    imu, ang, truth = movement(_squats())
    det = RepDetector()
    det.begin(_SQUAT, wire.LEFT, 5, 1000)
    n = feed(det, imu, ang, lock=True)
    assert n == len(truth) == 5, n
    assert det.dropped == 0


def test_a_stance_hold_is_found_with_the_heap_locked():
    # between tasks the two-leg sway is learned; then one hold of 10 s on the left leg
    imu, ang, truth = movement([("still", 3.0), ("stance", 10.0, 300), ("still", 4.0)])
    det = RepDetector()
    rest, rest_ang, _ = movement([("still", 5.0)], seed=5)
    feed(det, rest, rest_ang)
    det.begin(1, wire.LEFT, 1, 1000)
    assert feed(det, imu, ang, lock=True) == 1
    det.begin(1, wire.LEFT, 1, 1000)
    got = []
    feed(det, imu, ang, record=got)
    assert len(got) == 1, got
    r, t = got[0], truth[0]
    # the sway starts and stops with the lift: within 0.2 s
    assert abs(r[0] - t[0]) <= 20 and abs(r[2] - t[2]) <= 20, (r, t)
    assert r[3] == 1 and r[4] == wire.LEFT and r[5] == 0 and r[6] == 0
    assert 150 <= r[7] <= 500, r  # the right side dropped 3 deg (+ the sway)


def test_a_hold_still_going_at_end_is_truncated_and_a_short_one_is_none():
    imu, ang, _ = movement([("still", 3.0), ("stance", 8.0, -200)])
    det = RepDetector()
    det.begin(1, wire.RIGHT, 1, 1000)
    n = len(imu) // 6 - 50  # cut before the foot comes down
    feed(det, imu[:6 * n], ang[:3 * n])
    assert det.pending() == 0
    det.end(1000 + 10 * n)
    out = array("i", bytes(32))
    assert det.pop(out) and out[6] & wire.REP_TRUNCATED and out[3] == 1, list(out)
    imu, ang, _ = movement([("still", 3.0), ("stance", 3.0, 300), ("still", 5.0)])
    det.begin(1, wire.LEFT, 1, 1000)
    assert feed(det, imu, ang) == 0  # 3 s: not a hold
    det.end(0)
    assert det.pending() == 0


def test_repetitions_are_found_at_their_10_percent_crossings():
    imu, ang, truth = movement(_squats())
    det = RepDetector()
    det.begin(_SQUAT, wire.RIGHT, 5, 1000)
    got = []
    feed(det, imu, ang, record=got)
    assert len(got) == len(truth), (got, truth)
    for k, (r, t) in enumerate(zip(got, truth)):
        # within 50 ms (the start and end are placed from the half-peak crossings)
        assert abs(r[0] - t[0]) <= 5 and abs(r[1] - t[1]) <= 5 and abs(r[2] - t[2]) <= 5, (r, t)
        assert r[3] == _SQUAT and r[4] == wire.RIGHT and r[5] == k
        assert r[6] == 0  # neither truncated nor shallow


def test_a_small_or_quick_movement_is_not_a_repetition():
    segs = [("still", 2.0), ("rep", 1.0, 1.0, 120, 40), ("still", 1.0),  # too small
            ("rep", 0.15, 0.15, 900, 300), ("still", 2.0)]  # too quick
    imu, ang, _ = movement(segs)
    det = RepDetector()
    det.begin(_SQUAT, wire.LEFT, 5, 1000)
    assert feed(det, imu, ang) == 0


def test_a_shallow_repetition_is_flagged():
    imu, ang, _ = movement([("still", 2.0), ("rep", 1.0, 1.0, 350, 150), ("still", 2.0)])
    det = RepDetector()
    det.begin(_SQUAT, wire.LEFT, 5, 1000)
    got = []
    feed(det, imu, ang, record=got)
    assert len(got) == 1 and got[0][6] & wire.REP_SHALLOW, got


def test_standing_walking_and_an_mvc_give_no_repetition():
    imu, ang, _ = movement([("still", 20.0), ("walk", 15.0), ("still", 2.0),
                            ("hold", 0.75, 3.0, 150), ("still", 2.0),
                            ("hold", 0.75, 3.0, -150), ("still", 2.0)])
    for task in (1, 2, 3, 4):
        det = RepDetector()
        det.begin(task, wire.LEFT, 5, 1000)
        got = []
        feed(det, imu, ang, record=got)
        assert got == [], (task, got)


def test_end_truncates_an_open_repetition_and_stops_the_search():
    imu, ang, _ = movement([("still", 2.0), ("rep", 1.0, 3.0, 900, 300)])
    det = RepDetector()
    det.begin(_SQUAT, wire.LEFT, 5, 1000)
    n = len(imu) // 6
    half = (200 + 150) // _BLOCK * _BLOCK  # past the low, before the end
    feed(det, imu[:6 * half], ang[:3 * half])
    assert det.pending() == 0
    det.end(1000 + 10 * half)
    out = array("i", bytes(32))
    assert det.pop(out)
    assert out[6] & wire.REP_TRUNCATED and out[5] == 0
    assert not det.active
    assert feed(det, imu, ang) == 0  # no search after end()
    assert n > half


def test_bad_task_or_side_is_refused():
    det = RepDetector()
    for task, side in ((0, 0), (5, 0), (1, 2)):
        try:
            det.begin(task, side, 5, 0)
        except ValueError:
            continue
        raise AssertionError((task, side))


# --- the app: TASK command, REP frames -------------------------------------------------------

def _app():
    import app as app_module
    import bluetooth
    import hardware_clock
    from board import hw

    clock = hardware_clock.install(None)
    board = hw.build()
    ble = bluetooth.BLE()
    bluetooth.sim_reset()
    a = app_module.App(board, ble, b"\x01\x02\x03\x04\x05\x06")
    a.start()
    return clock, a


def _send(a, op, token, *args):
    frame = cmd.encode_command(op, token, *args)
    n = a.control.handle(frame, 1, 244)
    return cmd.decode_response(bytes(a.control.reply[:n]))


def test_task_command_starts_repeats_and_stops_the_search():
    clock, a = _app()
    for _ in range(20):
        clock.advance(10)
        a.process_once()
    assert _send(a, cmd.OP_TASK, 1, 5, 0, 5)[2] == cmd.ERR_BAD_ARG  # no 5th task
    assert _send(a, cmd.OP_TASK, 2, 2, 7, 5)[2] == cmd.ERR_BAD_ARG  # no side 7
    r = _send(a, cmd.OP_TASK, 3, 2, wire.LEFT, 5)
    assert r[2] == cmd.OK
    started = r[3][0]
    assert a.reps.active and a.reps.task == 2
    for _ in range(30):
        clock.advance(10)
        a.process_once()
    again = _send(a, cmd.OP_TASK, 4, 2, wire.LEFT, 5)  # after a reconnect: nothing changes
    assert again[2] == cmd.OK and again[3][0] == started
    other = _send(a, cmd.OP_TASK, 5, 2, wire.RIGHT, 5)  # the other side: a new search
    assert other[2] == cmd.OK and other[3][0] > started and a.reps.side == wire.RIGHT
    stop = _send(a, cmd.OP_TASK, 6, 0, 0, 0)
    assert stop[2] == cmd.OK and not a.reps.active


def test_a_repetition_goes_out_as_a_rep_frame_with_the_heap_locked():
    clock, a = _app()
    kept = bytearray(64)
    kept_len = array("i", [0, 0])  # length, frames seen

    def record(buf, n):  # the flash log's place: copies, allocates nothing
        for k in range(n):
            kept[k] = buf[k]
        kept_len[0] = n
        kept_len[1] += 1

    a.streamer.record = record
    assert _send(a, cmd.OP_TASK, 1, _ABDUCTION, wire.RIGHT, 5)[2] == cmd.OK
    a.reps.begin(_ABDUCTION, wire.RIGHT, 5, 0)
    a.reps._push(10, 60, 120, 0, -150)  # as the detector queues one
    micropython.heap_lock()
    try:
        a._send_reps()
    finally:
        micropython.heap_unlock()
    assert kept_len[1] == 1
    got = [bytes(kept[:kept_len[0]])]
    reps = [f for f in got if wire.check(f)[0] == wire.REP]
    assert len(reps) == 1
    start = wire.check(reps[0])[3]
    task, side, index, flags, low, end, depth = wire.decode_rep(reps[0])
    assert (task, side, index, flags, depth) == (_ABDUCTION, wire.RIGHT, 0, 0, -150)
    assert end - low == 600 and low > 0 and start >= 0
