# Storage formats: the device's flash-log record, the calibration record a recording starts with,
# and the host's capture file of raw traffic.
#
# Flash record: "<BH" magic 0xA5, frame length; the frame (exactly as sent on the air); then a
# CRC-32 (binascii.crc32) over magic, length and frame. A torn write leaves a record whose length
# runs past the end or whose CRC fails: recovery cuts the log there and keeps every record before.
#
# Calibration record: the first record of every recording (button or REC_START) holds, instead of
# a stream frame, what the device knew about its calibration when the recording started, so that a
# session synced days later can be analysed without the clinic's host:
#   u8 LOG_CALIBRATION 0x50, u8 version (frames.VERSION), u32 device clock at the start,
#   u8 flags (CAL_HAS_STANDING: the pelvis angles are relative to a standing calibration),
#   u32 standing calibration time (unix s, 0 unknown), 4 x u32 MVC (uV, l_gmed r_gmed l_es r_es,
#   0 = none), u32 time the MVCs were given (unix s, 0 unknown), CRC-16 (frames.crc16).
# 33 bytes. It carries no stream seq (the stream's loss accounting does not see it). Type 0x50 is
# neither a stream frame (0x01..0x3F) nor a control frame (0x40..0x42): the flash log only.
import struct
from binascii import crc32

from hipwire.compat import const
from hipwire.frames import VERSION, VERSION_MAJOR, FrameError, crc16, seal

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


LOG_CALIBRATION = const(0x50)
CALIBRATION_FORMAT = "<BBIBI4II"
CALIBRATION_SIZE = const(33)  # struct.calcsize(CALIBRATION_FORMAT) + CRC-16
CAL_HAS_STANDING = const(0x01)  # the same bit as hipwire.commands.CAL_HAS_STANDING


def encode_calibration(buf, clock, flags, standing_unix, mvc_uv, mvc_unix):
    """Write a calibration record's frame into buf (at least CALIBRATION_SIZE); mvc_uv: 4 ints
    (0 = none). Returns its length."""
    struct.pack_into(CALIBRATION_FORMAT, buf, 0, LOG_CALIBRATION, VERSION, clock & 0xFFFFFFFF,
                     flags, standing_unix, mvc_uv[0], mvc_uv[1], mvc_uv[2], mvc_uv[3], mvc_unix)
    return seal(buf, CALIBRATION_SIZE - 2)


def is_calibration(frame):
    return len(frame) > 0 and frame[0] == LOG_CALIBRATION


def decode_calibration(frame):
    """(clock, flags, standing_unix, (4 MVC uV), mvc_unix). Raises FrameError for anything else
    (a newer minor version may append fields: they are ignored)."""
    n = len(frame)
    if n < CALIBRATION_SIZE or frame[0] != LOG_CALIBRATION:
        raise FrameError("not a calibration record (%d bytes, type 0x%02x)"
                         % (n, frame[0] if n else 0))
    if crc16(frame, n - 2) != frame[n - 2] | (frame[n - 1] << 8):
        raise FrameError("calibration record CRC mismatch")
    v = struct.unpack_from(CALIBRATION_FORMAT, frame, 0)
    if v[1] >> 4 != VERSION_MAJOR:
        raise FrameError("unsupported calibration record version %d" % (v[1] >> 4))
    return v[2], v[3], v[4], (v[5], v[6], v[7], v[8]), v[9]


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
