# The live-stream frame format: one definition for the firmware (encoder) and the host (decoder).
#
# Every frame: header "<BBHI" = type, version (major << 4 | minor), seq (u16, one counter across all
# stream frames so the host counts every lost frame), clock (u32 device sample clock of the frame's
# first sample, in ticks of units.CLOCK_HZ); then the payload; then a CRC-16/CCITT-FALSE of all
# preceding bytes. The smallest ATT payload (MTU 23 -> 20 bytes) must carry any frame type: batches
# shrink to fit, STATUS is split into fixed-size pages.
#
# Runs unchanged on MicroPython: struct with explicit "<" formats, no typing, const via compat; the
# batch encoder's per-sample loops are viper kernels, plain Python on CPython (compat's shim).
import struct
from array import array

from hipwire.compat import const, micropython, ptr8, ptr16, ptr32

VERSION_MAJOR = const(1)
VERSION_MINOR = const(0)
VERSION = const(0x10)  # (VERSION_MAJOR << 4) | VERSION_MINOR

# Frame types. Stream frames are < 0x40; control-channel frames (commands.py) are 0x40 and up.
ENVELOPE = const(0x01)
PELVIS = const(0x02)
EVENT = const(0x03)
STATUS = const(0x04)
RAW_EMG = const(0x05)
REP = const(0x06)
STREAM_TYPES = (ENVELOPE, PELVIS, EVENT, STATUS, RAW_EMG, REP)

HEADER_FORMAT = "<BBHI"
HEADER_SIZE = const(8)
CRC_SIZE = const(2)
OVERHEAD = const(10)
MIN_ATT_PAYLOAD = const(20)
MAX_FRAME = const(509)  # ATT payload at the largest MTU (512) MicroPython accepts

# --- batches (ENVELOPE, PELVIS): payload u8 n_samples, u8 ((n_channels - 1) << 5 | period_ticks),
# then per channel: zigzag LEB128 varint of the first value and, when n > 1, a width code and the
# n-1 deltas of that width. So one 4-channel sample fits the 20-byte minimum (values below 2^13).
BATCH_PREFIX = const(2)
MAX_PERIOD_TICKS = const(31)
WIDTH_ZERO = const(0)  # every delta is 0: no bytes follow
WIDTH_I8 = const(1)
WIDTH_I16 = const(2)
WIDTH_I32 = const(3)
MAX_BATCH_SAMPLES = const(255)
MAX_CHANNELS = const(8)
# Values must satisfy |v| < 2**30 (small ints on the ESP32), so every delta fits in 32 bits;
# decoders refuse frames with values outside that range.
VALUE_LIMIT = const(1 << 30)

# --- EVENT payload
EVENT_FORMAT = "<BBH"  # kind, side, stride index
EVENT_SIZE = const(4)
IC = const(1)
FC = const(2)
LEFT = const(0)
RIGHT = const(1)

# --- REP payload: one exam repetition the device found, sent when it ends. The header clock is the
# repetition's start; the lowest point (or peak) and the end are tick offsets from it (u16: 65 s at
# 1 kHz, longer than any hold). Task codes are commands.EXAM_TASKS (1-based), side LEFT/RIGHT is
# the stance side the host named with OP_TASK, index counts the task's repetitions from 0, depth is
# the task's movement amplitude (REP_DEPTH_UNITS), flags say how sure the device is.
REP_FORMAT = "<BBBBHHh"  # task, side, index, flags, low offset, end offset, depth
REP_SIZE = const(10)
REP_TRUNCATED = const(0x01)  # ended by the task's end (OP_TASK), not by the movement itself
REP_SHALLOW = const(0x02)  # the movement was smaller than the task usually needs
REP_FLAGS = ((REP_TRUNCATED, "truncated"), (REP_SHALLOW, "shallow"))
# depth: millimetres of pelvis descent (step-down, single-leg squat), centidegrees of swing-side
# obliquity change (single-leg stance, weight-bearing hip abduction: + = the swing side drops)
REP_DEPTH_UNITS = ("cdeg", "mm", "mm", "cdeg")

