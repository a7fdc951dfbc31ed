# Raw-EMG research mode: lossless compression of AFE samples into RAW_EMG stream frames.
#
# Frame: the standard stream header (frames.HEADER_FORMAT; clock = device clock of the first
# sample, one tick per sample) + payload + CRC-16, like every stream frame. Payload:
#   u8 n_samples, u8 ((n_channels - 1) << 5 | period_ticks), period_ticks = 1 (1000 Hz);
#   then per channel, one after the other:
#     u8 (order << 5 | k): fixed polynomial predictor order 0..2, Rice parameter k 0..K_MAX;
#     the first `order` samples ("warm-up") as zigzag LEB128 varints;
#     the n_samples - order residuals r = x[i] - prediction, prediction 0 (order 0), x[i-1]
#     (order 1), 2 x[i-1] - x[i-2] (order 2), each zigzag-mapped (u = 2r or -2r - 1) and Rice
#     coded: q = u >> k as q zero bits and a one bit, then the k low bits of u, most significant
#     bit first; the channel's bit stream is padded with zero bits to a whole byte.
# Samples are AFE codes >> RAW_SHIFT, so "lossless" means bit-exact for those values. The encoder
# accepts RAW_MIN <= x <= RAW_MAX (28-bit two's complement): order-2 residuals stay below 2**29
# and their zigzag codes below 2**30, the ESP32's small-int range; AFE codes >> RAW_SHIFT use
# 22 bits of it.
#
# Encoder (device): integer only, allocation-free (module-level preallocated arrays), kernels in
# viper. For each channel it picks the (order, k) with the fewest bytes for the frame's samples
# (orders whose residual sum is within 1/8 of the smallest; k from the mean residual as FLAC does,
# then the exact cost of k - 1, k, k + 1), takes as many samples as fit max_len with those
# parameters, re-picks for the longer frame and repeats until the frame stops growing.
# Deterministic, so MicroPython and CPython give the same bytes. Viper because it pays: on the
# unix port (x86-64) the encoder ran at 1170-1900x real time (4 channels at 1000 Hz) against
# 64-106x as bytecode (bench/bench_wire.py, shared machine); with the ESP32 factors (viper ~50x,
# bytecode ~100x slower) that is a few percent of a core against all of it.
#
# Decoder (host and device): plain Python, validates everything it reads (FrameError).
from array import array

from hipwire.compat import const, micropython, ptr8, ptr32
from hipwire.frames import (
    CRC_SIZE,
    HEADER_SIZE,
    MAX_CHANNELS,
    MAX_FRAME,
    RAW_EMG,
    FrameError,
    crc16_fast,
    pack_header,
    read_sample_prefix,
    read_zigzag,
    seal,
)

# ADS1294R at gain 12: 1 code = 3125/2**17 uV = 0.0238 uV. Raw samples keep codes >> RAW_SHIFT:
# LSB 4 codes = 0.095 uV. The datasheet gives 4 uVpp input noise (150 Hz band, gain 6) with
# rms ~ pp / 6.6, i.e. ~0.6 uV rms, more at 1 kSPS; the dropped bits add LSB/sqrt(12) = 0.028 uV
# rms of quantisation noise, which raises the total noise by about 0.1 %.
RAW_SHIFT = const(2)
RAW_UV_PER_UNIT = 3125 * (1 << RAW_SHIFT) / (1 << 17)
RAW_MIN = const(-(1 << 27))
RAW_MAX = const((1 << 27) - 1)
RAW_PERIOD_TICKS = const(1)
MAX_ORDER = const(2)
K_MAX = const(22)  # (pending < 8) + (k + 1) bits stay below 2**30 in the bit writer
RAW_PREFIX = const(2)
_FIXED = const(12)  # header 8 + prefix 2 + CRC 2
# One 4-channel sample of full-scale AFE codes >> 2 (22 bits): 12 + 4 * (1 + 3) bytes. Raw mode
# needs an ATT payload of at least this (MTU >= 31); encode() returns 0 below it.
RAW_MIN_ATT_PAYLOAD = const(28)
MAX_RAW_SAMPLES = const(255)

