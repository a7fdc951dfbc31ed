"""Raw-EMG lossless codec (shared/hipwire/rawcodec.py) from the host's side: round trips, the
MicroPython encoder's bytes against CPython's, mutated frames, real recordings; and the host's fast
decode paths (CRC via binascii, batch decoder) against the shared definitions."""

from __future__ import annotations

import json
import random
import re
from array import array
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import micropython_port
from hipsync.protocol import ProtocolError, RawEmg, decode, to_json_dict
from hipsync.protocol import frames as host_frames
from hipwire import frames as wire
from hipwire import rawcodec as rc
from hipwire import units

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
AFE_MIN = units.EMG_CODE_MIN >> rc.RAW_SHIFT  # full-scale AFE codes as raw samples
AFE_MAX = units.EMG_CODE_MAX >> rc.RAW_SHIFT


def encode_all(rows: list[list[int]], max_len: int, clock0: int = 0) -> list[bytes]:
    """Frame every sample, as the device does: each frame takes what fits, the rest goes next."""
    n_channels = len(rows[0])
    samples = array("i", [v for row in rows for v in row])
    buf = bytearray(wire.MAX_FRAME)
    frames, start = [], 0
    while start < len(rows):
        length = rc.encode(buf, max_len, len(frames), clock0 + start, samples, start * n_channels,
                           len(rows) - start, n_channels)
        assert 0 < length <= max_len
        taken = buf[wire.HEADER_SIZE]
        assert 1 <= taken <= len(rows) - start
        frames.append(bytes(buf[:length]))
        start += taken
    return frames


def check_round_trip(rows: list[list[int]], max_len: int) -> list[bytes]:
    frames = encode_all(rows, max_len, clock0=1000)
    got, clock = [], 1000
    for i, frame in enumerate(frames):
        f = decode(frame)
        assert isinstance(f, RawEmg)
        assert (f.header.seq, f.header.clock, f.period_ticks) == (i, clock, rc.RAW_PERIOD_TICKS)
        assert f.n_samples == frame[wire.HEADER_SIZE]
        clock += f.n_samples
        got += [list(s) for s in zip(*f.channels)]
    assert got == rows
    return frames


