# Exam repetitions (start, lowest point / peak, end) from the sacrum IMU, causal and in integers. tests/firmware/reps_reference.py is the float twin the tests compare
# against; bench/bench_reps.py scores it against the simulator's truth.
#
# The search runs only between the host's marks: begin(task, side, reps, clock) .. end(clock)
# (OP_TASK). Two methods (hipwire.commands.EXAM_TASKS):
#
# Step-down, single-leg squat, weight-bearing hip abduction (_kernel_move, _finish_move): a
# repetition is a movement away from the pose held on the stance leg and straight back, so the
# pelvis turns one way (tilts forward, drops or hikes the swing side) and then the other way. The
# roll and pitch rates (gyro x, y minus their bias) give that turning directly, with no baseline
# that the sway, the weight shift or a drift can pull:
# - A repetition opens when |gx| + |gy| exceeds 1 dps (after it had been under 0.5 dps); while the
#   rate grows its direction r1 (the rates at the fastest point of the descent) is kept. The rate
#   along r1 (r1 . rate) then falls through zero at the low (the movement turns), and the return
#   runs along -r1.
# - Start and end: the truth's 10 % points of a smooth (raised-cosine) ramp are where its speed is
#   60 % of its fastest (sin(acos(0.8)) = 0.6; a minimum-jerk ramp's: 55 %), on the steep part of
#   the speed curve where the sway moves them least: the last sample before the fastest point of
#   the descent at or below 60 % of it (searched back in a 5 s ring), and the first sample after the
#   fastest point of the return back at 60 % of it (the repetition is emitted then).
# - Kept only if it looks like one: fastest rate >= 1.4 dps both ways, descent and return >= 0.2 s,
#   no impact (|vertical acceleration - its level| > 0.25 g since the onset: heel strikes), a
#   size (below). A pose held still for 0.3 s before the return (an MVC) cancels it; so does a
#   descent or return longer than 3 s.
# - Depth (hipwire.frames.REP_DEPTH_UNITS): step-down and squat, millimetres of descent from the
#   onset (where the rate along r1 was last <= 0) to the low: the vertical velocity, the integral
#   of (|a|^2 - g^2) / 2g (needs no orientation) minus its level, integrated. The velocity is
#   zeroed and the level followed whenever the person is still (rates < 1.5 dps and the smoothed
#   vertical acceleration within 0.004 g of its level for 0.1 s: a zero-velocity update), and the
#   level is learned between tasks (standing) too. Abduction: swing-side obliquity change from the
#   onset to the low (+ = drops); its size is |obliquity| + |tilt| change. A step-down or squat
#   under 25 mm, an abduction under 60 cdeg is none; REP_SHALLOW under the task's usual size.
#
# Single-leg stance (_kernel, _finish): one hold, from angles:
# - Angles: obliquity and tilt changes from the roll and pitch rates (gyro x, y) minus their bias,
#   integrated. The pelvis estimator's angles (the pel_cdeg argument, kept in the API) were tried
#   first: its accelerometer correction pulls them during a repetition's accelerations, which
#   moved the crossings by 200-300 ms. Its gyro bias is not used either: it keeps learning
#   during slow movements (20 counts off on the simulated exam). Here the bias is followed
#   between tasks only (process() outside begin()..end()), 2^-8 per sample while both rates are
#   within 2 dps of it (standing, resting), and held during a task.
# - Movement m (cdeg): |obliquity - its baseline| (only the swing side drops).
# - Baseline: a one-pole mean (2^-5 per sample) of the angles while they are still (moved less
#   than 12 cdeg over the last 0.1 s) and no hold is open: the pose on two legs.
# - A hold opens when m exceeds 0.4 deg; its start (the foot coming off) is found on entry, the
#   last sample at the exit floor in the 2 s before; its low is where m peaks; it ends when m is
#   back to 25 % of its peak for 0.5 s (sway on one leg crosses a small drop's 10 %, and the
#   two-leg pose after the foot comes down keeps some). Kept if >= 5 s and no impact.
#   Depth: swing-side obliquity at the low minus the baseline (+ = drops).
#
# Assumptions: 100 Hz IMU; the person stands still (both feet or one) for a while before a task, so
# the gyro bias is known; a repetition's descent and return each last 0.2..3 s, a stance hold
# 5..60 s (a held MVC looks like a short stance). Only changes of the pose count, so a standing
# calibration is not needed. Latency: a repetition is emitted at its end (stance: 0.5 s later).
#
# Integers: rates Q5 counts; rate integrals in Q5 counts x samples clamped to +-2^28 (+-2500 deg),
# angles and their baselines < 2^23, gyro bias Q13 (< 2^28); accelerometer axes clamped to +-2 g,
# so |a|^2 < 3 * 2^26; vertical velocity clamped to +-2^20 (Q5 counts x samples, 0.78 m/s),
# descent to +-2^22; the rate along r1 is a product of Q3 rates clamped to +-2^14 (< 2^29).
# Everything stays below 2^29 (state is stored offset by +2^29, like dsp/pelvis.py, so the unix
# port's zero-extending ptr32 loads read it back). process() and pop() allocate nothing
# (tests/firmware/mp_test_reps.py runs them with the heap locked). Work per sample: one viper
# kernel step; per repetition: backward searches and sums over at most the ring (viper), then a
# few lines of Python.
from array import array

import micropython
from micropython import const

from hipwire import frames as wire
from hipwire import units