_B27 = const(1 << 27)
_M28 = const((1 << 28) - 1)
_BIG = const(1 << 29)
_QCAP = const(1 << 16)  # a Rice quotient above this (bits) never fits a frame
_NONE = const(-1)  # no incumbent parameter

# _ST: [n_max, max_len, -, -, -, -, -, -] + per channel [param, bits, warm bytes, scratch];
# _RES: _choose outputs [bits, warm, ...] + the zigzag residuals of orders 0, 1, 2 of one channel.
_ST_CH = const(8)
_U0 = const(8)  # zigzag residuals of order 0, 1, 2
_U1 = const(264)
_U2 = const(520)
_ST = array("i", bytes(4 * (_ST_CH + 4 * MAX_CHANNELS)))
_RES = array("i", bytes(4 * (_U2 + MAX_RAW_SAMPLES + 1)))


@micropython.viper
def _choose(s: ptr32, base: int, step: int, n: int, inc: int, res: ptr32) -> int:
    """Best (order << 5 | k) for channel samples s[base + i*step], i < n; res[0] = Rice bits,
    res[1] = warm-up bytes. inc: a parameter that must stay a candidate, or _NONE.
    Returns -1 if a sample lies outside RAW_MIN..RAW_MAX."""
    # pass 1: zigzag residuals of the three predictors into scratch, their sums split in two
    # parts (u >> 10, u & 1023) so that nothing reaches 2**30; warm-up varint lengths
    h0 = 0
    l0 = 0
    h1 = 0
    l1 = 0
    h2 = 0
    l2 = 0
    w0 = 0
    w1 = 0
    x1 = 0
    x2 = 0
    i = 0
    p = base
    while i < n:
        v = s[p]
        if (((v >> 27) + 1) & 31) > 1:
            return -1
        x = ((v + _B27) & _M28) - _B27
        u = (x << 1) if x >= 0 else ((-x) << 1) - 1
        res[_U0 + i] = u
        h0 += u >> 10
        l0 += u & 1023
        if i >= 1:
            r = x - x1
            u = (r << 1) if r >= 0 else ((-r) << 1) - 1
            res[_U1 + i] = u
            h1 += u >> 10
            l1 += u & 1023
            if i >= 2:
                r = r - x1 + x2
                u = (r << 1) if r >= 0 else ((-r) << 1) - 1
                res[_U2 + i] = u
                h2 += u >> 10
                l2 += u & 1023
        if i < 2:
            u = res[_U0 + i]
            w = 1 if u < 128 else (2 if u < 16384 else (3 if u < 2097152 else 4))
            if i == 0:
                w0 = w
            else:
                w1 = w
        x2 = x1
        x1 = x
        i += 1
        p += step
    # which orders get an exact evaluation: the one with the smallest residual sum, any within
    # 1/8 of it, the incumbent's, and all of them for short frames (warm-up bytes matter there)
    m0 = (h0 << 10) + l0 if h0 < 524288 else _BIG
    m1 = (h1 << 10) + l1 if h1 < 524288 else _BIG
    m2 = (h2 << 10) + l2 if h2 < 524288 else _BIG
    if n < 2:
        m1 = _BIG
    if n < 3:
        m2 = _BIG
    mn = m0
    if m1 < mn:
        mn = m1
    if m2 < mn:
        mn = m2
    lim = mn + (mn >> 3)
    inc_order = inc >> 5 if inc >= 0 else -1
    inc_k = inc & 31
    best = -1
    best_bytes = _BIG
    best_bits = 0
    best_warm = 0
    order = 0
    while order <= 2 and order <= n:
        if order == 0:
            m = m0
            shi = h0
            slo = l0
            warm = 0
            sc = _U0
        elif order == 1:
            m = m1
            shi = h1
            slo = l1
            warm = w0
            sc = _U1
        else:
            m = m2
            shi = h2
            slo = l2
            warm = w0 + w1
            sc = _U2
        if not (m <= lim or order == inc_order or n < 16 or mn >= _BIG):
            order += 1
            continue
        nres = n - order
        # k estimate: smallest k with nres * 2**k >= sum (FLAC's rule)
        k = 0
        if nres > 0:
            if shi >= nres:
                k = 10
                t = shi + (slo >> 10)
                while k < K_MAX and (nres << (k - 10)) < t:
                    k += 1
            else:
                t = (shi << 10) + slo
                while k < K_MAX and (nres << k) < t:
                    k += 1
        ka = k - 1 if k > 0 else 0
        kc = k + 1 if k < K_MAX else K_MAX
        ki = inc_k if inc_order == order else -1
        # pass 2: exact Rice bits of k - 1, k, k + 1 and the incumbent's k
        ca = 0
        cb = 0
        cc = 0
        ci = 0
        i = sc + order
        e = sc + n
        while i < e:
            u = res[i]
            ca += u >> ka
            cb += u >> k
            cc += u >> kc
            if ki >= 0:
                q = u >> ki
                if q > _QCAP:
                    ki = -1
                else:
                    ci += q
            i += 1
        cand = 0
        while cand < 4:
            if cand == 0:
                kk = ki
                c = ci
            elif cand == 1:
                kk = ka
                c = ca
            elif cand == 2:
                kk = k
                c = cb
            else:
                kk = kc
                c = cc
            if kk >= 0:
                bits = nres * (kk + 1) + c
                nbytes = 1 + warm + ((bits + 7) >> 3)
                if nbytes < best_bytes or (nbytes == best_bytes and bits < best_bits):
                    best_bytes = nbytes
                    best_bits = bits
                    best_warm = warm
                    best = (order << 5) | kk
            cand += 1
        order += 1
    res[0] = best_bits
    res[1] = best_warm
    return best


