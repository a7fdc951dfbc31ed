# Gait events (initial / final contact, left / right) from the sacrum IMU, causal and in integers.
#
# Method (after McCamley et al. 2012, Gait & Posture 36:316; see tests/firmware/gait_reference.py
# for the float twin the tests compare against):
# - Steps: the vertical acceleration (body z) through three 15-sample moving sums (a Gaussian-like
#   smoother, sigma ~7.5 samples, 21 samples delay) minus a one-pole running mean (2^-6 per
#   sample). Each positive lobe of that signal whose peak exceeds 0.03 g is one step.
# - IC: the steepest rise of the lightly smoothed vertical minus anterior acceleration (az - ax, two
#   5-sample moving sums, central difference) in [lobe peak - 250 ms, lobe peak + 50 ms] -- the
#   heel-strike impact pushes the sacrum up and brakes it. On the mobgap lab data az - ax puts ~4 %
#   more ICs within 50 ms of the INDIP reference than az alone (bench/bench_gait.py).
# - FC (of the other foot): the maximum of the second difference 50..400 ms after that IC, plus a
#   fixed 50 ms measured on the mobgap lab data (a lower-back FC estimate is coarse: see README of
#   the tests for the measured error).
# - Side: the sign of the smoothed yaw + roll rate (gz + gx, three 11-sample sums) minus a one-pole
#   running mean (2^-4), 150 ms before the IC, is one step's evidence (> 0: right). Steps of a bout
#   alternate, so the evidence of each step, flipped on odd steps, goes into a counter clamped to
#   +-4, and the counter's sign decides (the step's own evidence on a tie); the two held steps that
#   open a bout vote together. One wrong-signed step then no longer flips a side.
#   Both rates swing the same way before an IC in the mobgap lab recordings (about -13 / -7 dps
#   before a left IC, +15 / +5 before a right one; tests/host/sim_realism.py), and the simulator now
#   shares that roll pattern, so the roll rate is back: lab side accuracy 0.87 with gz alone, 0.92
#   with gz + gx (bench/bench_gait.py). A weight of 1 is the most the simulated Trendelenburg
#   patients tolerate: their extra drop makes gx at IC large and one-sided.
# - Bouts: a first step is held until a second one follows within 0.25..1.5 s; then both are
#   emitted and `walking` is set. Walking ends after 2 s without a step. An isolated bump or a single
#   shift of weight therefore emits nothing.
#
# Latency: an IC is emitted when its lobe ends, 0.25..0.5 s after it happened (first step of a bout:
# when the second step is found, up to ~2 s). An FC is emitted 0.46 s after the IC it follows, or
# at the next IC if that comes first. Every event carries the clock of the sample it happened at.
#
# stride_index: per side, the number of ICs of that side seen before (since construction). An IC
# carries its own index; an FC carries the index of the same foot's latest IC (the stride whose
# stance it ends), or -1 if that foot had no IC yet. Single-leg support of side S runs from the FC
# of the other side to the next IC of the other side.
#
# Integers: the largest intermediates are the third 15-sample sum of the acceleration,
# 3375 * 32768 < 2^27, the third 11-sample sum of gz + gx, 1331 * 65536 < 2^27, and the
# running-mean differences < 2^28: all below 2^29, so no big int on the
# ESP32. process() allocates nothing (tests/firmware/mp_test_gait.py holds heap_lock around it),
# except that event clocks >= 2^30 ticks (12.4 days of device clock) are big ints on the ESP32.
#
# Speed: the per-sample work (moving sums, running means, lobe tracking) is one viper kernel over
# the block; it hands a sample back to Python only when a lobe ends or an FC window closes (a few
# times per second of walking), and Python runs the event logic for that sample. All state lives in
# one array('i') so both sides see it. Viper integers are 32-bit on the ESP32, and a ptr32 load is
# not sign-extended on the 64-bit unix port, so signed state is sign-extended from 30 bits when
# loaded: exact for |value| < 2^29, which holds for every value above and for the sample counter
# for 62 days of continuous processing (the device clock itself is bounded at 12.4 days).
from array import array

import micropython
from micropython import const

from hipwire import units

IC = const(1)
FC = const(2)
LEFT = const(0)
RIGHT = const(1)

_AX = const(0)
_AZ = const(2)
_GX = const(3)
_GZ = const(5)
_CH = const(6)

