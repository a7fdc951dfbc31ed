# The live-stream frame format: one definition for the firmware (encoder) and the host (decoder).
#
# Every frame: header "<BBHI" = type, version (major << 4 | minor), seq (u16, one counter across all
# stream frames so the host counts every lost frame), clock (u32 device sample clock of the frame's
# first sample, in ticks of units.CLOCK_HZ); then the payload; then a CRC-16/CCITT-FALSE of all
# preceding bytes. The smallest ATT payload (MTU 23 -> 20 bytes) must carry any frame type: batches
# shrink to fit, STATUS is split into fixed-size pages.
#
# Runs unchanged on MicroPython: struct with explicit "<" formats, no typing, const via compat.
import struct

from hipwire.compat import const

VERSION_MAJOR = const(1)
VERSION_MINOR = const(0)
VERSION = const(0x10)  # (VERSION_MAJOR << 4) | VERSION_MINOR

# Frame types. Stream frames are < 0x40; control-channel frames (commands.py) are 0x40 and up.
ENVELOPE = const(0x01)
PELVIS = const(0x02)
EVENT = const(0x03)
STATUS = const(0x04)
RAW_EMG = const(0x05)
STREAM_TYPES = (ENVELOPE, PELVIS, EVENT, STATUS, RAW_EMG)

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
# Values must satisfy |v| < 2**30 (small ints on the ESP32), so every delta fits in 32 bits.

# --- EVENT payload
EVENT_FORMAT = "<BBH"  # kind, side, stride index
EVENT_SIZE = const(4)
IC = const(1)
FC = const(2)
LEFT = const(0)
RIGHT = const(1)

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


_CRC_TABLE = _make_crc_table()


def crc16(buf, length, crc=0xFFFF):
    """CRC-16/CCITT-FALSE of buf[0:length]; allocation-free (small ints only)."""
    table = _CRC_TABLE
    for i in range(length):
        crc = ((crc << 8) & 0xFF00) ^ table[((crc >> 8) ^ buf[i]) & 0xFF]
    return crc


# ---------------------------------------------------------------- encoding (firmware side)
def pack_header(buf, frame_type, seq, clock):
    struct.pack_into(HEADER_FORMAT, buf, 0, frame_type, VERSION, seq & 0xFFFF, clock & 0xFFFFFFFF)
    return HEADER_SIZE


def seal(buf, payload_end, crc_func=crc16):
    """Append the CRC after buf[0:payload_end]; return the frame length."""
    crc = crc_func(buf, payload_end)
    buf[payload_end] = crc & 0xFF
    buf[payload_end + 1] = crc >> 8
    return payload_end + CRC_SIZE


def _zigzag(v):
    return (v << 1) if v >= 0 else (((-v) << 1) - 1)


def _varint_len(u):
    n = 1
    while u >= 0x80:
        u >>= 7
        n += 1
    return n


def _width_for(max_abs_delta, max_pos_delta):
    if max_abs_delta == 0:
        return WIDTH_ZERO
    if max_abs_delta <= 128 and max_pos_delta <= 127:
        return WIDTH_I8
    if max_abs_delta <= 32768 and max_pos_delta <= 32767:
        return WIDTH_I16
    return WIDTH_I32


_WIDTH_BYTES = (0, 1, 2, 4)
_MAX_NEG = [0] * MAX_CHANNELS  # scratch: largest negative delta magnitude per channel
_MAX_POS = [0] * MAX_CHANNELS  # scratch: largest positive delta per channel


def _batch_size(n, n_channels, samples, start):
    """Encoded size of the first n samples, using the delta extremes gathered so far."""
    size = OVERHEAD + BATCH_PREFIX
    for c in range(n_channels):
        neg = _MAX_NEG[c]
        pos = _MAX_POS[c]
        size += _varint_len(_zigzag(samples[start + c]))
        if n > 1:
            size += 1 + (n - 1) * _WIDTH_BYTES[_width_for(neg if neg > pos else pos, pos)]
    return size


