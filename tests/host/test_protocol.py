"""The wire format from the host's side: golden vectors, round trips, fuzzing, loss accounting."""

from __future__ import annotations

import json
import random
from array import array
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hipsync.protocol import (
    Envelope,
    Event,
    Pelvis,
    ProtocolError,
    Rep,
    Status,
    StreamAssembler,
    UnsupportedFrame,
    decode,
    to_json_dict,
)
from hipwire import commands as c
from hipwire import frames as f
from hipwire import records as r

GOLDEN = json.loads((Path(__file__).resolve().parents[2] / "shared/hipwire/golden.json").read_text())
STREAM_KINDS = {"batch", "event", "status", "rep"}


@pytest.mark.parametrize("vector", GOLDEN["vectors"], ids=lambda v: v["name"])
def test_golden_vector_decodes_to_its_fields(vector):
    data = bytes.fromhex(vector["hex"])
    kind = vector["kind"]
    if kind in STREAM_KINDS:
        assert to_json_dict(decode(data)) == vector["decoded"]
    elif kind == "command":
        token, op, values = c.decode_command(data)
        assert (token, op, list(values)) == (vector["decoded"]["token"], vector["decoded"]["op"],
                                            vector["decoded"]["values"])
    elif kind == "response":
        token, op, status, values = c.decode_response(data)
        want = [bytes.fromhex(v) if isinstance(v, str) else v for v in vector["decoded"]["values"]]
        assert (token, op, status, list(values)) == (vector["decoded"]["token"],
                                                    vector["decoded"]["op"],
                                                    vector["decoded"]["status"], want)
    elif kind == "chunk":
        session, offset, payload = c.decode_chunk(data)
        assert (session, offset, payload.hex()) == (vector["decoded"]["session"],
                                                    vector["decoded"]["offset"],
                                                    vector["decoded"]["data"])
    else:
        frames, end, reason = r.scan_records(data)
        assert reason is None and end == len(data)
        assert [fr.hex() for _, fr in frames] == [vector["decoded"]["frame"]]


def test_golden_vectors_cover_every_frame_type():
    types = {bytes.fromhex(v["hex"])[0] for v in GOLDEN["vectors"] if v["kind"] in STREAM_KINDS}
    assert {f.ENVELOPE, f.PELVIS, f.EVENT, f.STATUS, f.REP} <= types
    ops = {v["args"]["op"] for v in GOLDEN["vectors"] if v["kind"] in ("command", "response")}
    assert c.OP_TASK in ops


def test_minimum_mtu_frames_fit_twenty_bytes():
    small = [v for v in GOLDEN["vectors"] if "min_mtu" in v["name"]]
    assert small and all(len(bytes.fromhex(v["hex"])) <= f.MIN_ATT_PAYLOAD for v in small)


# ------------------------------------------------------------------ round trips
# batch values are device small ints: |v| < 2**30 (the ESP32 small-int range)
channel_values = st.integers(min_value=-(2 ** 30) + 1, max_value=2 ** 30 - 1)


@st.composite
def batches(draw):
    n_channels = draw(st.integers(1, 8))
    n = draw(st.integers(1, 60))
    small = draw(st.booleans())
    values = st.integers(-3000, 3000) if small else channel_values
    rows = [[draw(values) for _ in range(n_channels)] for _ in range(n)]
    return rows, draw(st.sampled_from([20, 64, 185, 244, 509])), draw(st.integers(1, 31))


@given(batches(), st.integers(0, 65535), st.integers(0, 2 ** 32 - 1),
       st.sampled_from([f.ENVELOPE, f.PELVIS]))
@settings(max_examples=300, deadline=None)
def test_batch_round_trip(batch, seq, clock, ftype):
    rows, max_len, period = batch
    flat = array("i", [v for row in rows for v in row])
    buf = bytearray(f.MAX_FRAME)
    n = f.encode_batch(buf, max_len, ftype, seq, clock, period, flat, 0, len(rows), len(rows[0]))
    if n == 0:  # not even one sample fits: only possible for wide values at tiny MTUs
        assert max_len < f.OVERHEAD + f.BATCH_PREFIX + 5 * len(rows[0])
        return
    assert n <= max_len
    frame = decode(bytes(buf[:n]))
    assert isinstance(frame, Envelope if ftype == f.ENVELOPE else Pelvis)
    taken = frame.n_samples
    assert 1 <= taken <= len(rows)
    assert (frame.header.seq, frame.header.clock, frame.period_ticks) == (seq, clock, period)
    for ch, values in enumerate(frame.channels):
        assert list(values) == [row[ch] for row in rows[:taken]]


