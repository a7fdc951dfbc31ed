# Pelvis orientation from the sacrum IMU: obliquity, tilt, rotation in integer centidegrees at the
# IMU rate. Definitions (axes, signs, Euler order, heading tracking): docs/CONVENTIONS.md.
#
# Filter: a Mahony complementary filter on a quaternion (body -> world, Q28) at the IMU rate.
#   * gyro bias learned while at rest (gyro within `rest_gyro_dps` of the bias and its short-term
#     deviation below `rest_noise_dps` for `rest_s`), then followed by a slow first-order average;
#   * accelerometer correction e = a x v (a in g, not normalised, v = estimated up), skipped when
#     | |a| - 1 g | > `acc_reject_g` (heel strike); `accel_rejected` tells for the last sample;
#   * first `init_s`: high gain, no rejection (`initialising`); the quaternion starts from the
#     first accelerometer sample, so this only settles noise;
#   * angles: pelvis = sensor orientation x mounting (from the standing calibration), decomposed
#     rotation (z) -> obliquity (x') -> tilt (y''); rotation relative to a heading tracked with
#     time constant `heading_tau_s` (a 6-axis IMU cannot observe absolute heading).
#
# Fixed point, block-wise, no allocation in process(). The kernel is viper. On the ESP32 viper
# ints are 32-bit and wrap silently, small ints stop at 2**30; every intermediate below is kept
# below 2**30 (bound in the comment beside each product), every stored state below 2**29 (it is
# stored offset by +2**29 so that the unix port's zero-extending 32-bit loads read it back).
# tests/firmware/test_pelvis_bounds.py runs this very kernel in CPython with ints that fail on any
# value >= 2**30, on full-scale input, and checks bit-equality with MicroPython.
# Measured on the unix port (x86, 100 Hz input, blocks of 10): viper kernel ~1.1 us per sample
# (~9000x real time); the same kernel as plain bytecode ~25 us per sample (~390x). With the ESP32
# factors of MicroPython's tests/perf_bench (viper ~50x, bytecode ~100x slower; docs/REFERENCES.md)
# that is ~0.5 % versus ~25 % of a core at 100 Hz - hence viper.
import array
import math

import micropython
from micropython import const

from hipwire import units

_OFF = const(0x20000000)  # stored state = value + 2**29 (|value| < 2**29)
_ONE_Q28 = const(0x10000000)
_ONE_Q14 = const(0x4000)
_HALF_TURN = const(4608000)  # 180 deg in 1/256 cdeg
_FULL_TURN = const(9216000)
_CORDIC_N = const(16)  # residual <= atan(2**-15) = 0.0017 deg
_INV_K_Q14 = const(9949)  # 1 / prod(sqrt(1 + 2**-2i)) = 0.607253 in Q14
_CAL_MAX_N = const(8192)  # 82 s at 100 Hz; sums of int16 stay below 2**28

# State slots (all stored offset by _OFF)
_QW = const(0)  # quaternion body -> world, Q28
_QX = const(1)
_QY = const(2)
_QZ = const(3)
_BX = const(4)  # gyro bias, counts * 2**12
_BY = const(5)
_BZ = const(6)
_LX = const(7)  # gyro short-term mean (EMA, 80 ms at 100 Hz), counts * 2**8
_LY = const(8)
_LZ = const(9)
_REST_N = const(10)  # consecutive quiet samples (capped)
_HREF = const(11)  # tracked heading, 1/256 cdeg
_HFRAC = const(12)  # fraction accumulator of the heading filter
_MW = const(13)  # mounting quaternion (sensor -> pelvis), Q14
_MX = const(14)
_MY = const(15)
_MZ = const(16)
_FLAGS = const(17)
_INIT_LEFT = const(18)  # samples left in the initialising phase
_CAL_N = const(19)
_CAL_SX = const(20)  # sums of acc counts during calibration
_CAL_MIN = const(23)  # per-axis min of acc counts
_CAL_MAX = const(26)  # per-axis max of acc counts
_CAL_GMAX = const(29)  # max |gyro - bias| in counts during calibration
_N_STATE = const(30)