# --- STATUS payload: one or more pages, each a page id followed by fixed fields, so that a
# 20-byte ATT payload still carries one page per frame.
PAGE_POWER = const(0)  # battery_pct, state flags, battery_mv, quality flags of the 4 channels
PAGE_CAPTURE = const(1)  # EMG samples lost, IMU samples lost (cumulative since boot)
PAGE_LINK = const(2)  # frames dropped for back-pressure, flash free (KiB)
PAGE_MAINS = const(3)  # mains amplitude per channel (uV)
PAGE_DSP = const(4)  # gait events dropped, task restarts
PAGE_FORMATS = ("<BBH4B", "<II", "<II", "<4H", "<II")
PAGE_FIELDS = (
    ("battery_pct", "state", "battery_mv", "quality"),
    ("emg_lost_samples", "imu_lost_samples"),
    ("frames_dropped", "flash_free_kib"),
    ("mains_uv",),
    ("events_dropped", "task_restarts"),
)
PAGE_SIZES = (8, 8, 8, 8, 8)  # struct.calcsize of PAGE_FORMATS, without the page id byte
N_PAGES = const(5)

# state flags in PAGE_POWER
STATE_STREAMING = const(0x01)
STATE_RECORDING = const(0x02)
STATE_FLASH_FULL = const(0x04)
STATE_AUTHENTICATED = const(0x08)
STATE_CALIBRATED = const(0x10)
STATE_RAW_MODE = const(0x20)
STATE_LOW_BATTERY = const(0x40)
STATE_CHARGING = const(0x80)
STATE_NAMES = ((STATE_STREAMING, "streaming"), (STATE_RECORDING, "recording"),
               (STATE_FLASH_FULL, "flash_full"), (STATE_AUTHENTICATED, "authenticated"),
               (STATE_CALIBRATED, "calibrated"), (STATE_RAW_MODE, "raw_mode"),
               (STATE_LOW_BATTERY, "low_battery"), (STATE_CHARGING, "charging"))


class FrameError(ValueError):
    """A frame that cannot be decoded; the message names the problem."""


# ---------------------------------------------------------------- CRC-16/CCITT-FALSE
def _make_crc_table():
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = array("H", _make_crc_table())


@micropython.viper
def _crc16_kernel(buf: ptr8, n: int, table: ptr16, crc: int) -> int:
    i = 0
    while i < n:
        crc = ((crc << 8) & 0xFF00) ^ table[((crc >> 8) ^ buf[i]) & 0xFF]
        i += 1
    return crc


def crc16(buf, length, crc=0xFFFF):
    """CRC-16/CCITT-FALSE of buf[0:length] (bytes, bytearray or memoryview). A viper loop: in
    bytecode the CRC of a 200-byte frame costs several times the rest of encode_batch (or of the
    raw compressor) on the device. Allocation-free."""
    return _crc16_kernel(buf, length, _CRC_TABLE, crc)


crc16_fast = crc16  # the name rawcodec and its callers use




# ---------------------------------------------------------------- encoding (firmware side)
def pack_header(buf, frame_type, seq, clock):
    # On a 32-bit port (the ESP32) 0xFFFFFFFF is a long int, and `clock & 0xFFFFFFFF` would
    # allocate on every frame of the heap-locked sample path; comparing with it does not. So the
    # clock is masked only when it is outside u32 (a clock of 2^30 or more is already a long there,
    # and packing it as it is allocates nothing either).
    if clock < 0 or clock > 0xFFFFFFFF:
        clock &= 0xFFFFFFFF
    struct.pack_into(HEADER_FORMAT, buf, 0, frame_type, VERSION, seq & 0xFFFF, clock)
    return HEADER_SIZE


def seal(buf, payload_end, crc_func=crc16):
    """Append the CRC after buf[0:payload_end]; return the frame length."""
    crc = crc_func(buf, payload_end)
    buf[payload_end] = crc & 0xFF
    buf[payload_end + 1] = crc >> 8
    return payload_end + CRC_SIZE


