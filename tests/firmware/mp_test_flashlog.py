# The flash log inside MicroPython: recovery after power loss at any byte, full flash, seeking,
# erase rules, allocation-free append. Each test works in its own folder under /tmp.
import os
import random
import struct
from binascii import crc32

import micropython

from hipwire.commands import SESSION_DAMAGED, SESSION_OPEN, SESSION_SYNCED
from hipwire.records import RECORD_OVERHEAD, scan_records
from store import crc as crc32w
from store.flashlog import (CRC, FLAGS, ID, SIZE, START, CrcMismatch, FlashFull, FlashLog,
                            NotSynced, SessionOpen)

def _rmtree(path):
    try:
        entries = list(os.ilistdir(path))
    except OSError:
        return
    for e in entries:
        p = path + "/" + e[0]
        if e[1] == 0x4000:
            _rmtree(p)
        else:
            os.remove(p)
    os.rmdir(path)


# one folder per run: other test runs may share /tmp
_RUN = "/tmp/hsfl-%s" % "".join("%02x" % b for b in os.urandom(4))


def _fresh(name):
    try:
        os.mkdir(_RUN)
    except OSError:
        pass
    root = _RUN + "/" + name
    _rmtree(root)
    return root


def _cleaned(test):
    def run():
        try:
            test()
        finally:
            _rmtree(_RUN)
    return run


def _frames(count, seed=1, max_len=300):
    random.seed(seed)
    out = []
    for i in range(count):
        n = 10 + random.getrandbits(9) % (max_len - 10)
        f = bytearray(n)
        for j in range(n):
            f[j] = (i * 31 + j * 7) & 0xFF
        out.append(bytes(f))
    return out


def _stream(log, sid):
    info = log.find(sid)
    r = log.open_reader(sid)
    buf = bytearray(info[SIZE])
    mv = memoryview(buf)
    off = 0
    while off < info[SIZE]:
        got = r.read_into(off, mv[off:], info[SIZE] - off)
        assert got > 0, off
        off += got
    r.close()
    return bytes(buf)


def _read_file(path):
    with open(path, "rb") as f:
        return f.read()


def _write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _copy_tree(src, dst):
    os.mkdir(dst)
    for e in os.ilistdir(src):
        s = src + "/" + e[0]
        d = dst + "/" + e[0]
        if e[1] == 0x4000:
            _copy_tree(s, d)
        else:
            _write_file(d, _read_file(s))


@_cleaned
def test_viper_crc_matches_binascii():
    data = bytes(range(256)) * 3
    st = crc32w.new_state()
    crc32w.update(st, data, 0, 100)
    crc32w.update(st, data, 100, len(data))
    assert st[0] == crc32(data) & 0xFFFFFFFF
    out = bytearray(4)
    crc32w.store_le(st, out, 0)
    assert struct.unpack("<I", out)[0] == crc32(data) & 0xFFFFFFFF
    st2 = crc32w.new_state()
    crc32w.update(st2, b"", 0, 0)
    assert st2[0] == 0


@_cleaned
def test_records_round_trip_across_segments_and_remount():
    root = _fresh("roundtrip")
    log = FlashLog(root, segment_bytes=4096, reserve_bytes=0)
    log.set_time_anchor(1700000000, 5000)
    sid = log.start(clock=65000)
    frames = _frames(200)
    for f in frames:
        assert log.append(f, len(f))
    assert log.stop() == sid
    info = log.find(sid)
    assert info[START] == 1700000060
    assert info[FLAGS] == 0
    data = _stream(log, sid)
    got, end, why = scan_records(data)
    assert why is None and end == len(data)
    assert [g[1] for g in got] == frames
    assert info[CRC] == crc32(data) & 0xFFFFFFFF
    assert info[SIZE] == sum(len(f) + RECORD_OVERHEAD for f in frames)
    segs = [n for n in os.listdir(root + "/s%05d" % sid) if n.endswith(".seg")]
    assert len(segs) > 5
    # remount: same list, nothing recovered (the session was closed cleanly)
    log2 = FlashLog(root, segment_bytes=4096, reserve_bytes=0)
    assert log2.recovered == []
    assert log2.find(sid) == info
    assert _stream(log2, sid) == data
    # ids continue after the remount
    assert log2.start() == sid + 1
    log2.stop()