_FINE_W = const(5)  # two moving sums
_COARSE_W = const(15)  # three moving sums
_LAT_W = const(11)  # three moving sums
_FINE_DELAY = const(5)  # 2 * 2 + 1 (central difference)
_DD_DELAY = const(6)
_COARSE_DELAY = const(21)
_LAT_DELAY = const(15)
_BASE_SHIFT = const(6)
_LAT_BASE_SHIFT = const(4)
# 0.03 g of lobe height in units of the third moving sum: 0.03 * 4096 * 15^3
_STEP_THR = const(414720)
# A lobe starts above 0.005 g (standing noise stays below) and ends at <= 0.
_LOBE_ENTER = const(69120)
_IC_BEFORE_PEAK = const(25)
_IC_AFTER_PEAK = const(5)
_FC_FROM = const(5)
_FC_TO = const(40)
_FC_OFFSET = const(5)
_LAT_LAG = const(15)
_VOTE_MAX = const(4)
_MIN_STEP = const(25)
_MAX_STEP = const(150)
_END_GAP = const(200)
_MAX_LOBE = const(100)
_RING = const(256)  # history of d, dd and side evidence; must cover MAX_LOBE + IC window + delays
_MASK = const(255)
_NONE = const(-1000000)

# State array layout (array('i'), shared by the viper kernel and the Python event logic).
_N = const(0)  # samples processed
_FINE_POS = const(1)
_COARSE_POS = const(2)
_LAT_POS = const(3)
_BASE = const(4)
_LAT_BASE = const(5)
_IN_LOBE = const(6)
_PEAK_T = const(7)
_PEAK_V = const(8)
_LOBE_LEN = const(9)
_PENDING = const(10)
_LAST_IC = const(11)
_FC_IC = const(12)
_WALKING = const(13)
_HANDOFF = const(14)  # 1: the kernel stopped at a sample whose events Python must run
_V = const(15)  # that sample's coarse value
_SUMS = const(16)  # fine 0..1, coarse 2..4, lat 5..7
_FH = const(24)  # fine sum at n-1, n-2
_DH = const(26)  # d at n-1, n-2
_FINE = const(28)  # moving-sum rings: 2 stages of _FINE_W
_COARSE = const(38)  # 3 stages of _COARSE_W
_LAT = const(83)  # 3 stages of _LAT_W
_STATE = const(116)
_B29 = const(1 << 29)
_M30 = const((1 << 30) - 1)