_OFF = const(0x20000000)
_B29 = const(1 << 29)
_M30 = const((1 << 30) - 1)
_RING = const(512)  # m and vertical acceleration history: 5.12 s
_RMASK = const(511)
_DRING = const(64)  # recent angles, for the stillness test
_DMASK = const(63)
_STILL_LAG = const(10)  # the baseline follows the angles only while they moved less than
_STILL_CDEG = const(12)  # this over the last 0.1 s
_RESUME_AFTER = const(10)  # samples after a repetition's end before the baseline follows again
_STILL_RATE = const(537395)  # gyro bias learning: 2 dps in counts Q13 (65.6 * 8192)
_BIAS_SHIFT = const(8)
_CH = const(6)
_ONE_G_SQ = const(1 << 24)  # (4096 counts)^2
_ACC_CLAMP = const(8192)  # 2 g
_INT_CLAMP = const(1 << 28)  # velocity, Q5
_STANCE_BACK = const(200)  # samples searched back for a stance's start
_PRE = const(20)  # samples before the onset that give the acceleration's still level
_POS_CLAMP = const(1 << 22)  # ~1000 mm: keeps pos * 251 below 2^30

# State slots (stored + _OFF)
_N = const(0)  # samples since begin()
_IN = const(1)  # a repetition is open
_ENTRY = const(2)
_PEAK = const(3)
_PEAK_N = const(4)
_PEAK_OBL = const(5)
_QUIET = const(6)
_IMPACT = const(7)
_RESUME = const(8)
_BOBL = const(9)  # baselines, Q5
_BTILT = const(10)
_BAV = const(11)
_HANDOFF = const(12)  # 1: a repetition ended at _END_N; 2: one ran past the ring
_END_N = const(13)
_THX = const(14)  # roll / pitch rate minus bias, integrated: Q5 counts x samples
_THY = const(15)
_START = const(16)  # a stance's start
_N_STATE = const(17)

# Parameter slots (stored as is, non-negative)
_P_WTILT = const(0)  # 1: tilt is part of m
_P_ENTER = const(1)  # cdeg
_P_FLOOR = const(2)  # cdeg: the exit level never goes below this
_P_QUIET = const(3)  # samples at or below the exit level that end a repetition
_P_MAXLEN = const(4)  # samples from entry
_P_IMPACT = const(5)  # counts of vertical acceleration, Q5
_P_BGX = const(6)  # gyro bias (roll, pitch), counts Q13 (< 2^28), stored + _OFF; kept across tasks
_P_BGY = const(7)
_P_EXIT = const(8)  # exit level, fraction of the peak in Q11
_P_BAV = const(9)  # vertical acceleration level between tasks, Q5, stored + _OFF; kept across tasks
_P_BAV_OK = const(10)  # 1: _P_BAV has been learned
_N_PAR = const(11)

_NO_TASK = const(0)
_STANCE = const(1)
_STEP_DOWN = const(2)
_SQUAT = const(3)
_ABDUCTION = const(4)

# Per task (1-based code): tilt used, entry, exit floor, quiet samples, max length (samples),
# minimum peak, shallow below (cdeg of m), minimum rise / return (samples), minimum duration.
_TASKS = (
    None,
    (0, 40, 20, 50, 6000, 40, 0, 0, 500),  # single_leg_stance: one hold of >= 5 s
    # step-down, squat, abduction (_kernel_move): minimum |gx| + |gy| at the fastest (counts),
    # shallow below, minimum descent / return (samples), smallest (mm of descent; abduction:
    # cdeg of |obliquity| + |tilt| change)
    (0, 0, 0, 0, 0, 45, 85, 20, 25),  # step_down
    (0, 0, 0, 0, 0, 45, 105, 20, 25),  # single_leg_squat
    (0, 0, 0, 0, 0, 45, 140, 20, 60),  # hip_abduction_wb
)
_IMPACT_COUNTS = const(1024)  # 0.25 g


