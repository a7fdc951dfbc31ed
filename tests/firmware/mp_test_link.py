# Streamer (DSP output -> frames) and control dispatcher, inside MicroPython.
from array import array

import micropython

from hipwire import commands as cmd
from hipwire import frames as wire
from link.control import Control, PAYLOAD_START
from link.streamer import Streamer


class _Auth:
    def __init__(self, ok):
        self.ok = ok

    def is_authenticated(self, conn):
        return self.ok


def _drain(streamer, sink):
    while True:
        i = streamer.peek()
        if i < 0:
            return
        sink.append(bytes(streamer.slots[i][:streamer.lengths[i]]))
        streamer.pop()


def test_streamer_frames_contiguous_batches_with_rising_seq():
    s = Streamer(batch_samples=25)
    s.live = True
    env = array("i", [k for k in range(4 * 10)])
    out = []
    for block in range(20):
        s.add_envelope(env, 0, 10, block * 100, 244)
        _drain(s, out)
    s.flush(244)
    _drain(s, out)
    total = 0
    expected_clock = 0
    for i, frame in enumerate(out):
        ftype, _v, seq, clock = wire.check(frame)
        assert ftype == wire.ENVELOPE and seq == i
        assert clock == expected_clock
        n = frame[wire.HEADER_SIZE]
        expected_clock += n * 10
        total += n
    assert total == 200


def test_streamer_splits_batches_at_clock_gaps():
    s = Streamer(batch_samples=50)
    s.live = True
    env = array("i", [1] * 40)
    s.add_envelope(env, 0, 10, 0, 244)
    s.add_envelope(env, 0, 10, 500, 244)  # 40 samples missing before this block
    s.flush(244)
    out = []
    _drain(s, out)
    clocks = [wire.check(f)[3] for f in out]
    assert clocks == [0, 500]


def test_streamer_counts_outbox_overflow():
    s = Streamer(outbox_slots=4)
    s.live = True
    for k in range(10):
        s.add_event(k, wire.IC, wire.LEFT, k)
    assert s.frames_dropped == 6 and s.count == 4
    out = []
    _drain(s, out)
    assert [wire.check(f)[2] for f in out] == [6, 7, 8, 9]


def test_streamer_fits_the_minimum_att_payload():
    s = Streamer(batch_samples=5)
    s.live = True
    env = array("i", [100 + k for k in range(40)])
    s.add_envelope(env, 0, 10, 0, 20)
    s.send_status(0, 20)
    s.flush(20)
    out = []
    _drain(s, out)
    assert len(out) >= 3
    for frame in out:
        assert len(frame) <= 20
        wire.check(frame)


def test_streamer_frames_a_block_larger_than_its_ring_without_dropping():
    s = Streamer(outbox_slots=64)
    s.live = True
    n = 300  # more than the batch ring holds in one call
    raw = array("i", [(k * 37) % 2000 - 1000 for k in range(4 * n)])
    s.add_raw(raw, 0, n, 1000, 244)
    s.flush(244)
    out = []
    _drain(s, out)
    assert s.samples_dropped == 0 and s.frames_dropped == 0
    clock = 1000
    for frame in out:
        ftype, _v, _seq, frame_clock = wire.check(frame)
        assert ftype == wire.RAW_EMG and frame_clock == clock
        clock += frame[wire.HEADER_SIZE]  # raw samples are one tick apart
    assert clock == 1000 + n


def test_streamer_steady_state_allocates_nothing():
    s = Streamer(batch_samples=25)
    s.live = True
    recorded = array("i", [0])

    def record(buf, n):
        recorded[0] += n

    s.record = record
    env = array("i", [(k * 7) % 300 for k in range(40)])
    pel = array("i", [(k * 3) % 50 - 25 for k in range(30)])
    for warm in range(10):
        s.add_envelope(env, 0, 10, warm * 100, 244)
        s.add_pelvis(pel, 0, 10, warm * 100, 244)
    micropython.heap_lock()
    try:
        for block in range(10, 200):
            s.add_envelope(env, 0, 10, block * 100, 244)
            s.add_pelvis(pel, 0, 10, block * 100, 244)
            if block % 10 == 0:
                s.send_status(block * 100, 244)
                s.add_event(block * 100, wire.FC, wire.RIGHT, block)
            while s.peek() >= 0:
                s.pop()
    finally:
        micropython.heap_unlock()
    assert recorded[0] > 0 and s.frames_dropped == 0


