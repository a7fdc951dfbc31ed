# The flash log: every frame recorded at home, as hipwire.records records, until the clinic syncs it.
#
# Layout under root (docs/STORAGE.md):
#   next_id                 u16 of the next session id (ids are never reused, even after an erase)
#   sNNNNN/meta             session metadata, replaced atomically (write meta.tmp, rename)
#   sNNNNN/KKKKK.seg        segments of at most segment_bytes; a record never spans two segments,
#                           so every segment starts on a record boundary
# The session's logical stream is the concatenation of its segments; SESSION_READ offsets and the
# CRC-32 in the metadata refer to it. The index is the list of segment start offsets (one per
# segment, from the file sizes), so a read seeks with one search and one file seek.
#
# Guarantees:
# - Power loss: the metadata holds a checkpoint (size and CRC of a prefix known to be on flash,
#   updated at every segment change and at stop). Mounting scans every byte after the checkpoint:
#   a torn last record is cut, every complete record is kept, the CRC is recomputed.
#   What a power loss can cost: the records not yet flushed (at most flush_records records or
#   flush_ms of data), never anything flushed before.
# - Full flash: a segment is only started when the filesystem has room for all of it plus
#   reserve_bytes. When it has not, recording stops, `full` is set and the session is closed
#   intact. Nothing is ever overwritten.
# - Unsynced data is never erased: erase() refuses a session the host has not confirmed.
# - append() allocates nothing in steady state (tests/firmware/mp_test_flashlog.py checks it under
#   micropython.heap_lock): preallocated header/CRC buffers, the open file kept, CRCs in viper.
#   Changing segment allocates (new file object, metadata write): once per segment_bytes.
import os
import struct
import time
from binascii import crc32

from micropython import const

from hipwire.commands import SESSION_DAMAGED, SESSION_OPEN, SESSION_SYNCED
from hipwire.frames import MAX_FRAME
from hipwire.records import RECORD_CRC_SIZE, RECORD_HEADER_SIZE, RECORD_MAGIC, RECORD_OVERHEAD
from store import crc as crc32w

_META_MAGIC = b"HSM1"
_META_FORMAT = "<4sHBIII"  # magic, id, flags, start (unix s), checkpoint size, checkpoint CRC
_META_SIZE = const(19)  # + CRC-32 of those bytes
_MAX_ID = const(0xFFFE)  # 0xFFFF is ERASE_ALL_SYNCED
_COPY_BLOCK = const(512)

# session info list indexes (one small list per session, kept in memory)
ID = const(0)
SIZE = const(1)
CRC = const(2)
FLAGS = const(3)
START = const(4)


class LogError(Exception):
    pass


class NotFound(LogError):
    pass


class NotSynced(LogError):
    pass


class SessionOpen(LogError):
    pass


class FlashFull(LogError):
    pass


class CrcMismatch(LogError):
    pass


def _join(*parts):
    return "/".join(parts)


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _size_of(path):
    return os.stat(path)[6]


def _write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    try:
        os.rename(tmp, path)
    except OSError:  # a filesystem that will not rename over a file (FAT): not atomic there
        os.remove(path)
        os.rename(tmp, path)


def _session_dir(root, sid):
    return _join(root, "s%05d" % sid)


def _segment_name(k):
    return "%05d.seg" % k


