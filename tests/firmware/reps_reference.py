"""Float twin of firmware/dsp/reps.py (RepDetector), sample by sample in CPython: the same method
(see the top of reps.py) with real numbers instead of fixed point, so that a difference between
the two is a fixed-point or porting bug, not a change of method."""

from __future__ import annotations

import numpy as np

FS_HZ = 100
LEFT, RIGHT = 0, 1
TRUNCATED, SHALLOW = 0x01, 0x02
STANCE, STEP_DOWN, SQUAT, ABDUCTION = 1, 2, 3, 4
RING = 512
STILL_LAG = 10
STILL_CDEG = 12
RESUME_AFTER = 10
STILL_DPS = 2100 / 32 / 32.8
BIAS_ALPHA = 1 / 256
GYR_LSB_PER_DPS = 32.8
ALPHA = 1 / 32
IMPACT_G = 0.25
# task: (tilt used, entry, exit floor, quiet samples, max length, minimum peak, shallow below,
# minimum rise / return, minimum duration) -- reps.py _TASKS
TASKS = {
    STANCE: (0, 40, 20, 50, 6000, 40, 0, 0, 500),
    STEP_DOWN: (1, 150, 20, 1, 480, 200, 450, 30, 0),
    SQUAT: (1, 150, 20, 1, 480, 200, 650, 30, 0),
    ABDUCTION: (1, 70, 15, 1, 480, 100, 220, 30, 0),
}
G_MPS2 = 9.80665


class RepReference:
    def __init__(self, task, side, bias):
        self.task, self.side = task, side
        (self.wtilt, self.enter, self.floor, self.need_quiet, self.maxlen, self.min_peak,
         self.shallow, self.min_phase, self.min_len) = TASKS[task]
        self.n = 0
        self.inside = False
        self.resume = 0
        self.m = np.zeros(RING)
        self.av = np.zeros(RING)
        self.dobl = np.zeros(64)
        self.dtilt = np.zeros(64)
        self.bobl = self.btilt = self.bav = 0.0
        self.bias = bias  # [x, y] counts, shared by the tasks of one recording
        self.thx = self.thy = 0.0
        self.index = 0
        self.out = []

    def step(self, acc_counts, gx, gy):
        a = np.clip(np.asarray(acc_counts, float), -8192, 8192) / 4096.0
        av = (float(a @ a) - 1.0) / 2.0 * 4096.0  # vertical acceleration, counts
        n = self.n
        dx, dy = gx - self.bias[0], gy - self.bias[1]
        self.thx += dx / GYR_LSB_PER_DPS  # cdeg: deg/s x 0.01 s x 100
        self.thy += dy / GYR_LSB_PER_DPS
        obl, tilt = self.thx, self.thy
        self.dobl[n % 64], self.dtilt[n % 64], self.av[n % RING] = obl, tilt, av
        if n == 0:
            self.bobl, self.btilt, self.bav = obl, tilt, av
        elif not self.inside and n >= self.resume and n >= STILL_LAG:
            j = n - STILL_LAG
            if abs(obl - self.dobl[j % 64]) + abs(tilt - self.dtilt[j % 64]) <= STILL_CDEG:
                self.bobl += (obl - self.bobl) * ALPHA
                self.btilt += (tilt - self.btilt) * ALPHA
                self.bav += (av - self.bav) * ALPHA
        m = abs(obl - self.bobl) + (abs(tilt - self.btilt) if self.wtilt else 0.0)
        self.m[n % RING] = m
        self.n = n + 1
        if self.inside:
            if m > self.peak:
                self.peak, self.peak_n, self.peak_obl = m, n, obl
            if abs(av - self.bav) > IMPACT_G * 4096:
                self.impact += 1
            level = max((0.25 if self.task == STANCE else 0.1) * self.peak, self.floor)
            self.quiet = self.quiet + 1 if (m <= level and n > self.peak_n) else 0
            if self.quiet >= self.need_quiet:
                self.finish(n - self.need_quiet + 1, 0)
            elif n - self.entry >= self.maxlen:
                self.close(n)
        elif m > self.enter:
            self.inside = True
            self.entry = self.peak_n = n
            if self.task == STANCE:
                j = n - 1
                while j >= 0 and j > n - 200 and self.m[j % RING] > self.floor:
                    j -= 1
                self.stance_start = j + 1
            self.peak, self.peak_obl = m, obl
            self.quiet = self.impact = 0

    def close(self, end_n):
        self.inside = False
        self.resume = end_n + RESUME_AFTER

    def _last_at_or_below(self, n_from, n_stop, level):
        for k in range(n_from, n_stop - 1, -1):
            if self.m[k % RING] <= level:
                return k
        return n_stop - 1

    def finish(self, end_n, flags):
        self.close(end_n)
        peak, peak_n = self.peak, self.peak_n
        if peak < self.min_peak:
            return
        oldest = max(end_n - RING + 1, 0)
        if self.task == STANCE:
            start = self.stance_start
            if self.impact:
                return
        else:
            level = max(0.1 * peak, self.floor)
            start = self._last_at_or_below(peak_n, oldest, level) + 1
            if start <= oldest or self.impact:
                return
            if peak_n - start < self.min_phase:
                return
            if not flags and end_n - peak_n < self.min_phase:
                return
            seg = self.m[np.arange(start, end_n + 1) % RING]
            if not flags and np.sum(seg >= 0.8 * peak) > 0.6 * len(seg):
                return
        if self.task != STANCE:
            # the 10 % crossings from the half-peak ones (a smooth ramp: 1.59 x farther from the
            # low), which the baseline's error and the sway move far less
            half = peak / 2
            r50 = self._last_at_or_below(peak_n, start, half) + 1
            f50 = peak_n
            while f50 < end_n and self.m[f50 % RING] > half:
                f50 += 1
            start = peak_n - ((peak_n - r50) * 407 + 128) // 256  # x 1.59, as on the device
            if f50 < end_n:
                end_n = peak_n + ((f50 - peak_n) * 407 + 128) // 256
        if end_n - start < self.min_len:
            return
        if self.task in (STEP_DOWN, SQUAT):
            n0 = max(start - (peak_n - start), oldest)
            b0 = max(n0 - 20, oldest)
            base = self.av[np.arange(b0, n0) % RING].mean() if b0 < n0 else self.bav
            acc = (self.av[np.arange(n0, peak_n + 1) % RING] - base) / 4096.0 * G_MPS2
            v = np.cumsum(acc) / FS_HZ
            pos = np.sum(v) / FS_HZ
            depth = -pos * 1000.0
        else:
            d = self.peak_obl - self.bobl
            depth = d if self.side == LEFT else -d
        if peak < self.shallow:
            flags |= SHALLOW
        self.out.append((start, peak_n, end_n, self.task, self.side, self.index, flags,
                         int(round(depth))))
        self.index += 1

    def end(self):
        if self.inside:
            self.finish(self.n - 1, TRUNCATED)