@micropython.viper
def _kernel(imu: ptr16, k0: int, n_samples: int, st: ptr32, par: ptr32, dobl: ptr32,
            dtilt: ptr32, mring: ptr32, aring: ptr32) -> int:
    """Run n_samples (imu from int16 k0: 6 per sample) through
    the baseline, m and the open repetition; stop after a sample whose repetition ended or ran too
    long (st[_HANDOFF]). Returns the samples taken."""
    off = 0x20000000
    n = int(st[_N]) - off
    inside = int(st[_IN]) - off
    entry = int(st[_ENTRY]) - off
    peak = int(st[_PEAK]) - off
    peak_n = int(st[_PEAK_N]) - off
    peak_obl = int(st[_PEAK_OBL]) - off
    quiet = int(st[_QUIET]) - off
    impact = int(st[_IMPACT]) - off
    resume = int(st[_RESUME]) - off
    bobl = int(st[_BOBL]) - off
    btilt = int(st[_BTILT]) - off
    bav = int(st[_BAV]) - off
    thx = int(st[_THX]) - off
    thy = int(st[_THY]) - off
    bgx = (int(par[_P_BGX]) - off + 128) >> 8  # Q13 -> Q5
    bgy = (int(par[_P_BGY]) - off + 128) >> 8
    wtilt = int(par[_P_WTILT])
    enter = int(par[_P_ENTER])
    floor = int(par[_P_FLOOR])
    need_quiet = int(par[_P_QUIET])
    maxlen = int(par[_P_MAXLEN])
    impact_q5 = int(par[_P_IMPACT])
    exit_q11 = int(par[_P_EXIT])
    handoff = 0
    end_n = 0
    i = 0
    k = k0
    while i < n_samples:
        ax = (int(imu[k]) ^ 0x8000) - 0x8000  # ptr16 loads are unsigned
        ay = (int(imu[k + 1]) ^ 0x8000) - 0x8000
        az = (int(imu[k + 2]) ^ 0x8000) - 0x8000
        k += _CH
        gx = (int(imu[k - 3]) ^ 0x8000) - 0x8000
        gy = (int(imu[k - 2]) ^ 0x8000) - 0x8000
        i += 1
        dx = (gx << 5) - bgx
        dy = (gy << 5) - bgy
        # obliquity and tilt change: the roll and pitch rates minus the bias, integrated (Q5
        # counts x samples; 1 cdeg = 32.8 counts x samples)
        thx += dx
        thy += dy
        if thx > _INT_CLAMP:
            thx = _INT_CLAMP
        elif thx < -_INT_CLAMP:
            thx = -_INT_CLAMP
        if thy > _INT_CLAMP:
            thy = _INT_CLAMP
        elif thy < -_INT_CLAMP:
            thy = -_INT_CLAMP
        obl = ((thx >> 5) * 125) >> 12  # cdeg: 100 / 3280 = 125 / 4096
        tilt = ((thy >> 5) * 125) >> 12
        if ax > _ACC_CLAMP:
            ax = _ACC_CLAMP
        elif ax < -_ACC_CLAMP:
            ax = -_ACC_CLAMP
        if ay > _ACC_CLAMP:
            ay = _ACC_CLAMP
        elif ay < -_ACC_CLAMP:
            ay = -_ACC_CLAMP
        if az > _ACC_CLAMP:
            az = _ACC_CLAMP
        elif az < -_ACC_CLAMP:
            az = -_ACC_CLAMP
        av = (ax * ax + ay * ay + az * az - _ONE_G_SQ) >> 13  # vertical acceleration, counts
        dobl[n & _DMASK] = obl + off
        dtilt[n & _DMASK] = tilt + off
        aring[n & _RMASK] = av + off
        if n == 0:
            bobl = obl << 5
            btilt = tilt << 5
            bav = av << 5
        elif inside == 0 and n >= resume and n >= _STILL_LAG:
            j = n - _STILL_LAG
            d = obl - (int(dobl[j & _DMASK]) - off)
            if d < 0:
                d = -d
            e = tilt - (int(dtilt[j & _DMASK]) - off)
            if e < 0:
                e = -e
            if d + e <= _STILL_CDEG:  # still: the pose held on the stance leg
                bobl += ((obl << 5) - bobl) >> 5
                btilt += ((tilt << 5) - btilt) >> 5
                bav += ((av << 5) - bav) >> 5
        d = (obl << 5) - bobl
        if d < 0:
            d = -d
        m = d >> 5
        if wtilt:
            d = (tilt << 5) - btilt
            if d < 0:
                d = -d
            m += d >> 5
        mring[n & _RMASK] = m + off
        if inside:
            if m > peak:
                peak = m
                peak_n = n
                peak_obl = obl
            d = (av << 5) - bav
            if d > impact_q5 or d < -impact_q5:
                impact += 1
            level = (peak * exit_q11) >> 11  # 10 % of the peak (stance: 25 %)
            if level < floor:
                level = floor
            if m <= level and n > peak_n:
                quiet += 1
            else:
                quiet = 0
            if quiet >= need_quiet:
                handoff = 1
                end_n = n - need_quiet + 1
                n += 1
                break
            if n - entry >= maxlen:
                handoff = 2
                end_n = n
                n += 1
                break
        elif m > enter:
            inside = 1
            entry = n
            if need_quiet > 1:  # a stance: its start (the foot coming off) is found now, since
                j = n - 1  # the hold may outlast the ring
                while j >= 0 and j > n - _STANCE_BACK:
                    if int(mring[j & _RMASK]) - off <= floor:
                        break
                    j -= 1
                st[_START] = j + 1 + off
            peak = m
            peak_n = n
            peak_obl = obl
            quiet = 0
            impact = 0
        n += 1
    st[_N] = n + off
    st[_IN] = inside + off
    st[_ENTRY] = entry + off
    st[_PEAK] = peak + off
    st[_PEAK_N] = peak_n + off
    st[_PEAK_OBL] = peak_obl + off
    st[_QUIET] = quiet + off
    st[_IMPACT] = impact + off
    st[_BOBL] = bobl + off
    st[_BTILT] = btilt + off
    st[_BAV] = bav + off
    st[_THX] = thx + off
    st[_THY] = thy + off
    st[_HANDOFF] = handoff + off
    st[_END_N] = end_n + off
    return i


