# EMG envelope chain: high-pass, mains notch (+ 3rd harmonic), full-wave rectification, envelope
# low-pass, decimation to the envelope rate, calibrated to integer microvolts.
#
# Fixed point, block-wise, no allocation in process(). The kernel is viper: on the ESP32 viper
# ints are 32-bit and wrap silently, so every value that is stored or multiplied is kept below
# 2**28 (range argument below) and every product below 2**30:
#   * input codes are taken as 24-bit two's complement (the AFE word): |x| <= 2**23. The filters
#     work in codes (0.024 uV), so rounding noise stays far below the AFE's ~0.7 uV rms; with
#     coarser units the notch's resonant poles amplified it into ~3 uV of 50 Hz residue;
#   * every filter is linear, so |output| <= L1 norm of its impulse response * max |input|:
#     high-pass 2.27, 50 Hz notch 2.24, 150 Hz notch 2.18, whole cascade 3.26 (scipy) => the
#     band-passed signal stays below 2**24.8, filter intermediates (sums of at most four such
#     values) below 2**27, the envelope low-pass (L1 1.09) below 2**25 and its input error term
#     (w - 4 y, w the sum of four rectified samples) below 2**27;
#   * mul: |c| < 2**15 (emg_filters.fixed), so c * (v >> 15) < 2**bits(v) and
#     c * (v & 0x7fff) < 2**30.
# check=True ORs the magnitude of every multiplicand and state into peak_bits() (on the unix
# port viper ints are 64-bit, so an overflow would show instead of wrapping). The test feeding
# an hour of worst-case full-scale input measures 27 bits.
import array
import micropython
from micropython import const

from hipwire import units
from dsp import emg_filters

# Envelope low-pass, 2nd order. A 6 Hz one alone has ~38 ms of group delay; with the high-pass
# and notches in front, 6 Hz measured 43 ms behind the activation (bench_emg.py), 7 Hz 37 ms.
_ENVELOPE_HZ = 7
_HIGHPASS_HZ = 20
_NOTCH_Q = 10  # -3 dB band 5 Hz at 50 Hz: a grid 0.2 Hz off still loses ~22 dB
_LP_FRAC_BITS = const(6)  # extra fraction bits of the envelope low-pass velocity state
# ptr32 loads are zero-extended on 64-bit ports: states and coefficients (all |v| < 2**29) are
# sign-extended from 30 bits on load, input codes from 24 bits (the AFE word); on 32-bit ports
# this changes nothing.
_B29 = const(1 << 29)
_M30 = const((1 << 30) - 1)

# Coefficient slots: (c, e, half) triples; c / 2**(15 + e), half = rounding offset of >> e.
_HP_G = const(0)
_HP_P = const(3)
_HP_S = const(6)
_N1_K = const(9)
_N1_R = const(12)
_N1_W = const(15)
_N3_K = const(16)
_N3_R = const(19)
_N3_W = const(22)
_N3_ON = const(23)
_LP_G = const(24)
_LP_D = const(27)
_DECIM = const(30)
_NCH = const(31)
_CHECK = const(32)
_N_COEF = const(33)

# Per-channel state slots.
_SEEDED = const(0)
_X1 = const(1)
_X2 = const(2)
_Y1 = const(3)
_Y2 = const(4)
_NX1 = const(5)
_NX2 = const(6)
_NY1 = const(7)
_NY2 = const(8)
_HX1 = const(9)
_HX2 = const(10)
_HY1 = const(11)
_HY2 = const(12)
_R1 = const(13)
_R2 = const(14)
_LY = const(15)
_LLO = const(16)
_LV = const(17)
_PEAK = const(18)
_NS = const(19)