IDLE, RISE, FALL = 0, 1, 2
# Step-down, squat, abduction (reps.py _MOVE): entry speed, minimum peak speed (|gx| + |gy|,
# counts: 32.8 per dps), minimum descent / return (samples), shallow below (mm of descent;
# abduction: cdeg of |obliquity| + |tilt| change), smallest repetition (mm; abduction cdeg).
MOVE = {STEP_DOWN: (33, 45, 20, 85, 25), SQUAT: (33, 45, 20, 105, 25), ABDUCTION: (33, 45, 20, 140, 60)}
STILL_RATE = 49  # |gx| + |gy| counts (1.5 dps)
STILL_ACC = 16  # counts (0.004 g): |smoothed vertical acceleration - its level|
STILL_N = 10  # still this long: velocity zeroed, acceleration level followed
CALM_N = 30  # still this long during a repetition: it was none
TIMEOUT = 300
IMPACT_COUNTS = 1024


class MoveReference:
    """Step-down, squat, abduction: reps.py _kernel_move / _finish_move in floats."""

    def __init__(self, task, side, bias):
        self.task, self.side, self.bias = task, side, bias
        self.enter, self.min_speed, self.min_phase, self.shallow, self.smallest = MOVE[task]
        self.n = 0
        self.v = 0.0
        self.bav = None
        self.still = 0
        self.ux, self.uy, self.uv = np.zeros(RING), np.zeros(RING), np.zeros(RING)
        self.state, self.impact, self.armed = IDLE, -RING, True
        self.index = 0
        self.out = []

    def speed(self, k):
        """Rate at sample k along the repetition's direction (r1: the rates at its fastest)."""
        return self.r1x * self.ux[k % RING] + self.r1y * self.uy[k % RING]

    def step(self, acc, gx, gy):
        av = vertical_counts(acc)
        n = self.n
        dx, dy = gx - self.bias[0], gy - self.bias[1]
        if self.bav is None:
            self.bav = self.bias[2] if self.bias[2] is not None else av
            self.avs = self.bav
        self.avs += (av - self.avs) / 8
        self.v += av - self.bav
        self.v -= self.v / 2048
        quiet = abs(dx) + abs(dy) < STILL_RATE and abs(self.avs - self.bav) < STILL_ACC
        self.still = self.still + 1 if quiet else 0
        if self.still >= STILL_N:
            self.bav += (av - self.bav) / 32
            self.v -= self.v / 8
            if self.state != IDLE and self.still >= CALM_N:
                self.state = IDLE
        self.ux[n % RING], self.uy[n % RING], self.uv[n % RING] = dx, dy, -self.v
        self.n = n + 1
        if abs(av - self.bav) > IMPACT_COUNTS:
            self.impact = n
        s = abs(dx) + abs(dy)
        if self.state == IDLE:
            if s < self.enter / 2:
                self.armed = True
            if s > self.enter and self.armed:
                self.state, self.p1, self.n1, self.r1x, self.r1y = RISE, s, n, dx, dy
        elif self.state == RISE:
            if s > self.p1:
                self.p1, self.n1, self.r1x, self.r1y = s, n, dx, dy
            u = self.speed(n)
            if u < 0:
                self.state, self.low, self.p2, self.n2 = FALL, n - 1, u, n
            elif n - self.n1 > TIMEOUT:
                self.state = IDLE
        else:
            u = self.speed(n)
            if u < self.p2:
                self.p2, self.n2 = u, n
            pk = self.r1x * self.r1x + self.r1y * self.r1y
            if u > 0.5 * pk:  # moving on the same way again: still the descent
                self.state = RISE
            elif n > self.n2 and u >= 0.6 * self.p2 and self.p2 < -0.3 * pk:
                self.state, self.armed = IDLE, False
                self.finish(n, 0)
            elif n - self.n2 > TIMEOUT:
                self.state = IDLE

    def finish(self, n_end, flags):
        pk = self.r1x * self.r1x + self.r1y * self.r1y
        e = n_end if flags or abs(self.speed(n_end) - 0.6 * self.p2) <= abs(self.speed(n_end - 1) - 0.6 * self.p2) else n_end - 1
        oldest = max(0, n_end - RING + 1)
        k = self.n1
        while k > oldest and self.speed(k) > 0.6 * pk:
            k -= 1
        if k <= oldest:
            return
        s = k + 1 if abs(self.speed(k + 1) - 0.6 * pk) < abs(self.speed(k) - 0.6 * pk) else k
        k0 = k
        k_stop = max(oldest, k - 2 * (self.n1 - k))
        while k0 > k_stop and self.speed(k0) > 0:
            k0 -= 1
        if self.impact >= k0:
            return
        ax_, ay_ = abs(self.r1x), abs(self.r1y)
        if ax_ + ay_ < self.min_speed:
            return
        if not flags and -self.p2 < 0.6 * self.min_speed * (max(ax_, ay_) + min(ax_, ay_) / 2):
            return
        low = self.low
        if low - s < self.min_phase or (not flags and e - low < self.min_phase):
            return
        idx = np.arange(k0, low + 1) % RING
        if self.task == ABDUCTION:
            dob, dti = self.ux[idx].sum(), self.uy[idx].sum()
            size = (abs(dob) + abs(dti)) / GYR_LSB_PER_DPS  # cdeg
            depth = dob / GYR_LSB_PER_DPS if self.side == LEFT else -dob / GYR_LSB_PER_DPS
        else:
            depth = size = self.uv[idx].sum() * G_MPS2 / 4096 * 1e-4 * 1000  # mm
        if size < self.smallest:
            return
        if size < self.shallow:
            flags |= SHALLOW
        self.out.append((s, low, e, self.task, self.side, self.index, flags, int(round(depth))))
        self.index += 1

    def end(self):
        if self.state == FALL:  # past its low: sent as truncated
            self.finish(self.n - 1, TRUNCATED)