# ------------------------------------------------------------------ generators
def semg_like(n: int, n_channels: int, seed: int, rms: float = 2000.0) -> list[list[int]]:
    """Band-limited noise bursts (a crude sEMG) plus slow drift, in raw units (0.095 uV)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    out = np.empty((n, n_channels))
    for c in range(n_channels):
        white = rng.standard_normal(n + 8)
        carrier = np.convolve(white, [0.2, 0.5, 0.8, 0.5, 0.2, -0.3, -0.4], "same")[:n]
        burst = 0.1 + np.clip(np.sin(2 * np.pi * t / 900 + c), 0, None)
        out[:, c] = rms * burst * carrier + 300 * np.sin(2 * np.pi * t / 5000 + c)
    return np.clip(np.rint(out), AFE_MIN, AFE_MAX).astype(int).tolist()


@st.composite
def signals(draw):
    n_channels = draw(st.sampled_from([4, 4, 1, 2, 3, 8]))
    n = draw(st.integers(1, 300))
    kind = draw(st.sampled_from(["random", "semg", "constant", "full_range", "afe_extremes",
                                 "small"]))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rnd = random.Random(seed)
    if kind == "random":
        rows = [[rnd.randint(rc.RAW_MIN, rc.RAW_MAX) for _ in range(n_channels)] for _ in range(n)]
    elif kind == "semg":
        rows = semg_like(n, n_channels, seed, rms=draw(st.sampled_from([20.0, 500.0, 5000.0])))
    elif kind == "constant":
        v = [rnd.randint(AFE_MIN, AFE_MAX) for _ in range(n_channels)]
        rows = [list(v) for _ in range(n)]
    elif kind == "full_range":
        rows = [[rnd.choice([rc.RAW_MIN, rc.RAW_MAX, 0, -1]) for _ in range(n_channels)]
                for _ in range(n)]
    elif kind == "afe_extremes":
        rows = [[rnd.choice([AFE_MIN, AFE_MAX]) for _ in range(n_channels)] for _ in range(n)]
    else:
        rows = [[rnd.randint(-3, 3) for _ in range(n_channels)] for _ in range(n)]
    return kind, rows


@given(signals(), st.integers(wire.MIN_ATT_PAYLOAD, wire.MAX_FRAME))
@settings(max_examples=300, deadline=None)
def test_round_trip_is_bit_exact(signal, max_len):
    kind, rows = signal
    n_channels = len(rows[0])
    if max_len < rc.RAW_MIN_ATT_PAYLOAD:
        buf = bytearray(wire.MAX_FRAME)
        samples = array("i", [v for row in rows for v in row])
        assert rc.encode(buf, max_len, 0, 0, samples, 0, len(rows), n_channels) == 0
    # one sample needs 12 bytes + per channel 1 + 3 (22-bit AFE range) or 1 + 4 (28-bit range)
    need = 12 + (5 if kind in ("random", "full_range") else 4) * n_channels
    check_round_trip(rows, max(max_len, need, rc.RAW_MIN_ATT_PAYLOAD))


@given(st.integers(wire.MIN_ATT_PAYLOAD, wire.MAX_FRAME), st.integers(0, 2 ** 32 - 1))
@settings(max_examples=100, deadline=None)
def test_one_full_scale_afe_sample_fits_the_raw_minimum(max_len, seed):
    rnd = random.Random(seed)
    rows = [[rnd.choice([AFE_MIN, AFE_MAX, AFE_MIN + 1, AFE_MAX - 1]) for _ in range(4)]]
    buf = bytearray(wire.MAX_FRAME)
    length = rc.encode(buf, max_len, 0, 0, array("i", rows[0]), 0, 1, 4)
    if max_len < rc.RAW_MIN_ATT_PAYLOAD:
        assert length == 0
    else:
        assert 0 < length <= max_len
        assert [list(s) for s in zip(*decode(bytes(buf[:length])).channels)] == rows


def test_below_the_raw_minimum_nothing_is_encoded():
    buf = bytearray(wire.MAX_FRAME)
    samples = array("i", [0, 0, 0, 0])
    assert rc.encode(buf, rc.RAW_MIN_ATT_PAYLOAD - 1, 0, 0, samples, 0, 1, 4) == 0
    assert rc.encode(buf, rc.RAW_MIN_ATT_PAYLOAD, 0, 0, samples, 0, 1, 4) > 0
    assert rc.encode(buf, 244, 0, 0, samples, 0, 0, 4) == 0  # nothing to send
    assert rc.encode(buf, 244, 0, 0, samples, 0, 1, 9) == 0  # too many channels


def test_samples_outside_the_raw_range_are_refused():
    buf = bytearray(wire.MAX_FRAME)
    for bad in (rc.RAW_MAX + 1, rc.RAW_MIN - 1, 2 ** 31 - 1, -2 ** 31):
        with pytest.raises(ValueError):
            rc.encode(buf, 244, 0, 0, array("i", [0, 1, 2, bad] * 3), 0, 3, 4)
        # also when the bad sample is first met while the frame grows
        samples = array("i", [0] * 4 * 100 + [bad] * 4)
        with pytest.raises(ValueError):
            rc.encode(buf, 509, 0, 0, samples, 0, 101, 4)


def test_constant_signal_costs_about_one_bit_per_sample():
    frames = check_round_trip([[1234, -5, 0, AFE_MAX]] * 255, 244)
    assert len(frames) == 1 and frames[0][wire.HEADER_SIZE] == 255
    assert len(frames[0]) <= 12 + 4 * (1 + 4 + 32)  # order 1, k = 0: one bit per residual


def test_the_encoder_uses_the_whole_frame():
    """After the last sample taken, the next one would not have fitted with the chosen
    parameters; frames end within a few bytes of max_len on noisy data."""
    rows = semg_like(3000, 4, seed=5)
    for max_len in (28, 64, 185, 244, 509):
        frames = encode_all(rows, max_len)
        full = [len(f) for f in frames[:-1]]
        assert min(full) >= max_len - 12, (max_len, min(full))


def test_chosen_parameters_are_close_to_the_best_possible():
    """Against a brute force over every order and k for the same samples: at most one byte per
    channel more (the encoder evaluates k-1, k, k+1 around FLAC's estimate)."""
    rows = semg_like(2000, 4, seed=11)
    for frame in encode_all(rows, 244)[:-1]:
        _, channels = rc.decode(frame)
        off = wire.HEADER_SIZE + 2
        for ch in channels:
            best = min(_channel_bytes(ch, order, k) for order in range(3) for k in range(23)
                       if order <= len(ch))
            got = _channel_len(frame, off, ch)
            off += got
            assert got <= best + 1


def _zz(v):
    return 2 * v if v >= 0 else -2 * v - 1


def _varint_len(u):
    return max(1, (u.bit_length() + 6) // 7)


def _residuals(ch, order):
    if order == 0:
        return ch
    if order == 1:
        return [ch[i] - ch[i - 1] for i in range(1, len(ch))]
    return [ch[i] - 2 * ch[i - 1] + ch[i - 2] for i in range(2, len(ch))]


def _channel_bytes(ch, order, k):
    bits = sum((_zz(r) >> k) + 1 + k for r in _residuals(ch, order))
    return 1 + sum(_varint_len(_zz(v)) for v in ch[:order]) + (bits + 7) // 8


def _channel_len(frame, off, ch):
    param = frame[off]
    return _channel_bytes(ch, param >> 5, param & 31)


# ------------------------------------------------------------------ MicroPython = CPython
_MP_ENCODE = """
import sys, json
from array import array
from binascii import hexlify
from hipwire import rawcodec as rc
cases = json.loads(sys.stdin.read())
buf = bytearray(509)
out = []
for c in cases:
    s = array('i', c['samples'])
    nch = c['n_channels']
    navail = len(s) // nch
    start = 0
    frames = []
    while start < navail:
        n = rc.encode(buf, c['max_len'], len(frames), start, s, start * nch, navail - start, nch)
        frames.append(hexlify(bytes(buf[:n])).decode())
        start += buf[8]
    out.append(frames)
print(json.dumps(out))
"""


def _identity_cases() -> list[dict]:
    rnd = random.Random(7)
    cases = []
    for max_len in (28, 31, 64, 185, 244, 509):
        cases.append({"n_channels": 4, "max_len": max_len,
                      "samples": [v for row in semg_like(400, 4, seed=max_len) for v in row]})
    cases.append({"n_channels": 4, "max_len": 244,
                  "samples": [rnd.randint(rc.RAW_MIN, rc.RAW_MAX) for _ in range(4 * 60)]})
    cases.append({"n_channels": 4, "max_len": 244,
                  "samples": [rnd.choice([AFE_MIN, AFE_MAX]) for _ in range(4 * 60)]})
    cases.append({"n_channels": 4, "max_len": 509, "samples": [17, -3, 0, 99] * 300})
    cases.append({"n_channels": 3, "max_len": 100,
                  "samples": [rnd.randint(-100, 100) for _ in range(3 * 200)]})
    if (DATA / "santuz_walking_emg").is_dir():
        cases.append({"n_channels": 4, "max_len": 244,
                      "samples": santuz_raw()[:1500].ravel().tolist()})
    return cases


def test_micropython_encoder_gives_the_cpython_bytes():
    cases = _identity_cases()
    proc = micropython_port.run(["-c", _MP_ENCODE], stdin=json.dumps(cases).encode(),
                                heap="4m", timeout_s=300)
    assert proc.returncode == 0, proc.stderr.decode() + proc.stdout.decode()
    mp = json.loads(proc.stdout)
    for case, mp_frames in zip(cases, mp, strict=True):
        rows = np.array(case["samples"]).reshape(-1, case["n_channels"]).tolist()
        cp_frames = [f.hex() for f in encode_all(rows, case["max_len"])]
        assert mp_frames == cp_frames


# ------------------------------------------------------------------ damaged frames
def _some_frames() -> list[bytes]:
    frames = encode_all(semg_like(300, 4, seed=3), 244)
    frames += encode_all([[5, 5, 5, 5]] * 40, 64)
    frames += encode_all([[AFE_MIN, AFE_MAX, 0, -1]] * 3, 28)
    return frames


def _mutate(frame: bytes, data) -> bytearray:
    mutated = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "byte"]))
        if op == "flip" and mutated:
            i = data.draw(st.integers(0, len(mutated) - 1))
            mutated[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "byte" and mutated:
            mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
        elif op == "cut" and mutated:
            del mutated[data.draw(st.integers(0, len(mutated) - 1)):]
        else:
            mutated.insert(data.draw(st.integers(0, len(mutated))), data.draw(st.integers(0, 255)))
    return mutated


@given(st.sampled_from(_some_frames()), st.data(), st.booleans())
@settings(max_examples=500, deadline=None)
def test_mutated_frames_raise_only_protocol_errors(frame, data, reseal):
    """With reseal the CRC is made valid again, so the payload parser itself meets the damage."""
    mutated = _mutate(frame, data)
    if reseal and len(mutated) >= wire.OVERHEAD:
        wire.seal(mutated, len(mutated) - wire.CRC_SIZE)
    try:
        f = decode(bytes(mutated))
    except ProtocolError:
        pass
    else:  # accepted: then it is a self-consistent frame that encodes its own samples
        assert wire.crc16(mutated, len(mutated) - 2) == mutated[-2] | (mutated[-1] << 8)
        if isinstance(f, RawEmg):
            assert all(rc.RAW_MIN <= v <= rc.RAW_MAX for ch in f.channels for v in ch)
    try:
        rc.decode(bytes(mutated))
    except wire.FrameError:
        pass


@given(st.binary(min_size=0, max_size=300))
@settings(max_examples=300, deadline=None)
def test_random_payloads_raise_only_frame_errors(payload):
    buf = bytearray(wire.MAX_FRAME)
    off = wire.pack_header(buf, wire.RAW_EMG, 0, 0)
    frame = bytearray(buf[:off]) + payload + b"\0\0"
    wire.seal(frame, len(frame) - 2)
    try:
        rc.decode(bytes(frame))
    except wire.FrameError:
        pass


def test_raw_frames_in_json_view():
    frame = encode_all([[1, 2, 3, 4], [5, 6, 7, 8]], 244)[0]
    view = to_json_dict(decode(frame))
    assert view["type"] == "raw_emg"
    assert view["channels"] == [[1, 5], [2, 6], [3, 7], [4, 8]] and view["period_ticks"] == 1
    assert view["payload_hex"] == frame[wire.HEADER_SIZE:-2].hex()


# ------------------------------------------------------------------ real recordings
def _need(folder: str) -> Path:
    path = DATA / folder
    if not path.is_dir():
        pytest.skip(f"public recordings not found at {path} (see /work/shared/data/README.md)")
    return path


def uv_to_raw(uv) -> np.ndarray:
    codes = np.rint(np.asarray(uv, float) / units.EMG_UV_PER_CODE).astype(np.int64)
    return np.clip(codes, units.EMG_CODE_MIN, units.EMG_CODE_MAX) >> rc.RAW_SHIFT


def santuz_raw() -> np.ndarray:
    path = _need("santuz_walking_emg") / "ID0012_TW_01_raw_emg.csv"
    d = np.genfromtxt(path, delimiter=",", names=True)
    return uv_to_raw(np.column_stack([d[c] for c in ("ME", "MA", "FL", "RF")]))


def uci_raw(name: str) -> np.ndarray:
    path = _need("uci_lower_limb_emg") / f"{name}.txt"
    rows = []
    for line in path.read_text(encoding="latin-1").splitlines()[7:]:
        try:
            values = [float(f) for f in line.split("\t")[:4]]
        except ValueError:  # 5Nmar ends with rows holding only the knee angle
            continue
        if len(values) == 4 and not np.isnan(values).any():
            rows.append(values)
    return uv_to_raw(1000.0 * np.array(rows))  # mV -> uV


def test_santuz_recording_round_trips_bit_exactly():
    raw = santuz_raw()
    frames = check_round_trip(raw.tolist(), 244)
    assert 3 * raw.size / sum(len(f) for f in frames) > 2.0  # measured 2.52


@pytest.mark.parametrize("name", ["3Amar", "3Apie", "3Asen", "5Nmar", "5Npie", "5Nsen"])
def test_uci_recording_round_trips_bit_exactly(name):
    raw = uci_raw(name)
    assert len(raw) > 6000
    check_round_trip(raw.tolist(), 244)


def test_santuz_round_trips_at_the_smallest_and_largest_frames():
    rows = santuz_raw()[:2000].tolist()
    for max_len in (rc.RAW_MIN_ATT_PAYLOAD, 509):
        check_round_trip(rows, max_len)


# ------------------------------------------------------------------ host fast paths
@given(st.binary(max_size=600))
@settings(max_examples=300)
def test_binascii_crc_is_the_wire_crc(data):
    from binascii import crc_hqx

    assert crc_hqx(data, 0xFFFF) == wire.crc16(data, len(data)) == rc.crc16_fast(data, len(data))


@given(st.integers(1, 8), st.integers(1, 60), st.booleans(), st.sampled_from([20, 64, 244, 509]),
       st.data())
@settings(max_examples=300, deadline=None)
def test_host_batch_decoder_matches_the_shared_one(n_channels, n, small, max_len, data):
    values = st.integers(-300, 300) if small else st.integers(-(2 ** 30) + 1, 2 ** 30 - 1)
    rows = [data.draw(st.lists(values, min_size=n_channels, max_size=n_channels))
            for _ in range(n)]
    buf = bytearray(wire.MAX_FRAME)
    length = wire.encode_batch(buf, max_len, wire.ENVELOPE, 1, 2, 10,
                               array("i", [v for r in rows for v in r]), 0, n, n_channels)
    if length == 0:
        return
    frame = bytearray(buf[:length])
    if data.draw(st.booleans()):
        frame = _mutate(bytes(frame), data)
        if len(frame) >= wire.OVERHEAD:
            wire.seal(frame, len(frame) - wire.CRC_SIZE)
    try:
        want = wire.decode_batch(bytes(frame))
    except wire.FrameError:
        with pytest.raises(wire.FrameError):
            host_frames._decode_batch(bytes(frame))
        return
    period, channels = host_frames._decode_batch(bytes(frame))
    assert (period, [list(c) for c in channels]) == (want[0], [list(c) for c in want[1]])


@pytest.mark.parametrize("n", [1, 2, 50])
@pytest.mark.parametrize("first", [0, 63, -64, 64, -65, 8191, -8192, 8192, -8193,
                                   2 ** 30 - 1, -(2 ** 30) + 1])
def test_host_batch_decoder_start_value_boundaries(n, first):
    """The host's one- and two-byte varint fast paths and the general loop meet at these values."""
    toward_zero = -1 if first > 0 else 1  # stay inside |v| < 2**30
    rows = [[first + toward_zero * k, first, first + 2 * toward_zero * k] for k in range(n)]
    buf = bytearray(wire.MAX_FRAME)
    length = wire.encode_batch(buf, 244, wire.PELVIS, 1, 2, 10,
                               array("i", [v for r in rows for v in r]), 0, n, 3)
    frame = bytes(buf[:length])
    assert frame[wire.HEADER_SIZE] == n
    want = wire.decode_batch(frame)
    period, channels = host_frames._decode_batch(frame)
    assert (period, [list(c) for c in channels]) == (want[0], [list(c) for c in want[1]])
    for cut in range(wire.HEADER_SIZE, length - wire.CRC_SIZE):  # every truncation is refused
        short = bytearray(frame[:cut]) + b"\0\0"
        with pytest.raises(wire.FrameError):
            wire.decode_batch(bytes(short))
        with pytest.raises(wire.FrameError):
            host_frames._decode_batch(bytes(short))


def _status_frame(pages: list[int], values: list[int]) -> bytearray:
    buf = bytearray(wire.MAX_FRAME)
    off = wire.pack_header(buf, wire.STATUS, 3, 4)
    for page in pages:
        off = wire.pack_status_page(buf, off, page, array("i", values))
    return bytearray(buf[:wire.seal(buf, off)])


@given(st.lists(st.integers(0, wire.N_PAGES - 1), min_size=0, max_size=7),
       st.lists(st.integers(0, 255), min_size=wire.N_STATUS_VALUES,
                max_size=wire.N_STATUS_VALUES), st.booleans(), st.data())
@settings(max_examples=300, deadline=None)
def test_host_status_decoder_matches_the_shared_one(pages, values, all_pages, data):
    """Fields, their order (the JSON view keeps it) and refusals, on the one-unpack path for a frame
    with every page in order and on the page loop for any other, intact and mutated."""
    if all_pages:
        pages = list(range(wire.N_PAGES))
    frame = _status_frame(pages, values)
    if data.draw(st.booleans()):
        frame = _mutate(bytes(frame), data)
        if len(frame) >= wire.OVERHEAD:
            wire.seal(frame, len(frame) - wire.CRC_SIZE)
    frame = bytes(frame)
    try:
        want = wire.decode_status(frame)
    except wire.FrameError:
        with pytest.raises(wire.FrameError):
            host_frames._decode_status(frame)
        return
    got = host_frames._decode_status(frame)
    assert got == want and list(got) == list(want)


@given(st.binary(min_size=0, max_size=8), st.data())
@settings(max_examples=300, deadline=None)
def test_host_event_decoder_matches_the_shared_one(payload, data):
    """decode()'s inline EVENT path against wire.decode_event: same values, same refusals."""
    if data.draw(st.booleans()):  # mostly well-formed lengths, with any kind and side byte
        payload = bytes([data.draw(st.integers(0, 3)), data.draw(st.integers(0, 2))]) + payload[:2]
    buf = bytearray(wire.MAX_FRAME)
    off = wire.pack_header(buf, wire.EVENT, 5, 6)
    buf[off:off + len(payload)] = payload
    frame = bytes(buf[:wire.seal(buf, off + len(payload))])
    try:
        kind, side, stride = wire.decode_event(frame)
    except wire.FrameError as e:
        with pytest.raises(ProtocolError, match=f"^{re.escape(str(e))}$"):
            decode(frame)
        return
    ev = decode(frame)
    assert (ev.kind, ev.side, ev.stride) == ({wire.IC: "IC", wire.FC: "FC"}[kind],
                                             {wire.LEFT: "L", wire.RIGHT: "R"}[side], stride)