def _record_open_session(root, frames, segment_bytes):
    """Record frames and leave the session open, as at a power cut right after the last flush."""
    log = FlashLog(root, segment_bytes=segment_bytes, reserve_bytes=0, flush_records=1)
    sid = log.start()
    for f in frames:
        assert log.append(f, len(f))
    log._file.close()  # what reached the flash; no stop(), no final metadata
    return sid


def _check_recovered(root, sid, frames, expect_records):
    log = FlashLog(root, segment_bytes=4096, reserve_bytes=0)
    info = log.find(sid)
    assert not info[FLAGS] & SESSION_OPEN
    data = _stream(log, sid)
    got, end, why = scan_records(data)
    assert why is None, why  # nothing but complete records is left
    assert [g[1] for g in got] == frames[:expect_records], (len(got), expect_records)
    assert info[SIZE] == len(data)
    assert info[CRC] == crc32(data) & 0xFFFFFFFF
    # a second mount finds nothing more to do
    assert FlashLog(root, segment_bytes=4096, reserve_bytes=0).recovered == []
    return log


@_cleaned
def test_power_loss_at_every_byte_of_the_last_record():
    base = _fresh("torn-base")
    frames = _frames(40, seed=3)
    sid = _record_open_session(base, frames, 4096)
    folder = "/s%05d" % sid
    segs = sorted(n for n in os.listdir(base + folder) if n.endswith(".seg"))
    last = base + folder + "/" + segs[-1]
    full = _read_file(last)
    rec = len(frames[-1]) + RECORD_OVERHEAD
    start = len(full) - rec
    work = _fresh("torn-work")
    for cut in range(start, len(full) + 1):
        _rmtree(work)
        _copy_tree(base, work)
        _write_file(work + folder + "/" + segs[-1], full[:cut])
        expect = len(frames) if cut == len(full) else len(frames) - 1
        _check_recovered(work, sid, frames, expect)
    _rmtree(work)


@_cleaned
def test_power_loss_at_sampled_offsets_across_many_records_and_segments():
    base = _fresh("torn-many")
    frames = _frames(120, seed=4)
    sid = _record_open_session(base, frames, 4096)
    folder = "/s%05d" % sid
    segs = sorted(n for n in os.listdir(base + folder) if n.endswith(".seg"))
    assert len(segs) >= 4
    contents = [_read_file(base + folder + "/" + s) for s in segs]
    # record end offsets in the logical stream
    ends = []
    off = 0
    for f in frames:
        off += len(f) + RECORD_OVERHEAD
        ends.append(off)
    seg_starts = []
    total = 0
    for c in contents:
        seg_starts.append(total)
        total += len(c)
    assert total == ends[-1]
    work = _fresh("torn-many-work")
    random.seed(11)
    for trial in range(60):
        # power lost while writing segment k: later segments never existed
        k = random.getrandbits(8) % len(segs)
        cut = random.getrandbits(16) % (len(contents[k]) + 1)
        _rmtree(work)
        _copy_tree(base, work)
        for j in range(k + 1, len(segs)):
            os.remove(work + folder + "/" + segs[j])
        torn = bytearray(contents[k][:cut])
        if trial % 3 == 0 and cut < len(contents[k]):
            torn.extend(b"\xa5\xff\x01garbage")  # a FAT-like torn write leaves junk, not zeros
        _write_file(work + folder + "/" + segs[k], torn)
        # the checkpoint in the metadata is the one written when segment k was opened
        log_end = seg_starts[k] + cut
        expect = 0
        while expect < len(ends) and ends[expect] <= log_end:
            expect += 1
        meta = work + folder + "/meta"
        body = struct.pack("<4sHBIII", b"HSM1", sid, SESSION_OPEN, 0, seg_starts[k],
                           crc32(b"".join(contents[:k])) & 0xFFFFFFFF)
        _write_file(meta, body + struct.pack("<I", crc32(body) & 0xFFFFFFFF))
        _check_recovered(work, sid, frames, expect)
    _rmtree(work)


@_cleaned
def test_power_loss_before_any_metadata_and_with_a_damaged_checkpoint():
    base = _fresh("nometa")
    frames = _frames(30, seed=5)
    sid = _record_open_session(base, frames, 4096)
    folder = base + "/s%05d" % sid
    os.remove(folder + "/meta")
    _check_recovered(base, sid, frames, len(frames))
    # a checkpoint pointing past the files is ignored: everything is rescanned
    base = _fresh("badcp")
    sid = _record_open_session(base, frames, 4096)
    folder = base + "/s%05d" % sid
    body = struct.pack("<4sHBIII", b"HSM1", sid, SESSION_OPEN, 0, 10**6, 1234)
    _write_file(folder + "/meta", body + struct.pack("<I", crc32(body) & 0xFFFFFFFF))
    _check_recovered(base, sid, frames, len(frames))