@micropython.viper
def _learn_bias(imu: ptr16, n_samples: int, par: ptr32):
    """Between tasks: follow the roll and pitch gyro bias (2^-8 per sample) while both rates are
    within 2 dps of it (standing, resting; a movement's rates are left out), and the vertical
    acceleration's level (|a|, the accelerometer's own offset) at the same times."""
    off = 0x20000000
    bgx = int(par[_P_BGX]) - off
    bgy = int(par[_P_BGY]) - off
    bav = int(par[_P_BAV]) - off
    ok = int(par[_P_BAV_OK])
    k = 0
    end = n_samples * _CH
    while k < end:
        dx = (((int(imu[k + 3]) ^ 0x8000) - 0x8000) << 13) - bgx
        dy = (((int(imu[k + 4]) ^ 0x8000) - 0x8000) << 13) - bgy
        if dx < _STILL_RATE and dx > -_STILL_RATE and dy < _STILL_RATE and dy > -_STILL_RATE:
            bgx += (dx + 128) >> _BIAS_SHIFT
            bgy += (dy + 128) >> _BIAS_SHIFT
            ax = (int(imu[k]) ^ 0x8000) - 0x8000
            ay = (int(imu[k + 1]) ^ 0x8000) - 0x8000
            az = (int(imu[k + 2]) ^ 0x8000) - 0x8000
            if ax > _ACC_CLAMP:
                ax = _ACC_CLAMP
            elif ax < -_ACC_CLAMP:
                ax = -_ACC_CLAMP
            if ay > _ACC_CLAMP:
                ay = _ACC_CLAMP
            elif ay < -_ACC_CLAMP:
                ay = -_ACC_CLAMP
            if az > _ACC_CLAMP:
                az = _ACC_CLAMP
            elif az < -_ACC_CLAMP:
                az = -_ACC_CLAMP
            av = ((ax * ax + ay * ay + az * az - _ONE_G_SQ) >> 13) << 5
            if ok == 0:
                bav = av
                ok = 1
            else:
                bav += (av - bav + 128) >> _BIAS_SHIFT
        k += _CH
    par[_P_BGX] = bgx + off
    par[_P_BGY] = bgy + off
    par[_P_BAV] = bav + off
    par[_P_BAV_OK] = ok


@micropython.viper
def _last_at_or_below(ring: ptr32, n_from: int, n_stop: int, level: int) -> int:
    """The last sample index k in [n_stop, n_from] whose ring value is <= level; n_stop - 1 if
    none."""
    off = 0x20000000
    k = n_from
    while k >= n_stop:
        if int(ring[k & _RMASK]) - off <= level:
            return k
        k -= 1
    return n_stop - 1


@micropython.viper
def _first_at_or_below(ring: ptr32, n_from: int, n_to: int, level: int) -> int:
    """The first sample index k in [n_from, n_to) whose ring value is <= level; n_to if none."""
    off = 0x20000000
    k = n_from
    while k < n_to:
        if int(ring[k & _RMASK]) - off <= level:
            return k
        k += 1
    return n_to


@micropython.viper
def _count_above(ring: ptr32, n0: int, n1: int, level: int) -> int:
    off = 0x20000000
    c = 0
    k = n0
    while k <= n1:
        if int(ring[k & _RMASK]) - off >= level:
            c += 1
        k += 1
    return c


@micropython.viper
def _sum(ring: ptr32, n0: int, n1: int) -> int:
    off = 0x20000000
    t = 0
    k = n0
    while k <= n1:
        t += int(ring[k & _RMASK]) - off
        k += 1
    return t


@micropython.viper
def _descent_q5(ring: ptr32, n0: int, n1: int, base_q5: int) -> int:
    """Double integral of (vertical acceleration - baseline) over samples n0..n1, counts Q5 times
    samples squared (clamped)."""
    off = 0x20000000
    v = 0
    pos = 0
    k = n0
    while k <= n1:
        v += ((int(ring[k & _RMASK]) - off) << 5) - base_q5
        if v > _INT_CLAMP:
            v = _INT_CLAMP
        elif v < -_INT_CLAMP:
            v = -_INT_CLAMP
        pos += v >> 5
        if pos > _POS_CLAMP:
            pos = _POS_CLAMP
        elif pos < -_POS_CLAMP:
            pos = -_POS_CLAMP
        k += 1
    return pos


# --- step-down, single-leg squat, weight-bearing hip abduction ------------------------------
# Move state slots (stored + _OFF)
_M_N = const(0)
_M_STATE = const(1)  # 0 idle, 1 rise (descent), 2 fall (return)
_M_P1 = const(2)  # fastest |gx| + |gy| of the rise (Q5 counts)
_M_N1 = const(3)
_M_R1X = const(4)  # the rates there (Q5): the repetition's direction
_M_R1Y = const(5)
_M_LOW = const(6)
_M_P2 = const(7)  # fastest return along -r1 (the projection, Q3 x Q3)
_M_N2 = const(8)
_M_V = const(9)  # vertical velocity, Q5 counts x samples
_M_BAV = const(10)  # vertical acceleration level, Q5
_M_AVS = const(11)  # vertical acceleration smoothed, Q5
_M_STILL = const(12)
_M_IMPACT = const(13)  # last sample with an impact
_M_ARMED = const(14)
_M_HANDOFF = const(15)
_M_END = const(16)
_N_MSTATE = const(17)
_MV_ENTER = const(1056)  # 33 counts Q5: 1 dps of |gx| + |gy|
_MV_STILL_RATE = const(1568)  # 49 counts Q5: 1.5 dps
_MV_STILL_ACC = const(512)  # 16 counts Q5: 0.004 g
_MV_STILL_N = const(10)
_MV_CALM_N = const(30)
_MV_TIMEOUT = const(300)
_V_CLAMP = const(1 << 20)  # 0.78 m/s in Q5 counts x samples
_R_CLAMP = const(16383)  # rates Q3 (Q5 >> 2) kept below 500 dps before a product