def test_batch_takes_as_many_samples_as_fit():
    rows = [[100 + k, 200, 300, 400 - k] for k in range(50)]
    flat = array("i", [v for row in rows for v in row])
    buf = bytearray(f.MAX_FRAME)
    n = f.encode_batch(buf, 244, f.ENVELOPE, 0, 0, 10, flat, 0, 50, 4)
    assert decode(bytes(buf[:n])).n_samples == 50
    n = f.encode_batch(buf, 60, f.ENVELOPE, 0, 0, 10, flat, 0, 50, 4)
    taken = decode(bytes(buf[:n])).n_samples
    assert n <= 60 and taken < 50
    # one more sample would not have fitted
    n2 = f.encode_batch(buf, 244, f.ENVELOPE, 0, 0, 10, flat, 0, taken + 1, 4)
    assert n2 > 60


@given(st.integers(0, 65535), st.integers(0, 2 ** 32 - 1), st.sampled_from([f.IC, f.FC]),
       st.sampled_from([f.LEFT, f.RIGHT]), st.integers(0, 65535))
def test_event_round_trip(seq, clock, kind, side, stride):
    buf = bytearray(32)
    n = f.encode_event(buf, seq, clock, kind, side, stride)
    ev = decode(bytes(buf[:n]))
    assert isinstance(ev, Event)
    assert (ev.kind, ev.side, ev.stride) == ("IC" if kind == f.IC else "FC",
                                             "L" if side == f.LEFT else "R", stride)


@given(st.integers(0, 65535), st.integers(0, 2 ** 32 - 1), st.integers(1, len(c.EXAM_TASKS)),
       st.sampled_from([f.LEFT, f.RIGHT]), st.integers(0, 255), st.integers(0, 255),
       st.integers(0, 65535), st.integers(0, 65535), st.integers(-32768, 32767))
def test_rep_round_trip_agrees_with_the_shared_decoder(seq, clock, task, side, index, flags, a, b,
                                                       depth):
    low, end = min(a, b), max(a, b)
    buf = bytearray(32)
    n = f.encode_rep(buf, seq, clock, task, side, index, flags, low, end, depth)
    frame = bytes(buf[:n])
    rep = decode(frame)
    assert isinstance(rep, Rep) and n == 20 <= f.MIN_ATT_PAYLOAD
    assert (rep.header.seq, rep.header.clock) == (seq, clock)
    assert (rep.task, rep.side, rep.index, rep.flags, rep.low_ticks, rep.end_ticks, rep.depth) == (
        c.EXAM_TASKS[task - 1], "L" if side == f.LEFT else "R", index, flags, low, end, depth)
    got = f.decode_rep(frame)
    assert got == (task, side, index, flags, low, end, depth)
    assert rep.depth_units == f.REP_DEPTH_UNITS[task - 1]


def test_rep_encoder_clamps_and_the_decoders_refuse_bad_fields_alike():
    buf = bytearray(32)
    n = f.encode_rep(buf, 1, 5000, 2, f.LEFT, 300, 0x1FF, 70000, 90000, -50000)
    rep = decode(bytes(buf[:n]))
    assert (rep.index, rep.flags, rep.low_ticks, rep.end_ticks, rep.depth) == (
        300 & 0xFF, 0xFF, 0xFFFF, 0xFFFF, -32768)
    assert rep.flag_names() == ["truncated", "shallow"]
    # task 0 (none) and past the list, side 2, lowest point after the end: the host decoder raises
    # ProtocolError with the shared decoder's FrameError message
    for task, side, low, end, message in ((0, f.LEFT, 1, 2, "unknown exam task 0"),
                                          (len(c.EXAM_TASKS) + 1, f.LEFT, 1, 2, "unknown exam task"),
                                          (1, 2, 1, 2, "unknown repetition side 2"),
                                          (1, f.RIGHT, 3, 2, "lowest point after its end")):
        n = f.encode_rep(buf, 1, 5000, task, side, 0, 0, low, end, 0)
        frame = bytes(buf[:n])
        with pytest.raises(f.FrameError, match=message):
            f.decode_rep(frame)
        with pytest.raises(ProtocolError, match=message):
            decode(frame)
    # one byte too many or too few, resealed so only the length is wrong
    n = f.encode_rep(buf, 1, 5000, 1, f.LEFT, 0, 0, 1, 2, 0)
    for body in (bytes(buf[:n - 2]) + b"\x00", bytes(buf[:n - 3])):
        frame = bytearray(body + b"\x00\x00")
        f.seal(frame, len(frame) - 2)
        with pytest.raises(ProtocolError, match="REP frame must be 20 bytes"):
            decode(bytes(frame))


