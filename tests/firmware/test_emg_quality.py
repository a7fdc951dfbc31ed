"""SignalQuality (firmware/dsp/emg_quality.py) in MicroPython on synthetic situations: each
channel of a 4-channel recording plays one situation, and the flags of each 1 s window are
compared with what the situation must raise."""

from __future__ import annotations

import emg_reference as R
import micropython_port
import numpy as np
import pytest

from hipwire import quality

FS = R.FS_HZ
N = 4 * FS  # 4 windows


def run_quality(codes: np.ndarray, tmp_path, *, lead_off: np.ndarray | None = None, block: int = 25,
                mains_hz: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Feed codes (n x 4) in blocks; lead_off[k] is the status bitmask for block k. Returns the
    flags and mains_uv (windows x 4) read after each completed window."""
    n = len(codes)
    n_blocks = -(-n // block)
    lead_off = np.zeros(n_blocks, int) if lead_off is None else lead_off
    assert len(lead_off) == n_blocks
    path = tmp_path / "codes.bin"
    codes.astype("<i4").tofile(path)
    text = micropython_port.check_code(f"""
import array
from dsp.emg_quality import SignalQuality
codes = array.array('i', bytes(4 * 4 * {n}))
with open({str(path)!r}, 'rb') as f:
    f.readinto(codes)
lead = {lead_off.tolist()!r}
q = SignalQuality(mains_hz={mains_hz})
mv = memoryview(codes)
for k in range({n_blocks}):
    m = min({block}, {n} - k * {block})
    q.process(mv[k * {block * 4}:], m, lead[k])
    if (k * {block} + m) // {FS} > (k * {block}) // {FS}:
        print('W', *[q.flags(c) for c in range(4)], *[q.mains_uv(c) for c in range(4)])
""")
    rows = np.array([[int(v) for v in line.split()[1:]] for line in text.splitlines()
                     if line.startswith("W ")])
    return rows[:, :4], rows[:, 4:]


def t_s(n: int = N) -> np.ndarray:
    return np.arange(n) / FS


def clean(seed: int, rms_uv: float = 150, offset_uv: float = 30_000) -> np.ndarray:
    return R.semg_uv(N, rms_uv=rms_uv, seed=seed) + offset_uv


def test_each_problem_raises_its_flag_and_clean_semg_none(tmp_path):
    t = t_s()
    uv = np.stack([
        clean(1),  # clean sEMG on an electrode offset
        clean(2) + 300 * np.sin(2 * np.pi * 50 * t),  # strong mains
        clean(3, offset_uv=199_700),  # electrode offset at the rail: sEMG peaks clip
        np.full(N, 12_345.0),  # constant: dead channel
    ], axis=1)
    flags, mains = run_quality(R.uv_to_codes(uv), tmp_path)
    assert flags.shape == (4, 4)
    assert np.all(flags[:, 0] == 0), flags[:, 0]
    assert np.all(flags[:, 1] == quality.MAINS), flags[:, 1]
    assert np.all(flags[:, 2] == quality.CLIPPING), flags[:, 2]
    assert np.all(flags[:, 3] == quality.FLAT), flags[:, 3]
    # mains amplitude estimate: 300 uV to within 10 %; clean channels well below the limit
    assert np.all(np.abs(mains[1:, 1] - 300) <= 30), mains[:, 1]
    assert np.all(mains[:, 0] < 25) and np.all(mains[:, 3] == 0), mains


def test_motion_lead_off_and_60_hz(tmp_path):
    t = t_s()
    motion = 4000 * np.sin(2 * np.pi * 1.5 * t) * (t >= 2)  # 4 mV cable swings from 2 s
    uv = np.stack([
        clean(4) + motion,
        clean(5),  # lead-off reported by the AFE in window 1 only
        clean(6) + 200 * np.sin(2 * np.pi * 60 * t),  # 60 Hz mains
        clean(7, rms_uv=250, offset_uv=-80_000),  # strong but clean contraction
    ], axis=1)
    lead = np.zeros(N // 25, int)
    lead[FS // 25 + 3:FS // 25 + 5] = 0b0010
    flags, mains = run_quality(R.uv_to_codes(uv), tmp_path, lead_off=lead, mains_hz=60)
    assert list(flags[:, 0]) == [0, 0, quality.MOTION, quality.MOTION]
    assert list(flags[:, 1]) == [0, quality.LEAD_OFF, 0, 0]
    assert np.all(flags[:, 2] == quality.MAINS), flags[:, 2]
    assert np.all(np.abs(mains[1:, 2] - 200) <= 20), mains[:, 2]
    assert np.all(flags[:, 3] == 0), (flags[:, 3], mains[:, 3])


def test_a_step_to_the_rail_is_clipping_and_motion_not_mains(tmp_path):
    codes = R.uv_to_codes(np.stack([clean(11 + c) for c in range(4)], axis=1))
    codes[2 * FS + 400:2 * FS + 420, 1] = R.CODE_MAX  # 20 ms at the positive rail
    flags, _ = run_quality(codes, tmp_path)
    assert list(flags[:, 1]) == [0, 0, quality.CLIPPING | quality.MOTION, quality.MOTION]
    assert np.all(flags[:, [0, 2, 3]] == 0)


@pytest.mark.parametrize("block", [1, 7, 1000])
def test_flags_do_not_depend_on_block_size(tmp_path, block):
    t = t_s()
    uv = np.stack([clean(8) + 100 * np.sin(2 * np.pi * 50 * t), clean(9),
                   clean(10) + 2000 * np.sin(2 * np.pi * 3 * t), np.zeros(N)], axis=1)
    codes = R.uv_to_codes(uv)
    ref_flags, ref_mains = run_quality(codes, tmp_path, block=25)
    flags, mains = run_quality(codes, tmp_path, block=block)
    assert np.array_equal(flags, ref_flags) and np.array_equal(mains, ref_mains)
    assert ref_flags[-1, 0] == quality.MAINS and ref_flags[-1, 2] == quality.MOTION


def test_strong_clean_semg_is_not_mains_and_mains_under_it_still_is(tmp_path):
    # broadband sEMG has power at 50 Hz too: a strong contraction must not read as mains pick-up,
    # while a real mains line under the same contraction still must
    t = t_s()
    uv = np.stack([clean(21, rms_uv=500), clean(22, rms_uv=800),
                   clean(23, rms_uv=500) + 80 * np.sin(2 * np.pi * 50 * t), clean(24, rms_uv=30)],
                  axis=1)
    flags, mains = run_quality(R.uv_to_codes(uv), tmp_path)
    assert np.all(flags[:, [0, 1, 3]] & quality.MAINS == 0), (flags, mains)
    assert np.all(mains[:, [0, 1]] < 30), mains  # the 50 Hz band's share of the sEMG itself
    # 80 uV reads over the 50 uV limit from the second window (the first settles the filter) and
    # is flagged once two windows in a row read over it
    assert np.all(flags[2:, 2] & quality.MAINS), (flags, mains)
    assert np.all(np.abs(mains[1:, 2] - 80) <= 20), mains
