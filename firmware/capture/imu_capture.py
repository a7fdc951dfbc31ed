# IMU capture: drain the ICM-42688-P FIFO in blocks, rotate to the sacrum body frame, stamp every
# sample in device clock ticks, count every lost sample exactly.
#
# Sample index k counts IMU samples since start() (lost ones included); its device clock is
# clock0 + 10 * k (units.TICKS_PER_IMU_SAMPLE). clock0 is anchored at the first drain: the newest
# packet then was produced within the last 10 ticks, taken as 5 ticks ago (error under +-5 ticks).
# skew_ticks re-measures that anchor at every drain that empties a FIFO which did not overflow, so an
# IMU oscillator running off the AFE's shows up (the stamps themselves stay nominal).
#
# Losses: the FIFO runs STOP-on-FULL, so what it holds is always an unbroken run and the samples
# produced while it was full are lost. Every packet carries a 16-bit timestamp in 16 us units
# (625 per 10 ms sample, wrapping every 104.8 samples); the step between consecutive packets gives
# the number of samples between them. After an overflow the gap can exceed one wrap, so the number
# of wraps is taken from the device clock (the FIFO was freed at the drain that saw it full, and
# the first new packet came within one sample period of that), then the timestamps make it exact.
#
# Oscillators: the IMU samples on its own oscillator, the device clock is the AFE's, and the two
# differ by up to a few percent. Nominal stamps (10 ticks apart) would drift against the EMG by
# that much: 1 % is 0.6 s per minute, more than a step. skew_ticks measures the drift at every
# drain that empties the FIFO; once it is more than _RATE_SLACK ticks off the stream's shift, one
# sample is repeated (a slow IMU) or dropped (a fast one), so the samples stay contiguous on the
# 10-tick grid and within about 15 ticks of when they were taken (measured at +-2 %). rate_dups and rate_drops count
# them; the app reports rate_drops with the lost IMU samples.
#
# App interface:
#   imu = ImuCapture(driver, mounting, clock)   # clock: object with clock_now() (the EmgCapture)
#   imu.start()
#   n = imu.drain(out, max_samples)   # out: array('h') of >= 6 * max_samples:
#                                     # ax, ay, az (accel counts), gx, gy, gz (gyro counts), body frame
#   imu.clock_first                   # device clock of out[0:6]; sample i at clock_first + 10 * i
#   imu.lost_samples, imu.delivered, imu.overflows, imu.bad_packets, imu.skew_ticks,
#   imu.rate_dups, imu.rate_drops
# Pass max_samples >= 128 (a full FIFO) so that an overflowed FIFO is emptied in one drain: the
# wrap count of the gap after it is resolved at the next packet, one gap at a time.
# A drain returns only a gap-free run: a packet after a gap waits for the next drain().
import array

import micropython
from micropython import const

from drivers.icm42688 import (FIFO_BYTES, INT_STATUS_FIFO_FULL, PACKET_BYTES, TS_PER_SAMPLE_100HZ,
                              TS_WRAP)

_TICKS_PER_SAMPLE = const(10)
_ANCHOR_LAG = const(5)
_HALF_STEP = const(312)  # TS_PER_SAMPLE_100HZ // 2, for rounding
_HALF_WRAP = const(32768)
# Drift allowed before a sample is repeated or dropped: the anchor is known to +-5 ticks, so a
# smaller slack would trade samples back and forth on noise alone.
_RATE_SLACK = const(15)


@micropython.viper
def _unpack(pkt: ptr8, m1: ptr8, out: ptr16, o: int):
    """Accel and gyro of a FIFO packet (big-endian int16 at bytes 1..12, sensor frame) rotated by
    the mounting matrix (row-major, entries -1/0/1, stored + 1 in m1) into out[o:o + 6], clamped
    to int16. Viper: its integers are 32-bit on the ESP32; each sum stays within 3 * 2**15."""
    b = 0
    while b < 6:
        p = 1 + 2 * b
        x = (pkt[p] << 8) | pkt[p + 1]
        if x & 0x8000:
            x -= 0x10000
        y = (pkt[p + 2] << 8) | pkt[p + 3]
        if y & 0x8000:
            y -= 0x10000
        z = (pkt[p + 4] << 8) | pkt[p + 5]
        if z & 0x8000:
            z -= 0x10000
        r = 0
        while r < 3:
            j = 3 * r
            v = (m1[j] - 1) * x + (m1[j + 1] - 1) * y + (m1[j + 2] - 1) * z
            if v > 32767:
                v = 32767
            elif v < -32768:
                v = -32768
            out[o + b + r] = v
            r += 1
        b += 3