_WIDTH_BYTES = (0, 1, 2, 4)
# Encoder scratch, per channel c: [c] largest negative delta magnitude and [MAX_CHANNELS + c]
# largest positive delta over the samples taken so far; the same two at 2 * MAX_CHANNELS + c and
# 3 * MAX_CHANNELS + c with the sample on trial added.
_EXTREMES = array("i", bytes(4 * 4 * MAX_CHANNELS))
_TRIAL = const(16)  # 2 * MAX_CHANNELS


# The per-sample work of encode_batch in viper: as bytecode it was the largest part of the firmware's
# time per app step. On the unix port (x86-64) a 4-channel 50-sample frame took 195-210 us as
# bytecode and takes about 6 us with these kernels and crc16_fast. Integer arithmetic only, so the CPython shim (hipwire.compat) gives the same
# results. On the ESP32 viper ints are 32 bits: with |value| < 2**30 every delta, its negation and
# every zigzag code stay below 2**31. A ptr32 load is zero-extended on a 64-bit port (the unix
# port the tests run), so each word is sign-extended: ((w + 2**31) & (2**32 - 1)) - 2**31, which
# on a 32-bit port wraps back to w itself. The two constants are built at run time (sh = 31): as
# literals they are not small ints on the ESP32, and viper would treat them as objects.
@micropython.viper
def _fit(s: ptr32, start: int, nch: int, n_avail: int, max_len: int, ex: ptr32) -> int:
    """How many of n_avail samples (s[start + k * nch + c]) fit max_len bytes; 0 if not even one.
    Leaves the delta extremes of the samples taken in ex[0:2 * MAX_CHANNELS]."""
    sh = 31
    b31 = 1 << sh
    m32 = b31 + b31 - 1
    size = OVERHEAD + BATCH_PREFIX  # frame size of one sample: the first values as varints
    c = 0
    while c < nch:
        v = ((s[start + c] + b31) & m32) - b31
        u = (v << 1) if v >= 0 else ((-v) << 1) - 1
        size += 1
        while u >= 0x80:
            u >>= 7
            size += 1
        ex[c] = 0
        ex[MAX_CHANNELS + c] = 0
        c += 1
    if size > max_len:
        return 0
    n = 1
    while n < n_avail:
        # try adding sample n: frame size with the extremes it gives; keep it only if that fits
        total = size
        p = start + n * nch
        c = 0
        while c < nch:
            d = (((s[p] + b31) & m32) - b31) - (((s[p - nch] + b31) & m32) - b31)
            neg = ex[c]
            pos = ex[MAX_CHANNELS + c]
            if -d > neg:
                neg = -d
            if d > pos:
                pos = d
            ex[_TRIAL + c] = neg
            ex[_TRIAL + MAX_CHANNELS + c] = pos
            nbytes = 0
            if neg > 0 or pos > 0:
                if neg <= 128 and pos <= 127:
                    nbytes = 1
                elif neg <= 32768 and pos <= 32767:
                    nbytes = 2
                else:
                    nbytes = 4
            total += 1 + n * nbytes  # width code and n deltas
            p += 1
            c += 1
        if total > max_len:
            break
        c = 0
        while c < nch:
            ex[c] = ex[_TRIAL + c]
            ex[MAX_CHANNELS + c] = ex[_TRIAL + MAX_CHANNELS + c]
            c += 1
        n += 1
    return n


@micropython.viper
def _write(buf: ptr8, off: int, s: ptr32, start: int, nch: int, n: int, ex: ptr32) -> int:
    """Write the channels of n samples at buf[off] (first value, width code, deltas) with the delta
    extremes _fit left in ex; return the offset after them."""
    sh = 31
    b31 = 1 << sh
    m32 = b31 + b31 - 1
    c = 0
    while c < nch:
        v = ((s[start + c] + b31) & m32) - b31
        u = (v << 1) if v >= 0 else ((-v) << 1) - 1
        while u >= 0x80:
            buf[off] = (u & 0x7F) | 0x80
            u >>= 7
            off += 1
        buf[off] = u
        off += 1
        if n > 1:
            neg = ex[c]
            pos = ex[MAX_CHANNELS + c]
            width = WIDTH_ZERO
            if neg > 0 or pos > 0:
                if neg <= 128 and pos <= 127:
                    width = WIDTH_I8
                elif neg <= 32768 and pos <= 32767:
                    width = WIDTH_I16
                else:
                    width = WIDTH_I32
            buf[off] = width
            off += 1
            if width != WIDTH_ZERO:
                p = start + nch + c
                e = start + n * nch
                while p < e:
                    # little-endian two's complement: bits 0..31 of d, whatever the shift fills in
                    d = (((s[p] + b31) & m32) - b31) - (((s[p - nch] + b31) & m32) - b31)
                    buf[off] = d & 0xFF
                    off += 1
                    if width != WIDTH_I8:
                        buf[off] = (d >> 8) & 0xFF
                        off += 1
                        if width == WIDTH_I32:
                            buf[off] = (d >> 16) & 0xFF
                            buf[off + 1] = (d >> 24) & 0xFF
                            off += 2
                    p += nch
        c += 1
    return off


