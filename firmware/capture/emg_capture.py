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

# State words (one array('i'), so that the viper paths load one attribute, not one per counter).
# LAST_COUNT, HEAD and TAIL are public for the benchmark that times the IRQ handler.
LAST_COUNT = const(0)  # counter value at the last frame read
HEAD = const(1)  # ring write index, written by the IRQ handler only
TAIL = const(2)  # ring read index, written by drain() only
_MISSED = const(3)
_OVERRUNS = const(4)
_DUPLICATES = const(5)
_TORN = const(6)
_BAD = const(7)
_DELIVERED = const(8)
_CLOCK_FIRST = const(9)
_CAP = const(10)
_N_STATE = const(11)
# Ring slot: clock, lead-off bits, the 4 channel codes.
_SLOT = const(6)


def _word(slot):
    """A read-only attribute showing one state word."""
    return property(lambda self: self._st[slot])


class EmgCapture:
    def __init__(self, afe, drdy_pin, counter, ring_samples=256):
        self.afe = afe
        self._spi = afe.spi
        self._cs = afe.cs
        self._drdy = drdy_pin
        self._counter = counter
        self._cap = ring_samples
        self._ring = array.array("i", bytes(4 * _SLOT * ring_samples))
        self._frame = bytearray(FRAME_BYTES)
        # HEAD/TAIL run over [0, 2 * cap) so that full and empty differ; the IRQ handler writes
        # only HEAD, drain() writes only TAIL, so no lock is needed between them.
        self._st = array.array("i", bytes(4 * _N_STATE))
        self._handler = self._on_drdy  # bound once: arming the IRQ must not allocate later
        self._reset_counts()
        self.running = False

    def _reset_counts(self):
        st = self._st
        for i in range(_N_STATE):
            st[i] = 0
        st[_CAP] = self._cap

    # counters, and the clock of the first sample the last drain() returned (state words)
    missed = _word(_MISSED)
    overruns = _word(_OVERRUNS)
    duplicate_irqs = _word(_DUPLICATES)
    torn_reads = _word(_TORN)
    bad_frames = _word(_BAD)
    delivered = _word(_DELIVERED)
    clock_first = _word(_CLOCK_FIRST)

    @property
    def lost_samples(self):
        return self._st[_MISSED] + self._st[_OVERRUNS]

    def available(self):
        st = self._st
        return (st[HEAD] - st[TAIL]) % (2 * self._cap)

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
    # operations (about 6x slower than here, measured in the unix port). Its state sits in one
    # array of words and its ring in another, because each attribute of self costs a dictionary
    # lookup per call: with one attribute per counter and per ring array, those lookups took most
    # of the handler's time. Viper integers are machine words (32-bit on the ESP32): every value
    # here is a count, a ring index or a 24-bit code, and counts and clocks stay below 2**30 (see
    # the clock note above). On a 64-bit port ptr32 loads are not sign-extended: only codes are
    # negative, and they are copied as whole words, never compared.
    @micropython.viper
    def _on_drdy(self, _pin):
        st = ptr32(self._st)
        counter = self._counter
        count = int(counter.value())
        last = st[LAST_COUNT]
        if count == last:
            st[_DUPLICATES] = st[_DUPLICATES] + 1
            return
        cs = self._cs
        frame = self._frame
        cs.value(0)
        self._spi.readinto(frame, 0)
        cs.value(1)
        if int(counter.value()) != count:
            st[_TORN] = st[_TORN] + 1
            return
        f = ptr8(frame)
        if (f[0] & 0xF0) != 0xC0:
            st[_BAD] = st[_BAD] + 1
            return
        gap = count - last - 1
        if gap > 0:
            st[_MISSED] = st[_MISSED] + gap
        st[LAST_COUNT] = count
        cap = st[_CAP]
        head = st[HEAD]
        used = head - st[TAIL]  # head and tail run over [0, 2 * cap)
        if used < 0:
            used += 2 * cap
        if used >= cap:
            st[_OVERRUNS] = st[_OVERRUNS] + 1
            return
        r = ptr32(self._ring)
        j = (head - cap if head >= cap else head) * _SLOT
        r[j] = count - 1
        # lead-off: LOFF_STATP bits 3:0 are frame[1] bits 7:4, LOFF_STATN bits 3:0 frame[2] bits 7:4
        r[j + 1] = ((f[1] | f[2]) >> 4) & 0x0F
        # four big-endian two's-complement 24-bit codes after the 3 status bytes
        v = (f[3] << 16) | (f[4] << 8) | f[5]
        if v & 0x800000:
            v -= 0x1000000
        r[j + 2] = v
        v = (f[6] << 16) | (f[7] << 8) | f[8]
        if v & 0x800000:
            v -= 0x1000000
        r[j + 3] = v
        v = (f[9] << 16) | (f[10] << 8) | f[11]
        if v & 0x800000:
            v -= 0x1000000
        r[j + 4] = v
        v = (f[12] << 16) | (f[13] << 8) | f[14]
        if v & 0x800000:
            v -= 0x1000000
        r[j + 5] = v
        head += 1
        if head == 2 * cap:
            head = 0
        st[HEAD] = head

    @micropython.viper
    def drain(self, out_codes, out_leadoff, max_samples: int) -> int:
        """Copy up to max_samples clock-contiguous samples; returns n, sets clock_first."""
        st = ptr32(self._st)
        cap = st[_CAP]
        tail = st[TAIL]
        avail = st[HEAD] - tail
        if avail < 0:
            avail += 2 * cap
        n = max_samples
        if avail < n:
            n = avail
        if n <= 0:
            return 0
        r = ptr32(self._ring)
        out = ptr32(out_codes)
        out_lo = ptr8(out_leadoff)
        slot = tail - cap if tail >= cap else tail
        first = r[slot * _SLOT]
        k = 0
        while k < n:
            j = slot * _SLOT
            if r[j] != first + k:
                break
            o = k * _N_CH
            out[o] = r[j + 2]
            out[o + 1] = r[j + 3]
            out[o + 2] = r[j + 4]
            out[o + 3] = r[j + 5]
            out_lo[k] = r[j + 1]
            k += 1
            slot += 1
            if slot == cap:
                slot = 0
        tail += k
        if tail >= 2 * cap:
            tail -= 2 * cap
        st[TAIL] = tail
        st[_CLOCK_FIRST] = first
        st[_DELIVERED] = st[_DELIVERED] + k
        return k