MALFORMED = [
    b"", b"\x40", b"\x40\x10", b"\x40\x10\x01", b"\x40\x10\x01\x01",
    b"\x41\x10\x01\x01\x00\x00", b"\xff" * 40, bytes(range(64)),
]


def _valid(op, token, *args):
    return cmd.encode_command(op, token, *args)


def _corrupt_corpus():
    corpus = list(MALFORMED)
    good = _valid(cmd.OP_SESSION_READ, 7, 1, 0, 4096)
    for i in range(len(good)):
        for bit in (0x01, 0x80):
            b = bytearray(good)
            b[i] ^= bit
            corpus.append(bytes(b))
        corpus.append(good[:i])
    wrong_len = bytearray(b"\x40\x10\x05\x23\x01")
    corpus.append(bytes(wrong_len[:wire.seal(wrong_len + b"\x00\x00", 5)]))
    unknown = bytearray(b"\x40\x10\x05\x7e\x00\x00")
    wire.seal(unknown, 4)
    corpus.append(bytes(unknown))
    newer = bytearray(b"\x40\x20\x05\x01\x00\x00")
    wire.seal(newer, 4)
    corpus.append(bytes(newer))
    return corpus


def test_control_answers_every_malformed_command_with_an_error_status():
    def explode(args, conn):
        raise RuntimeError("handler bug")

    control = Control({cmd.OP_SESSION_READ: explode, cmd.OP_INFO: explode}, _Auth(True))
    corpus = _corrupt_corpus()
    assert len(corpus) > 50
    for frame in corpus:
        n = control.handle(frame, 0, 244)
        token, op, status, values = cmd.decode_response(bytes(control.reply[:n]))
        assert status != cmd.OK, frame
        assert values == ()
    # the two with a valid CRC but an unknown op / newer major version get specific codes
    assert cmd.decode_response(bytes(control.reply[:control.handle(corpus[-2], 0, 244)]))[2] == cmd.ERR_UNKNOWN_OP
    assert cmd.decode_response(bytes(control.reply[:control.handle(corpus[-1], 0, 244)]))[2] == cmd.ERR_VERSION


def test_control_requires_auth_for_protected_ops_only():
    calls = []

    def info(args, conn):
        calls.append("info")
        return cmd.OK, (0, 1, 0, wire.VERSION, 1000, 100, 4, b"abcdef", 1)

    def start(args, conn):
        calls.append("start")
        return cmd.OK

    control = Control({cmd.OP_INFO: info, cmd.OP_STREAM_START: start}, _Auth(False))
    n = control.handle(_valid(cmd.OP_STREAM_START, 1, 0), 0, 244)
    assert cmd.decode_response(bytes(control.reply[:n]))[2] == cmd.ERR_AUTH_REQUIRED
    n = control.handle(_valid(cmd.OP_INFO, 2), 0, 244)
    token, op, status, values = cmd.decode_response(bytes(control.reply[:n]))
    assert (token, status, values[4]) == (2, cmd.OK, 1000)
    assert calls == ["info"]
    control.auth.ok = True
    n = control.handle(_valid(cmd.OP_STREAM_START, 3, 0), 0, 244)
    assert cmd.decode_response(bytes(control.reply[:n]))[2] == cmd.OK


def test_control_variable_payload_and_mtu_limit():
    def listing(args, conn):
        reply = control.reply
        reply[PAYLOAD_START] = 2
        for i in range(2):
            off = PAYLOAD_START + 1 + i * cmd.SESSION_ENTRY_SIZE
            for j in range(cmd.SESSION_ENTRY_SIZE):
                reply[off + j] = 0
            reply[off] = i + 1
        return cmd.OK, 1 + 2 * cmd.SESSION_ENTRY_SIZE

    control = Control({cmd.OP_SESSION_LIST: listing}, _Auth(True))
    n = control.handle(_valid(cmd.OP_SESSION_LIST, 4, 0), 0, 244)
    token, op, status, entries = cmd.decode_response(bytes(control.reply[:n]))
    assert status == cmd.OK and [e[0] for e in entries] == [1, 2]
    n = control.handle(_valid(cmd.OP_SESSION_LIST, 5, 0), 0, 20)
    assert cmd.decode_response(bytes(control.reply[:n]))[2] == cmd.ERR_MTU