def encode_batch(buf, max_len, frame_type, seq, clock, period_ticks, samples, start, n_avail,
                 n_channels):
    """Encode as many of n_avail interleaved samples (samples[start + k*n_channels + c]) as fit in
    max_len bytes. Returns the frame length; the number of samples taken is buf[HEADER_SIZE].
    Returns 0 when n_avail is 0 or not even one sample fits. Allocates nothing.

    samples: values |v| < 2**30 in an array('i'), which the kernels read as 32-bit words; any
    other sequence (a list in a test) is first copied into one, which allocates. buf: a bytearray
    or a memoryview of one. The kernels do not check bounds, so max_len is capped at len(buf) and
    n_avail at the samples present after start (where the bytecode encoder raised IndexError;
    every frame it did encode comes out the same)."""
    if n_avail <= 0 or not 0 < n_channels <= MAX_CHANNELS or not 0 < period_ticks <= MAX_PERIOD_TICKS:
        return 0
    if start < 0:
        raise IndexError("encode_batch: negative start")
    if not isinstance(samples, array):
        samples = array("i", samples[start:start + n_avail * n_channels])
        start = 0
    if max_len > len(buf):
        max_len = len(buf)
    rows = (len(samples) - start) // n_channels
    if n_avail > rows:
        if rows <= 0:
            return 0
        n_avail = rows
    if n_avail > MAX_BATCH_SAMPLES:
        n_avail = MAX_BATCH_SAMPLES
    n = _fit(samples, start, n_channels, n_avail, max_len, _EXTREMES)
    if n == 0:
        return 0
    off = pack_header(buf, frame_type, seq, clock)
    buf[off] = n
    buf[off + 1] = ((n_channels - 1) << 5) | period_ticks
    off = _write(buf, off + BATCH_PREFIX, samples, start, n_channels, n, _EXTREMES)
    return seal(buf, off, crc16_fast)


def encode_event(buf, seq, clock, kind, side, stride):
    off = pack_header(buf, EVENT, seq, clock)
    struct.pack_into(EVENT_FORMAT, buf, off, kind, side, stride & 0xFFFF)
    return seal(buf, off + EVENT_SIZE)


def encode_rep(buf, seq, start_clock, task, side, index, flags, low_ticks, end_ticks, depth):
    """A REP frame into buf (at least OVERHEAD + REP_SIZE); offsets are clamped to u16, depth to
    i16, so a bad value cannot raise in the sample path."""
    off = pack_header(buf, REP, seq, start_clock)
    if low_ticks > 0xFFFF:
        low_ticks = 0xFFFF
    if end_ticks > 0xFFFF:
        end_ticks = 0xFFFF
    if depth > 32767:
        depth = 32767
    elif depth < -32768:
        depth = -32768
    struct.pack_into(REP_FORMAT, buf, off, task, side, index & 0xFF, flags & 0xFF,
                     low_ticks, end_ticks, depth)
    return seal(buf, off + REP_SIZE)


# Status values live in one array('i') on the device, indexed by these constants, so that packing
# a page allocates nothing and the page layout is defined only here.
V_BATTERY_PCT = const(0)
V_STATE = const(1)
V_BATTERY_MV = const(2)
V_QUALITY = const(3)  # 4 entries, one per EMG channel
V_EMG_LOST = const(7)
V_IMU_LOST = const(8)
V_FRAMES_DROPPED = const(9)
V_FLASH_FREE_KIB = const(10)
V_MAINS_UV = const(11)  # 4 entries
V_EVENTS_DROPPED = const(15)
V_TASK_RESTARTS = const(16)
N_STATUS_VALUES = const(17)