@micropython.viper
def _kernel_move(imu: ptr16, k0: int, n_samples: int, st: ptr32, par: ptr32, xring: ptr32,
                 yring: ptr32, vring: ptr32) -> int:
    """Step-down, squat, abduction: run n_samples (imu from int16 k0) through the vertical
    velocity and the rise / fall state; stop after a sample that ends a repetition
    (st[_M_HANDOFF] = 1). Returns the samples taken."""
    off = 0x20000000
    n = int(st[_M_N]) - off
    state = int(st[_M_STATE]) - off
    p1 = int(st[_M_P1]) - off
    n1 = int(st[_M_N1]) - off
    r1x = int(st[_M_R1X]) - off
    r1y = int(st[_M_R1Y]) - off
    low = int(st[_M_LOW]) - off
    p2 = int(st[_M_P2]) - off
    n2 = int(st[_M_N2]) - off
    v = int(st[_M_V]) - off
    bav = int(st[_M_BAV]) - off
    avs = int(st[_M_AVS]) - off
    still = int(st[_M_STILL]) - off
    impact_n = int(st[_M_IMPACT]) - off
    armed = int(st[_M_ARMED]) - off
    bgx = (int(par[_P_BGX]) - off + 128) >> 8  # Q13 -> Q5
    bgy = (int(par[_P_BGY]) - off + 128) >> 8
    impact_q5 = int(par[_P_IMPACT])
    handoff = 0
    end_n = 0
    i = 0
    k = k0
    while i < n_samples:
        ax = (int(imu[k]) ^ 0x8000) - 0x8000
        ay = (int(imu[k + 1]) ^ 0x8000) - 0x8000
        az = (int(imu[k + 2]) ^ 0x8000) - 0x8000
        gx = (int(imu[k + 3]) ^ 0x8000) - 0x8000
        gy = (int(imu[k + 4]) ^ 0x8000) - 0x8000
        k += _CH
        i += 1
        dx = (gx << 5) - bgx
        dy = (gy << 5) - bgy
        if ax > _ACC_CLAMP:
            ax = _ACC_CLAMP
        elif ax < -_ACC_CLAMP:
            ax = -_ACC_CLAMP
        if ay > _ACC_CLAMP:
            ay = _ACC_CLAMP
        elif ay < -_ACC_CLAMP:
            ay = -_ACC_CLAMP
        if az > _ACC_CLAMP:
            az = _ACC_CLAMP
        elif az < -_ACC_CLAMP:
            az = -_ACC_CLAMP
        av = ((ax * ax + ay * ay + az * az - _ONE_G_SQ) >> 13) << 5  # vertical acceleration, Q5
        if n == 0:
            if int(par[_P_BAV_OK]) == 0:
                bav = av
            else:
                bav = int(par[_P_BAV]) - off
            avs = bav
        avs += (av - avs) >> 3
        v += av - bav
        v -= (v + 1024) >> 11
        a = dx
        if a < 0:
            a = -a
        b = dy
        if b < 0:
            b = -b
        s = a + b  # |gx| + |gy|, Q5
        e = avs - bav
        if e < 0:
            e = -e
        if s < _MV_STILL_RATE and e < _MV_STILL_ACC:
            still += 1
        else:
            still = 0
        if still >= _MV_STILL_N:  # still: no vertical velocity; follow the acceleration's level
            bav += (av - bav) >> 5
            v -= (v + 4) >> 3
            if state != 0 and still >= _MV_CALM_N:  # a held pose (an MVC), not a repetition
                state = 0
        if v > _V_CLAMP:
            v = _V_CLAMP
        elif v < -_V_CLAMP:
            v = -_V_CLAMP
        xring[n & _RMASK] = dx + off
        yring[n & _RMASK] = dy + off
        vring[n & _RMASK] = off - v
        e = av - bav
        if e > impact_q5 or e < -impact_q5:
            impact_n = n
        if state == 0:
            if s < (_MV_ENTER >> 1):
                armed = 1
            if s > _MV_ENTER and armed:
                state = 1
                p1 = s
                n1 = n
                r1x = dx
                r1y = dy
        else:
            if state == 1 and s > p1:
                p1 = s
                n1 = n
                r1x = dx
                r1y = dy
            # the rate along the repetition's direction (Q3 x Q3)
            a = r1x >> 2
            if a > _R_CLAMP:
                a = _R_CLAMP
            elif a < -_R_CLAMP:
                a = -_R_CLAMP
            b = r1y >> 2
            if b > _R_CLAMP:
                b = _R_CLAMP
            elif b < -_R_CLAMP:
                b = -_R_CLAMP
            c = dx >> 2
            if c > _R_CLAMP:
                c = _R_CLAMP
            elif c < -_R_CLAMP:
                c = -_R_CLAMP
            d = dy >> 2
            if d > _R_CLAMP:
                d = _R_CLAMP
            elif d < -_R_CLAMP:
                d = -_R_CLAMP
            u = a * c + b * d
            pk = a * a + b * b
            if state == 1:
                if u < 0:  # the low: the movement turns
                    state = 2
                    low = n - 1
                    p2 = u
                    n2 = n
                elif n - n1 > _MV_TIMEOUT:
                    state = 0
            else:
                if u < p2:
                    p2 = u
                    n2 = n
                if u > (pk >> 1):  # moving on the same way again: still the descent
                    state = 1
                elif n > n2 and u * 5 >= p2 * 3 and p2 * 10 < -3 * pk:
                    # back to 60 % of the return's fastest: a raised-cosine ramp's 10 % point
                    state = 0
                    armed = 0
                    handoff = 1
                    end_n = n
                    n += 1
                    break
                elif n - n2 > _MV_TIMEOUT:
                    state = 0
        n += 1
    st[_M_N] = n + off
    st[_M_STATE] = state + off
    st[_M_P1] = p1 + off
    st[_M_N1] = n1 + off
    st[_M_R1X] = r1x + off
    st[_M_R1Y] = r1y + off
    st[_M_LOW] = low + off
    st[_M_P2] = p2 + off
    st[_M_N2] = n2 + off
    st[_M_V] = v + off
    st[_M_BAV] = bav + off
    st[_M_AVS] = avs + off
    st[_M_STILL] = still + off
    st[_M_IMPACT] = impact_n + off
    st[_M_ARMED] = armed + off
    st[_M_HANDOFF] = handoff + off
    st[_M_END] = end_n + off
    return i