@micropython.viper
def _kernel(imu: ptr16, i: int, end: int, st: ptr32, dring: ptr32, ddring: ptr32,
            lring: ptr32) -> int:
    """Run imu[i:end] (6 int16 per sample) through the filters and the lobe tracking; stop after
    a sample that needs the event logic (st[_HANDOFF] = 1, its value in st[_V]). Returns the
    index after the last sample taken. Mirrors _sample/_events of the bytecode version exactly."""
    n = st[_N]
    fpos = st[_FINE_POS]
    cpos = st[_COARSE_POS]
    lpos = st[_LAT_POS]
    base = ((st[_BASE] + _B29) & _M30) - _B29
    lbase = ((st[_LAT_BASE] + _B29) & _M30) - _B29
    in_lobe = st[_IN_LOBE]
    peak_t = st[_PEAK_T]
    peak_v = ((st[_PEAK_V] + _B29) & _M30) - _B29
    lobe_len = st[_LOBE_LEN]
    pending = ((st[_PENDING] + _B29) & _M30) - _B29
    last_ic = ((st[_LAST_IC] + _B29) & _M30) - _B29
    fc_ic = ((st[_FC_IC] + _B29) & _M30) - _B29
    walking = st[_WALKING]
    fs0 = ((st[_SUMS] + _B29) & _M30) - _B29
    fs1 = ((st[_SUMS + 1] + _B29) & _M30) - _B29
    cs0 = ((st[_SUMS + 2] + _B29) & _M30) - _B29
    cs1 = ((st[_SUMS + 3] + _B29) & _M30) - _B29
    cs2 = ((st[_SUMS + 4] + _B29) & _M30) - _B29
    ls0 = ((st[_SUMS + 5] + _B29) & _M30) - _B29
    ls1 = ((st[_SUMS + 6] + _B29) & _M30) - _B29
    ls2 = ((st[_SUMS + 7] + _B29) & _M30) - _B29
    fh0 = ((st[_FH] + _B29) & _M30) - _B29
    fh1 = ((st[_FH + 1] + _B29) & _M30) - _B29
    dh0 = ((st[_DH] + _B29) & _M30) - _B29
    dh1 = ((st[_DH + 1] + _B29) & _M30) - _B29
    handoff = 0
    v = 0
    while i < end:
        ax = (imu[i + _AX] ^ 0x8000) - 0x8000  # ptr16 loads are unsigned
        az = (imu[i + _AZ] ^ 0x8000) - 0x8000
        gx = (imu[i + _GX] ^ 0x8000) - 0x8000
        gz = (imu[i + _GZ] ^ 0x8000) - 0x8000
        i += _CH
        # vertical-minus-AP acceleration: two 5-sample sums, difference d, second difference dd
        x = az - ax
        k = _FINE + fpos
        fs0 += x - (((st[k] + _B29) & _M30) - _B29)
        st[k] = x
        x = fs0
        k += _FINE_W
        fs1 += x - (((st[k] + _B29) & _M30) - _B29)
        st[k] = x
        x = fs1
        fpos = fpos + 1 if fpos < _FINE_W - 1 else 0
        d = x - fh1
        fh1 = fh0
        fh0 = x
        if n < 2:
            d = 0
        dd = d - dh1
        dh1 = dh0
        dh0 = d
        if n < 2:
            dd = 0
        dring[(n - _FINE_DELAY) & _MASK] = d
        ddring[(n - _DD_DELAY) & _MASK] = dd
        # side evidence: yaw + roll rate, three 11-sample sums, minus its running mean
        x = gz + gx
        k = _LAT + lpos
        ls0 += x - (((st[k] + _B29) & _M30) - _B29)
        st[k] = x
        x = ls0
        k += _LAT_W
        ls1 += x - (((st[k] + _B29) & _M30) - _B29)
        st[k] = x
        x = ls1
        k += _LAT_W
        ls2 += x - (((st[k] + _B29) & _M30) - _B29)
        st[k] = x
        x = ls2
        lpos = lpos + 1 if lpos < _LAT_W - 1 else 0
        lbase += (x - lbase) >> _LAT_BASE_SHIFT
        lring[(n - _LAT_DELAY) & _MASK] = x - lbase
        # step lobes: vertical acceleration, three 15-sample sums, minus its running mean
        x = az
        k = _COARSE + cpos
        cs0 += x - (((st[k] + _B29) & _M30) - _B29)
        st[k] = x
        x = cs0
        k += _COARSE_W
        cs1 += x - (((st[k] + _B29) & _M30) - _B29)
        st[k] = x
        x = cs1
        k += _COARSE_W
        cs2 += x - (((st[k] + _B29) & _M30) - _B29)
        st[k] = x
        x = cs2
        cpos = cpos + 1 if cpos < _COARSE_W - 1 else 0
        base += (x - base) >> _BASE_SHIFT
        v = x - base
        cur = n
        n += 1
        if cur < _COARSE_DELAY:
            continue
        t = cur - _COARSE_DELAY
        # a closing FC window or an ending lobe: the event logic runs in Python
        if (fc_ic >= 0 and cur - _DD_DELAY >= fc_ic + _FC_TO) or (in_lobe and v <= 0):
            handoff = 1
            break
        if walking and t - last_ic > _END_GAP:
            walking = 0
        if pending >= 0 and t - pending > _MAX_STEP:
            pending = -1
        if v > _LOBE_ENTER or in_lobe:  # in a lobe here means v > 0
            if not in_lobe:
                in_lobe = 1
                peak_v = v
                peak_t = t
                lobe_len = 0
            lobe_len += 1
            if v > peak_v:
                peak_v = v
                peak_t = t
    st[_N] = n
    st[_FINE_POS] = fpos
    st[_COARSE_POS] = cpos
    st[_LAT_POS] = lpos
    st[_BASE] = base
    st[_LAT_BASE] = lbase
    st[_IN_LOBE] = in_lobe
    st[_PEAK_T] = peak_t
    st[_PEAK_V] = peak_v
    st[_LOBE_LEN] = lobe_len
    st[_PENDING] = pending
    st[_LAST_IC] = last_ic
    st[_FC_IC] = fc_ic
    st[_WALKING] = walking
    st[_HANDOFF] = handoff
    st[_V] = v
    st[_SUMS] = fs0
    st[_SUMS + 1] = fs1
    st[_SUMS + 2] = cs0
    st[_SUMS + 3] = cs1
    st[_SUMS + 4] = cs2
    st[_SUMS + 5] = ls0
    st[_SUMS + 6] = ls1
    st[_SUMS + 7] = ls2
    st[_FH] = fh0
    st[_FH + 1] = fh1
    st[_DH] = dh0
    st[_DH + 1] = dh1
    return i


