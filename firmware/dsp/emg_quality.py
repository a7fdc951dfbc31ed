# Per-channel EMG signal quality over 1 s windows: lead-off, clipping, mains, flat line, motion.
#
# Works on the raw AFE codes (not on the envelope chain's output), so it needs no shared state
# with EnvelopeChain. Per sample (viper): min/max, rail hits, two first-order baselines (about
# 10 Hz and 0.3 Hz; their difference is the low-frequency "motion" band), and two narrow
# band-passes (x minus a notch of the same form as the chain's): a narrow one (Q=60) on the mains,
# a wide one (Q=3) 10 Hz below it. sEMG is broadband and fills both by their bandwidths, while a
# mains line fills the narrow one: the mains amplitude is the narrow band's, less (in power) the
# sEMG the wide band predicts in it (without that, a 500 uV rms contraction read as 50 uV of mains). Ranges (viper ints are 32-bit on the ESP32): codes are 24-bit; baselines and
# their differences stay within 2**25; the mains filter runs on codes >> 2 (|x| <= 2**21, L1 norm
# 2.25 => below 2**24 inside); its |residual| is capped at 2**20 - 1 before summing, so a
# window of at most 1024 samples sums below 2**30. Window bookkeeping runs once a second, in
# plain ints kept below 2**30 (it runs in the heap-locked sample path). process() allocates nothing.
import array
import micropython
from micropython import const

from hipwire import quality, units
from dsp import emg_filters

_B29 = const(1 << 29)
_M30 = const((1 << 30) - 1)
_MAX_WINDOW = const(1024)
_CAP = const((1 << 20) - 1)
_FAST_SHIFT = const(4)  # baseline 1: a = 1/16, ~10 Hz
_SLOW_SHIFT = const(9)  # baseline 2: a = 1/512, ~0.3 Hz
# mean |sinusoid| * pi/2 = amplitude; U (4 codes) = 3125/2**15 uV; pi/2 * 3125/2**15 ~ 307/2**11
_MAINS_NUM = const(307)
_MAINS_SHIFT = const(11)
_REF_OFFSET_HZ = const(10)  # the reference band sits this far below the mains
_REF_Q = 3  # wide: its sEMG power is a steady estimate (about 13 Hz of band each second)
# sEMG power in the mains band = reference band power * bandwidth ratio (mains/Q) / (ref/_REF_Q):
# 1/16 at 50 Hz with Q 60 (1/16.7 at 60 Hz)
_REF_POWER_SHIFT = const(4)
_MAX_MAINS_UV = const(16383)  # mains estimates are clamped here: squares stay below 2**28

# coefficient slots
_NK = const(0)
_NR = const(3)
_NW = const(6)
_CLIP = const(7)
_NCH = const(8)
_CHECK = const(9)
_RK = const(10)  # the reference band's notch: _RK, _RR, _RW laid out as _NK, _NR, _NW
_RR = const(13)
_RW = const(16)
_N_COEF = const(17)

# per-channel state slots
_SEEDED = const(0)
_MIN = const(1)
_MAX = const(2)
_CLIPS = const(3)
_BF = const(4)
_BS = const(5)
_MOTION = const(6)
_NX1 = const(7)  # the mains band: _BX1.._BSUM from here (consecutive, in that order)
_NX2 = const(8)
_NY1 = const(9)
_NY2 = const(10)
_MSUM = const(11)
_PEAK = const(12)
_RX1 = const(13)  # the reference band, the same layout
_RX2 = const(14)
_RY1 = const(15)
_RY2 = const(16)
_RSUM = const(17)
_NS = const(18)


# Per-band slots, from a band's first slot: notch state, then the window's sum of |band|.
_BX1 = const(0)
_BX2 = const(1)
_BY1 = const(2)
_BY2 = const(3)
_BSUM = const(4)


