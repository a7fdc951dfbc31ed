# EMG capture: one ADS1294R RDATAC frame per DRDY edge into a preallocated ring; every lost sample
# counted exactly.
#
# The DRDY line feeds two things: a soft Pin.irq (on the ESP32 a scheduled callback, queue of 8,
# delayed by GC pauses) and a hardware pulse counter (machine.Counter on the ESP32 PCNT). The
# counter is the device sample clock: sample with clock t is the conversion whose DRDY edge brought
# the count to t + 1 (the count is reset to 0 by start(), so the first sample has clock 0).
#
# The AFE has no FIFO: each read returns the newest conversion. So the IRQ handler reads the
# counter, reads the frame, and reads the counter again:
#   - count unchanged since the last read  -> a queued duplicate IRQ (its frame was already read),
#   - count advanced by k > 1              -> k - 1 conversions were never read: `missed`,
#   - count moved during the read          -> the frame may be torn: dropped and counted as missed
#                                             when the next read lands,
#   - ring full (consumer stalled)         -> the new sample is dropped: `overruns`.
# Ring entries keep their own clock, and drain() returns only clock-contiguous runs, so a consumer
# always knows the clock of every sample it gets.
#
# App interface:
#   cap = EmgCapture(afe, drdy_pin, counter, ring_samples=256)
#   cap.start()                      # resets the clock to 0, arms the IRQ, starts the AFE
#   n = cap.drain(codes, leadoff, max_samples)
#       codes: array('i') of >= 4 * max_samples (interleaved l_gmed, r_gmed, l_es, r_es)
#       leadoff: bytearray/array('B') of >= max_samples (bit c = channel c lead-off)
#       returns n; cap.clock_first is the clock of codes[0:4]; sample i has clock clock_first + i.
#       A gap (lost samples) ends a run: the next drain() starts after it.
#   cap.lost_samples (= missed + overruns), cap.missed, cap.overruns, cap.delivered, cap.clock_now()
#   cap.stop()
# Clocks are small ints; they stay below 2**30 for 12 days at 1 kHz. The wire format masks to u32.
import array

import micropython
from micropython import const

from drivers.ads1294 import FRAME_BYTES

_N_CH = const(4)
_IRQ_FALLING = const(2)  # machine.Pin.IRQ_FALLING on the ESP32 port (fallback if absent)


class EmgCapture:
    def __init__(self, afe, drdy_pin, counter, ring_samples=256):
        self.afe = afe
        self._spi = afe.spi
        self._cs = afe.cs
        self._drdy = drdy_pin
        self._counter = counter
        self._cap = ring_samples
        self._codes = array.array("i", bytes(4 * _N_CH * ring_samples))
        self._leadoff = bytearray(ring_samples)
        self._clocks = array.array("i", bytes(4 * ring_samples))
        self._frame = bytearray(FRAME_BYTES)
        # head/tail run over [0, 2 * cap) so that full and empty differ; the IRQ handler writes
        # only head, drain() writes only tail, so no lock is needed between them.
        self._head = 0
        self._tail = 0
        self._last_count = 0
        self._handler = self._on_drdy  # bound once: arming the IRQ must not allocate later
        self.clock_first = 0
        self.missed = 0
        self.overruns = 0
        self.delivered = 0
        self.duplicate_irqs = 0
        self.torn_reads = 0
        self.bad_frames = 0
        self.running = False

    @property
    def lost_samples(self):
        return self.missed + self.overruns

    def available(self):
        return (self._head - self._tail) % (2 * self._cap)

    def clock_now(self):
        """Clock of the newest conversion (-1 before the first)."""
        return self._counter.value() - 1

    def start(self):
        self._head = 0
        self._tail = 0
        self.missed = 0
        self.overruns = 0
        self.delivered = 0
        self.duplicate_irqs = 0
        self.torn_reads = 0
        self.bad_frames = 0
        self._counter.value(0)
        self._last_count = 0
        trig = getattr(type(self._drdy), "IRQ_FALLING", _IRQ_FALLING)
        self._drdy.irq(handler=self._handler, trigger=trig)
        self.running = True
        self.afe.start_continuous()

    def stop(self):
        self.afe.stop()
        self._drdy.irq(handler=None)
        self.running = False

    @micropython.native
    def _on_drdy(self, _pin):
        counter = self._counter
        count = counter.value()
        if count == self._last_count:
            self.duplicate_irqs += 1
            return
        cs = self._cs
        frame = self._frame
        cs.value(0)
        self._spi.readinto(frame, 0)
        cs.value(1)
        if counter.value() != count:
            self.torn_reads += 1
            return
        if (frame[0] & 0xF0) != 0xC0:
            self.bad_frames += 1
            return
        gap = count - self._last_count - 1
        if gap > 0:
            self.missed += gap
        self._last_count = count
        cap = self._cap
        head = self._head
        if (head - self._tail) % (2 * cap) >= cap:
            self.overruns += 1
            return
        slot = head % cap
        self._clocks[slot] = count - 1
        statp = ((frame[0] & 0x0F) << 4) | (frame[1] >> 4)
        statn = ((frame[1] & 0x0F) << 4) | (frame[2] >> 4)
        self._leadoff[slot] = (statp | statn) & 0x0F
        codes = self._codes
        j = slot * _N_CH
        i = 3
        while i < FRAME_BYTES:
            v = (frame[i] << 16) | (frame[i + 1] << 8) | frame[i + 2]
            if v & 0x800000:
                v -= 0x1000000
            codes[j] = v
            j += 1
            i += 3
        head += 1
        if head == 2 * cap:
            head = 0
        self._head = head

    @micropython.native
    def drain(self, out_codes, out_leadoff, max_samples):
        """Copy up to max_samples clock-contiguous samples; returns n, sets clock_first."""
        cap = self._cap
        tail = self._tail
        avail = (self._head - tail) % (2 * cap)
        n = max_samples
        if avail < n:
            n = avail
        if n <= 0:
            return 0
        clocks = self._clocks
        codes = self._codes
        leadoff = self._leadoff
        slot = tail % cap
        first = clocks[slot]
        k = 0
        while k < n:
            if clocks[slot] != first + k:
                break
            j = slot * _N_CH
            o = k * _N_CH
            out_codes[o] = codes[j]
            out_codes[o + 1] = codes[j + 1]
            out_codes[o + 2] = codes[j + 2]
            out_codes[o + 3] = codes[j + 3]
            out_leadoff[k] = leadoff[slot]
            k += 1
            slot += 1
            if slot == cap:
                slot = 0
        tail += k
        if tail >= 2 * cap:
            tail -= 2 * cap
        self._tail = tail
        self.clock_first = first
        self.delivered += k
        return k
