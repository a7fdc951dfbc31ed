# The shared wire format as the firmware runs it: golden bytes, and no allocation per frame.
import json
from array import array
from binascii import hexlify, unhexlify

import micropython

from hipwire import commands as cmd
from hipwire import frames as wire
from hipwire import records

with open("shared/hipwire/golden.json") as _f:
    GOLDEN = json.load(_f)["vectors"]


def _hex(buf, n):
    return hexlify(bytes(buf[:n])).decode()


def _encode(vector):
    a = vector["args"]
    buf = bytearray(wire.MAX_FRAME)
    kind = vector["kind"]
    if kind == "batch":
        n = wire.encode_batch(buf, a["max_len"], a["frame_type"], a["seq"], a["clock"],
                              a["period_ticks"], array("i", a["samples"]), 0, a["n_avail"],
                              a["n_channels"])
    elif kind == "event":
        n = wire.encode_event(buf, a["seq"], a["clock"], a["kind"], a["side"], a["stride"])
    elif kind == "status":
        n = wire.encode_status(buf, a["max_len"], a["seq"], a["clock"], a["first_page"],
                               array("i", a["values"]))
    elif kind == "rep":
        n = wire.encode_rep(buf, a["seq"], a["clock"], a["task"], a["side"], a["index"],
                            a["flags"], a["low_ticks"], a["end_ticks"], a["depth"])
    elif kind == "command":
        data = cmd.encode_command(a["op"], a["token"], *a["values"])
        return hexlify(data).decode()
    elif kind == "response":
        values = [unhexlify(v) if isinstance(v, str) else v for v in a["values"]]
        n = cmd.encode_response(buf, a["token"], a["op"], a["status"], *values)
    elif kind == "chunk":
        n = cmd.encode_chunk_header(buf, a["session"], a["offset"])
        data = unhexlify(a["data"])
        buf[n:n + len(data)] = data
        n = wire.seal(buf, n + len(data))
    else:
        frame = unhexlify(a["frame"])
        n = records.encode_record(buf, frame, len(frame))
    return _hex(buf, n)


def test_encoders_produce_the_golden_bytes():
    assert len(GOLDEN) >= 10
    for vector in GOLDEN:
        got = _encode(vector)
        if got != vector["hex"]:
            raise AssertionError("%s: %s != %s" % (vector["name"], got, vector["hex"]))


def test_shared_decoders_agree_with_golden_fields():
    for vector in GOLDEN:
        if vector["kind"] == "batch":
            period, channels = wire.decode_batch(unhexlify(vector["hex"]))
            assert period == vector["decoded"]["period_ticks"]
            assert channels == vector["decoded"]["channels"], vector["name"]
        elif vector["kind"] == "status":
            assert wire.decode_status(unhexlify(vector["hex"])) == vector["decoded"]["fields"]
        elif vector["kind"] == "rep":
            d = vector["decoded"]
            task, side, index, flags, low, end, depth = wire.decode_rep(unhexlify(vector["hex"]))
            assert cmd.EXAM_TASKS[task - 1] == d["task"], vector["name"]
            assert side == (wire.LEFT if d["side"] == "L" else wire.RIGHT)
            assert (index, flags, low, end, depth) == (d["index"], d["flags"], d["low_ticks"],
                                                       d["end_ticks"], d["depth"])


def test_frame_encoders_allocate_nothing():
    buf = bytearray(wire.MAX_FRAME)
    samples = array("i", [(k * 37) % 500 for k in range(200)])
    status = array("i", range(wire.N_STATUS_VALUES))
    lengths = array("i", [0, 0, 0, 0])
    micropython.heap_lock()
    try:
        for i in range(50):
            lengths[0] = wire.encode_batch(buf, 244, wire.ENVELOPE, i, i * 500, 10, samples, 0, 50, 4)
            lengths[1] = wire.encode_event(buf, i, i * 10, wire.IC, wire.LEFT, i)
            lengths[2] = wire.encode_status(buf, 20 + i, i, i, i % 5, status)
            # out-of-range offsets and depth take the clamping branches too
            lengths[3] = wire.encode_rep(buf, i, i * 10, 2, wire.RIGHT, i, 0, i * 20,
                                         i * 1500, i * 900 - 20000)
    finally:
        micropython.heap_unlock()
    assert lengths[0] > 100 and lengths[1] == 14 and lengths[2] <= 69 and lengths[3] == 20