class FlashLog:
    def __init__(self, root, segment_bytes=65536, reserve_bytes=32768, free_bytes=None,
                 flush_records=16, flush_ms=1000, now_ms=None):
        """root: the log folder (created). free_bytes: callable -> bytes free on the filesystem
        (default from os.statvfs(root); tests pass a quota). now_ms: time.ticks_ms by default."""
        self.root = root
        self.segment_bytes = segment_bytes
        self.reserve_bytes = reserve_bytes
        self._free_bytes = free_bytes or self._statvfs_free
        self.flush_records = flush_records
        self.flush_ms = flush_ms
        self._now_ms = now_ms or time.ticks_ms
        self._hdr = bytearray(RECORD_HEADER_SIZE)
        self._tail = bytearray(RECORD_CRC_SIZE)
        self._rec_crc = crc32w.new_state()
        self._crc = crc32w.new_state()  # CRC of the open session's logical stream
        self._file = None
        self._cur = None  # info list of the open session
        self._seg_index = 0
        self._seg_used = 0
        self._unflushed = 0
        self._last_flush = 0
        self._anchor_unix = 0
        self._anchor_clock = 0
        self._anchored = False
        self.full = False
        self.records = 0  # appended to the open session
        self.rejected = 0  # frames refused (not recording, too long, full)
        self.recovered = []  # (session id, bytes cut) found at mount
        self._sessions = []
        try:
            os.mkdir(root)
        except OSError:
            pass
        self._next_id = self._read_next_id()
        self._mount()

    # ------------------------------------------------------------ space
    def _statvfs_free(self):
        s = os.statvfs(self.root)
        return s[1] * s[4]

    def free_bytes(self):
        return self._free_bytes()

    def _room_for_segment(self):
        return self._free_bytes() >= self.segment_bytes + self.reserve_bytes

    # ------------------------------------------------------------ metadata
    def _read_next_id(self):
        try:
            with open(_join(self.root, "next_id"), "rb") as f:
                data = f.read()
            if len(data) == 6 and crc32(data[:2]) & 0xFFFFFFFF == struct.unpack("<I", data[2:])[0]:
                return struct.unpack("<H", data[:2])[0]
        except OSError:
            pass
        return 1

    def _write_next_id(self, value):
        head = struct.pack("<H", value)
        _write_atomic(_join(self.root, "next_id"), head + struct.pack("<I", crc32(head) & 0xFFFFFFFF))

    def _write_meta(self, info):
        body = struct.pack(_META_FORMAT, _META_MAGIC, info[ID], info[FLAGS], info[START],
                           info[SIZE], info[CRC])
        _write_atomic(_join(_session_dir(self.root, info[ID]), "meta"),
                      body + struct.pack("<I", crc32(body) & 0xFFFFFFFF))

    @staticmethod
    def _parse_meta(data):
        if len(data) != _META_SIZE + 4:
            return None
        if crc32(data[:_META_SIZE]) & 0xFFFFFFFF != struct.unpack_from("<I", data, _META_SIZE)[0]:
            return None
        magic, sid, flags, start, size, crc = struct.unpack_from(_META_FORMAT, data, 0)
        if magic != _META_MAGIC:
            return None
        return [sid, size, crc, flags, start]

    def _load_meta(self, folder):
        # meta.tmp is only used when meta itself is missing or damaged (a rename cut short)
        for name in ("meta", "meta.tmp"):
            try:
                with open(_join(folder, name), "rb") as f:
                    info = self._parse_meta(f.read())
                if info is not None:
                    return info
            except OSError:
                pass
        return None

    def _segments(self, sid):
        folder = _session_dir(self.root, sid)
        names = [n for n in os.listdir(folder) if n.endswith(".seg")]
        names.sort()
        return folder, names

    # ------------------------------------------------------------ mount and recovery
    def _mount(self):
        ids = []
        for name in os.listdir(self.root):
            if len(name) == 6 and name[0] == "s" and name[1:].isdigit():
                ids.append(int(name[1:]))
        ids.sort()
        for sid in ids:
            folder = _session_dir(self.root, sid)
            info = self._load_meta(folder)
            if info is None:  # never got its first metadata: an open session with no checkpoint
                info = [sid, 0, 0, SESSION_OPEN, 0]
            folder, names = self._segments(sid)
            total = 0
            for n in names:
                total += _size_of(_join(folder, n))
            if info[FLAGS] & SESSION_OPEN or total != info[SIZE]:
                cut = self._recover(info, folder, names)
                info[FLAGS] &= ~SESSION_OPEN
                self._write_meta(info)
                self.recovered.append((sid, cut))
            self._sessions.append(info)
            if sid >= self._next_id:
                self._next_id = sid + 1

    def _recover(self, info, folder, names):
        """Rebuild size and CRC from the checkpoint on; cut torn or corrupt tails. Returns the
        number of bytes cut."""
        starts = []
        total = 0
        for n in names:
            starts.append(total)
            total += _size_of(_join(folder, n))
        # resume from the checkpoint when it falls on a segment start (or the very end); a
        # checkpoint the files do not match is not trusted: rescan everything
        first = 0
        size = 0
        state = crc32w.new_state()
        cp = info[SIZE]
        if cp and cp == total:
            first = len(names)
        elif cp:
            for k in range(len(starts)):
                if starts[k] == cp:
                    first = k
                    break
        if first:
            size = cp
            state = crc32w.new_state(info[CRC])
        cut = 0
        buf = bytearray(RECORD_OVERHEAD + MAX_FRAME)
        for k in range(first, len(names)):
            path = _join(folder, names[k])
            good, length = self._scan_segment(path, buf, state)
            if good < length:
                self._cut(path, good)
                cut += length - good
            if good == 0:
                os.remove(path)
            size += good
        info[SIZE] = size
        info[CRC] = state[0]
        return cut

    @staticmethod
    def _scan_segment(path, buf, state):
        """Walk the records of one segment, adding every good one to the CRC state. Returns (end
        of the last good record, file length)."""
        mv = memoryview(buf)
        good = 0
        with open(path, "rb") as f:
            length = f.seek(0, 2)
            f.seek(0)
            while True:
                if f.readinto(mv[:RECORD_HEADER_SIZE]) != RECORD_HEADER_SIZE:
                    break
                magic = buf[0]
                n = buf[1] | (buf[2] << 8)
                if magic != RECORD_MAGIC or n > MAX_FRAME:
                    break
                rest = n + RECORD_CRC_SIZE
                if f.readinto(mv[RECORD_HEADER_SIZE:RECORD_HEADER_SIZE + rest]) != rest:
                    break
                end = RECORD_HEADER_SIZE + n
                if crc32(mv[:end]) & 0xFFFFFFFF != struct.unpack_from("<I", buf, end)[0]:
                    break
                crc32w.update(state, buf, 0, end + RECORD_CRC_SIZE)
                good += end + RECORD_CRC_SIZE
        return good, length

    @staticmethod
    def _cut(path, keep):
        """Keep the first `keep` bytes of a file (MicroPython files cannot truncate): copy them to
        a temporary file and rename it over the original."""
        tmp = path + ".cut"
        buf = bytearray(_COPY_BLOCK)
        mv = memoryview(buf)
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            left = keep
            while left > 0:
                n = src.readinto(mv[:min(left, _COPY_BLOCK)])
                if not n:
                    break
                dst.write(mv[:n])
                left -= n
        os.rename(tmp, path)

    # ------------------------------------------------------------ sessions
    def sessions(self):
        """Info lists [id, size, crc, flags, start_unix], oldest first. The open session's size and
        CRC are current (flushed or not)."""
        if self._cur is not None:
            self._cur[CRC] = self._crc[0]
        return self._sessions

    def find(self, sid):
        for info in self._sessions:
            if info[ID] == sid:
                if info is self._cur:
                    info[CRC] = self._crc[0]
                return info
        raise NotFound(sid)

    @property
    def recording(self):
        return self._cur is not None

    @property
    def current_id(self):
        return self._cur[ID] if self._cur is not None else 0

    def set_time_anchor(self, unix_s, clock):
        """From TIME_SYNC: device clock tick `clock` was unix time unix_s."""
        self._anchor_unix = unix_s
        self._anchor_clock = clock
        self._anchored = True

    def unix_time(self, clock):
        """unix s of device clock tick `clock` (u32, wraps), 0 without a TIME_SYNC anchor."""
        if not self._anchored:
            return 0
        return self._anchor_unix + ((clock - self._anchor_clock) & 0xFFFFFFFF) // 1000

    def start(self, clock=None):
        """Open a new session; returns its id. Raises SessionOpen when one is open, FlashFull when
        there is no room for a first segment (and sets `full`)."""
        if self._cur is not None:
            raise SessionOpen(self._cur[ID])
        if not self._room_for_segment():
            self.full = True
            raise FlashFull()
        if self._next_id > _MAX_ID:
            raise FlashFull()  # 65534 sessions recorded: re-provision
        sid = self._next_id
        self._next_id = sid + 1
        self._write_next_id(self._next_id)
        os.mkdir(_session_dir(self.root, sid))
        info = [sid, 0, 0, SESSION_OPEN, self.unix_time(clock) if clock is not None else 0]
        self._write_meta(info)
        self._crc[0] = 0
        self._sessions.append(info)
        self._cur = info
        self.full = False
        self.records = 0
        self._seg_index = 0
        self._open_segment()
        return sid

    def _open_segment(self):
        path = _join(_session_dir(self.root, self._cur[ID]), _segment_name(self._seg_index))
        self._file = open(path, "wb")
        self._seg_used = 0
        self._unflushed = 0
        self._last_flush = self._now_ms()

    def _close_segment(self):
        if self._file is not None:
            self._file.close()  # closing commits the file (littlefs) before the checkpoint names it
            self._file = None

    def _checkpoint(self):
        self._cur[CRC] = self._crc[0]
        self._write_meta(self._cur)

    def _next_segment(self):
        """The record does not fit: close this segment, checkpoint, and open the next one if the
        filesystem has room for all of it. Returns False (recording stopped, `full` set) if not."""
        self._close_segment()
        self._checkpoint()
        if not self._room_for_segment():
            self.full = True
            self.stop()
            return False
        self._seg_index += 1
        self._open_segment()
        return True

    def append(self, frame, n):
        """Record frame[0:n]. True when written (flushed per the flush policy). False when not
        recording, the frame is too long, or the flash is full (then recording has stopped and
        `full` is set). Allocates nothing in steady state."""
        if self._cur is None or n > MAX_FRAME or n <= 0:
            self.rejected += 1
            return False
        size = RECORD_OVERHEAD + n
        if self._seg_used + size > self.segment_bytes and self._seg_used:
            if not self._next_segment():
                self.rejected += 1
                return False
        hdr = self._hdr
        hdr[0] = RECORD_MAGIC
        hdr[1] = n & 0xFF
        hdr[2] = n >> 8
        rc = self._rec_crc
        rc[0] = 0
        crc32w.update(rc, hdr, 0, RECORD_HEADER_SIZE)
        crc32w.update(rc, frame, 0, n)
        tail = self._tail
        crc32w.store_le(rc, tail, 0)
        f = self._file
        f.write(hdr)
        f.write(frame, n)
        f.write(tail)
        st = self._crc
        crc32w.update(st, hdr, 0, RECORD_HEADER_SIZE)
        crc32w.update(st, frame, 0, n)
        crc32w.update(st, tail, 0, RECORD_CRC_SIZE)
        self._seg_used += size
        self._cur[SIZE] += size
        self.records += 1
        self._unflushed += 1
        if (self._unflushed >= self.flush_records
                or time.ticks_diff(self._now_ms(), self._last_flush) >= self.flush_ms):
            self.flush()
        return True

    def flush(self):
        if self._file is not None and self._unflushed:
            self._file.flush()
            self._unflushed = 0
        self._last_flush = self._now_ms()

    def tick(self):
        """Call about once a second: flushes a tail that has waited flush_ms without new records."""
        if self._unflushed and time.ticks_diff(self._now_ms(), self._last_flush) >= self.flush_ms:
            self.flush()

    def stop(self):
        """Close the open session (final size and CRC in its metadata); returns its id, 0 if none."""
        info = self._cur
        if info is None:
            return 0
        self._close_segment()
        info[FLAGS] &= ~SESSION_OPEN
        info[CRC] = self._crc[0]
        self._write_meta(info)
        self._cur = None
        return info[ID]

    def confirm(self, sid, crc):
        """The host holds session sid intact (its CRC-32 matches): mark it synced."""
        self._flag(sid, crc, SESSION_SYNCED)

    def mark_damaged(self, sid, crc):
        """A host read session sid and it did not match its CRC-32 (crc: the one it was listed
        with, so a host marks only the session it read). Kept, listed with SESSION_DAMAGED."""
        self._flag(sid, crc, SESSION_DAMAGED)

    def _flag(self, sid, crc, flag):
        info = self.find(sid)
        if info[FLAGS] & SESSION_OPEN:
            raise SessionOpen(sid)
        if info[CRC] != crc:
            raise CrcMismatch(sid)
        if not info[FLAGS] & flag:
            info[FLAGS] |= flag
            self._write_meta(info)

    def erase(self, sid):
        """Delete a synced session. Raises NotFound, SessionOpen, or NotSynced (never erased)."""
        info = self.find(sid)
        if info[FLAGS] & SESSION_OPEN:
            raise SessionOpen(sid)
        if not info[FLAGS] & SESSION_SYNCED:
            raise NotSynced(sid)
        folder, names = self._segments(sid)
        for n in names:
            os.remove(_join(folder, n))
        for n in os.listdir(folder):
            os.remove(_join(folder, n))
        os.rmdir(folder)
        self._sessions.remove(info)
        if self.full and self._room_for_segment():
            self.full = False

    def erase_synced(self):
        """Delete every synced session; returns how many."""
        count = 0
        for info in list(self._sessions):
            if info[FLAGS] & SESSION_SYNCED and not info[FLAGS] & SESSION_OPEN:
                self.erase(info[ID])
                count += 1
        return count

    def open_reader(self, sid):
        """A SessionReader over a closed session's logical stream."""
        info = self.find(sid)
        if info[FLAGS] & SESSION_OPEN:
            raise SessionOpen(sid)
        folder, names = self._segments(sid)
        return SessionReader(folder, names, info[SIZE])