def pack_status_page(buf, off, page, v):
    """Write page id and fields from the status value array v at buf[off]; return the new offset."""
    buf[off] = page
    off += 1
    if page == PAGE_POWER:
        struct.pack_into("<BBH4B", buf, off, v[V_BATTERY_PCT], v[V_STATE], v[V_BATTERY_MV],
                         v[V_QUALITY], v[V_QUALITY + 1], v[V_QUALITY + 2], v[V_QUALITY + 3])
    elif page == PAGE_CAPTURE:
        struct.pack_into("<II", buf, off, v[V_EMG_LOST], v[V_IMU_LOST])
    elif page == PAGE_LINK:
        struct.pack_into("<II", buf, off, v[V_FRAMES_DROPPED], v[V_FLASH_FREE_KIB])
    elif page == PAGE_MAINS:
        struct.pack_into("<4H", buf, off, v[V_MAINS_UV], v[V_MAINS_UV + 1], v[V_MAINS_UV + 2],
                         v[V_MAINS_UV + 3])
    else:
        struct.pack_into("<II", buf, off, v[V_EVENTS_DROPPED], v[V_TASK_RESTARTS])
    return off + PAGE_SIZES[page]


def encode_status(buf, max_len, seq, clock, first_page, values):
    """A STATUS frame with as many pages as fit max_len, starting at first_page and wrapping.
    Returns the frame length; the caller advances first_page by status_pages_fitting(max_len)."""
    off = pack_header(buf, STATUS, seq, clock)
    for i in range(status_pages_fitting(max_len)):
        off = pack_status_page(buf, off, (first_page + i) % N_PAGES, values)
    return seal(buf, off)


def status_pages_fitting(max_len):
    """How many whole STATUS pages fit in one frame of max_len bytes (at least 1 for 20 bytes)."""
    room = max_len - OVERHEAD
    count = 0
    for size in PAGE_SIZES:
        if room < 1 + size:
            break
        room -= 1 + size
        count += 1
    return count


# ---------------------------------------------------------------- decoding (both sides)
def check(frame):
    """Validate length, CRC and version of one frame; return its (type, version, seq, clock)."""
    n = len(frame)
    if n < OVERHEAD:
        raise FrameError("frame too short: %d bytes, need at least %d" % (n, OVERHEAD))
    crc = frame[n - 2] | (frame[n - 1] << 8)
    if crc16(frame, n - 2) != crc:
        raise FrameError("CRC mismatch")
    ftype, version, seq, clock = struct.unpack_from(HEADER_FORMAT, frame, 0)
    if version >> 4 != VERSION_MAJOR:
        raise FrameError("unsupported protocol major version %d" % (version >> 4))
    return ftype, version, seq, clock


def read_sample_prefix(frame, end, what):
    """The 2-byte prefix of batch and raw frames: (n_samples, n_channels, period_ticks)."""
    off = HEADER_SIZE
    if end - off < BATCH_PREFIX:
        raise FrameError("%s payload too short" % what)
    n = frame[off]
    period = frame[off + 1] & 0x1F
    if n == 0 or period == 0:
        raise FrameError("%s header invalid: n=%d period=%d" % (what, n, period))
    return n, (frame[off + 1] >> 5) + 1, period


def read_zigzag(frame, off, end, max_shift, what):
    """Decode a zigzag LEB128 varint at frame[off]; return (value, offset after it)."""
    u = 0
    shift = 0
    while True:
        if off >= end:
            raise FrameError("%s truncated" % what)
        b = frame[off]
        off += 1
        u |= (b & 0x7F) << shift
        if not b & 0x80:
            return (u >> 1) ^ -(u & 1), off
        shift += 7
        if shift > max_shift:
            raise FrameError("%s: varint too long" % what)


def _cumulate(values, first):
    out = [first]
    acc = first
    for d in values:
        acc += d
        out.append(acc)
    return out