@micropython.viper
def _proj(xring: ptr32, yring: ptr32, k: int, r1x: int, r1y: int) -> int:
    """The rate at sample k along (r1x, r1y), as in _kernel_move (Q3 x Q3)."""
    off = 0x20000000
    a = r1x >> 2
    b = r1y >> 2
    c = (int(xring[k & _RMASK]) - off) >> 2
    d = (int(yring[k & _RMASK]) - off) >> 2
    if a > _R_CLAMP:
        a = _R_CLAMP
    elif a < -_R_CLAMP:
        a = -_R_CLAMP
    if b > _R_CLAMP:
        b = _R_CLAMP
    elif b < -_R_CLAMP:
        b = -_R_CLAMP
    if c > _R_CLAMP:
        c = _R_CLAMP
    elif c < -_R_CLAMP:
        c = -_R_CLAMP
    if d > _R_CLAMP:
        d = _R_CLAMP
    elif d < -_R_CLAMP:
        d = -_R_CLAMP
    return a * c + b * d


@micropython.viper
def _last_proj_at_or_below(xring: ptr32, yring: ptr32, n_from: int, n_stop: int, r1x: int,
                           r1y: int, level: int) -> int:
    """The last k in [n_stop, n_from] whose rate along r1 (as _proj) is <= level; n_stop - 1 if
    none."""
    off = 0x20000000
    a = r1x >> 2
    b = r1y >> 2
    if a > _R_CLAMP:
        a = _R_CLAMP
    elif a < -_R_CLAMP:
        a = -_R_CLAMP
    if b > _R_CLAMP:
        b = _R_CLAMP
    elif b < -_R_CLAMP:
        b = -_R_CLAMP
    k = n_from
    while k >= n_stop:
        c = (int(xring[k & _RMASK]) - off) >> 2
        d = (int(yring[k & _RMASK]) - off) >> 2
        if c > _R_CLAMP:
            c = _R_CLAMP
        elif c < -_R_CLAMP:
            c = -_R_CLAMP
        if d > _R_CLAMP:
            d = _R_CLAMP
        elif d < -_R_CLAMP:
            d = -_R_CLAMP
        if a * c + b * d <= level:
            return k
        k -= 1
    return n_stop - 1