_F_REJECTED = const(1)
_F_AT_REST = const(2)
_F_INIT = const(4)
_F_CAL = const(8)
_F_HEAD_RESET = const(16)

# Parameter slots (non-negative, stored as is)
_P_HK = const(0)  # half-angle per gyro count per sample: Q30 rad per Q4 count, / 2**8
_P_KPM = const(1)  # accelerometer gain mantissa (< 2**13) and shift
_P_KPS = const(2)
_P_KPM0 = const(3)  # same while initialising
_P_KPS0 = const(4)
_P_ALO2 = const(5)  # accepted |a|**2 band, (counts / 2)**2
_P_AHI2 = const(6)
_P_DEV = const(7)  # rest: max |g - short-term mean|, counts * 2**8
_P_ABS = const(8)  # rest: max |g - bias|, counts * 2**12
_P_REST_N = const(9)
_P_BSH = const(10)  # bias average: shift (time constant 2**BSH samples)
_P_HAQ = const(11)  # heading tracking: alpha = HAQ / 2**HF (0 = no tracking)
_P_HF = const(12)
_P_STEP = const(13)  # int16 words per input element: 1 for array('h'), 2 for array('i')
_P_TAB = const(16)  # CORDIC table atan(2**-i), 1/256 cdeg
_N_PAR = const(32)


def _mantissa_shift(x, bits):
    # x ~= m / 2**s with 2**(bits-1) <= m < 2**bits, s >= 0 (x = 0 -> (0, 0)).
    if x <= 0:
        return 0, 0
    s = 0
    while x * (1 << s) < (1 << (bits - 1)) and s < 24:
        s += 1
    m = int(x * (1 << s) + 0.5)
    if m >= (1 << bits):
        raise ValueError("gain too large for the fixed-point format")
    return m, s


