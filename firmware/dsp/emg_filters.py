# Filter designs for the EMG chain, turned into the fixed-point coefficients its kernels use.
#
# Designs run once (set-up, set_mains_hz), in floats; the per-sample kernels use integers only.
# Formulas are written so that no coefficient comes from a difference of nearly equal numbers:
# the ESP32 port has single-precision floats, and `1 + a1 + a2` of a 6 Hz low-pass at 1 kHz
# (0.0014) would lose four of its seven digits.
#
# Fixed-point convention (see mul() in emg_envelope.py): a coefficient is a pair (c, q) with
# |c| < 2**15 and q >= 16, meaning c / 2**q. Products are formed as c * (v >> 15) plus
# (c * (v & 0x7fff)) >> 15, so for |v| < 2**29 no partial product reaches 2**30.
import math

_C_LIMIT = 32767  # |c| must stay below 2**15


def fixed(value):
    """(c, q): the largest q (>= 16) with round(value * 2**q) in the 15-bit range."""
    if not -0.5 < value < 0.5:
        raise ValueError("coefficient must be within (-0.5, 0.5): rewrite the filter around it")
    q = 16
    while q < 40 and abs(round(value * (1 << (q + 1)))) <= _C_LIMIT:
        q += 1
    c = int(round(value * (1 << q)))
    if abs(c) > _C_LIMIT:
        raise ValueError("coefficient does not fit 15 bits")
    return c, q


def butter2_highpass(fc_hz, fs_hz):
    """2nd-order Butterworth high-pass (bilinear, prewarped) in delta form.

    H = b0 (1 - z^-1)^2 / (1 + a1 z^-1 + a2 z^-2), computed as
    y = 2 y1 - y2 + w - (1 - b0) w - p (y1 - y2) - s y2 with w = x - 2 x1 + x2,
    p = 2 + a1 and s = 1 + a1 + a2. Returns the floats (one_minus_b0, p, s)."""
    k = math.tan(math.pi * fc_hz / fs_hz)
    r2k = math.sqrt(2.0) * k
    norm = 1.0 / (1.0 + r2k + k * k)
    return (r2k + k * k) * norm, (2.0 * r2k + 4.0 * k * k) * norm, 4.0 * k * k * norm


def butter2_lowpass(fc_hz, fs_hz):
    """2nd-order Butterworth low-pass (bilinear, prewarped) in delta form.

    H = g (1 + z^-1)^2 / (1 + a1 z^-1 + a2 z^-2), computed as second difference
    acc = g (w - 4 y1) - d (y1 - y2), w = x + 2 x1 + x2, d = 1 - a2. Returns (g, d)."""
    k = math.tan(math.pi * fc_hz / fs_hz)
    r2k = math.sqrt(2.0) * k
    norm = 1.0 / (1.0 + r2k + k * k)
    return k * k * norm, 2.0 * r2k * norm


def notch(f0_hz, quality, fs_hz):
    """Second-order notch, the same design as scipy.signal.iirnotch(f0, Q, fs).

    H = gain (1 - 2 cos(w0) z^-1 + z^-2) / (1 - 2 gain cos(w0) z^-1 + (2 gain - 1) z^-2),
    computed as u = x + x2 - 2 y2 + 2 cos(w0) (y1 - x1); y = y2 + u - (1 - gain) u.
    2 cos(w0) is split into an integer whole (0, 1 or 2) plus a small rest.
    Returns (one_minus_gain, whole, rest)."""
    w0 = 2.0 * math.pi * f0_hz / fs_hz
    beta = math.tan(w0 / (2.0 * quality))  # gb = 1/sqrt(2) in iirnotch: sqrt(1 - gb^2) / gb = 1
    two_cos = 2.0 * math.cos(w0)
    whole = int(round(two_cos))
    return beta / (1.0 + beta), whole, two_cos - whole