@given(st.lists(st.integers(0, 255), min_size=f.N_STATUS_VALUES, max_size=f.N_STATUS_VALUES),
       st.integers(0, f.N_PAGES - 1), st.sampled_from([20, 30, 244]))
def test_status_round_trip(values, first, max_len):
    buf = bytearray(f.MAX_FRAME)
    n = f.encode_status(buf, max_len, 1, 2, first, array("i", values))
    assert n <= max_len
    fields = decode(bytes(buf[:n])).fields
    pages = f.status_pages_fitting(max_len)
    assert pages >= 1
    if (first + pages - 1) % f.N_PAGES >= f.PAGE_CAPTURE or pages == f.N_PAGES:
        pass
    if f.PAGE_POWER in [(first + i) % f.N_PAGES for i in range(pages)]:
        assert fields["quality"] == values[f.V_QUALITY:f.V_QUALITY + 4]
        assert fields["battery_mv"] == values[f.V_BATTERY_MV]
    if f.PAGE_DSP in [(first + i) % f.N_PAGES for i in range(pages)]:
        assert fields["task_restarts"] == values[f.V_TASK_RESTARTS]


def test_status_at_full_mtu_carries_every_page():
    buf = bytearray(f.MAX_FRAME)
    n = f.encode_status(buf, 244, 1, 2, 0, array("i", range(f.N_STATUS_VALUES)))
    frame = decode(bytes(buf[:n]))
    assert isinstance(frame, Status)
    assert frame.fields["emg_lost_samples"] == f.V_EMG_LOST
    assert frame.fields["mains_uv"] == list(range(f.V_MAINS_UV, f.V_MAINS_UV + 4))


# ------------------------------------------------------------------ malformed input
def _valid_frames():
    return [bytes.fromhex(v["hex"]) for v in GOLDEN["vectors"] if v["kind"] in STREAM_KINDS]


@given(st.binary(max_size=300))
@settings(max_examples=500)
def test_random_bytes_raise_only_protocol_error(data):
    try:
        decode(data)
    except ProtocolError:
        pass