@micropython.viper
def _grow(s: ptr32, start: int, nch: int, n: int, st: ptr32) -> int:
    """With each channel's (order, k) fixed in st, add samples n, n+1, ... while the frame still
    fits st[1] bytes and n < st[0]. Returns the new n, or -1 for a sample out of range."""
    n_max = st[0]
    max_len = st[1]
    while n < n_max:
        total = _FIXED
        c = 0
        while c < nch:
            b = _ST_CH + 4 * c
            param = st[b]
            order = param >> 5
            k = param & 31
            p = start + n * nch + c
            v = s[p]
            if (((v >> 27) + 1) & 31) > 1:
                return -1
            x = ((v + _B27) & _M28) - _B27
            if order == 0:
                r = x
            else:
                x1 = ((s[p - nch] + _B27) & _M28) - _B27
                if order == 1:
                    r = x - x1
                else:
                    r = x - x1 - x1 + (((s[p - nch - nch] + _B27) & _M28) - _B27)
            u = (r << 1) if r >= 0 else ((-r) << 1) - 1
            q = u >> k
            if q > _QCAP:
                return n
            bits = st[b + 1] + q + 1 + k
            st[b + 3] = bits
            total += 1 + st[b + 2] + ((bits + 7) >> 3)
            c += 1
        if total > max_len:
            return n
        c = 0
        while c < nch:
            b = _ST_CH + 4 * c
            st[b + 1] = st[b + 3]
            c += 1
        n += 1
    return n


