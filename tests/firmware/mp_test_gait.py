# GaitDetector inside MicroPython: no allocation, stop / stand / pause / turn behaviour, queue
# overflow, integer ranges. The signals are synthetic (see synth() for the model).
import math
from array import array

import micropython

from dsp.gait import FC, IC, LEFT, RIGHT, GaitDetector

_FS = 100
_STEP_S = 0.55


def synth(segments, seed=1):
    """Counts (array 'h', 6 per sample) for ("walk"|"stand", seconds, yaw_dps) segments.

    Walking: a heel strike every 0.55 s is a 0.35 g upward burst (~100 ms) then a 0.12 g dip; the
    yaw + roll rate swings once per stride, positive around right heel strikes. yaw_dps adds a
    steady turn. Small pseudo-random noise everywhere. Returns (counts, true IC samples, sides)."""
    n_total = 0
    for seg in segments:
        n_total += int(seg[1] * _FS)
    out = array("h", bytes(12 * n_total))
    ics = []
    sides = []
    state = seed
    i0 = 0
    for kind, seconds, yaw in segments:
        n = int(seconds * _FS)
        steps = []
        if kind == "walk":
            k = 0
            while 0.3 + k * _STEP_S < seconds - 0.3:
                steps.append(0.3 + k * _STEP_S)
                ics.append(i0 + int(round((0.3 + k * _STEP_S) * _FS)))
                sides.append(k % 2)
                k += 1
        for j in range(n):
            t = j / _FS
            az = 1.0
            ax = 0.0
            gz = yaw
            gx = 0.0
            for tic in steps:
                dt = t - tic
                if -0.5 < dt < 0.8:
                    az += 0.35 * math.exp(-0.5 * ((dt - 0.06) / 0.035) ** 2)
                    az -= 0.12 * math.exp(-0.5 * ((dt - 0.25) / 0.06) ** 2)
                    ax += 0.1 * math.exp(-0.5 * ((dt - 0.1) / 0.05) ** 2)
            if steps:
                phase = 2 * math.pi * (t - 0.3) / (2 * _STEP_S)
                gz -= 25 * math.cos(phase)
                gx -= 10 * math.cos(phase)
            state = (state * 1103515245 + 12345) & 0x7FFFFFFF
            noise = ((state >> 16) & 0xFF) - 128  # +-128 -> +-0.03 g / +-4 dps at most
            k = (i0 + j) * 6
            out[k] = int(ax * 4096) + noise // 8
            out[k + 1] = noise // 8
            out[k + 2] = int(az * 4096) + noise // 4
            out[k + 3] = int(gx * 32.8) + noise // 16
            out[k + 4] = noise // 16
            out[k + 5] = int(gz * 32.8) + noise // 16
        i0 += n
    return out, ics, sides