class _Quota:
    """A filesystem of `capacity` bytes: free space = capacity - bytes under root."""

    def __init__(self, root, capacity):
        self.root = root
        self.capacity = capacity

    def used(self, path=None):
        path = path or self.root
        total = 0
        for e in os.ilistdir(path):
            p = path + "/" + e[0]
            total += self.used(p) if e[1] == 0x4000 else os.stat(p)[6]
        return total

    def __call__(self):
        return self.capacity - self.used()


@_cleaned
def test_full_flash_stops_recording_without_overwriting():
    root = _fresh("full")
    os.mkdir(root)
    quota = _Quota(root, 40000)
    log = FlashLog(root, segment_bytes=4096, reserve_bytes=2048, free_bytes=quota)
    first = log.start()
    early = _frames(20, seed=6)
    for f in early:
        assert log.append(f, len(f))
    log.stop()
    before = _stream(log, first)
    sid = log.start()
    frames = _frames(400, seed=7)
    written = 0
    for f in frames:
        if not log.append(f, len(f)):
            break
        written += 1
    assert 0 < written < len(frames)
    assert log.full and not log.recording
    assert quota() >= 2048  # the reserve was never touched
    assert not log.append(frames[0], len(frames[0]))
    try:
        log.start()
        raise AssertionError("started a session on a full flash")
    except FlashFull:
        pass
    # nothing was overwritten and the stopped session holds every record written
    log2 = FlashLog(root, segment_bytes=4096, reserve_bytes=2048, free_bytes=quota)
    assert log2.recovered == []
    assert _stream(log2, first) == before
    got, end, why = scan_records(_stream(log2, sid))
    assert why is None and [g[1] for g in got] == frames[:written]
    assert log2.find(sid)[FLAGS] == 0
    # still full until the host confirms and erases something
    try:
        log2.erase(sid)
        raise AssertionError("erased an unsynced session")
    except NotSynced:
        pass
    log2.confirm(sid, log2.find(sid)[CRC])
    log2.erase(sid)
    assert log2.start() == sid + 1


@_cleaned
def test_seek_by_offset_through_the_index():
    root = _fresh("seek")
    log = FlashLog(root, segment_bytes=2048, reserve_bytes=0)
    sid = log.start()
    for f in _frames(150, seed=8):
        log.append(f, len(f))
    log.stop()
    data = _stream(log, sid)
    r = log.open_reader(sid)
    assert len(r._starts) > 10
    buf = bytearray(300)
    mv = memoryview(buf)
    random.seed(2)
    for _ in range(300):
        off = random.getrandbits(20) % len(data)
        n = 1 + random.getrandbits(9) % 299
        got = r.read_into(off, mv, n)
        assert 0 < got <= n
        assert bytes(buf[:got]) == data[off:off + got]
        k = r.segment_of(off)
        assert r._starts[k] <= off < r._starts[k + 1]
    assert r.read_into(len(data), mv, 10) == 0
    r.close()


@_cleaned
def test_erase_only_touches_synced_sessions():
    root = _fresh("erase")
    log = FlashLog(root, segment_bytes=4096, reserve_bytes=0)
    ids = []
    for s in range(3):
        ids.append(log.start())
        for f in _frames(10, seed=20 + s):
            log.append(f, len(f))
        log.stop()
    open_id = log.start()
    try:
        log.erase(ids[0])
        raise AssertionError("erased an unsynced session")
    except NotSynced:
        pass
    try:
        log.confirm(ids[0], (log.find(ids[0])[CRC] + 1) & 0xFFFFFFFF)
        raise AssertionError("confirmed with a wrong CRC")
    except CrcMismatch:
        pass
    try:
        log.confirm(open_id, 0)
        raise AssertionError("confirmed an open session")
    except SessionOpen:
        pass
    assert log.erase_synced() == 0
    keep = _stream(log, ids[2])
    log.confirm(ids[0], log.find(ids[0])[CRC])
    log.confirm(ids[1], log.find(ids[1])[CRC])
    assert log.find(ids[0])[FLAGS] == SESSION_SYNCED
    log.erase(ids[0])
    assert log.erase_synced() == 1
    assert [i[ID] for i in log.sessions()] == [ids[2], open_id]
    assert _stream(log, ids[2]) == keep
    log.stop()
    # after a remount the synced flag, ids and data are as left
    log2 = FlashLog(root, segment_bytes=4096, reserve_bytes=0)
    assert [i[ID] for i in log2.sessions()] == [ids[2], open_id]
    assert log2.start() == open_id + 1