class ImuCapture:
    def __init__(self, driver, mounting, clock):
        self.driver = driver
        self._clock = clock
        m = mounting
        flat = (m[0][0], m[0][1], m[0][2], m[1][0], m[1][1], m[1][2], m[2][0], m[2][1], m[2][2])
        for v in flat:
            if v < -1 or v > 1:
                raise ValueError("mounting matrix entries must be -1, 0 or 1")
        self._m1 = bytes(v + 1 for v in flat)  # entries + 1: viper's byte loads are unsigned
        self._packet = bytearray(PACKET_BYTES)
        self._stash = array.array("h", bytes(2 * 6))
        self._reset_state()

    def _reset_state(self):
        self._have_prev = False
        self._have_stash = False
        self._stash_index = 0
        self._prev_ts = 0
        self._prev_index = -1
        self._prev_out_index = -1  # output slot (sample index + shift) of the last sample delivered
        self._shift = 0  # slots repeated minus slots dropped so far
        self._adjust = 0  # +1: repeat a sample at the next chance, -1: drop the next one
        self._clock0 = 0
        self._gap_countdown = -1  # packets left before one that may follow an overflow gap
        self._free_clock = 0  # device clock when an overflowed FIFO was freed
        self.clock_first = 0
        self.skew_ticks = 0
        self.lost_samples = 0
        self.delivered = 0
        self.overflows = 0
        self.bad_packets = 0
        self.rate_dups = 0
        self.rate_drops = 0

    def start(self):
        self._reset_state()
        self.driver.start()

    def stop(self):
        self.driver.stop()

    @micropython.native
    def _steps_since_prev(self, ts, wraps_possible):
        """IMU sample periods between the previous packet and one with timestamp ts."""
        d = (ts - self._prev_ts) & (TS_WRAP - 1)
        w = 0
        if wraps_possible:
            prev_clock = self._clock0 + _TICKS_PER_SAMPLE * self._prev_index + self.skew_ticks
            est = (self._free_clock + _ANCHOR_LAG - prev_clock + _TICKS_PER_SAMPLE // 2) // _TICKS_PER_SAMPLE
            if est < 1:
                est = 1
            w = (est * TS_PER_SAMPLE_100HZ - d + _HALF_WRAP) // TS_WRAP
            if w < 0:
                w = 0
        steps = (d + TS_WRAP * w + _HALF_STEP) // TS_PER_SAMPLE_100HZ
        if steps < 1:
            steps = 1
        return steps

    @micropython.native
    def pending_after_gap(self):
        """True when a sample after a gap is held back for the next drain()."""
        return self._have_stash

    def drain(self, out, max_samples):
        """Read up to max_samples gap-free samples into out (6 per sample); returns n."""
        drv = self.driver
        now = self._clock.clock_now()
        st = drv.fifo_status()
        full = st & INT_STATUS_FIFO_FULL
        nbytes = st >> 8
        if nbytes >= FIFO_BYTES:
            full = 1
        avail = nbytes // PACKET_BYTES
        k = 0
        if self._have_stash and max_samples > 0:
            st = self._stash
            for i in range(6):
                out[i] = st[i]
            self.clock_first = self._clock0 + _TICKS_PER_SAMPLE * self._stash_index
            self._prev_out_index = self._stash_index
            self._have_stash = False
            k = 1
        to_read = avail
        if to_read > max_samples - k:
            to_read = max_samples - k
        if to_read < 0:
            to_read = 0
        read = 0
        pkt = self._packet
        m = self._m1
        if to_read > 0:
            drv.fifo_begin()
            while read < to_read:
                drv.fifo_read_packet(pkt)
                read += 1
                if (pkt[0] & 0xE0) != 0x60:  # empty marker or not accel+gyro: not ours
                    self.bad_packets += 1
                    continue
                ts = (pkt[14] << 8) | pkt[15]
                if not self._have_prev:
                    index = 0
                    self._clock0 = now - _ANCHOR_LAG - _TICKS_PER_SAMPLE * (avail - 1)
                    self._have_prev = True
                else:
                    wraps = self._gap_countdown == 0
                    steps = self._steps_since_prev(ts, wraps)
                    index = self._prev_index + steps
                    if steps > 1:
                        self.lost_samples += steps - 1
                if self._gap_countdown >= 0:
                    self._gap_countdown -= 1
                self._prev_ts = ts
                self._prev_index = index
                if self._adjust < 0:  # a fast IMU: this sample's slot is taken
                    self._adjust = 0
                    self._shift -= 1
                    self.rate_drops += 1
                    continue
                if self._adjust > 0 and k > 0 and k < max_samples - 1:
                    # a slow IMU: the previous sample fills one more slot
                    self._adjust = 0
                    self._shift += 1
                    self.rate_dups += 1
                    for i in range(6 * k, 6 * k + 6):
                        out[i] = out[i - 6]
                    self._prev_out_index += 1
                    k += 1
                slot = index + self._shift
                if k > 0 and slot != self._prev_out_index + 1:
                    # A gap inside this block: keep the packet for the next drain.
                    _unpack(pkt, m, self._stash, 0)
                    self._stash_index = slot
                    self._have_stash = True
                    break
                if k == 0:
                    self.clock_first = self._clock0 + _TICKS_PER_SAMPLE * slot
                _unpack(pkt, m, out, 6 * k)
                self._prev_out_index = slot
                k += 1
            drv.fifo_end()
        if full:
            self.overflows += 1
            # The packets still in the FIFO (avail - read) are contiguous; the one after them was
            # written only once this drain freed space.
            self._gap_countdown = avail - read
            self._free_clock = now
        elif read == avail and avail > 0 and self._have_prev:
            skew = now - _ANCHOR_LAG - (self._clock0 + _TICKS_PER_SAMPLE * self._prev_index)
            self.skew_ticks = skew
            off = skew - _TICKS_PER_SAMPLE * self._shift
            if off > _RATE_SLACK:
                self._adjust = 1
            elif off < -_RATE_SLACK:
                self._adjust = -1
        self.delivered += k
        return k