def feed(det, counts, block=25, clock0=0, record=None, walking_log=None):
    """Feed counts in blocks; pop every event into `record` as (sample, kind, side, stride)."""
    n_total = len(counts) // 6
    buf = array("h", bytes(12 * block))
    ev = array("i", [0, 0, 0, 0])
    i = 0
    while i < n_total:
        n = min(block, n_total - i)
        for k in range(6 * n):
            buf[k] = counts[6 * i + k]
        det.process(buf, n, clock0 + 10 * i)
        while det.pop(ev):
            if record is not None:
                record.append(((ev[0] - clock0) // 10, ev[1], ev[2], ev[3]))
        if walking_log is not None:
            walking_log.append((i + n, det.walking))
        i += n


def ics_of(events):
    return [e for e in events if e[1] == IC]


def near(events, t, tol):
    for e in events:
        if abs(e[0] - t) <= tol:
            return e
    return None


def test_process_allocates_nothing():
    counts, _, _ = synth([("walk", 10, 0)])
    det = GaitDetector()
    n_total = len(counts) // 6
    warm = 300
    head = array("h", counts[: 6 * warm])
    det.process(head, warm, 0)
    block = array("h", bytes(12 * 25))
    ev = array("i", [0, 0, 0, 0])
    popped = 0
    i = warm
    micropython.heap_lock()
    try:
        while i + 25 <= n_total:
            k = 0
            while k < 150:
                block[k] = counts[6 * i + k]
                k += 1
            det.process(block, 25, 10 * i)
            while det.pop(ev):
                popped += 1
            i += 25
    finally:
        micropython.heap_unlock()
    assert popped >= 20, popped
    assert det.walking


def test_walk_events_alternate_and_match_truth():
    counts, ics, sides = synth([("stand", 2, 0), ("walk", 8, 0), ("stand", 3, 0)])
    det = GaitDetector(max_events=64)
    events = []
    feed(det, counts, record=events)
    got = ics_of(events)
    # Every true IC found within 30 ms, sides right; no extra ICs.
    assert len(got) == len(ics), (got, ics)
    for t, side in zip(ics, sides):
        e = near(got, t, 3)
        assert e is not None, (t, got)
        assert e[2] == side, (t, e)
    # One FC (of the other foot) after every IC but the last, 50..450 ms after it.
    fcs = [e for e in events if e[1] == FC]
    assert len(fcs) == len(got)
    for ic_ev, fc_ev in zip(got, fcs):
        assert 5 <= fc_ev[0] - ic_ev[0] <= 45, (ic_ev, fc_ev)
        assert fc_ev[2] == 1 - ic_ev[2]
    # Per-side stride counters count up from 0.
    left = [e[3] for e in got if e[2] == LEFT]
    right = [e[3] for e in got if e[2] == RIGHT]
    assert left == list(range(len(left))) and right == list(range(len(right)))
    assert det.dropped_events == 0


def test_standing_gives_no_events():
    counts, _, _ = synth([("stand", 20, 0)])
    det = GaitDetector()
    events = []
    log = []
    feed(det, counts, record=events, walking_log=log)
    assert events == []
    assert not any(w for _, w in log)


def test_stop_ends_the_bout_and_events():
    counts, ics, _ = synth([("walk", 6, 0), ("stand", 6, 0)])
    det = GaitDetector(max_events=64)
    events = []
    log = []
    feed(det, counts, record=events, walking_log=log)
    last_true = ics[-1]
    assert ics_of(events), "no steps found"
    assert all(e[0] <= last_true + 50 for e in events), (events, last_true)
    assert any(w for s, w in log if s < 600)
    # Walking ends within 2.5 s of the last step; the detector reports it.
    assert not any(w for s, w in log if s > last_true + 250)
    assert not det.walking


def test_short_pause_creates_no_phantom_events():
    counts, ics, _ = synth([("walk", 5, 0), ("stand", 1.5, 0), ("walk", 5, 0)])
    det = GaitDetector(max_events=64)
    events = []
    feed(det, counts, record=events)
    got = ics_of(events)
    pause_lo, pause_hi = 500, 650
    in_pause = [e for e in got if pause_lo + 10 < e[0] < pause_hi]
    assert in_pause == [], in_pause
    for t in ics:
        assert near(got, t, 3) is not None, (t, got)
    assert len(got) == len(ics)


def test_turning_keeps_events_and_sides():
    # A 90 deg/s turn (a 180 deg turn in 2 s) added to the yaw rate for the whole walk.
    counts, ics, sides = synth([("stand", 1, 0), ("walk", 8, 90), ("stand", 2, 0)])
    det = GaitDetector(max_events=64)
    events = []
    feed(det, counts, record=events)
    got = ics_of(events)
    assert len(got) == len(ics), (got, ics)
    right_sides = 0
    for t, side in zip(ics, sides):
        e = near(got, t, 3)
        assert e is not None, (t, got)
        right_sides += e[2] == side
    # The running mean removes the steady turn rate; the first steps see it settle.
    assert right_sides >= len(ics) - 2, (right_sides, len(ics))


def test_queue_overflow_is_counted():
    counts, _, _ = synth([("walk", 8, 0)])
    full = GaitDetector(max_events=64)
    events = []
    feed(full, counts, record=events)
    small = GaitDetector(max_events=3)
    buf_events = []
    n_total = len(counts) // 6
    small.process(counts, n_total, 0)  # one big block, nothing popped meanwhile
    ev = array("i", [0, 0, 0, 0])
    while small.pop(ev):
        buf_events.append(ev[0] // 10)
    assert len(buf_events) == 3
    assert small.dropped_events == len(events) - 3
    assert buf_events == [e[0] for e in events[:3]]


def test_event_clock_is_the_sample_clock():
    counts, ics, _ = synth([("walk", 6, 0)])
    det = GaitDetector(max_events=64)
    events = []
    feed(det, counts, clock0=123450, block=17, record=events)
    got = ics_of(events)
    assert got and all(near(got, t, 3) for t in ics[1:-1])


def test_intermediates_stay_below_2_pow_30():
    # Full-scale square waves on every axis, at the worst period for the moving sums.
    det = GaitDetector(max_events=4)
    block = array("h", bytes(12 * 30))
    limit = 1 << 30
    for rep in range(40):
        for j in range(30):
            v = 32767 if (j // 15) % 2 == 0 else -32768
            if rep % 3 == 0:
                v = 32767
            for c in range(6):
                block[6 * j + c] = v
        det.process(block, 30, rep * 300)
        for arr in (det._sums, det._d_ring, det._dd_ring, det._lat_ring):
            for x in arr:
                assert -limit < x < limit
        for x in (det._base, det._lat_base, det._lobe_peak_v):
            assert -limit < x < limit