def decode_batch(frame, cumulate=_cumulate):
    """Payload of an ENVELOPE/PELVIS frame -> (period_ticks, [channel values lists]).

    cumulate(deltas, first) -> list lets the host pass a C-speed running sum."""
    end = len(frame) - CRC_SIZE
    n, n_channels, period = read_sample_prefix(frame, end, "batch")
    off = HEADER_SIZE + BATCH_PREFIX
    channels = []
    for c in range(n_channels):
        first, off = read_zigzag(frame, off, end, 35, "batch channel %d start value" % c)
        if not -VALUE_LIMIT < first < VALUE_LIMIT:
            raise FrameError("batch value %d in channel %d outside the format's range" % (first, c))
        if n == 1:
            channels.append([first])
            continue
        if off >= end:
            raise FrameError("batch truncated in channel %d width" % c)
        width = frame[off]
        off += 1
        if width > WIDTH_I32:
            raise FrameError("invalid delta width code %d in channel %d" % (width, c))
        nbytes = _WIDTH_BYTES[width]
        count = n - 1
        if nbytes == 0:
            channels.append([first] * n)
            continue
        if off + count * nbytes > end:
            raise FrameError("batch truncated in channel %d deltas" % c)
        deltas = struct.unpack_from("<%d%s" % (count, "bhi"[width - 1]), frame, off)
        off += count * nbytes
        values = cumulate(deltas, first)
        if width == WIDTH_I32 and not -VALUE_LIMIT < min(values) <= max(values) < VALUE_LIMIT:
            # 8- and 16-bit deltas over <= 255 samples cannot leave the range from a valid start
            raise FrameError("batch values in channel %d outside the format's range" % c)
        channels.append(values)
    if off != end:
        raise FrameError("%d unexpected bytes after batch" % (end - off))
    return period, channels


def decode_event(frame):
    if len(frame) != OVERHEAD + EVENT_SIZE:
        raise FrameError("EVENT frame must be %d bytes, got %d" % (OVERHEAD + EVENT_SIZE, len(frame)))
    kind, side, stride = struct.unpack_from(EVENT_FORMAT, frame, HEADER_SIZE)
    if kind not in (IC, FC):
        raise FrameError("unknown event kind %d" % kind)
    if side not in (LEFT, RIGHT):
        raise FrameError("unknown event side %d" % side)
    return kind, side, stride


def decode_rep(frame):
    """(task, side, index, flags, low offset, end offset, depth) of a checked REP frame."""
    if len(frame) != OVERHEAD + REP_SIZE:
        raise FrameError("REP frame must be %d bytes, got %d" % (OVERHEAD + REP_SIZE, len(frame)))
    task, side, index, flags, low, end, depth = struct.unpack_from(REP_FORMAT, frame, HEADER_SIZE)
    if task < 1 or task > len(REP_DEPTH_UNITS):
        raise FrameError("unknown exam task %d" % task)
    if side not in (LEFT, RIGHT):
        raise FrameError("unknown repetition side %d" % side)
    if low > end:
        raise FrameError("repetition's lowest point after its end")
    return task, side, index, flags, low, end, depth


def decode_status(frame):
    """STATUS payload -> dict of the fields of every page present (quality, mains_uv as lists)."""
    end = len(frame) - CRC_SIZE
    off = HEADER_SIZE
    fields = {}
    if off >= end:
        raise FrameError("STATUS frame has no page")
    while off < end:
        page = frame[off]
        off += 1
        if page >= N_PAGES:
            raise FrameError("unknown STATUS page %d" % page)
        size = PAGE_SIZES[page]
        if off + size > end:
            raise FrameError("STATUS page %d truncated" % page)
        values = struct.unpack_from(PAGE_FORMATS[page], frame, off)
        off += size
        if page == PAGE_POWER:
            fields["battery_pct"], fields["state"], fields["battery_mv"] = values[0:3]
            fields["quality"] = list(values[3:7])
        elif page == PAGE_MAINS:
            fields["mains_uv"] = list(values)
        else:
            names = PAGE_FIELDS[page]
            for i in range(len(names)):
                fields[names[i]] = values[i]
    return fields
