# dsp.pelvis inside MicroPython: no allocation in process(), input formats, block independence.
# Numerical checks against the float reference are in test_pelvis*.py (CPython).
import array
import math

import micropython

from dsp.pelvis import PelvisEstimator


def _swaying(n, typecode="h"):
    # Slow sway about x and y with matching gyro, 1 g up, plus a vertical bounce: a moving input.
    imu = array.array(typecode, bytes((2 if typecode == "h" else 4) * 6 * n))
    for k in range(n):
        t = k / 100
        ob = 0.08 * math.sin(2 * math.pi * 0.7 * t)
        ti = 0.05 * math.sin(2 * math.pi * 1.1 * t)
        bounce = 0.15 * math.sin(2 * math.pi * 1.9 * t)
        imu[6 * k] = int(-math.sin(ti) * (4096 + 4096 * bounce))
        imu[6 * k + 1] = int(math.sin(ob) * 4096)
        imu[6 * k + 2] = int(math.cos(ti) * (4096 + 4096 * bounce))
        imu[6 * k + 3] = int(0.08 * 2 * math.pi * 0.7 * math.cos(2 * math.pi * 0.7 * t) * 57.3 * 32.8)
        imu[6 * k + 4] = int(0.05 * 2 * math.pi * 1.1 * math.cos(2 * math.pi * 1.1 * t) * 57.3 * 32.8)
        imu[6 * k + 5] = 40 if k % 3 else -40
    return imu


def test_process_allocates_nothing_in_steady_state():
    for typecode in ("h", "i"):
        est = PelvisEstimator()
        n = 50
        imu = _swaying(n, typecode)
        out = array.array("i", bytes(4 * 3 * n))
        est.process(imu, n, out, 0)  # first call: binds the buffer, initial orientation
        est.begin_standing_calibration()
        micropython.heap_lock()
        try:
            for _ in range(20):
                written = est.process(imu, n, out, 0)
                rejected = est.accel_rejected  # flags are readable without allocating too
                rest = est.at_rest
                init = est.initialising
        finally:
            micropython.heap_unlock()
        assert written == n
        assert init is False and rest is False and rejected in (True, False)
        assert est.end_standing_calibration() in (True, False)


def test_heap_lock_really_catches_allocation():
    # The proof above means something only if an allocation under heap_lock fails here.
    micropython.heap_lock()
    try:
        try:
            _ = [1, 2, 3]
            allocated = True
        except MemoryError:
            allocated = False
    finally:
        micropython.heap_unlock()
    assert not allocated


def test_int16_and_int32_buffers_give_identical_angles():
    n = 300
    out_h = array.array("i", bytes(12 * n))
    out_i = array.array("i", bytes(12 * n))
    PelvisEstimator().process(_swaying(n, "h"), n, out_h, 0)
    PelvisEstimator().process(_swaying(n, "i"), n, out_i, 0)
    assert out_h == out_i


def test_block_size_does_not_change_the_output():
    n = 240
    imu = _swaying(n)
    ref = array.array("i", bytes(12 * n))
    PelvisEstimator().process(imu, n, ref, 0)
    for block in (1, 7, 60):
        est = PelvisEstimator()
        out = array.array("i", bytes(12 * n))
        mv = memoryview(imu)
        s = 0
        while s < n:
            b = min(block, n - s)
            assert est.process(mv[6 * s:6 * (s + b)], b, out, 3 * s) == b
            s += b
        assert out == ref, block


def test_writes_only_from_out_start():
    n = 20
    out = array.array("i", [-7] * (3 * n + 5))
    assert PelvisEstimator().process(_swaying(n), n, out, 5) == n
    assert list(out[:5]) == [-7] * 5
    assert all(v != -7 for v in out[5:])


def test_rejects_short_buffers():
    est = PelvisEstimator()
    try:
        est.process(array.array("h", bytes(2 * 6 * 4)), 5, array.array("i", bytes(60)), 0)
        raised = False
    except ValueError:
        raised = True
    assert raised
    assert est.process(array.array("h", bytes(12)), 0, array.array("i", bytes(12)), 0) == 0


def test_flags_rest_and_bias():
    # Still, 1 g up, gyro bias (+20, -10, +5) counts: at rest after 1 s, bias learned.
    n = 600
    imu = array.array("h", bytes(12 * n))
    for k in range(n):
        imu[6 * k + 2] = 4096
        imu[6 * k + 3] = 20
        imu[6 * k + 4] = -10
        imu[6 * k + 5] = 5
    est = PelvisEstimator()
    out = array.array("i", bytes(12 * n))
    assert est.initialising is True
    est.process(imu, n, out, 0)
    assert est.initialising is False
    assert est.at_rest is True
    assert est.accel_rejected is False
    assert est.gyro_bias_counts == (20, -10, 5), est.gyro_bias_counts
