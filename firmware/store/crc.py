# CRC-32 (the one binascii.crc32 / zlib.crc32 compute) kept in a one-word array, so that updating it
# allocates nothing. binascii.crc32 returns a Python int, and on the ESP32 an int of 2**30 or more is
# a heap object: three quarters of all CRC values would allocate. Viper keeps the value in a machine
# word from start to end. Table: 1 KiB, built once at import.
import array

import micropython

_POLY = 0xEDB88320


def _make_table():
    t = array.array("I", bytes(1024))
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        t[i] = c
    return t


TABLE = _make_table()


@micropython.viper
def _update(state: ptr32, table: ptr32, buf: ptr8, start: int, end: int):
    c = uint(state[0]) ^ uint(0xFFFFFFFF)
    i = start
    while i < end:
        c = uint(table[(c ^ uint(buf[i])) & 0xFF]) ^ (c >> 8)
        i += 1
    state[0] = int(c ^ uint(0xFFFFFFFF))


@micropython.viper
def _store_le(state: ptr32, out: ptr8, off: int):
    c = uint(state[0])
    out[off] = c & 0xFF
    out[off + 1] = (c >> 8) & 0xFF
    out[off + 2] = (c >> 16) & 0xFF
    out[off + 3] = (c >> 24) & 0xFF


def new_state(value=0):
    """A CRC accumulator: array('I', [value]); 0 is the CRC of no bytes."""
    return array.array("I", (value,))


def update(state, buf, start, end):
    """state <- CRC-32 of (the bytes so far) + buf[start:end]. Allocates nothing."""
    _update(state, TABLE, buf, start, end)


def store_le(state, out, off):
    """Write the CRC in state as 4 little-endian bytes at out[off:]. Allocates nothing."""
    _store_le(state, out, off)
