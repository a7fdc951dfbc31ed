# EMG chain and signal quality inside MicroPython: no allocation in process(), block-size
# independence, reset, retuning, interface contract. Numerical comparisons with numpy/scipy
# live in test_emg_envelope.py / test_emg_quality.py.
import array

import micropython
from dsp.emg_envelope import EnvelopeChain
from dsp.emg_quality import SignalQuality

from hipwire import quality

_NCH = 4


def _signal(n_frames, seed=12345):
    # Deterministic pseudo-random "sEMG" (+-40 uV noise riding on channel-specific DC offsets)
    # from a 24-bit LCG; codes in the AFE's signed 24-bit range.
    codes = array.array("i", bytes(4 * _NCH * n_frames))
    s = seed
    for i in range(n_frames * _NCH):
        s = (s * 1103515245 + 12345) & 0x7FFFFFFF
        codes[i] = ((s >> 8) & 0xFFFF) * 50 - 0x190000 + (i % _NCH) * 100000
    return codes


def _envelope(codes, n_frames, sizes):
    chain = EnvelopeChain()
    out = array.array("i", bytes(4 * _NCH * (n_frames // 10 + 2)))
    view = memoryview(codes)
    done = 0
    pos = 0
    j = 0
    while done < n_frames:
        k = min(sizes[j % len(sizes)], n_frames - done)
        j += 1
        pos += chain.process(view[done * _NCH:], k, out, pos * _NCH)
        done += k
    return out, pos


def test_process_allocates_nothing_in_steady_state():
    codes = _signal(64)
    chain = EnvelopeChain()
    qual = SignalQuality()
    out = array.array("i", bytes(4 * _NCH * 8))
    for _ in range(20):  # warm up: state seeded, windows opened
        chain.process(codes, 64, out, 0)
        qual.process(codes, 64, 0)
    written = 0
    micropython.heap_lock()
    try:
        for rep in range(200):  # 12.8 s of signal: crosses 12 quality windows
            written += chain.process(codes, 64, out, 0)
            written += chain.process(codes, 1, out, 0)
            written += chain.process(codes, 7, out, 4)
            qual.process(codes, 64, rep & 1)
            qual.process(codes, 7, 0)
            f = qual.flags(0) | qual.mains_uv(3)
    finally:
        micropython.heap_unlock()
    assert written == 200 * (64 + 1 + 7) // 10, written
    assert f >= 0
    assert qual.flags(0) & quality.LEAD_OFF or qual.flags(0) == 0


def test_any_block_sizes_give_the_same_output():
    n = 2000
    codes = _signal(n)
    ref, n_ref = _envelope(codes, n, (n,))
    assert n_ref == n // 10
    for sizes in ((1,), (7,), (32,), (3, 10, 1, 64, 9), (999, 1)):
        got, n_got = _envelope(codes, n, sizes)
        assert n_got == n_ref, (sizes, n_got)
        for i in range(n_ref * _NCH):
            assert got[i] == ref[i], (sizes, i, got[i], ref[i])


def test_output_frame_is_the_last_of_each_decimation_block():
    chain = EnvelopeChain()
    codes = _signal(30)
    out = array.array("i", bytes(4 * _NCH * 4))
    counts = [chain.process(memoryview(codes)[i * _NCH:], 1, out, 0) for i in range(30)]
    assert counts == [0] * 9 + [1] + [0] * 9 + [1] + [0] * 9 + [1], counts


def test_reset_restarts_like_a_new_chain():
    n = 500
    codes = _signal(n)
    fresh, _ = _envelope(codes, n, (n,))
    chain = EnvelopeChain()
    out = array.array("i", bytes(4 * _NCH * (n // 10 + 2)))
    chain.process(_signal(123, seed=7), 123, out, 0)
    chain.reset()
    m = chain.process(codes, n, out, 0)
    assert m == n // 10
    assert all(out[i] == fresh[i] for i in range(m * _NCH))


def test_mains_retuning_and_bad_values():
    chain = EnvelopeChain(mains_hz=60)
    assert chain.mains_hz == 60
    chain.set_mains_hz(50)
    assert chain.mains_hz == 50
    for bad in (55, 0, 100):
        try:
            chain.set_mains_hz(bad)
        except ValueError:
            pass
        else:
            raise AssertionError(f"mains_hz {bad} accepted")
    try:
        SignalQuality(window_samples=2000)
    except ValueError:
        pass
    else:
        raise AssertionError("window beyond the 30-bit sum bound accepted")


def test_out_start_and_interleaving():
    # Channel c of output frame j lands at out[out_start + j * n_channels + c].
    n = 100
    codes = _signal(n)
    ref, _ = _envelope(codes, n, (n,))
    chain = EnvelopeChain()
    out = array.array("i", [-7] * (3 + _NCH * 10 + 2))
    assert chain.process(codes, n, out, 3) == 10
    assert out[0] == out[1] == out[2] == -7
    assert out[3 + 40] == -7
    assert all(out[3 + i] == ref[i] for i in range(40))


def test_quality_reports_lead_off_per_channel_after_a_window():
    qual = SignalQuality()
    codes = _signal(250)
    for _ in range(4):
        assert qual.flags(2) == 0  # nothing completed yet
        qual.process(codes, 250, 0b0100)
    assert qual.flags(2) & quality.LEAD_OFF
    assert not qual.flags(1) & quality.LEAD_OFF
    for _ in range(4):
        qual.process(codes, 250, 0)
    assert not qual.flags(2) & quality.LEAD_OFF