@micropython.viper
def _band(codes: ptr32, i: int, n: int, nch: int, st: ptr32, s: int, cf: ptr32, c: int) -> int:
    """One channel's narrow band, x - notch(x) on codes >> 2 (codes[i], codes[i + nch], ...: n
    samples), the notch as in emg_envelope with coefficients at cf[c:c + 7] (k, rest: (c, e, half)
    triples; whole) and state at st[s:s + 5]: adds sum |band| (each capped at _CAP) to the window
    sum. Returns the OR of the magnitudes of its intermediates in check mode (peak_bits), else 0."""
    k = ((cf[c] + _B29) & _M30) - _B29
    ke = cf[c + 1]
    kh = cf[c + 2]
    r = ((cf[c + 3] + _B29) & _M30) - _B29
    re = cf[c + 4]
    rh = cf[c + 5]
    w = cf[c + 6]
    x1 = ((st[s + _BX1] + _B29) & _M30) - _B29
    x2 = ((st[s + _BX2] + _B29) & _M30) - _B29
    y1 = ((st[s + _BY1] + _B29) & _M30) - _B29
    y2 = ((st[s + _BY2] + _B29) & _M30) - _B29
    total = st[s + _BSUM]
    chk = cf[_CHECK]
    peak = 0
    j = 0
    while j < n:
        xu = (((codes[i] + 0x800000) & 0xFFFFFF) - 0x800000) >> 2
        d = y1 - x1
        t = r * (d >> 15) + ((r * (d & 0x7FFF)) >> 15)
        u = xu + x2 - y2 - y2 + w * d + ((t + rh) >> re)
        t = k * (u >> 15) + ((k * (u & 0x7FFF)) >> 15)
        z = y2 + u - ((t + kh) >> ke)
        x2 = x1
        x1 = xu
        y2 = y1
        y1 = z
        a = xu - z
        if a < 0:
            a = -a
        if a > _CAP:
            a = _CAP
        total += a
        if chk:
            peak = peak | (u ^ (u >> 31)) | (z ^ (z >> 31)) | (d ^ (d >> 31))
        i += nch
        j += 1
    st[s + _BX1] = x1
    st[s + _BX2] = x2
    st[s + _BY1] = y1
    st[s + _BY2] = y2
    st[s + _BSUM] = total
    return peak


@micropython.viper
def _scan(codes: ptr32, start: int, n: int, st: ptr32, cf: ptr32):
    nch = cf[_NCH]
    chk = cf[_CHECK]
    clip = cf[_CLIP]
    ch = 0
    while ch < nch:
        b = ch * _NS
        if st[b + _SEEDED] == 0 and n > 0:
            x = ((codes[start * nch + ch] + 0x800000) & 0xFFFFFF) - 0x800000
            st[b + _BF] = x
            st[b + _BS] = x
            st[b + _NX1] = x >> 2
            st[b + _NX2] = x >> 2
            st[b + _NY1] = x >> 2
            st[b + _NY2] = x >> 2
            st[b + _RX1] = x >> 2
            st[b + _RX2] = x >> 2
            st[b + _RY1] = x >> 2
            st[b + _RY2] = x >> 2
            st[b + _SEEDED] = 1
        lo = ((st[b + _MIN] + _B29) & _M30) - _B29
        hi = ((st[b + _MAX] + _B29) & _M30) - _B29
        clips = st[b + _CLIPS]
        bf = ((st[b + _BF] + _B29) & _M30) - _B29
        bs = ((st[b + _BS] + _B29) & _M30) - _B29
        motion = st[b + _MOTION]
        i = start * nch + ch
        k = 0
        while k < n:
            x = ((codes[i] + 0x800000) & 0xFFFFFF) - 0x800000
            if x < lo:
                lo = x
            if x > hi:
                hi = x
            if x >= clip or x <= -clip:
                clips += 1
            bf += (x - bf + (1 << (_FAST_SHIFT - 1))) >> _FAST_SHIFT
            bs += (x - bs + (1 << (_SLOW_SHIFT - 1))) >> _SLOW_SHIFT
            m = bf - bs
            if m < 0:
                m = -m
            if m > motion:
                motion = m
            i += nch
            k += 1
        st[b + _MIN] = lo
        st[b + _MAX] = hi
        st[b + _CLIPS] = clips
        st[b + _BF] = bf
        st[b + _BS] = bs
        st[b + _MOTION] = motion
        # the mains band and the reference band, one pass each over the block
        i = start * nch + ch
        peak = int(_band(codes, i, n, nch, st, b + _NX1, cf, _NK))
        peak = peak | int(_band(codes, i, n, nch, st, b + _RX1, cf, _RK))
        if chk:
            peak = peak | st[b + _PEAK]
            if peak > _M30:
                peak = _M30
            st[b + _PEAK] = peak
        ch += 1