class PelvisEstimator:
    """Obliquity, tilt, rotation (centidegrees) of the pelvis from body-frame IMU counts."""

    def __init__(self, rate_hz=units.IMU_RATE_HZ, gain=0.5, init_gain=5.0, init_s=1.0,
                 acc_reject_g=0.2, rest_gyro_dps=3.0, rest_noise_dps=1.0, rest_s=1.0,
                 bias_tau_s=1.28, heading_tau_s=5.0):
        self.rate_hz = rate_hz
        dps_per_count = 10 / units.GYR_LSB_PER_DPS_X10
        half_rad = 0.5 / rate_hz * math.pi / 180 * dps_per_count  # rad per count per sample
        hk = int(half_rad * (1 << 34) + 0.5)
        if not 0 < hk < (1 << 17):  # bound used in the kernel: (w4 >> 10) * hk < 2**27
            raise ValueError("rate_hz out of range (36..10000 Hz)")
        p = array.array("i", bytes(4 * _N_PAR))
        p[_P_HK] = hk
        # Correction: half-angle per sample in Q30 = (c_q25 >> 10) * KPM >> KPS
        # with KPM / 2**KPS = 0.5 * gain / rate * 2**15.
        p[_P_KPM], p[_P_KPS] = _mantissa_shift(0.5 * gain / rate_hz * 32768, 13)
        p[_P_KPM0], p[_P_KPS0] = _mantissa_shift(0.5 * init_gain / rate_hz * 32768, 13)
        lo = max(0.0, 1.0 - acc_reject_g) * units.ACC_LSB_PER_G / 2
        hi = min(2.9, 1.0 + acc_reject_g) * units.ACC_LSB_PER_G / 2  # 3 * (2.9 * 2048)**2 < 2**30
        p[_P_ALO2] = int(lo * lo)
        p[_P_AHI2] = int(hi * hi)
        p[_P_DEV] = int(rest_noise_dps / dps_per_count * 256)
        p[_P_ABS] = int(rest_gyro_dps / dps_per_count * 4096)
        p[_P_REST_N] = max(1, int(rest_s * rate_hz + 0.5))
        p[_P_BSH] = max(0, min(16, int(math.log(max(1.0, bias_tau_s * rate_hz)) / math.log(2) + 0.5)))
        n_tau = heading_tau_s * rate_hz
        if n_tau >= 1:
            # alpha = HAQ / 2**HF with 64 <= HAQ < 128: |d| * HAQ < 2**23 * 2**7 = 2**30
            f = 0
            while (1 << f) / n_tau < 64:
                f += 1
            if f > 28:
                raise ValueError("heading_tau_s too long; use 0 to disable heading tracking")
            p[_P_HAQ] = int((1 << f) / n_tau + 0.5)
            p[_P_HF] = f
        p[_P_STEP] = 1
        for i in range(_CORDIC_N):
            p[_P_TAB + i] = int(math.degrees(math.atan(2.0 ** -i)) * 25600 + 0.5)
        self._par = p
        self._init_n = int(init_s * rate_hz + 0.5)
        self._st = array.array("i", bytes(4 * _N_STATE))
        self._imu_obj = None
        self.reset()

    # ---- state -------------------------------------------------------------------------------
    def _get(self, i):
        return self._st[i] - _OFF

    def _set(self, i, v):
        self._st[i] = v + _OFF

    def reset(self):
        """Forget orientation, bias and calibration; the next sample re-initialises."""
        for i in range(_N_STATE):
            self._set(i, 0)
        self._set(_MW, _ONE_Q14)
        self._set(_FLAGS, _F_INIT | _F_HEAD_RESET)
        self._set(_INIT_LEFT, self._init_n)
        self._started = False
        self.calibrated = False

    def _start(self, ax, ay, az):
        # Orientation from the first accelerometer sample: heading 0, Euler z-x-y as the output.
        if ax == 0 and ay == 0 and az == 0:
            az = 1
        obl = math.atan2(ay, math.sqrt(ax * ax + az * az))
        tilt = math.atan2(-ax, az)
        c1, s1 = math.cos(obl / 2), math.sin(obl / 2)
        c2, s2 = math.cos(tilt / 2), math.sin(tilt / 2)
        for i, v in enumerate((c1 * c2, s1 * c2, c1 * s2, s1 * s2)):
            self._set(_QW + i, int(v * _ONE_Q28))
        self._started = True

    def _bind_input(self, imu):
        # Element size of the input buffer (only when a different buffer object comes in).
        size = len(bytes(memoryview(imu)[0:1]))
        if size not in (2, 4):
            raise TypeError("imu must be array('h') or array('i') (or a memoryview of one)")
        self._par[_P_STEP] = size // 2
        self._imu_obj = imu

    # ---- API ---------------------------------------------------------------------------------
    def process(self, imu, n_samples, out_cdeg, out_start):
        """imu: body-frame counts [ax, ay, az, gx, gy, gz] per sample (int16 range, little-endian
        buffer); writes [obliquity, tilt, rotation] centidegrees per sample into out_cdeg from
        element out_start. Returns n_samples. Allocates nothing once the buffer is known."""
        if n_samples <= 0:
            return 0
        if len(imu) < 6 * n_samples or len(out_cdeg) < out_start + 3 * n_samples or out_start < 0:
            raise ValueError("imu or out_cdeg too short for n_samples")
        if imu is not self._imu_obj:
            self._bind_input(imu)
        if not self._started:
            self._start(imu[0], imu[1], imu[2])
        _kernel(imu, n_samples, out_cdeg, out_start, self._st, self._par)
        return n_samples

    def begin_standing_calibration(self):
        for i in range(_CAL_N, _N_STATE):
            self._set(i, 0)
        for i in range(3):
            self._set(_CAL_MIN + i, 32767)
            self._set(_CAL_MAX + i, -32768)
        self._set(_FLAGS, self._get(_FLAGS) | _F_CAL)

    def end_standing_calibration(self, min_s=0.5, max_gyro_dps=5.0, max_acc_range_g=0.1):
        """Angles become relative to the pose held since begin_standing_calibration(). False (and
        the previous calibration kept) if the person moved or the hold was shorter than min_s."""
        self._set(_FLAGS, self._get(_FLAGS) & ~_F_CAL)
        n = self._get(_CAL_N)
        if n < max(1, int(min_s * self.rate_hz)):
            return False
        gyro_dps = self._get(_CAL_GMAX) * 10 / units.GYR_LSB_PER_DPS_X10
        acc_range = max(self._get(_CAL_MAX + i) - self._get(_CAL_MIN + i) for i in range(3))
        if gyro_dps > max_gyro_dps or acc_range > max_acc_range_g * units.ACC_LSB_PER_G:
            return False
        ax, ay, az = (self._get(_CAL_SX + i) / n for i in range(3))
        # Sensor orientation at rest = Rz(psi) Rx(obl) Ry(tilt); mounting = Ry(-tilt) Rx(-obl), so
        # that sensor x mounting is a pure heading in the standing pose.
        obl = math.atan2(ay, math.sqrt(ax * ax + az * az))
        tilt = math.atan2(-ax, az)
        c1, s1 = math.cos(-tilt / 2), math.sin(-tilt / 2)  # qy(-tilt)
        c2, s2 = math.cos(-obl / 2), math.sin(-obl / 2)  # qx(-obl)
        m = (c1 * c2, c1 * s2, s1 * c2, -s1 * s2)  # qy(-tilt) * qx(-obl)
        for i in range(4):
            self._set(_MW + i, int(round(m[i] * _ONE_Q14)))
        self._set(_FLAGS, self._get(_FLAGS) | _F_HEAD_RESET)
        self.calibrated = True
        return True

    def mounting(self):
        """The standing calibration (mounting quaternion, 4 ints Q14), or None before one."""
        if not self.calibrated:
            return None
        return tuple(self._get(_MW + i) for i in range(4))

    def set_mounting(self, m):
        """Restore a standing calibration that mounting() gave."""
        for i in range(4):
            self._set(_MW + i, int(m[i]))
        self._set(_FLAGS, self._get(_FLAGS) | _F_HEAD_RESET)
        self.calibrated = True

    @property
    def accel_rejected(self):
        return bool(self._get(_FLAGS) & _F_REJECTED)

    @property
    def at_rest(self):
        return bool(self._get(_FLAGS) & _F_AT_REST)

    @property
    def initialising(self):
        return bool(self._get(_FLAGS) & _F_INIT)

    @property
    def calibrating(self):
        return bool(self._get(_FLAGS) & _F_CAL)

    @property
    def gyro_bias_counts(self):
        return tuple((self._get(_BX + i) + 2048) >> 12 for i in range(3))

    @property
    def quaternion(self):
        """Sensor orientation (body -> world) as floats w, x, y, z (diagnostics; allocates)."""
        return tuple(self._get(_QW + i) / _ONE_Q28 for i in range(4))


