# The raw-EMG codec as the firmware runs it: the CPython bytes, round trips, no allocation.
from array import array
from binascii import hexlify

import micropython

from hipwire import frames as wire
from hipwire import rawcodec as rc

# rc.encode(buf, max_len, 7, 123456, lcg_signal(80, 4, amp), 0, 80, 4) under CPython.
GOLDEN = (
    (28, 2000, "0510070040e20100016120f81520d61b20ad0320d81e3955"),
    (64, 300, "0510070040e2010009612824ce371ca56cb79176d94b071d547f2df160dfaf67548028f20283b76e"
              "438ae03cd0c49c086be57ae649e658ba06d1d2deec"),
)


def lcg_signal(n, nch, amp):
    """An AR(1)-coloured pseudo-random signal, the same on MicroPython and CPython."""
    s = 12345
    out = array("i", bytes(4 * n * nch))
    prev = [0] * nch
    for i in range(n * nch):
        s = (s * 1103515245 + 12345) & 0x7FFFFFFF
        c = i % nch
        prev[c] = (prev[c] * 3) // 4 + ((s >> 12) % (2 * amp + 1)) - amp
        out[i] = prev[c]
    return out


def test_encoder_gives_the_cpython_bytes():
    buf = bytearray(wire.MAX_FRAME)
    for max_len, amp, want in GOLDEN:
        n = rc.encode(buf, max_len, 7, 123456, lcg_signal(80, 4, amp), 0, 80, 4)
        got = hexlify(bytes(buf[:n])).decode()
        if got != want:
            raise AssertionError("max_len %d: %s != %s" % (max_len, got, want))


def _round_trip(samples, nch, max_len):
    buf = bytearray(wire.MAX_FRAME)
    navail = len(samples) // nch
    start = 0
    while start < navail:
        n = rc.encode(buf, max_len, 0, start, samples, start * nch, navail - start, nch)
        assert 0 < n <= max_len, (n, max_len)
        frame = bytes(buf[:n])
        wire.check(frame)
        period, channels = rc.decode(frame)
        taken = buf[wire.HEADER_SIZE]
        assert period == rc.RAW_PERIOD_TICKS and len(channels) == nch
        for c in range(nch):
            assert len(channels[c]) == taken
            for k in range(taken):
                assert channels[c][k] == samples[(start + k) * nch + c]
        start += taken


def test_round_trips_inside_micropython():
    afe_max = 0x7FFFFF >> rc.RAW_SHIFT
    afe_min = -0x800000 >> rc.RAW_SHIFT
    for max_len in (rc.RAW_MIN_ATT_PAYLOAD, 64, 244, 509):
        _round_trip(lcg_signal(300, 4, 2500), 4, max_len)
        _round_trip(array("i", [afe_min, afe_max, 0, -1] * 40), 4, max_len)
        _round_trip(array("i", [42] * 4 * 300), 4, max_len)
    _round_trip(array("i", [rc.RAW_MIN, rc.RAW_MAX] * 60), 2, 64)


def test_encoder_allocates_nothing():
    buf = bytearray(wire.MAX_FRAME)
    noisy = lcg_signal(300, 4, 3000)
    flat = array("i", [7] * 4 * 300)
    lengths = array("i", [0] * 4)
    micropython.heap_lock()
    try:
        for i in range(20):
            lengths[0] = rc.encode(buf, 244, i, i * 40, noisy, 4 * i, 300 - i, 4)
            lengths[1] = rc.encode(buf, rc.RAW_MIN_ATT_PAYLOAD, i, 0, noisy, 0, 300, 4)
            lengths[2] = rc.encode(buf, 509, i, 0, flat, 0, 300, 4)
            lengths[3] = rc.encode(buf, 20, i, 0, noisy, 0, 300, 4)
    finally:
        micropython.heap_unlock()
    assert lengths[0] > 200 and lengths[1] > 0 and lengths[2] > 0 and lengths[3] == 0


def test_fast_crc_is_the_wire_crc():
    buf = bytearray(300)
    for i in range(300):
        buf[i] = (i * 37 + 11) & 0xFF
    for n in (0, 1, 20, 244, 300):
        assert rc.crc16_fast(buf, n) == wire.crc16(buf, n)


def test_out_of_range_samples_are_refused():
    buf = bytearray(wire.MAX_FRAME)
    for bad in (rc.RAW_MAX + 1, rc.RAW_MIN - 1):
        try:
            rc.encode(buf, 244, 0, 0, array("i", [0, 1, 2, bad]), 0, 1, 4)
        except ValueError:
            continue
        raise AssertionError("accepted %d" % bad)
