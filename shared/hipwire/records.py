# Storage formats: the device's flash-log record, and the host's capture file of raw traffic.
#
# Flash record: "<BH" magic 0xA5, frame length; the frame (exactly as sent on the air); then a
# CRC-32 (binascii.crc32) over magic, length and frame. A torn write leaves a record whose length
# runs past the end or whose CRC fails: recovery cuts the log there and keeps every record before.
import struct
from binascii import crc32

from hipwire.compat import const
from hipwire.frames import FrameError

RECORD_MAGIC = const(0xA5)
RECORD_HEADER = "<BH"
RECORD_HEADER_SIZE = const(3)
RECORD_CRC_SIZE = const(4)
RECORD_OVERHEAD = const(7)

# Capture file: 8-byte magic (the CR LF catches text-mode mangling, the NUL a C-string reader),
# then per frame "<QH" host receive time (us since the Unix epoch), frame length, and the frame.
CAPTURE_MAGIC = b"HSCAP\x00\r\n"
CAPTURE_ENTRY = "<QH"
CAPTURE_ENTRY_SIZE = const(10)


def record_size(frame_len):
    return RECORD_OVERHEAD + frame_len


def encode_record(out, frame, frame_len):
    """Write the record of frame[0:frame_len] into out (bytearray of at least record_size);
    return its length. The CRC is computed over a memoryview, so nothing is copied."""
    struct.pack_into(RECORD_HEADER, out, 0, RECORD_MAGIC, frame_len)
    mv = memoryview(out)
    mv[RECORD_HEADER_SIZE:RECORD_HEADER_SIZE + frame_len] = memoryview(frame)[:frame_len]
    end = RECORD_HEADER_SIZE + frame_len
    struct.pack_into("<I", out, end, crc32(mv[:end]) & 0xFFFFFFFF)
    return end + RECORD_CRC_SIZE


def scan_records(data, offset=0):
    """Walk records in data from offset. Returns (list of (offset, frame bytes), end of the last
    good record, reason it stopped or None when data ended exactly on a record boundary)."""
    frames = []
    n = len(data)
    mv = memoryview(data)
    while offset < n:
        if n - offset < RECORD_OVERHEAD:
            return frames, offset, "torn record header at %d" % offset
        magic, length = struct.unpack_from(RECORD_HEADER, data, offset)
        if magic != RECORD_MAGIC:
            return frames, offset, "bad record magic 0x%02x at %d" % (magic, offset)
        end = offset + RECORD_HEADER_SIZE + length
        if end + RECORD_CRC_SIZE > n:
            return frames, offset, "torn record at %d (length %d past the end)" % (offset, length)
        (crc,) = struct.unpack_from("<I", data, end)
        if crc32(mv[offset:end]) & 0xFFFFFFFF != crc:
            return frames, offset, "record CRC mismatch at %d" % offset
        frames.append((offset, bytes(mv[offset + RECORD_HEADER_SIZE:end])))
        offset = end + RECORD_CRC_SIZE
    return frames, offset, None


def encode_capture_entry(host_time_us, frame):
    return struct.pack(CAPTURE_ENTRY, host_time_us, len(frame)) + bytes(frame)


def read_capture(data):
    """Capture bytes -> list of (file offset, host_time_us, frame). Raises FrameError if the data
    is not a capture; a truncated last entry is reported by the returned tail reason."""
    if not data.startswith(CAPTURE_MAGIC):
        raise FrameError("not a hipsync capture (bad magic)")
    entries = []
    off = len(CAPTURE_MAGIC)
    n = len(data)
    while off < n:
        if n - off < CAPTURE_ENTRY_SIZE:
            return entries, "truncated entry header at offset %d" % off
        t_us, length = struct.unpack_from(CAPTURE_ENTRY, data, off)
        start = off + CAPTURE_ENTRY_SIZE
        if start + length > n:
            return entries, "truncated frame at offset %d" % off
        entries.append((off, t_us, bytes(data[start:start + length])))
        off = start + length
    return entries, None