@micropython.viper
def _run(codes: ptr32, n: int, st: ptr32, cf: ptr32, out: ptr32, out_start: int) -> int:
    nch = cf[_NCH]
    decim = cf[_DECIM]
    chk = cf[_CHECK]
    phase0 = st[nch * _NS]
    hg = ((cf[_HP_G] + _B29) & _M30) - _B29
    hge = cf[_HP_G + 1]
    hgh = cf[_HP_G + 2]
    hp = ((cf[_HP_P] + _B29) & _M30) - _B29
    hpe = cf[_HP_P + 1]
    hph = cf[_HP_P + 2]
    hs = ((cf[_HP_S] + _B29) & _M30) - _B29
    hse = cf[_HP_S + 1]
    hsh = cf[_HP_S + 2]
    nk = ((cf[_N1_K] + _B29) & _M30) - _B29
    nke = cf[_N1_K + 1]
    nkh = cf[_N1_K + 2]
    nr = ((cf[_N1_R] + _B29) & _M30) - _B29
    nre = cf[_N1_R + 1]
    nrh = cf[_N1_R + 2]
    nw = cf[_N1_W]
    mk = ((cf[_N3_K] + _B29) & _M30) - _B29
    mke = cf[_N3_K + 1]
    mkh = cf[_N3_K + 2]
    mr = ((cf[_N3_R] + _B29) & _M30) - _B29
    mre = cf[_N3_R + 1]
    mrh = cf[_N3_R + 2]
    mw = cf[_N3_W]
    m_on = cf[_N3_ON]
    lg = ((cf[_LP_G] + _B29) & _M30) - _B29
    lge = cf[_LP_G + 1]
    lgh = cf[_LP_G + 2]
    ld = ((cf[_LP_D] + _B29) & _M30) - _B29
    lde = cf[_LP_D + 1]
    ldh = cf[_LP_D + 2]
    written = 0
    ch = 0
    while ch < nch:
        b = ch * _NS
        x1 = ((st[b + _X1] + _B29) & _M30) - _B29
        x2 = ((st[b + _X2] + _B29) & _M30) - _B29
        if st[b + _SEEDED] == 0 and n > 0:
            # Start as if the first sample's DC level had always been there: no start-up step.
            x1 = ((codes[ch] + 0x800000) & 0xFFFFFF) - 0x800000
            x2 = x1
            st[b + _SEEDED] = 1
        y1 = ((st[b + _Y1] + _B29) & _M30) - _B29
        y2 = ((st[b + _Y2] + _B29) & _M30) - _B29
        nx1 = ((st[b + _NX1] + _B29) & _M30) - _B29
        nx2 = ((st[b + _NX2] + _B29) & _M30) - _B29
        ny1 = ((st[b + _NY1] + _B29) & _M30) - _B29
        ny2 = ((st[b + _NY2] + _B29) & _M30) - _B29
        hx1 = ((st[b + _HX1] + _B29) & _M30) - _B29
        hx2 = ((st[b + _HX2] + _B29) & _M30) - _B29
        hy1 = ((st[b + _HY1] + _B29) & _M30) - _B29
        hy2 = ((st[b + _HY2] + _B29) & _M30) - _B29
        r1 = ((st[b + _R1] + _B29) & _M30) - _B29
        r2 = ((st[b + _R2] + _B29) & _M30) - _B29
        ly = ((st[b + _LY] + _B29) & _M30) - _B29
        llo = ((st[b + _LLO] + _B29) & _M30) - _B29
        lv = ((st[b + _LV] + _B29) & _M30) - _B29
        peak = st[b + _PEAK]
        phase = phase0
        o = out_start + ch
        i = ch
        k = 0
        while k < n:
            x = ((codes[i] + 0x800000) & 0xFFFFFF) - 0x800000
            # High-pass, delta form: y = 2 y1 - y2 + w - (1 - b0) w - p (y1 - y2) - s y2.
            w = x - x1 - x1 + x2
            d = y1 - y2
            t = hg * (w >> 15) + ((hg * (w & 0x7FFF)) >> 15)
            y = y1 + d + w - ((t + hgh) >> hge)
            t = hp * (d >> 15) + ((hp * (d & 0x7FFF)) >> 15)
            y -= (t + hph) >> hpe
            t = hs * (y2 >> 15) + ((hs * (y2 & 0x7FFF)) >> 15)
            y -= (t + hsh) >> hse
            if chk:
                peak = peak | (w ^ (w >> 31)) | (d ^ (d >> 31)) | (y ^ (y >> 31))
            x2 = x1
            x1 = x
            y2 = y1
            y1 = y
            # Mains notch: u = x + x2 - 2 y2 + 2cos(w0) (y1 - x1); y = y2 + u - (1 - gain) u.
            d = ny1 - nx1
            t = nr * (d >> 15) + ((nr * (d & 0x7FFF)) >> 15)
            u = y + nx2 - ny2 - ny2 + nw * d + ((t + nrh) >> nre)
            t = nk * (u >> 15) + ((nk * (u & 0x7FFF)) >> 15)
            z = ny2 + u - ((t + nkh) >> nke)
            nx2 = nx1
            nx1 = y
            ny2 = ny1
            ny1 = z
            if chk:
                peak = peak | (d ^ (d >> 31)) | (u ^ (u >> 31)) | (z ^ (z >> 31))
            if m_on:
                # Third harmonic of the mains, same notch form.
                d = hy1 - hx1
                t = mr * (d >> 15) + ((mr * (d & 0x7FFF)) >> 15)
                u = z + hx2 - hy2 - hy2 + mw * d + ((t + mrh) >> mre)
                t = mk * (u >> 15) + ((mk * (u & 0x7FFF)) >> 15)
                hx2 = hx1
                hx1 = z
                z = hy2 + u - ((t + mkh) >> mke)
                hy2 = hy1
                hy1 = z
                if chk:
                    peak = peak | (d ^ (d >> 31)) | (u ^ (u >> 31)) | (z ^ (z >> 31))
            # Full-wave rectification, then the envelope low-pass as a second difference with
            # _LP_FRAC_BITS extra fraction bits: acc = g (w - 4 y1) - d v; v += acc; y += v.
            if z < 0:
                z = -z
            w = z + r1 + r1 + r2 - (ly << 2)
            r2 = r1
            r1 = z
            t = lg * (w >> 15) + ((lg * (w & 0x7FFF)) >> 15)
            acc = (t + lgh) >> lge
            t = ld * (lv >> 15) + ((ld * (lv & 0x7FFF)) >> 15)
            lv += acc - ((t + ldh) >> lde)
            llo += lv
            ly += llo >> _LP_FRAC_BITS
            llo &= (1 << _LP_FRAC_BITS) - 1
            if chk:
                peak = peak | (w ^ (w >> 31)) | (lv ^ (lv >> 31)) | (ly ^ (ly >> 31))
            phase += 1
            if phase >= decim:
                phase = 0
                # codes -> uV: 3125 / 2**17, rounded; an amplitude is never negative.
                t = (3125 * (ly >> 15) + ((3125 * (ly & 0x7FFF)) >> 15) + 2) >> 2
                if t < 0:
                    t = 0
                out[o] = t
                o += nch
                if ch == 0:
                    written += 1
            i += nch
            k += 1
        st[b + _X1] = x1
        st[b + _X2] = x2
        st[b + _Y1] = y1
        st[b + _Y2] = y2
        st[b + _NX1] = nx1
        st[b + _NX2] = nx2
        st[b + _NY1] = ny1
        st[b + _NY2] = ny2
        st[b + _HX1] = hx1
        st[b + _HX2] = hx2
        st[b + _HY1] = hy1
        st[b + _HY2] = hy2
        st[b + _R1] = r1
        st[b + _R2] = r2
        st[b + _LY] = ly
        st[b + _LLO] = llo
        st[b + _LV] = lv
        if peak > _M30:
            peak = _M30  # saturate: the array holds 32 bits, a check overflow must stay visible
        st[b + _PEAK] = peak
        if ch == nch - 1:
            st[nch * _NS] = phase
        ch += 1
    return written


