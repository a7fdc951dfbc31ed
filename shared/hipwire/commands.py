# Control-characteristic commands and responses, and session-sync chunks.
#
# Command:  "<BBBB" COMMAND, version, token, op   + request payload  + CRC-16
# Response: "<BBBBB" RESPONSE, version, token, op, status + response payload + CRC-16
# Sync chunk (notified on the sync characteristic): "<BBHI" SYNC_CHUNK, version, session, offset
#   + data + CRC-16; a chunk with no data marks the end of a read.
# The token is chosen by the host and echoed, so a late or replayed response cannot be mistaken
# for the answer to a newer command. Every response carries a status code.
#
# Retries. The token is also the command's sequence number: the host gives every new command the
# next token (1..255, wrapping; one command in flight at a time) and sends a command whose response
# did not come again with the SAME token. The device keeps, per connection, the last command whose
# handler ran (the whole frame: token, op, request bytes, CRC) and the response it sent. The
# identical frame again on that connection is answered with that response byte for byte, without
# running the handler again, so a retried CALIBRATE end or REC_START acts once. It is still
# refused with auth_required if the connection is not authenticated. Any other frame runs as a new
# command and replaces the entry (a frame refused before its handler ran - malformed, unknown op,
# auth_required - empties it): a new token runs, and so does the same token with another op or
# request (a host that restarted may reuse a token; it is not refused). Error statuses a handler
# answered are replayed like OK ones. A new connection starts with no entry: a command sent again
# after a reconnect runs again, so the host sends again only commands that may run twice
# (hipsync.ble.repeatable_on_new_link).
import struct

from hipwire.compat import const
from hipwire.frames import CRC_SIZE, VERSION, VERSION_MAJOR, FrameError, crc16, seal

COMMAND = const(0x40)
RESPONSE = const(0x41)
SYNC_CHUNK = const(0x42)

COMMAND_HEADER = "<BBBB"
COMMAND_HEADER_SIZE = const(4)
RESPONSE_HEADER = "<BBBBB"
RESPONSE_HEADER_SIZE = const(5)
CHUNK_HEADER = "<BBHI"
CHUNK_HEADER_SIZE = const(8)
# Control responses need more than the 20-byte minimum: a host must raise the MTU first.
MIN_CONTROL_ATT_PAYLOAD = const(64)

# Operations. Only INFO, BATTERY and the two AUTH steps work before authentication.
OP_INFO = const(0x01)
OP_BATTERY = const(0x02)
OP_AUTH_CHALLENGE = const(0x03)
OP_AUTH_RESPONSE = const(0x04)
OP_STREAM_START = const(0x10)
OP_STREAM_STOP = const(0x11)
OP_SET_CONFIG = const(0x12)
OP_CALIBRATE = const(0x13)
OP_TIME_SYNC = const(0x14)
OP_SET_MVC = const(0x15)
OP_CAL_INFO = const(0x16)
OP_TASK = const(0x17)
OP_REC_START = const(0x20)
OP_REC_STOP = const(0x21)
OP_SESSION_LIST = const(0x22)
OP_SESSION_READ = const(0x23)
OP_SESSION_CONFIRM = const(0x24)
OP_ERASE = const(0x25)
OP_REC_STATUS = const(0x26)
OP_SESSION_DAMAGED = const(0x27)

# (op, name, request format, response format, needs auth). Formats are struct strings ("" = empty).
OPS = (
    (OP_INFO, "info", "", "<BBBBHHB6sB", False),
    (OP_BATTERY, "battery", "", "<BH", False),
    (OP_AUTH_CHALLENGE, "auth_challenge", "", "<16s", False),
    (OP_AUTH_RESPONSE, "auth_response", "<16s32s", "<32s", False),
    (OP_STREAM_START, "stream_start", "<B", "", True),
    (OP_STREAM_STOP, "stream_stop", "", "", True),
    (OP_SET_CONFIG, "set_config", "<B", "", True),
    (OP_CALIBRATE, "calibrate", "<B", "<Bi", True),
    (OP_TIME_SYNC, "time_sync", "<Q", "<I", True),
    (OP_SET_MVC, "set_mvc", "<4I", "", True),  # accepted MVC per channel, uV; 0 = none
    (OP_CAL_INFO, "cal_info", "", "<BI4II", True),  # CAL_INFO_* below
    (OP_TASK, "task", "<BBB", "<I", True),  # EXAM_TASKS below
    (OP_REC_START, "rec_start", "", "<H", True),
    (OP_REC_STOP, "rec_stop", "", "<H", True),
    (OP_SESSION_LIST, "session_list", "<H", None, True),  # None: variable, see SESSION_ENTRY
    (OP_SESSION_READ, "session_read", "<HII", "<HII", True),
    (OP_SESSION_CONFIRM, "session_confirm", "<HI", "", True),
    (OP_ERASE, "erase", "<H", "<H", True),
    (OP_REC_STATUS, "rec_status", "", "<BHIII", True),  # REC_STATUS_* below
    (OP_SESSION_DAMAGED, "session_damaged", "<HI", "", True),  # id, the CRC-32 it was listed with
)
# SESSION_LIST response: u8 count, then count entries of:
SESSION_ENTRY = "<HIIBI"  # session id, size (bytes), CRC-32 of the whole log, flags, start (unix s)
SESSION_ENTRY_SIZE = const(15)
SESSION_SYNCED = const(0x01)
SESSION_OPEN = const(0x02)  # still recording
# A host read the session twice and it did not match its CRC-32: the flash holds damaged bytes.
# The host kept every record that verifies; the session stays on the device (it is not synced,
# so never erased) until a therapist confirms it (SESSION_CONFIRM with the listed CRC).
SESSION_DAMAGED = const(0x04)
ERASE_ALL_SYNCED = const(0xFFFF)