class RepDetector:
    """Repetitions of one exam task between begin() and end(); see the top of this file."""

    def __init__(self, rate_hz=units.IMU_RATE_HZ, max_reps=8):
        if rate_hz != 100:
            raise ValueError("RepDetector is tuned for 100 Hz IMU samples")
        self.max_reps = max_reps
        self._queue = array("i", bytes(4 * 8 * max_reps))
        self._q_head = 0
        self._q_len = 0
        self.dropped = 0
        self._ticks_per_sample = units.CLOCK_HZ // rate_hz
        self._st = array("i", bytes(4 * _N_STATE))
        self._par = array("i", bytes(4 * _N_PAR))
        self._par[_P_BGX] = _OFF
        self._par[_P_BGY] = _OFF
        self._par[_P_BAV] = _OFF
        self._ms = array("i", bytes(4 * _N_MSTATE))
        self._yring = None
        # the histories (4.5 kB) are allocated by the first begin(): a device that never runs an
        # exam does not pay for them
        self._dobl = None
        self._dtilt = None
        self._mring = None
        self._aring = None
        self.task = _NO_TASK
        self.side = wire.LEFT
        self.expected = 0
        self.begin_clock = 0
        self.index = 0  # repetitions found since begin()
        self._min_peak = 0
        self._shallow = 0
        self._min_phase = 0
        self._min_len = 0
        self._block_n = 0
        self._block_clock = 0
        self._reset_state()

    @property
    def active(self):
        return self.task != _NO_TASK

    def _reset_state(self):
        st = self._st
        for i in range(_N_STATE):
            st[i] = _OFF
        ms = self._ms
        for i in range(_N_MSTATE):
            ms[i] = _OFF
        ms[_M_IMPACT] = _OFF - _RING
        ms[_M_ARMED] = _OFF + 1

    # --- public ---------------------------------------------------------------------------

    def begin(self, task, side, expected_reps, clock):
        """Search for repetitions of task (1-based code of hipwire.commands.EXAM_TASKS) on the
        stance side (wire.LEFT / RIGHT) from the next sample on."""
        if task < 1 or task >= len(_TASKS) or side not in (wire.LEFT, wire.RIGHT):
            raise ValueError("unknown exam task or side")
        wtilt, enter, floor, quiet, maxlen, self._min_peak, self._shallow, self._min_phase, \
            self._min_len = _TASKS[task]
        if self._mring is None:
            self._dobl = array("i", bytes(4 * _DRING))
            self._dtilt = array("i", bytes(4 * _DRING))
            self._mring = array("i", bytes(4 * _RING))
            self._aring = array("i", bytes(4 * _RING))
            self._yring = array("i", bytes(4 * _RING))
        p = self._par
        p[_P_WTILT] = wtilt
        p[_P_ENTER] = enter
        p[_P_FLOOR] = floor
        p[_P_QUIET] = quiet
        p[_P_MAXLEN] = maxlen
        p[_P_IMPACT] = _IMPACT_COUNTS << 5
        p[_P_EXIT] = 512 if task == _STANCE else 205
        self.task = task
        self.side = side
        self.expected = expected_reps
        self.begin_clock = clock
        self.index = 0
        self._reset_state()

    def end(self, clock):
        """Stop the search; an open repetition past a valid peak is emitted as REP_TRUNCATED."""
        if self.task == _NO_TASK:
            return
        st = self._st
        if self.task != _STANCE:
            ms = self._ms
            if ms[_M_STATE] - _OFF == 2:  # past its low
                self._finish_move(ms[_M_N] - _OFF - 1, wire.REP_TRUNCATED)
        elif st[_IN] - _OFF:
            last = st[_N] - _OFF - 1
            self._finish(last, wire.REP_TRUNCATED)
        self.task = _NO_TASK
        self._reset_state()

    def process(self, imu, n_samples, pel_cdeg, pel_start, clock_first):
        """imu: the block's body-frame counts (array('h'), 6 per sample); pel_cdeg from
        pel_start: the pelvis estimator's [obliquity, tilt, rotation] per sample (not used by the
        method above; see its first point). Returns the queue length. Outside begin()..end() it
        only follows the gyro bias."""
        if n_samples <= 0:
            return self._q_len
        if self.task == _NO_TASK:
            _learn_bias(imu, n_samples, self._par)
            return self._q_len
        self._block_clock = clock_first
        done = 0
        if self.task != _STANCE:
            ms = self._ms
            self._block_n = ms[_M_N] - _OFF
            while done < n_samples:
                done += _kernel_move(imu, _CH * done, n_samples - done, ms, self._par,
                                     self._aring, self._yring, self._mring)
                if ms[_M_HANDOFF] - _OFF:
                    ms[_M_HANDOFF] = _OFF
                    self._finish_move(ms[_M_END] - _OFF, 0)
            return self._q_len
        st = self._st
        self._block_n = st[_N] - _OFF
        while done < n_samples:
            done += _kernel(imu, _CH * done, n_samples - done, st, self._par, self._dobl,
                            self._dtilt, self._mring, self._aring)
            h = st[_HANDOFF] - _OFF
            if h == 1:
                self._finish(st[_END_N] - _OFF, 0)
            elif h == 2:
                self._close(st[_END_N] - _OFF)
        return self._q_len

    def pop(self, out):
        """Move the oldest repetition into out[0:8] = start_clock, low_clock, end_clock, task,
        side, index, flags, depth."""
        if self._q_len == 0:
            return False
        q = self._queue
        j = self._q_head * 8
        for k in range(8):
            out[k] = q[j + k]
        self._q_head = (self._q_head + 1) % self.max_reps
        self._q_len -= 1
        return True

    def pending(self):
        return self._q_len

    # --- per repetition -------------------------------------------------------------------

    def _close(self, end_n):
        st = self._st
        st[_IN] = _OFF
        st[_HANDOFF] = _OFF
        st[_RESUME] = end_n + _RESUME_AFTER + _OFF

    def _finish(self, end_n, flags):
        st = self._st
        peak = st[_PEAK] - _OFF
        peak_n = st[_PEAK_N] - _OFF
        entry = st[_ENTRY] - _OFF
        impact = st[_IMPACT] - _OFF
        self._close(end_n)
        if peak < self._min_peak:
            return
        oldest = end_n - _RING + 1
        if oldest < 0:
            oldest = 0
        ring = self._mring
        if self.task == _STANCE:
            start = st[_START] - _OFF
            if impact:
                return  # heel strikes: walking or stepping, not a stance
        else:
            level = (peak * 205) >> 11
            if level < self._par[_P_FLOOR]:
                level = self._par[_P_FLOOR]
            start = _last_at_or_below(ring, peak_n, oldest, level) + 1
            if start <= oldest:
                return  # its start left the ring: too slow to be one repetition
            if impact:
                return  # heel strikes: walking or stepping, not a repetition
            if peak_n - start < self._min_phase:
                return
            if not flags and end_n - peak_n < self._min_phase:
                return
            dur = end_n - start + 1
            if not flags and _count_above(ring, start, end_n, (peak * 819) >> 10) * 5 > dur * 3:
                return  # a held contraction, not a movement
        if self.task != _STANCE:
            # the 10 % crossings from the half-peak ones, which the baseline's error and the sway
            # move far less: on a smooth ramp (raised cosine) the 10 % point lies 1.59 x farther
            # from the low than the 50 % one (minimum jerk: 1.52)
            half = peak >> 1
            r50 = _last_at_or_below(ring, peak_n, start, half) + 1
            f50 = _first_at_or_below(ring, peak_n, end_n, half)
            start = peak_n - (((peak_n - r50) * 407 + 128) >> 8)
            if f50 < end_n:  # (truncated before its half-peak: the end stays where it was cut)
                end_n = peak_n + (((f50 - peak_n) * 407 + 128) >> 8)
        if end_n - start < self._min_len:
            return
        if self.task == _STEP_DOWN or self.task == _SQUAT:
            # from a rise time before the start: the acceleration is largest at the onset, where
            # the angles have hardly moved, and before it the person stands still (adds ~0)
            n0 = start - (peak_n - start)
            if n0 < oldest:
                n0 = oldest
            # the acceleration's level while still just before (its bias, gravity error)
            b0 = n0 - _PRE
            if b0 < oldest:
                b0 = oldest
            base_q5 = st[_BAV] - _OFF
            if b0 < n0:
                base_q5 = (_sum(self._aring, b0, n0 - 1) << 5) // (n0 - b0)
            pos = _descent_q5(self._aring, n0, peak_n, base_q5)
            # mm = -pos counts.samples^2 * (9.80665 / 4096 m/s^2) * (0.01 s)^2 * 1000
            depth = ((-pos) * 251) >> 20
        else:
            d = (st[_PEAK_OBL] - _OFF) - ((st[_BOBL] - _OFF + 16) >> 5)
            depth = d if self.side == wire.LEFT else -d
        if peak < self._shallow:
            flags |= wire.REP_SHALLOW
        self._push(start, peak_n, end_n, flags, depth)

    def _finish_move(self, n_end, flags):
        """Step-down, squat, abduction: the repetition whose return reached 60 % of its fastest at
        n_end (flags: REP_TRUNCATED when end() cut it after its low)."""
        ms = self._ms
        xr = self._aring
        yr = self._yring
        r1x = ms[_M_R1X] - _OFF
        r1y = ms[_M_R1Y] - _OFF
        n1 = ms[_M_N1] - _OFF
        p2 = ms[_M_P2] - _OFF
        low = ms[_M_LOW] - _OFF
        a = r1x >> 2
        b = r1y >> 2
        pk = a * a + b * b
        e = n_end
        if not flags:  # the nearer of the two samples around the 60 % crossing
            l2 = (p2 * 3) // 5
            if abs(_proj(xr, yr, n_end, r1x, r1y) - l2) > abs(_proj(xr, yr, n_end - 1, r1x, r1y) - l2):
                e = n_end - 1
        oldest = n_end - _RING + 1
        if oldest < 0:
            oldest = 0
        l1 = (pk * 3) // 5
        k = _last_proj_at_or_below(xr, yr, n1, oldest, r1x, r1y, l1)
        if k <= oldest:
            return  # its start left the ring: too slow to be one repetition
        start = k
        if abs(_proj(xr, yr, k + 1, r1x, r1y) - l1) < abs(_proj(xr, yr, k, r1x, r1y) - l1):
            start = k + 1
        k_stop = k - 2 * (n1 - k)
        if k_stop < oldest:
            k_stop = oldest
        k0 = _last_proj_at_or_below(xr, yr, k, k_stop + 1, r1x, r1y, 0)  # the onset
        if k0 < k_stop:
            k0 = k_stop
        if ms[_M_IMPACT] - _OFF >= k0:
            return  # heel strikes: walking or stepping, not a repetition
        task = self.task
        a = abs(r1x) >> 5
        b = abs(r1y) >> 5
        if a + b < self._min_peak:
            return
        a = abs(r1x) >> 2  # Q3
        b = abs(r1y) >> 2
        if a < b:
            a, b = b, a
        # the return at least as fast as the task's minimum too (|r1| ~ max + min / 2)
        if not flags and (-p2) * 5 < 3 * (self._min_peak << 3) * (a + (b >> 1)):
            return
        if low - start < self._min_phase or (not flags and e - low < self._min_phase):
            return
        if task == _ABDUCTION:
            dob = _sum(xr, k0, low)
            dti = _sum(yr, k0, low)
            size = (((abs(dob) + abs(dti)) >> 5) * 125) >> 12  # cdeg
            d = ((dob >> 5) * 125) >> 12
            depth = d if self.side == wire.LEFT else -d
        else:
            pos = _sum(self._mring, k0, low) >> 5
            if pos > _POS_CLAMP:
                pos = _POS_CLAMP
            elif pos < -_POS_CLAMP:
                pos = -_POS_CLAMP
            depth = size = (pos * 251) >> 20  # mm
        if size < self._min_len:
            return
        if size < self._shallow:
            flags |= wire.REP_SHALLOW
        self._push(start, low, e, flags, depth)

    def _push(self, start_n, low_n, end_n, flags, depth):
        index = self.index
        self.index += 1
        if self._q_len >= self.max_reps:
            self.dropped += 1
            return
        j = ((self._q_head + self._q_len) % self.max_reps) * 8
        q = self._queue
        tps = self._ticks_per_sample
        base = self._block_clock - self._block_n * tps
        q[j] = base + start_n * tps
        q[j + 1] = base + low_n * tps
        q[j + 2] = base + end_n * tps
        q[j + 3] = self.task
        q[j + 4] = self.side
        q[j + 5] = index
        q[j + 6] = flags
        q[j + 7] = depth
        self._q_len += 1