@micropython.viper
def _write(buf: ptr8, off: int, s: ptr32, base: int, step: int, n: int, param: int) -> int:
    """Write one channel (parameter byte, warm-up varints, Rice bits) at buf[off]; return the
    offset after it."""
    order = param >> 5
    k = param & 31
    mask = (1 << k) - 1
    buf[off] = param
    off += 1
    j = 0
    while j < order:
        x = ((s[base + j * step] + _B27) & _M28) - _B27
        u = (x << 1) if x >= 0 else ((-x) << 1) - 1
        while u >= 128:
            buf[off] = (u & 127) | 128
            u >>= 7
            off += 1
        buf[off] = u
        off += 1
        j += 1
    acc = 0  # pending bits, fewer than 8 between residuals
    nacc = 0
    x1 = 0
    x2 = 0
    if order >= 1:
        x1 = ((s[base + (order - 1) * step] + _B27) & _M28) - _B27
    if order == 2:
        x2 = ((s[base] + _B27) & _M28) - _B27
    i = order
    p = base + order * step
    while i < n:
        x = ((s[p] + _B27) & _M28) - _B27
        if order == 0:
            r = x
        elif order == 1:
            r = x - x1
        else:
            r = x - x1 - x1 + x2
        x2 = x1
        x1 = x
        u = (r << 1) if r >= 0 else ((-r) << 1) - 1
        q = u >> k
        if q > 0:  # q zero bits
            total = nacc + q
            if total >= 8:
                buf[off] = (acc << (8 - nacc)) & 255
                off += 1
                total -= 8
                while total >= 8:
                    buf[off] = 0
                    off += 1
                    total -= 8
                acc = 0
            else:
                acc <<= q
            nacc = total
        # the terminating one bit and the k low bits
        acc = (acc << (k + 1)) | (1 << k) | (u & mask)
        nacc += k + 1
        while nacc >= 8:
            nacc -= 8
            buf[off] = (acc >> nacc) & 255
            off += 1
        acc &= (1 << nacc) - 1
        i += 1
        p += step
    if nacc > 0:
        buf[off] = (acc << (8 - nacc)) & 255
        off += 1
    return off


def _optimise(samples, start, n_channels, n, keep):
    """Pick every channel's parameter for n samples (keep: the current ones stay candidates);
    return the frame size, or -1 for a sample out of range."""
    st = _ST
    res = _RES
    total = _FIXED
    for c in range(n_channels):
        b = _ST_CH + 4 * c
        param = _choose(samples, start + c, n_channels, n, st[b] if keep else _NONE, res)
        if param < 0:
            return -1
        st[b] = param
        st[b + 1] = res[0]
        st[b + 2] = res[1]
        total += 1 + res[1] + ((res[0] + 7) >> 3)
    return total


def encode(buf, max_len, seq, clock, samples, start, n_avail, n_channels):
    """Encode as many of n_avail interleaved raw samples (samples[start + k*n_channels + c],
    an array('i') of AFE codes >> RAW_SHIFT) as fit max_len bytes into one RAW_EMG frame in buf.
    Returns the frame length; the number of samples taken is buf[HEADER_SIZE]. Returns 0 when
    n_avail is 0, max_len < RAW_MIN_ATT_PAYLOAD or not even one sample fits. Raises ValueError for
    a sample outside RAW_MIN..RAW_MAX. Allocates nothing otherwise."""
    if n_avail <= 0 or not 0 < n_channels <= MAX_CHANNELS or max_len < RAW_MIN_ATT_PAYLOAD:
        return 0
    if max_len > MAX_FRAME:
        max_len = MAX_FRAME
    n_max = n_avail if n_avail < MAX_RAW_SAMPLES else MAX_RAW_SAMPLES
    # first guess: 16 bits per sample, then shrink until it fits, grow until it does not
    n = ((max_len - _FIXED - 3 * n_channels) << 3) // (n_channels << 4)
    if n > n_max:
        n = n_max
    if n < 1:
        n = 1
    total = _optimise(samples, start, n_channels, n, False)
    while total > max_len:
        if n == 1:
            return 0
        n >>= 1
        total = _optimise(samples, start, n_channels, n, False)
    if total < 0:
        raise ValueError("raw sample outside RAW_MIN..RAW_MAX")
    st = _ST
    st[0] = n_max
    st[1] = max_len
    for _ in range(4):
        grown = _grow(samples, start, n_channels, n, st)
        if grown < 0:
            raise ValueError("raw sample outside RAW_MIN..RAW_MAX")
        if grown == n:
            break
        n = grown
        _optimise(samples, start, n_channels, n, True)  # only shrinks: the old choice competes
    off = pack_header(buf, RAW_EMG, seq, clock)
    buf[off] = n
    buf[off + 1] = ((n_channels - 1) << 5) | RAW_PERIOD_TICKS
    off += RAW_PREFIX
    for c in range(n_channels):
        off = _write(buf, off, samples, start + c, n_channels, n, st[_ST_CH + 4 * c])
    return seal(buf, off, crc16_fast)


