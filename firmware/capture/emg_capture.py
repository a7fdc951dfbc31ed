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
        self._handler = self._on_drdy  # bound once: arming the IRQ must not allocate later
        self.clock_first = 0
        self._reset_counts()
        self.running = False

    def _reset_counts(self):
        self._head = 0
        self._tail = 0
        self._last_count = 0
        self.missed = 0
        self.overruns = 0
        self.delivered = 0
        self.duplicate_irqs = 0
        self.torn_reads = 0
        self.bad_frames = 0

    @property
    def lost_samples(self):
        return self.missed + self.overruns

    def available(self):
        return (self._head - self._tail) % (2 * self._cap)

    def clock_now(self):
        """Clock of the newest conversion (-1 before the first)."""
        return self._counter.value() - 1

    def start(self):
        self._reset_counts()
        self._counter.value(0)
        trig = getattr(type(self._drdy), "IRQ_FALLING", _IRQ_FALLING)
        self._drdy.irq(handler=self._handler, trigger=trig)
        self.running = True
        self.afe.start_continuous()

    def stop(self):
        self.afe.stop()
        self._drdy.irq(handler=None)
        self.running = False

    # Both hot paths are viper: the handler runs 1000 times a second, and as native code its
    # byte-by-byte decode and attribute arithmetic went through the runtime's generic integer
    # operations (about 6x slower than here, measured in the unix port). Viper integers are machine
    # words (32-bit on the ESP32): every value here is a count, a ring index or a 24-bit code, and
    # the counters and clocks stored back as objects stay below 2**30 (see the clock note above).
    @micropython.viper
    def _on_drdy(self, _pin):
        counter = self._counter
        count = int(counter.value())
        last = int(self._last_count)
        if count == last:
            self.duplicate_irqs = int(self.duplicate_irqs) + 1
            return
        cs = self._cs
        frame = self._frame
        cs.value(0)
        self._spi.readinto(frame, 0)
        cs.value(1)
        if int(counter.value()) != count:
            self.torn_reads = int(self.torn_reads) + 1
            return
        f = ptr8(frame)
        if (f[0] & 0xF0) != 0xC0:
            self.bad_frames = int(self.bad_frames) + 1
            return
        gap = count - last - 1
        if gap > 0:
            self.missed = int(self.missed) + gap
        self._last_count = count
        cap = int(self._cap)
        head = int(self._head)
        used = head - int(self._tail)  # head and tail run over [0, 2 * cap)
        if used < 0:
            used += 2 * cap
        if used >= cap:
            self.overruns = int(self.overruns) + 1
            return
        slot = head - cap if head >= cap else head
        clocks = ptr32(self._clocks)
        clocks[slot] = count - 1
        # lead-off: LOFF_STATP bits 3:0 are frame[1] bits 7:4, LOFF_STATN bits 3:0 frame[2] bits 7:4
        leadoff = ptr8(self._leadoff)
        leadoff[slot] = ((f[1] | f[2]) >> 4) & 0x0F
        # four big-endian two's-complement 24-bit codes after the 3 status bytes
        codes = ptr32(self._codes)
        j = slot * _N_CH
        v = (f[3] << 16) | (f[4] << 8) | f[5]
        if v & 0x800000:
            v -= 0x1000000
        codes[j] = v
        v = (f[6] << 16) | (f[7] << 8) | f[8]
        if v & 0x800000:
            v -= 0x1000000
        codes[j + 1] = v
        v = (f[9] << 16) | (f[10] << 8) | f[11]
        if v & 0x800000:
            v -= 0x1000000
        codes[j + 2] = v
        v = (f[12] << 16) | (f[13] << 8) | f[14]
        if v & 0x800000:
            v -= 0x1000000
        codes[j + 3] = v
        head += 1
        if head == 2 * cap:
            head = 0
        self._head = head

    @micropython.viper
    def drain(self, out_codes, out_leadoff, max_samples: int) -> int:
        """Copy up to max_samples clock-contiguous samples; returns n, sets clock_first."""
        cap = int(self._cap)
        tail = int(self._tail)
        avail = int(self._head) - tail
        if avail < 0:
            avail += 2 * cap
        n = max_samples
        if avail < n:
            n = avail
        if n <= 0:
            return 0
        clocks = ptr32(self._clocks)
        codes = ptr32(self._codes)
        leadoff = ptr8(self._leadoff)
        out = ptr32(out_codes)
        out_lo = ptr8(out_leadoff)
        slot = tail - cap if tail >= cap else tail
        first = clocks[slot]
        k = 0
        while k < n:
            if clocks[slot] != first + k:
                break
            j = slot * _N_CH
            o = k * _N_CH
            out[o] = codes[j]
            out[o + 1] = codes[j + 1]
            out[o + 2] = codes[j + 2]
            out[o + 3] = codes[j + 3]
            out_lo[k] = leadoff[slot]
            k += 1
            slot += 1
            if slot == cap:
                slot = 0
        tail += k
        if tail >= 2 * cap:
            tail -= 2 * cap
        self._tail = tail
        self.clock_first = first
        self.delivered = int(self.delivered) + k
        return k