def _put(cf, slot, value):
    c, q = emg_filters.fixed(value)
    e = q - 15
    cf[slot] = c
    cf[slot + 1] = e
    cf[slot + 2] = 1 << (e - 1)


class EnvelopeChain:
    """Per channel: high-pass, mains notch(es), rectification, envelope low-pass, decimation.

    process() takes interleaved signed 24-bit AFE codes and writes the envelope in integer uV,
    interleaved by channel, one frame per `in_rate_hz // out_rate_hz` input frames. Output frame j
    (counted from reset) is the envelope at input frame (j + 1) * decim - 1, whatever the block
    sizes were."""

    def __init__(self, n_channels=units.N_EMG, mains_hz=50, in_rate_hz=units.EMG_RATE_HZ,
                 out_rate_hz=units.ENVELOPE_RATE_HZ, highpass_hz=_HIGHPASS_HZ,
                 envelope_hz=_ENVELOPE_HZ, notch_q=_NOTCH_Q, harmonic=True, check=False):
        if in_rate_hz % out_rate_hz:
            raise ValueError("in_rate_hz must be a multiple of out_rate_hz")
        self.n_channels = n_channels
        self.in_rate_hz = in_rate_hz
        self.out_rate_hz = out_rate_hz
        self.highpass_hz = highpass_hz
        self.envelope_hz = envelope_hz
        self.notch_q = notch_q
        self.harmonic = harmonic
        self._cf = array.array("i", bytes(4 * _N_COEF))
        self._st = array.array("i", bytes(4 * (_NS * n_channels + 1)))
        cf = self._cf
        cf[_DECIM] = in_rate_hz // out_rate_hz
        cf[_NCH] = n_channels
        cf[_CHECK] = 1 if check else 0
        hp_g, hp_p, hp_s = emg_filters.butter2_highpass(highpass_hz, in_rate_hz)
        _put(cf, _HP_G, hp_g)
        _put(cf, _HP_P, hp_p)
        _put(cf, _HP_S, hp_s)
        lp_g, lp_d = emg_filters.butter2_lowpass(envelope_hz, in_rate_hz)
        _put(cf, _LP_G, lp_g * (1 << _LP_FRAC_BITS))
        _put(cf, _LP_D, lp_d)
        self.set_mains_hz(mains_hz)

    def set_mains_hz(self, hz):
        """Retune the notches to 50 or 60 Hz mains (filter state is kept)."""
        if hz not in (50, 60):
            raise ValueError("mains_hz must be 50 or 60")
        cf = self._cf
        k, whole, rest = emg_filters.notch(hz, self.notch_q, self.in_rate_hz)
        _put(cf, _N1_K, k)
        _put(cf, _N1_R, rest)
        cf[_N1_W] = whole
        third = 3 * hz
        cf[_N3_ON] = 1 if self.harmonic and 2 * third < self.in_rate_hz else 0
        k, whole, rest = emg_filters.notch(third, self.notch_q, self.in_rate_hz)
        _put(cf, _N3_K, k)
        _put(cf, _N3_R, rest)
        cf[_N3_W] = whole
        self.mains_hz = hz

    def reset(self):
        """Forget all filter state and the decimation phase (the next sample seeds the chain)."""
        st = self._st
        for i in range(len(st)):
            st[i] = 0

    def process(self, codes, n_samples, out_uv, out_start):
        """Filter n_samples frames of codes; write envelope frames at out_uv[out_start:].

        Returns the number of envelope frames written (0 .. n_samples // decim + 1); out_uv must
        have room for that many frames of n_channels values. Allocates nothing."""
        return _run(codes, n_samples, self._st, self._cf, out_uv, out_start)

    def peak_bits(self):
        """check=True only: bit length bound of every value the kernel stored or multiplied
        (saturates at 30 bits)."""
        m = 0
        st = self._st
        for ch in range(self.n_channels):
            m |= st[ch * _NS + _PEAK]
        bits = 0
        while m:
            m >>= 1
            bits += 1
        return bits