@given(st.sampled_from(_valid_frames()), st.data())
@settings(max_examples=500)
def test_mutated_frames_raise_only_protocol_error(frame, data):
    mutated = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip" and mutated:
            i = data.draw(st.integers(0, len(mutated) - 1))
            mutated[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut" and mutated:
            del mutated[data.draw(st.integers(0, len(mutated) - 1)):]
        else:
            mutated.insert(data.draw(st.integers(0, len(mutated))), data.draw(st.integers(0, 255)))
    try:
        decode(bytes(mutated))
    except ProtocolError:
        return
    # the CRC-16 lets a mutation through only if the mutated frame is itself valid
    assert f.crc16(mutated, len(mutated) - 2) == mutated[-2] | (mutated[-1] << 8)


def test_malformed_frames_name_the_problem():
    frame = bytearray(_valid_frames()[0])
    frame[-1] ^= 0xFF
    with pytest.raises(ProtocolError, match="CRC"):
        decode(bytes(frame))
    with pytest.raises(ProtocolError, match="too short"):
        decode(b"\x01\x10")
    with pytest.raises(ProtocolError, match="bytes"):
        decode(12345)


def _resealed(frame: bytes, **changes) -> bytes:
    buf = bytearray(frame)
    if "type" in changes:
        buf[0] = changes["type"]
    if "version" in changes:
        buf[1] = changes["version"]
    return bytes(buf[:f.seal(buf, len(buf) - 2)])


def test_unknown_type_and_newer_minor_version_are_skipped_and_counted():
    frame = _valid_frames()[0]
    with pytest.raises(UnsupportedFrame):
        decode(_resealed(frame, type=0x33))
    with pytest.raises(UnsupportedFrame, match="minor"):
        decode(_resealed(frame, version=0x11))
    with pytest.raises(ProtocolError, match="major"):
        decode(_resealed(frame, version=0x20))
    asm = StreamAssembler()
    asm.push_bytes(_resealed(frame, type=0x33), 0.0)
    asm.push_bytes(frame, 0.0)
    asm.flush()
    assert asm.stats.unsupported == 1 and asm.stats.frames_received == 1


@given(st.binary(max_size=80))
@settings(max_examples=300)
def test_command_and_response_decoders_raise_only_frame_errors(data):
    for fn in (c.decode_command, c.decode_response, c.decode_chunk):
        try:
            fn(data)
        except f.FrameError:
            pass


# ------------------------------------------------------------------ assembler
def _stream(n_frames: int, samples_per_frame: int = 5):
    buf = bytearray(f.MAX_FRAME)
    frames = []
    for i in range(n_frames):
        rows = array("i", [i] * 4 * samples_per_frame)
        clock = (i * samples_per_frame * 10 + 2 ** 32 - 3000) % 2 ** 32  # wraps mid-stream
        n = f.encode_batch(buf, 244, f.ENVELOPE, (i + 65500) % 65536, clock, 10, rows, 0,
                           samples_per_frame, 4)
        frames.append(bytes(buf[:n]))
    return frames


_STREAM = _stream(150)


@given(st.data())
@settings(max_examples=150, deadline=None)
def test_assembler_counts_exactly_the_frames_dropped(data):
    n = data.draw(st.integers(3, 150))
    frames = _STREAM[:n]
    drops = data.draw(st.lists(st.booleans(), min_size=n - 2, max_size=n - 2), label="drops")
    keep = [0] + [i for i in range(1, n - 1) if not drops[i - 1]] + [n - 1]
    rnd = random.Random(data.draw(st.integers(0, 2 ** 32), label="seed"))
    arrival = list(keep) + [i for i in keep if rnd.random() < 0.1]  # duplicates
    # reorder locally (within a window smaller than the assembler's)
    for i in range(len(arrival) - 1):
        if rnd.random() < 0.3:
            j = min(len(arrival) - 1, i + rnd.randint(1, 10))
            arrival[i], arrival[j] = arrival[j], arrival[i]
    asm = StreamAssembler(reorder_window=64)
    out = []
    for i in arrival:
        out += asm.push_bytes(frames[i], 0.0)
    out += asm.flush()
    assert asm.stats.frames_lost == n - len(keep)
    assert asm.stats.frames_received == len(keep)
    assert asm.stats.duplicates == len(arrival) - len(keep)
    assert asm.stats.samples_lost(f.ENVELOPE) == 5 * (n - len(keep))
    assert len({r.seq for r in out}) == len(keep)
    clocks = [r.clock for r in sorted(out, key=lambda r: r.seq)]
    assert clocks == sorted(clocks)  # unwrapped across the 32-bit wrap


def test_one_corrupt_clock_does_not_shift_the_rest():
    frames = [bytearray(fr) for fr in _stream(10)]
    bad = frames[4]
    bad[4:8] = (12345678).to_bytes(4, "little")
    f.seal(bad, len(bad) - 2)
    asm = StreamAssembler()
    out = []
    for fr in frames:
        out += asm.push_bytes(bytes(fr), 0.0)
    out += asm.flush()
    suspect = [r for r in out if r.clock_suspect]
    assert [r.seq - out[0].seq for r in suspect] == [4]
    good = [r.clock for r in out if not r.clock_suspect]
    assert all(b - a == 50 for a, b in zip(good, good[1:]) if b - a != 100)
    assert good[-1] - good[0] == 9 * 50


def test_rep_frames_pass_through_with_unwrapped_clocks_and_loss_accounting():
    """A REP frame arrives when its repetition ends but carries its start: it is delivered like an
    event (seq counted, clock unwrapped across the 32-bit wrap), not taken as a clock point."""
    buf = bytearray(f.MAX_FRAME)
    clock0 = 2 ** 32 - 20_000  # wraps during the hold
    frames = []
    for i in range(40):
        n = f.encode_batch(buf, 244, f.ENVELOPE, i, (clock0 + 1000 * i) % 2 ** 32, 10,
                           array("i", [i] * 20), 0, 5, 4)
        frames.append((bytes(buf[:n]), 1.0 * i))
    # after the batch of 30 s: a 30 s stance hold that started at 0 s (before the wrap)
    n = f.encode_rep(buf, 40, clock0, 1, f.RIGHT, 0, 0, 12_000, 30_000, 250)
    frames.append((bytes(buf[:n]), 30.2))
    for i in range(41, 45):
        n = f.encode_batch(buf, 244, f.ENVELOPE, i, (clock0 + 1000 * (i - 1)) % 2 ** 32, 10,
                           array("i", [i] * 20), 0, 5, 4)
        frames.append((bytes(buf[:n]), 1.0 * (i - 1)))
    del frames[20]  # one lost frame
    asm = StreamAssembler()
    out = []
    for data, t in frames:
        out += asm.push_bytes(data, t)
    out += asm.flush()
    reps = [r for r in out if isinstance(r.frame, Rep)]
    assert len(reps) == 1 and not reps[0].clock_suspect and not reps[0].late
    assert reps[0].clock == clock0 and reps[0].seq == 40
    after = [r.clock for r in out if r.seq > 40]
    assert after == [clock0 + 1000 * (i - 1) for i in range(41, 45)]  # past 2^32, unwrapped
    assert asm.stats.frames_lost == 1 and asm.stats.frames_received == 44
    # the REP's (start clock, arrival) pair is not in the fit: host time still follows the batches
    assert asm.clock_map.n_points == 43
    assert asm.clock_map.host_time(clock0 + 30_000) == pytest.approx(30.0, abs=1e-6)


def test_a_late_rep_frame_is_delivered_and_taken_off_the_lost_count():
    buf = bytearray(f.MAX_FRAME)
    frames = []
    for i in range(100):
        if i == 10:
            n = f.encode_rep(buf, i, 100_000 + 50 * i - 1600, 2, f.LEFT, 3, 0, 700, 1600, 55)
        else:
            n = f.encode_event(buf, i, 100_000 + 50 * i, f.IC, f.LEFT, i)
        frames.append(bytes(buf[:n]))
    asm = StreamAssembler(reorder_window=16)
    out = []
    for i, fr in enumerate(frames):
        if i != 10:
            out += asm.push_bytes(fr, 0.05 * i)
    assert asm.stats.frames_lost == 1
    out += asm.push_bytes(frames[10], 5.0)
    out += asm.flush()
    late = [r for r in out if r.late]
    assert [type(r.frame) for r in late] == [Rep] and late[0].clock == 100_000 + 500 - 1600
    assert asm.stats.frames_lost == 0 and asm.stats.late == 1


def _epoch(n_frames: int, seq0: int, clock0: int, host0_s: float):
    """n_frames envelope frames of 5 samples (50 ticks) from seq0/clock0, received 50 ms apart."""
    buf = bytearray(f.MAX_FRAME)
    out = []
    for i in range(n_frames):
        rows = array("i", [i] * 20)
        n = f.encode_batch(buf, 244, f.ENVELOPE, (seq0 + i) % 65536, clock0 + 50 * i, 10, rows, 0, 5, 4)
        out.append((bytes(buf[:n]), host0_s + 0.05 * i))
    return out


def test_a_device_restart_continues_seq_and_clock_after_a_gap():
    asm = StreamAssembler()
    out = []
    for data, t in _epoch(200, 1000, 400_000, 100.0):  # 10 s of stream, then the link drops
        out += asm.push_bytes(data, t)
    # a link drop alone: the device kept counting (its clock where the fit puts it) -> same epoch;
    # what waited in the look-ahead and the reorder window is released
    out += asm.check_device_clock(400_000 + 50 * 200 + 3000, 113.0)
    assert asm.stats.device_restarts == 0 and len(out) == 200
    # the device restarted: 2 s after boot it answers with clock 2000, at host time 120 s
    out += asm.check_device_clock(2000, 120.0)
    assert asm.stats.device_restarts == 1
    for data, t in _epoch(100, 0, 2500, 120.5):  # its seq and clock start again
        out += asm.push_bytes(data, t)
    out += asm.flush()
    assert len(out) == 300 and asm.stats.frames_received == 300
    assert asm.stats.duplicates == 0 and asm.stats.late == 0 and asm.stats.frames_lost == 0
    seqs = [r.seq for r in out]
    assert seqs == sorted(seqs) and len(set(seqs)) == 300  # one key per frame in the store
    clocks = [r.clock for r in out]
    assert clocks == sorted(clocks)
    restart = clocks[200]
    # the new epoch sits where host time puts it: 20 s after the old epoch's start, plus 0.5 s
    assert abs(restart - (400_000 + 20_000 + 500)) <= 10, restart
    # the 10 s between the epochs are a gap of lost envelope samples (100 Hz), not overlap
    gap_samples = (restart - (400_000 + 200 * 50)) // 10
    assert asm.stats.samples_lost(f.ENVELOPE) == gap_samples
    assert asm.stats.as_dict()["device_restarts"] == 1


def test_a_restart_is_told_from_a_slow_reply_at_any_clock_speed():
    # the device clock runs 6x faster than host time (the virtual device at a speed-up)
    def stream(asm, n, seq0, clock0, host0):
        buf = bytearray(f.MAX_FRAME)
        for i in range(n):
            rows = array("i", [1] * 20)
            k = f.encode_batch(buf, 244, f.ENVELOPE, seq0 + i, clock0 + 50 * i, 10, rows, 0, 5, 4)
            asm.push_bytes(bytes(buf[:k]), host0 + 50 * i / 6000)

    asm = StreamAssembler()
    stream(asm, 600, 0, 0, 10.0)  # 30 s of device time in 5 s of host time
    last = 599 * 50
    # a reply that took 0.5 s longer than the fastest frames: 3000 ticks behind the fit, but ahead
    # of the last frame -> no restart
    asm.check_device_clock(last + 600, 10.0 + 599 * 50 / 6000 + 0.6)
    assert asm.stats.device_restarts == 0
    # a stream of 2 s (device), fewer frames than the reorder window waits for, then a reconnect
    # 4 s (host) later to a device that restarted 1 s (host) ago: its clock (6000 ticks since
    # boot) is past every frame it sent before, but far behind the fit (26000) -> restart
    asm2 = StreamAssembler()
    stream(asm2, 40, 0, 0, 10.0)
    asm2.check_device_clock(6000, 10.0 + 39 * 50 / 6000 + 4.0)
    assert asm2.stats.device_restarts == 1 and asm2.stats.frames_received == 40
    stream(asm2, 5, 0, 6500, 14.5)  # the new epoch's seq 0..4: new frames, not duplicates
    assert asm2.stats.duplicates == 0 and len(asm2.flush()) == 5


def test_device_clock_check_before_any_frame_changes_nothing():
    asm = StreamAssembler()
    assert asm.check_device_clock(5, 1.0) == []  # nothing received, nothing to release
    out = []
    for data, t in _epoch(40, 0, 7, 1.0):
        out += asm.push_bytes(data, t)
    out += asm.flush()
    assert [r.clock for r in out] == [7 + 50 * i for i in range(40)]
    assert asm.stats.device_restarts == 0


def test_clock_map_fits_drift():
    from hipsync.protocol import ClockMap

    cm = ClockMap()
    rnd = random.Random(1)
    for k in range(2000):
        dev_ticks = k * 250
        host = 1000.0 + dev_ticks / 1000 * (1 + 40e-6) + 0.01 + rnd.expovariate(1 / 0.02)
        cm.add(dev_ticks, host)
    assert abs(cm.drift_ppm - 40) < 5
    assert abs(cm.host_time(250_000) - (1000.0 + 250 * (1 + 40e-6) + 0.01)) < 0.005


def test_batch_values_outside_the_device_range_are_malformed():
    buf = bytearray(f.MAX_FRAME)
    # a valid CRC around a start value the device cannot produce (2**31 - 1)
    n = f.encode_batch(buf, 244, f.ENVELOPE, 1, 0, 10, array("i", [0x7FFFFFFF, 0, 0, 0]), 0, 1, 4)
    with pytest.raises(ProtocolError, match="outside the format's range"):
        decode(bytes(buf[:n]))
