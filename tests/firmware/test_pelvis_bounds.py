"""The pelvis viper kernel keeps every intermediate below 2**30 (ESP32 small ints; viper ints are
32-bit there and wrap silently, while the unix port's are 64-bit and would hide an overflow).

The kernel's own source runs here in CPython: `ptr16`/`ptr32` become views with the same
zero-extending loads and truncating stores, and `int()` returns an int that raises as soon as any
arithmetic result reaches 2**30. Driven with worst-case input, it must also agree bit for bit with
the real MicroPython run, which shows the arithmetic has the same meaning on both."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from pelvis_reference import REPO, quat_from_pelvis_deg, run_device, synthesize_imu

LIMIT = 1 << 30


class Bounded(int):
    """An int whose every arithmetic result must stay within (-2**30, 2**30)."""

    def __new__(cls, value):
        value = int.__int__(value) if isinstance(value, int) else int(value)
        if not -LIMIT < value < LIMIT:
            raise OverflowError(f"intermediate {value} (2**{np.log2(abs(value)):.2f}) out of range")
        return super().__new__(cls, value)


def _wrap(name):
    op = getattr(int, name)

    def method(self, *args):
        result = op(self, *args)
        return result if result is NotImplemented or isinstance(result, bool) else Bounded(result)

    return method


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__lshift__",
              "__rlshift__", "__rshift__", "__rrshift__", "__and__", "__rand__", "__or__", "__ror__",
              "__xor__", "__rxor__", "__neg__", "__pos__", "__invert__", "__floordiv__",
              "__rfloordiv__", "__mod__", "__rmod__"):
    setattr(Bounded, _name, _wrap(_name))


class _Ptr:
    """viper ptr16/ptr32: unsigned loads, stores keep the low bits."""

    def __init__(self, obj, code, bits):
        self.view = memoryview(obj).cast("B").cast(code)
        self.mask = (1 << bits) - 1

    def __getitem__(self, i):
        return Bounded(self.view[int(i)])

    def __setitem__(self, i, value):
        self.view[int(i)] = int.__int__(value) & self.mask


def load_kernel_module():
    fake = types.ModuleType("micropython")
    fake.viper = lambda f: f
    fake.const = lambda v: v
    saved = sys.modules.get("micropython")
    sys.modules["micropython"] = fake
    try:
        sys.path.insert(0, str(REPO / "shared"))
        source = (REPO / "firmware" / "dsp" / "pelvis.py").read_text()
        module = types.ModuleType("pelvis_bounded")
        exec(compile(source, "pelvis.py", "exec"), module.__dict__)  # noqa: S102 - our own kernel
    finally:
        if saved is None:
            del sys.modules["micropython"]
        else:
            sys.modules["micropython"] = saved
    module.ptr16 = lambda obj: _Ptr(obj, "H", 16)
    module.ptr32 = lambda obj: _Ptr(obj, "I", 32)
    module.int = Bounded
    return module


def run_bounded(imu_counts, block=10, events=(), **kwargs):
    import array

    module = load_kernel_module()
    est = module.PelvisEstimator(**kwargs)
    imu = array.array("h", np.asarray(imu_counts, np.int16).tobytes())
    n = len(imu) // 6
    out = array.array("i", bytes(12 * n))
    ev = dict(events)
    mv = memoryview(imu)
    s = 0
    while s < n:
        if ev.get(s) == "begin":
            est.begin_standing_calibration()
        elif ev.get(s) == "end":
            est.end_standing_calibration()
        e = min([n, s + block] + [k for k in ev if s < k])
        est.process(mv[6 * s:6 * e], e - s, out, 3 * s)
        s = e
    return np.asarray(out).reshape(n, 3) / 100.0


def test_bounded_int_catches_an_overflow():
    with pytest.raises(OverflowError):
        Bounded(1 << 15) * (1 << 15)
    assert Bounded(-(1 << 29)) * 1 == -(1 << 29)


def _worst_case_input():
    rng = np.random.default_rng(7)
    parts = [
        np.tile([-32768, -32768, -32768, 32767, 32767, 32767], (150, 1)),  # init: 8 g, 1000 dps
        np.tile([32767, 32767, 32767, -32768, -32768, -32768], (150, 1)),
        rng.integers(-32768, 32768, size=(600, 6)),  # full-scale noise
        np.tile([0, 0, 4096, 90, -90, 90], (300, 1)),  # rest near the bias limit: bias learned
        np.tile([0, 0, 4096, -32768, 32767, -32768], (200, 1)),  # spin against a large bias
        np.tile([3500, 0, 2200, 0, 0, 0], (100, 1)),  # accepted band edge, far from estimate
    ]
    return np.vstack(parts).astype(np.int16)


@pytest.mark.parametrize("kwargs", [{}, {"rate_hz": 36, "gain": 3.0, "acc_reject_g": 1.9},
                                     {"rate_hz": 1000, "heading_tau_s": 0.2}])
def test_worst_case_input_stays_below_2_pow_30_and_matches_micropython(kwargs):
    imu = _worst_case_input()
    events = [(1300, "begin"), (1400, "end")]
    bounded = run_bounded(imu, block=25, events=events, **kwargs)
    device, _, _ = run_device(imu, block=25, events=events, **kwargs)
    np.testing.assert_array_equal(bounded, device)


def test_realistic_motion_matches_micropython_bit_for_bit():
    t = np.arange(0, 8, 0.01)
    q = quat_from_pelvis_deg(5 * np.sin(2 * np.pi * t), 3 * np.sin(4 * np.pi * t), 6 * np.sin(2 * np.pi * t))
    imu = synthesize_imu(q, gyro_bias_dps=(0.5, -0.3, 0.2), gyro_noise_dps=0.05, acc_noise_g=0.005)
    np.testing.assert_array_equal(run_bounded(imu), run_device(imu)[0])