# CAL_INFO response: flags, standing calibration time (unix s, 0 unknown), MVC per channel (uV,
# l_gmed r_gmed l_es r_es, 0 = none), time the MVCs were set (unix s, 0 unknown). What the device
# keeps in flash (firmware/store/calibration.py) and writes into every recording it starts.
CAL_HAS_STANDING = const(0x01)  # pelvis angles are relative to a standing calibration
# REC_STATUS response: flags, open session id (0 none), seconds recorded (device clock), bytes
# recorded, flash free (KiB)
REC_RECORDING = const(0x01)
REC_FLASH_FULL = const(0x02)

# TASK request: exam task code (0: no task, the repetition search stops; else 1 + an index into
# EXAM_TASKS), stance side (frames.LEFT / frames.RIGHT), repetitions expected (0: unknown).
# Response: the device clock at which the search starts (or stopped). The host's mark of the task
# bounds where the device looks for repetitions; a repetition open at the end is sent truncated.
EXAM_TASKS = ("single_leg_stance", "step_down", "single_leg_squat", "hip_abduction_wb")
TASK_NONE = const(0)

# STREAM_START mode
MODE_PROCESSED = const(0)
MODE_RAW = const(1)

# CALIBRATE steps: standing begin/end, and MVC begin/end per channel (+ channel index 0..3)
CAL_STANDING_BEGIN = const(0x01)
CAL_STANDING_END = const(0x02)
CAL_MVC_BEGIN = const(0x10)
CAL_MVC_END = const(0x20)

# Status codes in every response.
OK = const(0)
ERR_MALFORMED = const(1)
ERR_UNKNOWN_OP = const(2)
ERR_AUTH_REQUIRED = const(3)
ERR_AUTH_FAILED = const(4)
ERR_LOCKED_OUT = const(5)
ERR_BAD_ARG = const(6)
ERR_BUSY = const(7)
ERR_NOT_FOUND = const(8)
ERR_STORAGE = const(9)
ERR_VERSION = const(10)
ERR_MTU = const(11)
ERR_INTERNAL = const(12)
STATUS_NAMES = ("ok", "malformed", "unknown_op", "auth_required", "auth_failed", "locked_out",
                "bad_arg", "busy", "not_found", "storage", "version", "mtu_too_small",
                "internal")


def op_spec(op):
    """(op, name, request format, response format, needs auth) or None."""
    for spec in OPS:
        if spec[0] == op:
            return spec
    return None


def status_name(status):
    return STATUS_NAMES[status] if status < len(STATUS_NAMES) else "status_%d" % status


def _size(fmt):
    return struct.calcsize(fmt) if fmt else 0


def _unpack(fmt, frame, off, end, what):
    size = _size(fmt)
    if end - off != size:
        raise FrameError("%s payload must be %d bytes, got %d" % (what, size, end - off))
    return struct.unpack_from(fmt, frame, off) if fmt else ()


def _check_crc(frame):
    n = len(frame)
    crc = frame[n - 2] | (frame[n - 1] << 8)
    if crc16(frame, n - 2) != crc:
        raise FrameError("CRC mismatch")