class SessionReader:
    """Reads the logical stream of one closed session by byte offset. The index is the list of
    segment start offsets; the current segment file stays open between reads."""

    def __init__(self, folder, names, size):
        self.size = size
        self._paths = [_join(folder, n) for n in names]
        starts = []
        total = 0
        for p in self._paths:
            starts.append(total)
            total += _size_of(p)
        starts.append(total)
        self._starts = starts
        self._k = -1
        self._file = None
        self._pos = -1

    def segment_of(self, offset):
        """Index of the segment holding logical offset (binary search of the start offsets)."""
        lo = 0
        hi = len(self._starts) - 2
        while lo < hi:
            mid = (lo + hi + 1) >> 1
            if self._starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def read_into(self, offset, mv, n):
        """Copy up to n bytes of the stream from offset into mv (a memoryview); returns how many
        (0 at the end). Stops at a segment end: call again for the rest."""
        if offset >= self.size or n <= 0:
            return 0
        k = self._k
        if k < 0 or not self._starts[k] <= offset < self._starts[k + 1]:
            k = self.segment_of(offset)
            if self._file is not None:
                self._file.close()
            self._file = open(self._paths[k], "rb")
            self._k = k
            self._pos = -1
        local = offset - self._starts[k]
        if self._pos != local:
            self._file.seek(local)
        left = self._starts[k + 1] - offset
        if n > left:
            n = left
        got = self._file.readinto(mv, n)
        self._pos = local + got
        return got

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None