def encode_batch(buf, max_len, frame_type, seq, clock, period_ticks, samples, start, n_avail,
                 n_channels):
    """Encode as many of n_avail interleaved samples (samples[start + k*n_channels + c]) as fit in
    max_len bytes. Returns the frame length; the number of samples taken is buf[HEADER_SIZE].
    Returns 0 when n_avail is 0 or not even one sample fits. Allocates nothing."""
    if n_avail <= 0 or not 0 < n_channels <= MAX_CHANNELS or not 0 < period_ticks <= MAX_PERIOD_TICKS:
        return 0
    if n_avail > MAX_BATCH_SAMPLES:
        n_avail = MAX_BATCH_SAMPLES
    for c in range(n_channels):
        _MAX_NEG[c] = 0
        _MAX_POS[c] = 0
    if _batch_size(1, n_channels, samples, start) > max_len:
        return 0
    n = 1
    while n < n_avail:
        # try adding sample n: update delta extremes, keep it only if the frame still fits
        base = start + n * n_channels
        saved = 0
        for c in range(n_channels):
            d = samples[base + c] - samples[base + c - n_channels]
            if d < 0 and -d > _MAX_NEG[c]:
                saved |= 1 << c
                _MAX_NEG[c] = -d  # restored below if sample n does not fit
            elif d > _MAX_POS[c]:
                saved |= 1 << (c + MAX_CHANNELS)
                _MAX_POS[c] = d
        if _batch_size(n + 1, n_channels, samples, start) > max_len:
            _recompute_extremes(n, n_channels, samples, start, saved)
            break
        n += 1
    off = pack_header(buf, frame_type, seq, clock)
    buf[off] = n
    buf[off + 1] = ((n_channels - 1) << 5) | period_ticks
    off += BATCH_PREFIX
    for c in range(n_channels):
        v = samples[start + c]
        u = _zigzag(v)
        while u >= 0x80:
            buf[off] = (u & 0x7F) | 0x80
            u >>= 7
            off += 1
        buf[off] = u
        off += 1
        if n == 1:
            continue
        neg = _MAX_NEG[c]
        pos = _MAX_POS[c]
        width = _width_for(neg if neg > pos else pos, pos)
        buf[off] = width
        off += 1
        nbytes = _WIDTH_BYTES[width]
        prev = v
        for k in range(1, n):
            cur = samples[start + k * n_channels + c]
            d = cur - prev
            prev = cur
            for b in range(nbytes):
                buf[off] = d & 0xFF
                d >>= 8
                off += 1
    return seal(buf, off)


def _recompute_extremes(n, n_channels, samples, start, touched):
    """Sample n did not fit: recompute the extremes of the channels it changed over samples < n."""
    for c in range(n_channels):
        if not (touched & ((1 << c) | (1 << (c + MAX_CHANNELS)))):
            continue
        neg = 0
        pos = 0
        for k in range(1, n):
            i = start + k * n_channels + c
            d = samples[i] - samples[i - n_channels]
            if -d > neg:
                neg = -d
            if d > pos:
                pos = d
        _MAX_NEG[c] = neg
        _MAX_POS[c] = pos


def encode_event(buf, seq, clock, kind, side, stride):
    off = pack_header(buf, EVENT, seq, clock)
    struct.pack_into(EVENT_FORMAT, buf, off, kind, side, stride & 0xFFFF)
    return seal(buf, off + EVENT_SIZE)


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
    off = HEADER_SIZE
    if end - off < BATCH_PREFIX:
        raise FrameError("batch payload too short")
    n = frame[off]
    n_channels = (frame[off + 1] >> 5) + 1
    period = frame[off + 1] & 0x1F
    if n == 0 or period == 0:
        raise FrameError("batch header invalid: n=%d period=%d" % (n, period))
    off += BATCH_PREFIX
    channels = []
    for c in range(n_channels):
        first, off = read_zigzag(frame, off, end, 35, "batch channel %d start value" % c)
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
        channels.append(cumulate(deltas, first))
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