def encode_command(op, token, *args):
    """Host side: the bytes of one command (allocates; not used on the device's hot path)."""
    spec = op_spec(op)
    if spec is None:
        raise FrameError("unknown op 0x%02x" % op)
    fmt = spec[2]
    size = COMMAND_HEADER_SIZE + _size(fmt) + CRC_SIZE
    buf = bytearray(size)
    struct.pack_into(COMMAND_HEADER, buf, 0, COMMAND, VERSION, token & 0xFF, op)
    if fmt:
        struct.pack_into(fmt, buf, COMMAND_HEADER_SIZE, *args)
    seal(buf, size - CRC_SIZE)
    return bytes(buf)


def decode_command(frame):
    """Device side: (token, op, args tuple). Raises FrameError naming the problem; the device
    answers ERR_MALFORMED / ERR_UNKNOWN_OP / ERR_VERSION with the token when it could read one."""
    n = len(frame)
    if n < COMMAND_HEADER_SIZE + CRC_SIZE:
        raise FrameError("command too short: %d bytes" % n)
    _check_crc(frame)
    ftype, version, token, op = struct.unpack_from(COMMAND_HEADER, frame, 0)
    if ftype != COMMAND:
        raise FrameError("not a command frame (type 0x%02x)" % ftype)
    if version >> 4 != VERSION_MAJOR:
        raise FrameError("unsupported protocol major version %d" % (version >> 4))
    spec = op_spec(op)
    if spec is None:
        raise FrameError("unknown op 0x%02x" % op)
    return token, op, _unpack(spec[2], frame, COMMAND_HEADER_SIZE, n - CRC_SIZE, spec[1])


def pack_response_header(buf, token, op, status):
    struct.pack_into(RESPONSE_HEADER, buf, 0, RESPONSE, VERSION, token & 0xFF, op & 0xFF, status)
    return RESPONSE_HEADER_SIZE


def encode_response(buf, token, op, status, *args):
    """Write a response into buf; return its length. With a non-OK status the payload is empty."""
    off = pack_response_header(buf, token, op, status)
    if status == OK:
        spec = op_spec(op)
        fmt = spec[3] if spec else ""
        if fmt:
            struct.pack_into(fmt, buf, off, *args)
            off += _size(fmt)
    return seal(buf, off)


def decode_response(frame):
    """Host side: (token, op, status, payload values). SESSION_LIST values are entry tuples."""
    n = len(frame)
    if n < RESPONSE_HEADER_SIZE + CRC_SIZE:
        raise FrameError("response too short: %d bytes" % n)
    _check_crc(frame)
    ftype, version, token, op, status = struct.unpack_from(RESPONSE_HEADER, frame, 0)
    if ftype != RESPONSE:
        raise FrameError("not a response frame (type 0x%02x)" % ftype)
    if version >> 4 != VERSION_MAJOR:
        raise FrameError("unsupported protocol major version %d" % (version >> 4))
    end = n - CRC_SIZE
    off = RESPONSE_HEADER_SIZE
    if status != OK:
        if end != off:
            raise FrameError("error response carries %d payload bytes" % (end - off))
        return token, op, status, ()
    spec = op_spec(op)
    if spec is None:
        raise FrameError("response to unknown op 0x%02x" % op)
    if op == OP_SESSION_LIST:
        if end - off < 1:
            raise FrameError("session list response without count")
        count = frame[off]
        off += 1
        if end - off != count * SESSION_ENTRY_SIZE:
            raise FrameError("session list: %d entries need %d bytes, got %d"
                             % (count, count * SESSION_ENTRY_SIZE, end - off))
        entries = []
        for i in range(count):
            entries.append(struct.unpack_from(SESSION_ENTRY, frame, off + i * SESSION_ENTRY_SIZE))
        return token, op, OK, tuple(entries)
    return token, op, OK, _unpack(spec[3], frame, off, end, spec[1] + " response")


def encode_chunk_header(buf, session, offset):
    struct.pack_into(CHUNK_HEADER, buf, 0, SYNC_CHUNK, VERSION, session & 0xFFFF, offset)
    return CHUNK_HEADER_SIZE


def decode_chunk(frame):
    """Host side: (session, offset, data bytes); empty data = end of the read."""
    n = len(frame)
    if n < CHUNK_HEADER_SIZE + CRC_SIZE:
        raise FrameError("sync chunk too short: %d bytes" % n)
    _check_crc(frame)
    ftype, version, session, offset = struct.unpack_from(CHUNK_HEADER, frame, 0)
    if ftype != SYNC_CHUNK:
        raise FrameError("not a sync chunk (type 0x%02x)" % ftype)
    if version >> 4 != VERSION_MAJOR:
        raise FrameError("unsupported protocol major version %d" % (version >> 4))
    return session, offset, bytes(frame[CHUNK_HEADER_SIZE:n - CRC_SIZE])