@_cleaned
def test_a_damaged_session_is_kept_unsynced_until_confirmed():
    root = _fresh("damaged")
    log = FlashLog(root, segment_bytes=4096, reserve_bytes=0)
    sid = log.start()
    for f in _frames(30, seed=40):
        log.append(f, len(f))
    log.stop()
    crc = log.find(sid)[CRC]
    try:
        log.mark_damaged(sid, (crc + 1) & 0xFFFFFFFF)
        raise AssertionError("marked with a CRC it was not listed with")
    except CrcMismatch:
        pass
    open_id = log.start()
    try:
        log.mark_damaged(open_id, 0)
        raise AssertionError("marked the open session")
    except SessionOpen:
        pass
    log.stop()
    log.mark_damaged(sid, crc)
    log.mark_damaged(sid, crc)  # again: no change
    assert log.find(sid)[FLAGS] == SESSION_DAMAGED
    # damaged is not synced: never erased, not even by erase_synced
    try:
        log.erase(sid)
        raise AssertionError("erased a damaged session nobody confirmed")
    except NotSynced:
        pass
    assert log.erase_synced() == 0
    # the flag survives a restart; a confirmation makes it erasable like any synced session
    log2 = FlashLog(root, segment_bytes=4096, reserve_bytes=0)
    assert log2.find(sid)[FLAGS] == SESSION_DAMAGED and log2.find(sid)[CRC] == crc
    log2.confirm(sid, crc)
    assert log2.find(sid)[FLAGS] == SESSION_DAMAGED | SESSION_SYNCED
    assert log2.erase_synced() == 1
    assert [i[ID] for i in log2.sessions()] == [open_id]


@_cleaned
def test_append_allocates_nothing_in_steady_state():
    root = _fresh("alloc")
    log = FlashLog(root, segment_bytes=1 << 20, reserve_bytes=0, flush_records=8, flush_ms=0)
    log.start()
    frame = bytearray(509)
    for i in range(509):
        frame[i] = i & 0xFF
    lengths = [30, 120, 250, 509, 77, 13]
    for n in lengths:  # warm-up
        log.append(frame, n)
    micropython.heap_lock()
    try:
        ok = True
        for i in range(600):
            ok = log.append(frame, lengths[i % 6]) and ok
        log.tick()
    finally:
        micropython.heap_unlock()
    assert ok
    assert log.records == 606
    sid = log.stop()
    got, end, why = scan_records(_stream(log, sid))
    assert why is None and len(got) == 606


def test_the_calibration_record_matches_its_golden_vector_and_recovers_like_any_record():
    import json
    from binascii import hexlify, unhexlify

    from hipwire import records

    with open("shared/hipwire/golden.json") as f:
        vectors = json.load(f)["vectors"]
    (v,) = [x for x in vectors if x["name"] == "record_of_calibration"]
    a = v["args"]["calibration"]
    buf = bytearray(records.CALIBRATION_SIZE)
    n = records.encode_calibration(buf, a["clock"], a["flags"], a["standing_unix"], a["mvc_uv"],
                                   a["mvc_unix"])
    assert hexlify(buf[:n]).decode() == v["args"]["frame"]
    d = v["decoded"]["calibration"]
    assert records.decode_calibration(unhexlify(v["args"]["frame"])) == (
        d["clock"], d["flags"], d["standing_unix"], tuple(d["mvc_uv"]), d["mvc_unix"])
    # in the log: appended and recovered after a power cut like any frame
    root = _fresh("calrec")
    log = FlashLog(root)
    sid = log.start(0)
    assert log.append(buf, n)
    log.flush()
    log._file = None  # power lost: nothing closed
    log2 = FlashLog(root)
    assert log2.find(sid)[SIZE] == RECORD_OVERHEAD + n
    _rmtree(root)
    flipped = buf[:6] + bytes([buf[6] ^ 1]) + buf[7:n]
    for bad in (buf[:n - 1], bytes([buf[0] ^ 1]) + buf[1:n], flipped):
        try:
            records.decode_calibration(bytes(bad))
        except Exception as e:  # FrameError
            assert "calibration" in str(e)
        else:
            raise AssertionError("accepted %r" % bad)
