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
# running-mean differences < 2^28: all below 2^30, so no big int on the
# ESP32. process() allocates nothing (tests/firmware/mp_test_gait.py holds heap_lock around it),
# except that event clocks >= 2^30 ticks (12.4 days of device clock) are big ints on the ESP32,
# and the internal sample counter passes 2^30 after 124 days of continuous processing.
from array import array
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
        self.walking = False
        self._ticks_per_sample = units.CLOCK_HZ // rate_hz
        # Filter state: rings of the moving sums (one slot per stage and tap), their sums.
        self._fine = array("i", bytes(4 * 2 * _FINE_W))
        self._coarse = array("i", bytes(4 * 3 * _COARSE_W))
        self._lat = array("i", bytes(4 * 3 * _LAT_W))
        self._sums = array("i", bytes(4 * 8))  # fine 0..1, coarse 2..4, lat 5..7
        self._f_hist = array("i", bytes(4 * 2))  # fine sum at n-1, n-2
        self._d_hist = array("i", bytes(4 * 2))
        self._d_ring = array("i", bytes(4 * _RING))
        self._dd_ring = array("i", bytes(4 * _RING))
        self._lat_ring = array("i", bytes(4 * _RING))
        self._strides = array("i", bytes(4 * 2))
        self._fine_pos = 0
        self._coarse_pos = 0
        self._lat_pos = 0
        self._base = 0
        self._lat_base = 0
        self._n = 0  # samples processed
        self._in_lobe = False
        self._lobe_peak_t = 0
        self._lobe_peak_v = 0
        self._lobe_len = 0
        self._pending = -1
        self._pending_vote = 0  # the held step's side evidence, +1 right / -1 left
        self._parity = 0  # step number within the bout, modulo 2
        self._vote = 0  # evidence that the bout's even steps are right steps, within +-_VOTE_MAX
        self._last_ic = _NONE
        self._last_side = RIGHT
        self._fc_ic = -1
        self._block_n = 0  # sample index of the current block's first sample
        self._block_clock = 0

    # --- public ---------------------------------------------------------------------------

    def process(self, imu, n_samples, clock_first):
        """Feed n_samples body-frame IMU samples (6 interleaved counts each); returns queue length."""
        self._block_n = self._n
        self._block_clock = clock_first
        i = 0
        end = n_samples * _CH
        while i < end:
            az = imu[i + _AZ]
            self._sample(az - imu[i + _AX], az, imu[i + _GZ] + imu[i + _GX])
            i += _CH
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

    def _sample(self, jz, az, w):
        n = self._n
        sums = self._sums
        if n == 0:
            self._prime(jz, az, w)
        # Lightly smoothed vertical-minus-AP acceleration, its difference d and second difference dd.
        ring = self._fine
        pos = self._fine_pos
        x = jz
        s = 0
        while s < 2:
            k = s * _FINE_W + pos
            sums[s] += x - ring[k]
            ring[k] = x
            x = sums[s]
            s += 1
        self._fine_pos = pos + 1 if pos < _FINE_W - 1 else 0
        fh = self._f_hist
        d = x - fh[1]
        fh[1] = fh[0]
        fh[0] = x
        dh = self._d_hist
        if n < 2:
            d = 0
        dd = d - dh[1]
        dh[1] = dh[0]
        dh[0] = d
        if n < 2:
            dd = 0
        self._d_ring[(n - _FINE_DELAY) & _MASK] = d
        self._dd_ring[(n - _DD_DELAY) & _MASK] = dd
        # Side evidence: smoothed yaw + roll rate (gz + gx) minus its running mean.
        ring = self._lat
        pos = self._lat_pos
        x = w
        s = 0
        while s < 3:
            k = s * _LAT_W + pos
            sums[5 + s] += x - ring[k]
            ring[k] = x
            x = sums[5 + s]
            s += 1
        self._lat_pos = pos + 1 if pos < _LAT_W - 1 else 0
        self._lat_base += (x - self._lat_base) >> _LAT_BASE_SHIFT
        self._lat_ring[(n - _LAT_DELAY) & _MASK] = x - self._lat_base
        # Step lobes: strongly smoothed vertical acceleration minus its running mean.
        ring = self._coarse
        pos = self._coarse_pos
        x = az
        s = 0
        while s < 3:
            k = s * _COARSE_W + pos
            sums[2 + s] += x - ring[k]
            ring[k] = x
            x = sums[2 + s]
            s += 1
        self._coarse_pos = pos + 1 if pos < _COARSE_W - 1 else 0
        self._base += (x - self._base) >> _BASE_SHIFT
        v = x - self._base
        self._n = n + 1
        if n >= _COARSE_DELAY:
            self._events(n, n - _COARSE_DELAY, v)

    def _prime(self, jz, az, w):
        # Start every moving sum as if the first sample had always been there (no start-up step).
        sums = self._sums
        x = jz
        s = 0
        while s < 2:
            k = 0
            while k < _FINE_W:
                self._fine[s * _FINE_W + k] = x
                k += 1
            x = x * _FINE_W
            sums[s] = x
            s += 1
        self._f_hist[0] = x
        self._f_hist[1] = x
        x = az
        s = 0
        while s < 3:
            k = 0
            while k < _COARSE_W:
                self._coarse[s * _COARSE_W + k] = x
                k += 1
            x = x * _COARSE_W
            sums[2 + s] = x
            s += 1
        self._base = x
        x = w
        s = 0
        while s < 3:
            k = 0
            while k < _LAT_W:
                self._lat[s * _LAT_W + k] = x
                k += 1
            x = x * _LAT_W
            sums[5 + s] = x
            s += 1
        self._lat_base = x

    def _events(self, n, t, v):
        # n: current sample; t: the sample the coarse value v describes.
        fc_ic = self._fc_ic
        if fc_ic >= 0 and n - _DD_DELAY >= fc_ic + _FC_TO:
            self._emit_fc(fc_ic, fc_ic + _FC_TO)
            self._fc_ic = -1
        if self.walking and t - self._last_ic > _END_GAP:
            self.walking = False
        if self._pending >= 0 and t - self._pending > _MAX_STEP:
            self._pending = -1
        if v > _LOBE_ENTER or (self._in_lobe and v > 0):
            if not self._in_lobe:
                self._in_lobe = True
                self._lobe_peak_v = v
                self._lobe_peak_t = t
                self._lobe_len = 0
            self._lobe_len += 1
            if v > self._lobe_peak_v:
                self._lobe_peak_v = v
                self._lobe_peak_t = t
            return
        if not self._in_lobe:
            return
        self._in_lobe = False
        if self._lobe_peak_v < _STEP_THR or self._lobe_len > _MAX_LOBE:
            return
        # IC: the largest d in the window before the lobe's peak (first one on ties).
        lo = self._lobe_peak_t - _IC_BEFORE_PEAK
        if lo < 0:
            lo = 0
        hi = self._lobe_peak_t + _IC_AFTER_PEAK
        ring = self._d_ring
        ic = lo
        best = ring[lo & _MASK]
        k = lo + 1
        while k <= hi:
            if ring[k & _MASK] > best:
                best = ring[k & _MASK]
                ic = k
            k += 1
        last = self._last_ic if self._last_ic > self._pending else self._pending
        if ic - last < _MIN_STEP:
            return
        if self.walking:
            if self._fc_ic >= 0:
                self._emit_fc(self._fc_ic, ic - 1)
            ev = self._evidence(ic)
            own = ev if self._parity == 0 else -ev
            self._add_vote(own)
            self._emit_ic(ic, self._side_of(own))
            self._parity ^= 1
            self._last_ic = ic
            self._fc_ic = ic
        elif self._pending >= 0 and ic - self._pending <= _MAX_STEP:
            # A new bout: both held steps vote before either side is decided.
            self.walking = True
            own = -self._evidence(ic)
            self._vote = self._pending_vote
            self._add_vote(own)
            self._parity = 0
            first = self._side_of(own)
            self._emit_ic(self._pending, first)
            self._emit_fc(self._pending, ic - 1)
            self._emit_ic(ic, 1 - first)
            self._last_ic = ic
            self._fc_ic = ic
            self._pending = -1
        else:
            self._pending = ic
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
        self._fc_ic = -1
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
