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
STILL_DPS = 2100 / 32 / 32.8
BIAS_ALPHA = 1 / 256
GYR_LSB_PER_DPS = 32.8
IMPACT_G = 0.25
G_MPS2 = 9.80665
# single-leg stance (reps.py _kernel_hold): sway smoothing, threshold (x the two-leg sway, floor
# in dps), samples with nothing added that complete a hold, shortest hold, most impacts, end()'s
# "still going" tail, samples before the start the drop is measured from
SWAY_ALPHA = 1 / 4
HOLD_X_LEVEL = 1.5
HOLD_FLOOR_DPS = 945 / 32 / 32.8
HOLD_QUIET = 300
HOLD_MIN = 500
HOLD_MAX_IMPACTS = 2
HOLD_TAIL = 50
HOLD_PRE = 30


class HoldReference:
    """Single-leg stance: reps.py _kernel_hold / _finish_hold in floats."""

    def __init__(self, task, side, learned):
        self.task, self.side = task, side
        self.bias = learned  # [x, y counts, vertical acceleration level, two-leg sway dps]
        self.threshold = max(HOLD_X_LEVEL * (learned[3] or 0.0), HOLD_FLOOR_DPS)
        self.bav = learned[2]
        self.n = 0
        self.sway = 0.0
        self.obl = 0.0
        self.dobl = np.zeros(64)
        self.was_imp = False
        self.run = self.best = 0.0
        self.run_s = self.best_s = self.best_e = 0
        self.run_imp = self.best_imp = 0
        self.run_o0 = self.run_pk = self.best_pk = 0.0
        self.run_pkn = self.best_pkn = 0
        self.index = 0
        self.out = []

    def step(self, acc_counts, gx, gy):
        n = self.n
        dx, dy = gx - self.bias[0], gy - self.bias[1]
        self.obl += dx / GYR_LSB_PER_DPS  # cdeg: deg/s x 0.01 s x 100
        self.dobl[n % 64] = self.obl
        self.sway += ((abs(dx) + abs(dy)) / GYR_LSB_PER_DPS - self.sway) * SWAY_ALPHA
        av = vertical_counts(acc_counts)
        if self.bav is None:
            self.bav = av
        imp = abs(av - self.bav) > IMPACT_G * 4096
        if self.run <= 0:
            self.run, self.run_s, self.run_imp = 0.0, n, 0
            self.run_o0 = self.dobl[max(n - HOLD_PRE, 0, n - 63) % 64]
            self.run_pk, self.run_pkn = -np.inf, n
        self.run += self.sway - self.threshold
        if imp and not self.was_imp:
            self.run_imp += 1
        self.was_imp = imp
        d = (self.obl - self.run_o0) * (1 if self.side == LEFT else -1)
        if d > self.run_pk:
            self.run_pk, self.run_pkn = d, n
        if self.run > self.best:
            self.best, self.best_s, self.best_e = self.run, self.run_s, n
            self.best_imp, self.best_pk, self.best_pkn = self.run_imp, self.run_pk, self.run_pkn
        self.n = n + 1
        if self.best > 0 and n - self.best_e >= HOLD_QUIET:
            self.finish(0)

    def finish(self, flags):
        self.run = self.best = 0.0
        if self.best_e - self.best_s + 1 < HOLD_MIN or self.best_imp > HOLD_MAX_IMPACTS:
            return
        self.out.append((self.best_s, self.best_pkn, self.best_e, self.task, self.side,
                         self.index, flags, int(round(self.best_pk))))
        self.index += 1

    def end(self):
        if self.best > 0:
            self.finish(TRUNCATED if self.n - 1 - self.best_e < HOLD_TAIL else 0)


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
        bias[3] += ((abs(dx) + abs(dy)) / GYR_LSB_PER_DPS - bias[3]) * BIAS_ALPHA
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
    learned = [0.0, 0.0, None, 0.0]
    for i in range(len(counts)):
        for code, side in at.get(i, ()):
            if det is not None:
                det.end()
                out += [(r[0] + origin, r[1] + origin, r[2] + origin, *r[3:]) for r in det.out]
                det = None
            if code:
                make = HoldReference if code == STANCE else MoveReference
                det, origin = make(code, side, learned), i
        if det is not None:
            det.step(counts[i, :3], float(counts[i, 3]), float(counts[i, 4]))
        else:
            learn_bias(learned, float(counts[i, 3]), float(counts[i, 4]), counts[i, :3])
    if det is not None:
        det.end()
        out += [(r[0] + origin, r[1] + origin, r[2] + origin, *r[3:]) for r in det.out]
    return out