class GaitDetector:
    def __init__(self, rate_hz=units.IMU_RATE_HZ, max_events=16):
        if rate_hz != 100:
            # Every window above is in samples at 100 Hz; another rate needs them rescaled.
            raise ValueError("GaitDetector is tuned for 100 Hz IMU samples")
        self.max_events = max_events
        self._queue = array("i", bytes(4 * 4 * max_events))
        self._q_head = 0
        self._q_len = 0
        self.dropped_events = 0
        self._ticks_per_sample = units.CLOCK_HZ // rate_hz
        # Filter and detector state (layout above), the moving sums' view of it, and the rings.
        self._st = array("i", bytes(4 * _STATE))
        self._sums = memoryview(self._st)[_SUMS:_SUMS + 8]
        self._d_ring = array("i", bytes(4 * _RING))
        self._dd_ring = array("i", bytes(4 * _RING))
        self._lat_ring = array("i", bytes(4 * _RING))
        self._strides = array("i", bytes(4 * 2))
        st = self._st
        st[_PENDING] = -1
        st[_LAST_IC] = _NONE
        st[_FC_IC] = -1
        self._pending_vote = 0  # the held step's side evidence, +1 right / -1 left
        self._parity = 0  # step number within the bout, modulo 2
        self._vote = 0  # evidence that the bout's even steps are right steps, within +-_VOTE_MAX
        self._last_side = RIGHT
        self._block_n = 0  # sample index of the current block's first sample
        self._block_clock = 0

    @property
    def walking(self):
        return self._st[_WALKING] != 0

    @property
    def _base(self):
        return self._st[_BASE]

    @property
    def _lat_base(self):
        return self._st[_LAT_BASE]

    @property
    def _lobe_peak_v(self):
        return self._st[_PEAK_V]

    # --- public ---------------------------------------------------------------------------

    def process(self, imu, n_samples, clock_first):
        """Feed n_samples body-frame IMU samples (array('h'), 6 interleaved counts each); returns
        the queue length."""
        st = self._st
        self._block_n = st[_N]
        self._block_clock = clock_first
        if n_samples > 0 and st[_N] == 0:
            az = imu[_AZ]
            self._prime(az - imu[_AX], az, imu[_GZ] + imu[_GX])
        i = 0
        end = n_samples * _CH
        while i < end:
            i = _kernel(imu, i, end, st, self._d_ring, self._dd_ring, self._lat_ring)
            if st[_HANDOFF]:
                n = st[_N] - 1
                self._events(n, n - _COARSE_DELAY, st[_V])
        return self._q_len

    def pop(self, out):
        """Move the oldest event into out[0:4] = clock_ticks, kind, side, stride_index."""
        if self._q_len == 0:
            return False
        q = self._queue
        j = self._q_head * 4
        out[0] = q[j]
        out[1] = q[j + 1]
        out[2] = q[j + 2]
        out[3] = q[j + 3]
        self._q_head = (self._q_head + 1) % self.max_events
        self._q_len -= 1
        return True

    def pending(self):
        return self._q_len

    # --- per sample -----------------------------------------------------------------------

    def _prime(self, jz, az, w):
        # Start every moving sum as if the first sample had always been there (no start-up step).
        st = self._st
        x = jz
        s = 0
        while s < 2:
            k = 0
            while k < _FINE_W:
                st[_FINE + s * _FINE_W + k] = x
                k += 1
            x = x * _FINE_W
            st[_SUMS + s] = x
            s += 1
        st[_FH] = x
        st[_FH + 1] = x
        x = az
        s = 0
        while s < 3:
            k = 0
            while k < _COARSE_W:
                st[_COARSE + s * _COARSE_W + k] = x
                k += 1
            x = x * _COARSE_W
            st[_SUMS + 2 + s] = x
            s += 1
        st[_BASE] = x
        x = w
        s = 0
        while s < 3:
            k = 0
            while k < _LAT_W:
                st[_LAT + s * _LAT_W + k] = x
                k += 1
            x = x * _LAT_W
            st[_SUMS + 5 + s] = x
            s += 1
        st[_LAT_BASE] = x

    def _events(self, n, t, v):
        # n: current sample; t: the sample the coarse value v describes.
        st = self._st
        fc_ic = st[_FC_IC]
        if fc_ic >= 0 and n - _DD_DELAY >= fc_ic + _FC_TO:
            self._emit_fc(fc_ic, fc_ic + _FC_TO)
            st[_FC_IC] = -1
        if st[_WALKING] and t - st[_LAST_IC] > _END_GAP:
            st[_WALKING] = 0
        if st[_PENDING] >= 0 and t - st[_PENDING] > _MAX_STEP:
            st[_PENDING] = -1
        if v > _LOBE_ENTER or (st[_IN_LOBE] and v > 0):
            if not st[_IN_LOBE]:
                st[_IN_LOBE] = 1
                st[_PEAK_V] = v
                st[_PEAK_T] = t
                st[_LOBE_LEN] = 0
            st[_LOBE_LEN] += 1
            if v > st[_PEAK_V]:
                st[_PEAK_V] = v
                st[_PEAK_T] = t
            return
        if not st[_IN_LOBE]:
            return
        st[_IN_LOBE] = 0
        if st[_PEAK_V] < _STEP_THR or st[_LOBE_LEN] > _MAX_LOBE:
            return
        # IC: the largest d in the window before the lobe's peak (first one on ties).
        lo = st[_PEAK_T] - _IC_BEFORE_PEAK
        if lo < 0:
            lo = 0
        hi = st[_PEAK_T] + _IC_AFTER_PEAK
        ring = self._d_ring
        ic = lo
        best = ring[lo & _MASK]
        k = lo + 1
        while k <= hi:
            if ring[k & _MASK] > best:
                best = ring[k & _MASK]
                ic = k
            k += 1
        pending = st[_PENDING]
        last = st[_LAST_IC] if st[_LAST_IC] > pending else pending
        if ic - last < _MIN_STEP:
            return
        if st[_WALKING]:
            if st[_FC_IC] >= 0:
                self._emit_fc(st[_FC_IC], ic - 1)
            ev = self._evidence(ic)
            own = ev if self._parity == 0 else -ev
            self._add_vote(own)
            self._emit_ic(ic, self._side_of(own))
            self._parity ^= 1
            st[_LAST_IC] = ic
            st[_FC_IC] = ic
        elif pending >= 0 and ic - pending <= _MAX_STEP:
            # A new bout: both held steps vote before either side is decided.
            st[_WALKING] = 1
            own = -self._evidence(ic)
            self._vote = self._pending_vote
            self._add_vote(own)
            self._parity = 0
            first = self._side_of(own)
            self._emit_ic(pending, first)
            self._emit_fc(pending, ic - 1)
            self._emit_ic(ic, 1 - first)
            st[_LAST_IC] = ic
            st[_FC_IC] = ic
            st[_PENDING] = -1
        else:
            st[_PENDING] = ic
            self._pending_vote = self._evidence(ic)

    def _evidence(self, ic):
        return 1 if self._lat_ring[(ic - _LAT_LAG) & _MASK] > 0 else -1

    def _add_vote(self, own):
        v = self._vote + own
        if v > _VOTE_MAX:
            v = _VOTE_MAX
        elif v < -_VOTE_MAX:
            v = -_VOTE_MAX
        self._vote = v

    def _side_of(self, own):
        # Side of the step with the current parity; this step's own evidence breaks a tie.
        v = self._vote if self._vote != 0 else own
        return RIGHT if (v > 0) == (self._parity == 0) else LEFT

    def _emit_fc(self, ic, limit):
        self._st[_FC_IC] = -1
        hi = ic + _FC_TO
        if limit < hi:
            hi = limit
        lo = ic + _FC_FROM
        if hi < lo:
            return
        ring = self._dd_ring
        best = ring[lo & _MASK]
        at = lo
        k = lo + 1
        while k <= hi:
            if ring[k & _MASK] > best:
                best = ring[k & _MASK]
                at = k
            k += 1
        side = 1 - self._last_side
        self._push(at + _FC_OFFSET, FC, side, self._strides[side] - 1)

    def _emit_ic(self, ic, side):
        self._push(ic, IC, side, self._strides[side])
        self._strides[side] += 1
        self._last_side = side

    def _push(self, t, kind, side, stride):
        if self._q_len >= self.max_events:
            self.dropped_events += 1
            return
        j = ((self._q_head + self._q_len) % self.max_events) * 4
        q = self._queue
        q[j] = self._block_clock + (t - self._block_n) * self._ticks_per_sample
        q[j + 1] = kind
        q[j + 2] = side
        q[j + 3] = stride
        self._q_len += 1