@micropython.viper
def _kernel(imu, n: int, out, start: int, st, par) -> int:
    pi = ptr16(imu)
    po = ptr32(out)
    ps = ptr32(st)
    pp = ptr32(par)
    off = 0x20000000
    qw = int(ps[_QW]) - off
    qx = int(ps[_QX]) - off
    qy = int(ps[_QY]) - off
    qz = int(ps[_QZ]) - off
    bx = int(ps[_BX]) - off
    by = int(ps[_BY]) - off
    bz = int(ps[_BZ]) - off
    lx = int(ps[_LX]) - off
    ly = int(ps[_LY]) - off
    lz = int(ps[_LZ]) - off
    rest_n = int(ps[_REST_N]) - off
    href = int(ps[_HREF]) - off
    hfrac = int(ps[_HFRAC]) - off
    mw = int(ps[_MW]) - off
    mx = int(ps[_MX]) - off
    my = int(ps[_MY]) - off
    mz = int(ps[_MZ]) - off
    flags = int(ps[_FLAGS]) - off
    init_left = int(ps[_INIT_LEFT]) - off
    hk = int(pp[_P_HK])
    alo2 = int(pp[_P_ALO2])
    ahi2 = int(pp[_P_AHI2])
    dev_max = int(pp[_P_DEV])
    abs_max = int(pp[_P_ABS])
    rest_need = int(pp[_P_REST_N])
    bsh = int(pp[_P_BSH])
    haq = int(pp[_P_HAQ])
    hf = int(pp[_P_HF])
    step = int(pp[_P_STEP])
    cal = flags & _F_CAL
    k = 0
    o = start
    yaw = 0
    for _i in range(n):
        # -- input: int16 counts (low half-word of each element, little-endian), sign-extended
        ax = ((int(pi[k]) + 0x8000) & 0xFFFF) - 0x8000
        k += step
        ay = ((int(pi[k]) + 0x8000) & 0xFFFF) - 0x8000
        k += step
        az = ((int(pi[k]) + 0x8000) & 0xFFFF) - 0x8000
        k += step
        gx = ((int(pi[k]) + 0x8000) & 0xFFFF) - 0x8000
        k += step
        gy = ((int(pi[k]) + 0x8000) & 0xFFFF) - 0x8000
        k += step
        gz = ((int(pi[k]) + 0x8000) & 0xFFFF) - 0x8000
        k += step

        # -- rest detection and gyro bias. |g| <= 2**15 counts; bias |b| < 2**27 (Q12).
        wx = (gx << 12) - bx  # |.| < 2**27 + 2**27 = 2**28
        wy = (gy << 12) - by
        wz = (gz << 12) - bz
        dx = (gx << 8) - lx  # |.| < 2**23 + 2**23 = 2**24
        dy = (gy << 8) - ly
        dz = (gz << 8) - lz
        lx += dx >> 3
        ly += dy >> 3
        lz += dz >> 3
        quiet = 1
        if dx >= dev_max or dx <= -dev_max or dy >= dev_max or dy <= -dev_max:
            quiet = 0
        if dz >= dev_max or dz <= -dev_max:
            quiet = 0
        if wx >= abs_max or wx <= -abs_max or wy >= abs_max or wy <= -abs_max:
            quiet = 0
        if wz >= abs_max or wz <= -abs_max:
            quiet = 0
        if quiet:
            if rest_n < rest_need:
                rest_n += 1
        else:
            rest_n = 0
        if rest_n >= rest_need:
            flags |= _F_AT_REST
            bx += wx >> bsh  # moves toward g; |b| stays below max |g| * 2**12 <= 2**27
            by += wy >> bsh
            bz += wz >> bsh
        else:
            flags &= ~_F_AT_REST

        # -- gyro -> half-angle rotation per sample, Q30 rad. w4 = Q4 counts, |w4| < 2**20.
        w4 = wx >> 8
        ex = (((w4 >> 10) * hk) << 2) + (((w4 & 0x3FF) * hk) >> 8)  # 2**10*2**17 <<2 = 2**29; 2**27
        w4 = wy >> 8
        ey = (((w4 >> 10) * hk) << 2) + (((w4 & 0x3FF) * hk) >> 8)
        w4 = wz >> 8
        ez = (((w4 >> 10) * hk) << 2) + (((w4 & 0x3FF) * hk) >> 8)
        # |e| <= 2**15 counts * 2.66e-6 rad * 2**30 = 2**26.5 at 100 Hz (2**27 at 36 Hz)

        # -- up vector of the estimate, Q28 (from Q14 quaternion, |q14| <= 2**14 * 1.02)
        w = (qw + 0x2000) >> 14
        x = (qx + 0x2000) >> 14
        y = (qy + 0x2000) >> 14
        z = (qz + 0x2000) >> 14
        v1 = (x * z - w * y) << 1  # products <= 2**28.1; |2(xz - wy)| <= |q|**2 < 2**28.1
        v2 = (y * z + w * x) << 1
        v3 = (w * w + z * z) - (x * x + y * y)  # each sum <= |q|**2 < 2**28.1

        # -- accelerometer correction (Mahony), rejected outside the |a| band
        hx = ax >> 1  # Q11 g, |.| <= 2**14
        hy = ay >> 1
        hz = az >> 1
        a2 = hx * hx + hy * hy + hz * hz  # <= 3 * 2**28 < 2**30
        if init_left > 0 or (a2 >= alo2 and a2 <= ahi2):
            flags &= ~_F_REJECTED
            if init_left > 0:
                kpm = int(pp[_P_KPM0])
                kps = int(pp[_P_KPS0])
            else:
                kpm = int(pp[_P_KPM])
                kps = int(pp[_P_KPS])
            v1 >>= 14  # Q14, |.| <= 2**14.1
            v2 >>= 14
            v3 >>= 14
            # c = a x v, Q25; products <= 2**28.1, difference <= 2**29.1; clamped to |c| <= 1 (g)
            # so that the correction (c >> 10) * kpm <= 2**15 * 2**13 = 2**28
            c = hy * v3 - hz * v2
            if c > 0x2000000:
                c = 0x2000000
            elif c < -0x2000000:
                c = -0x2000000
            ex += ((c >> 10) * kpm) >> kps
            c = hz * v1 - hx * v3
            if c > 0x2000000:
                c = 0x2000000
            elif c < -0x2000000:
                c = -0x2000000
            ey += ((c >> 10) * kpm) >> kps
            c = hx * v2 - hy * v1
            if c > 0x2000000:
                c = 0x2000000
            elif c < -0x2000000:
                c = -0x2000000
            ez += ((c >> 10) * kpm) >> kps
        else:
            flags |= _F_REJECTED
        # |e| < 2**29 + 2**28 here; clamp to 2**27 (0.125 rad per sample = 1430 dps at 100 Hz)
        if ex > 0x8000000:
            ex = 0x8000000
        elif ex < -0x8000000:
            ex = -0x8000000
        if ey > 0x8000000:
            ey = 0x8000000
        elif ey < -0x8000000:
            ey = -0x8000000
        if ez > 0x8000000:
            ez = 0x8000000
        elif ez < -0x8000000:
            ez = -0x8000000
        if init_left > 0:
            init_left -= 1
            if init_left == 0:
                flags &= ~_F_INIT

        # -- integrate: q += q (x) (0, e) >> 30. Split q (Q28) = qh*2**15 + ql, e = eh*2**15 + el:
        # q*e >> 30 = qh*eh + (qh*el + ql*eh) >> 15, qh <= 2**13.1, eh <= 2**12, ql, el < 2**15:
        # qh*eh <= 2**25.1, qh*el < 2**28.1, ql*eh < 2**27, their sum < 2**28.6.
        exh = ex >> 15
        exl = ex & 0x7FFF
        eyh = ey >> 15
        eyl = ey & 0x7FFF
        ezh = ez >> 15
        ezl = ez & 0x7FFF
        h = qw >> 15
        l = qw & 0x7FFF
        pwx = h * exh + ((h * exl + l * exh + 0x4000) >> 15)
        pwy = h * eyh + ((h * eyl + l * eyh + 0x4000) >> 15)
        pwz = h * ezh + ((h * ezl + l * ezh + 0x4000) >> 15)
        h = qx >> 15
        l = qx & 0x7FFF
        pxx = h * exh + ((h * exl + l * exh + 0x4000) >> 15)
        pxy = h * eyh + ((h * eyl + l * eyh + 0x4000) >> 15)
        pxz = h * ezh + ((h * ezl + l * ezh + 0x4000) >> 15)
        h = qy >> 15
        l = qy & 0x7FFF
        pyx = h * exh + ((h * exl + l * exh + 0x4000) >> 15)
        pyy = h * eyh + ((h * eyl + l * eyh + 0x4000) >> 15)
        pyz = h * ezh + ((h * ezl + l * ezh + 0x4000) >> 15)
        h = qz >> 15
        l = qz & 0x7FFF
        pzx = h * exh + ((h * exl + l * exh + 0x4000) >> 15)
        pzy = h * eyh + ((h * eyl + l * eyh + 0x4000) >> 15)
        pzz = h * ezh + ((h * ezl + l * ezh + 0x4000) >> 15)
        # each p <= |q| |e| / 2**30 <= 2**25.1; sums of three < 2**26.7; |q|**2 grows by
        # at most |e|**2 / 2**60 <= 3 * 2**-6, so |q| < 1.024
        qw -= pxx + pyy + pzz
        qx += pwx + pyz - pzy
        qy += pwy - pxz + pzx
        qz += pwz + pxy - pyx

        # -- renormalise (one Newton step of 1/sqrt): q += q * c, c = (1 - |q|**2) / 2, Q28.
        n2 = 0
        h = qw >> 14  # Q14, <= 2**14.1; l < 2**14
        l = qw & 0x3FFF
        n2 += h * h + ((h * l) >> 13)  # 2**28.2, 2**28.1
        h = qx >> 14
        l = qx & 0x3FFF
        n2 += h * h + ((h * l) >> 13)
        h = qy >> 14
        l = qy & 0x3FFF
        n2 += h * h + ((h * l) >> 13)
        h = qz >> 14
        l = qz & 0x3FFF
        n2 += h * h + ((h * l) >> 13)  # total = |q|**2 Q28 < 2**28.2
        c = (_ONE_Q28 - n2) >> 1  # |c| <= 0.03 * 2**28 < 2**23.3
        if c < 0x8000 and c > -0x8000:
            # q * c >> 28 = (q >> 14) * c >> 14 + (q & 0x3FFF) * c >> 28: 2**14.1 * 2**15; 2**29
            qw += (((qw >> 14) * c) >> 14) + (((qw & 0x3FFF) * c) >> 28)
            qx += (((qx >> 14) * c) >> 14) + (((qx & 0x3FFF) * c) >> 28)
            qy += (((qy >> 14) * c) >> 14) + (((qy & 0x3FFF) * c) >> 28)
            qz += (((qz >> 14) * c) >> 14) + (((qz & 0x3FFF) * c) >> 28)
        else:
            # after a fast step: (q >> 14) * (c >> 10) >> 4, 2**14.1 * 2**13.3
            c >>= 10
            qw += ((qw >> 14) * c) >> 4
            qx += ((qx >> 14) * c) >> 4
            qy += ((qy >> 14) * c) >> 4
            qz += ((qz >> 14) * c) >> 4

        # -- pelvis = sensor (x) mounting, Q14 x Q14 -> Q28: products <= 2**28.1, partial sums of
        # three <= 3 * 2**28.1 < 2**30, the full sum is a unit-quaternion component (<= 2**28.1).
        w = (qw + 0x2000) >> 14
        x = (qx + 0x2000) >> 14
        y = (qy + 0x2000) >> 14
        z = (qz + 0x2000) >> 14
        pw = (w * mw - x * mx - y * my - z * mz + 0x2000) >> 14
        px = (w * mx + x * mw + y * mz - z * my + 0x2000) >> 14
        py = (w * my - x * mz + y * mw + z * mx + 0x2000) >> 14
        pz = (w * mz + x * my - y * mx + z * mw + 0x2000) >> 14
        # rotation matrix entries, Q28, each <= |p|**2 < 2**28.1 (see v1..v3)
        r31 = (px * pz - pw * py) << 1
        r32 = (py * pz + pw * px) << 1
        r33 = (pw * pw + pz * pz) - (px * px + py * py)
        r12 = (px * py - pw * pz) << 1
        r22 = (pw * pw + py * py) - (px * px + pz * pz)

        # -- angles by CORDIC vectoring, 1/256 cdeg: yaw = atan2(-r12, r22),
        # tilt = atan2(-r31, r33), obliquity = atan2(r32, hypot(r12, r22)). |x|, |y| grow by at
        # most 1.647 => < 2**28.9.
        obl = 0
        tilt = 0
        cx = r22
        cy = -r12
        for j in range(3):
            if j == 1:
                # hypot(r12, r22) = cx * 0.607253: (cx >> 14) * 9949 <= 2**14.9 * 2**13.3
                cy = r32
                cx = (cx >> 14) * _INV_K_Q14 + (((cx & 0x3FFF) * _INV_K_Q14) >> 14)
            elif j == 2:
                cx = r33
                cy = -r31
            ang = 0
            if cx < 0:
                if cy >= 0:
                    ang = _HALF_TURN
                else:
                    ang = -_HALF_TURN
                cx = -cx
                cy = -cy
            for i in range(_CORDIC_N):
                t = int(pp[_P_TAB + i])
                if cy > 0:
                    nx = cx + (cy >> i)
                    cy = cy - (cx >> i)
                    ang += t
                else:
                    nx = cx - (cy >> i)
                    cy = cy + (cx >> i)
                    ang -= t
                cx = nx
            if j == 0:
                yaw = ang
            elif j == 1:
                obl = ang
            else:
                tilt = ang

        # -- rotation: yaw relative to the tracked heading, wrapped to (-180, 180] deg
        if flags & _F_HEAD_RESET:
            href = yaw
            hfrac = 0
            flags &= ~_F_HEAD_RESET
        d = yaw - href
        if d > _HALF_TURN:
            d -= _FULL_TURN
        elif d <= -_HALF_TURN:
            d += _FULL_TURN
        if haq:
            hfrac += d * haq  # |d| <= 2**22.2, haq < 2**7
            t = hfrac >> hf
            hfrac -= t << hf
            href += t
            if href > _HALF_TURN:
                href -= _FULL_TURN
            elif href <= -_HALF_TURN:
                href += _FULL_TURN

        po[o] = (obl + 128) >> 8
        po[o + 1] = (tilt + 128) >> 8
        po[o + 2] = -((d + 128) >> 8)  # positive = left side forward = negative about +z
        o += 3

        # -- standing calibration statistics
        if cal:
            cn = int(ps[_CAL_N]) - off
            if cn < _CAL_MAX_N:
                ps[_CAL_N] = cn + 1 + off
                ps[_CAL_SX] = int(ps[_CAL_SX]) + ax  # |sum| <= 2**13 * 2**15 = 2**28
                ps[_CAL_SX + 1] = int(ps[_CAL_SX + 1]) + ay
                ps[_CAL_SX + 2] = int(ps[_CAL_SX + 2]) + az
                if ax < int(ps[_CAL_MIN]) - off:
                    ps[_CAL_MIN] = ax + off
                if ay < int(ps[_CAL_MIN + 1]) - off:
                    ps[_CAL_MIN + 1] = ay + off
                if az < int(ps[_CAL_MIN + 2]) - off:
                    ps[_CAL_MIN + 2] = az + off
                if ax > int(ps[_CAL_MAX]) - off:
                    ps[_CAL_MAX] = ax + off
                if ay > int(ps[_CAL_MAX + 1]) - off:
                    ps[_CAL_MAX + 1] = ay + off
                if az > int(ps[_CAL_MAX + 2]) - off:
                    ps[_CAL_MAX + 2] = az + off
                gm = wx
                if gm < 0:
                    gm = -gm
                if wy > gm or -wy > gm:
                    gm = wy if wy > 0 else -wy
                if wz > gm or -wz > gm:
                    gm = wz if wz > 0 else -wz
                gm = gm >> 12
                if gm > int(ps[_CAL_GMAX]) - off:
                    ps[_CAL_GMAX] = gm + off

    ps[_QW] = qw + off
    ps[_QX] = qx + off
    ps[_QY] = qy + off
    ps[_QZ] = qz + off
    ps[_BX] = bx + off
    ps[_BY] = by + off
    ps[_BZ] = bz + off
    ps[_LX] = lx + off
    ps[_LY] = ly + off
    ps[_LZ] = lz + off
    ps[_REST_N] = rest_n + off
    ps[_HREF] = href + off
    ps[_HFRAC] = hfrac + off
    ps[_FLAGS] = flags + off
    ps[_INIT_LEFT] = init_left + off
    return n