def _uv_to_codes(uv):
    return (uv * (1 << units.EMG_UV_PER_CODE_SHIFT)) // units.EMG_UV_PER_CODE_NUM


def _band_uv(mean_abs):
    """Amplitude in uV of a band's mean |.| (codes >> 2), clamped so that its square is small."""
    uv = (mean_abs * _MAINS_NUM) >> _MAINS_SHIFT
    return uv if uv < _MAX_MAINS_UV else _MAX_MAINS_UV


def _isqrt(v):
    """floor(sqrt(v)) for 0 <= v < 2**28, in small ints (no allocation)."""
    r = 0
    bit = 1 << 26
    while bit > v:
        bit >>= 2
    while bit:
        if v >= r + bit:
            v -= r + bit
            r = (r >> 1) + bit
        else:
            r >>= 1
        bit >>= 2
    return r


class SignalQuality:
    """Quality flags (hipwire.quality bits) per channel, over consecutive windows of
    `window_samples` (default 1 s). flags() and mains_uv() report the last completed window;
    both read 0 until the first window completes.

    Thresholds: LEAD_OFF if the AFE's lead-off bit was set at any time in the window; CLIPPING if
    any code is within `clip_margin_codes` of a rail; FLAT if max - min <= flat_uv; MOTION if the
    0.3-10 Hz band (difference of two baselines) swings beyond motion_uv; MAINS if the mains
    amplitude (band-pass of +-mains/120 Hz around the mains, mean |.| * pi/2) exceeds mains_limit_uv
    in a window without clipping."""

    def __init__(self, n_channels=units.N_EMG, mains_hz=50, in_rate_hz=units.EMG_RATE_HZ,
                 window_samples=None, mains_limit_uv=50, flat_uv=1, motion_uv=1000,
                 clip_margin_codes=0x8000, mains_q=60, check=False):
        window = in_rate_hz if window_samples is None else window_samples
        if not 0 < window <= _MAX_WINDOW:
            raise ValueError("window_samples must be 1..1024 (keeps the mains sum below 2**30)")
        self.n_channels = n_channels
        self.in_rate_hz = in_rate_hz
        self.window_samples = window
        self.mains_limit_uv = mains_limit_uv
        self.mains_q = mains_q
        self._flat_codes = _uv_to_codes(flat_uv)
        self._motion_codes = _uv_to_codes(motion_uv)
        self._cf = array.array("i", bytes(4 * _N_COEF))
        self._st = array.array("i", bytes(4 * _NS * n_channels))
        self._flags = array.array("i", bytes(4 * n_channels))
        self._mains = array.array("i", bytes(4 * n_channels))
        self._over = 0  # bit c: channel c's mains estimate was over the limit in the last window
        self._cf[_CLIP] = units.EMG_CODE_MAX + 1 - clip_margin_codes
        self._cf[_NCH] = n_channels
        self._cf[_CHECK] = 1 if check else 0
        self._lead = 0
        self._in_window = 0
        self.set_mains_hz(mains_hz)
        self.reset()

    def set_mains_hz(self, hz):
        if hz not in (50, 60):
            raise ValueError("mains_hz must be 50 or 60")
        cf = self._cf
        for f0, kslot, rslot, wslot in ((hz, _NK, _NR, _NW), (hz - _REF_OFFSET_HZ, _RK, _RR, _RW)):
            q_band = self.mains_q if kslot == _NK else _REF_Q
            k, whole, rest = emg_filters.notch(f0, q_band, self.in_rate_hz)
            for slot, value in ((kslot, k), (rslot, rest)):
                c, q = emg_filters.fixed(value)
                cf[slot] = c
                cf[slot + 1] = q - 15
                cf[slot + 2] = 1 << (q - 16)
            cf[wslot] = whole
        self.mains_hz = hz

    def reset(self):
        st = self._st
        for i in range(len(st)):
            st[i] = 0
        for ch in range(self.n_channels):
            self._flags[ch] = 0
            self._mains[ch] = 0
            self._open(ch)
        self._lead = 0
        self._in_window = 0
        self._over = 0

    def _open(self, ch):
        b = ch * _NS
        st = self._st
        st[b + _MIN] = units.EMG_CODE_MAX
        st[b + _MAX] = units.EMG_CODE_MIN
        st[b + _CLIPS] = 0
        st[b + _MOTION] = 0
        st[b + _MSUM] = 0
        st[b + _RSUM] = 0

    def _close(self):
        st = self._st
        n = self._in_window
        for ch in range(self.n_channels):
            b = ch * _NS
            fl = 0
            if self._lead & (1 << ch):
                fl |= quality.LEAD_OFF
            if st[b + _CLIPS]:
                fl |= quality.CLIPPING
            if st[b + _MAX] - st[b + _MIN] <= self._flat_codes:
                fl |= quality.FLAT
            if st[b + _MOTION] > self._motion_codes:
                fl |= quality.MOTION
            band = _band_uv(st[b + _MSUM] // n)
            ref = _band_uv(st[b + _RSUM] // n)
            excess = band * band - ((ref * ref) >> _REF_POWER_SHIFT)
            mains = _isqrt(excess) if excess > 0 else 0
            # The sEMG left in a 1 Hz band still swings by tens of uV from one window to the next,
            # a mains pick-up is steady: a reading over the limit is MAINS when the last window's
            # was too, or at once when over twice the limit. Not judged when clipped: a rail step
            # rings the band-pass.
            bit = 1 << ch
            over = mains > self.mains_limit_uv and not fl & quality.CLIPPING
            if over and (self._over & bit or mains > 2 * self.mains_limit_uv):
                fl |= quality.MAINS
            self._over = (self._over | bit) if over else (self._over & ~bit)
            self._mains[ch] = mains
            self._flags[ch] = fl
            self._open(ch)
        self._lead = 0
        self._in_window = 0

    def process(self, codes, n_samples, lead_off_bits):
        """Scan n_samples interleaved frames; lead_off_bits: bit c set = channel c lead-off."""
        self._lead |= lead_off_bits
        done = 0
        while done < n_samples:
            k = self.window_samples - self._in_window
            if k > n_samples - done:
                k = n_samples - done
            _scan(codes, done, k, self._st, self._cf)
            done += k
            self._in_window += k
            if self._in_window >= self.window_samples:
                self._close()
                if done < n_samples:
                    self._lead = lead_off_bits

    def flags(self, channel):
        return self._flags[channel]

    def mains_uv(self, channel):
        return self._mains[channel]

    def peak_bits(self):
        """check=True only: bit length bound of the mains filter's values (the window sum is bounded
        by construction: 1024 * (2**20 - 1) < 2**30)."""
        m = 0
        for ch in range(self.n_channels):
            m |= self._st[ch * _NS + _PEAK]
        bits = 0
        while m:
            m >>= 1
            bits += 1
        return bits