# ---------------------------------------------------------------- decoding (host and device)
_BITLEN = bytes([0, 1, 2, 2] + [3] * 4 + [4] * 8 + [5] * 16 + [6] * 32 + [7] * 64 + [8] * 128)


def decode(frame):
    """Payload of a RAW_EMG frame -> (period_ticks, [channel lists of raw samples]).
    Assumes frames.check() passed (length, CRC, version); raises FrameError for anything else."""
    end = len(frame) - CRC_SIZE
    n, n_channels, period = read_sample_prefix(frame, end, "raw")  # same layout as batches
    off = HEADER_SIZE + RAW_PREFIX
    channels = []
    for c in range(n_channels):
        if off >= end:
            raise FrameError("raw frame truncated before channel %d" % c)
        param = frame[off]
        off += 1
        order = param >> 5
        k = param & 0x1F
        if order > MAX_ORDER or k > K_MAX:
            raise FrameError("raw channel %d: invalid order %d / Rice k %d" % (c, order, k))
        if order > n:
            raise FrameError("raw channel %d: order %d above %d samples" % (c, order, n))
        out = []
        for _ in range(order):
            value, off = read_zigzag(frame, off, end, 21, "raw channel %d warm-up sample" % c)
            out.append(value)
        x1 = out[-1] if order else 0
        x2 = out[0] if order == 2 else 0
        qmax = 1 << (30 - k)
        acc = 0  # unread bits (the low nacc bits)
        nacc = 0
        for _ in range(n - order):
            q = 0
            while True:
                if nacc == 0:
                    if off >= end:
                        raise FrameError("raw channel %d: Rice bits truncated" % c)
                    acc = frame[off]
                    off += 1
                    nacc = 8
                if acc == 0:
                    q += nacc
                    nacc = 0
                    if q >= qmax:
                        raise FrameError("raw channel %d: residual too large" % c)
                    continue
                zeros = nacc - _BITLEN[acc]
                q += zeros
                nacc -= zeros + 1
                acc &= (1 << nacc) - 1
                break
            if q >= qmax:
                raise FrameError("raw channel %d: residual too large" % c)
            while nacc < k:
                if off >= end:
                    raise FrameError("raw channel %d: Rice bits truncated" % c)
                acc = (acc << 8) | frame[off]
                off += 1
                nacc += 8
            nacc -= k
            u = (q << k) | (acc >> nacc)
            acc &= (1 << nacc) - 1
            r = (u >> 1) ^ -(u & 1)
            if order == 0:
                x = r
            elif order == 1:
                x = x1 + r
            else:
                x = x1 + x1 - x2 + r
            if x < RAW_MIN or x > RAW_MAX:
                raise FrameError("raw channel %d: sample out of range" % c)
            x2 = x1
            x1 = x
            out.append(x)
        if acc:
            raise FrameError("raw channel %d: non-zero padding bits" % c)
        channels.append(out)
    if off != end:
        raise FrameError("%d unexpected bytes after raw channels" % (end - off))
    return period, channels


def uv(raw):
    """Microvolts of one raw sample (host convenience)."""
    return raw * RAW_UV_PER_UNIT