def vertical_counts(acc_counts):
    """(|a|^2 - g^2) / 2g in counts: the vertical acceleration, whatever the orientation."""
    a = np.clip(np.asarray(acc_counts, float), -8192, 8192)
    return (float(a @ a) - 4096.0 ** 2) / 8192.0


def learn_bias(bias, gx, gy, acc=None):
    dx, dy = gx - bias[0], gy - bias[1]
    if abs(dx) < STILL_DPS * GYR_LSB_PER_DPS and abs(dy) < STILL_DPS * GYR_LSB_PER_DPS:
        bias[0] += dx * BIAS_ALPHA
        bias[1] += dy * BIAS_ALPHA
        if acc is not None:
            av = vertical_counts(acc)
            bias[2] = av if bias[2] is None else bias[2] + (av - bias[2]) * BIAS_ALPHA


def detect(counts, marks, block=5):
    """Repetitions (start, low, end sample from the recording's first, task, side, index, flags,
    depth) of counts (N, 6) ; marks: (sample, task code, side), code 0 ends the search. Between tasks
    the gyro bias is learned, as on the device. Marks take effect at the nearest block boundary, like the device replay."""
    at = {}
    for s, code, side in marks:
        at.setdefault(int(round(s / block)) * block, []).append((code, side))
    out = []
    det, origin = None, 0
    learned = [0.0, 0.0, None]
    for i in range(len(counts)):
        for code, side in at.get(i, ()):
            if det is not None:
                det.end()
                out += [(r[0] + origin, r[1] + origin, r[2] + origin, *r[3:]) for r in det.out]
                det = None
            if code:
                make = RepReference if code == STANCE else MoveReference
                det, origin = make(code, side, learned), i
        if det is not None:
            det.step(counts[i, :3], float(counts[i, 3]), float(counts[i, 4]))
        else:
            learn_bias(learned, float(counts[i, 3]), float(counts[i, 4]), counts[i, :3])
    if det is not None:
        det.end()
        out += [(r[0] + origin, r[1] + origin, r[2] + origin, *r[3:]) for r in det.out]
    return out
