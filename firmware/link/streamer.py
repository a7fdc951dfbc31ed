# Turns DSP output into frames: batches of envelope and pelvis samples, events, exam repetitions
# and status pages, into a preallocated outbox the BLE task drains, and into the flash log when
# recording.
# Nothing here allocates per sample or per frame; every frame that cannot be kept is counted.
from array import array

import micropython
from micropython import const

from hipwire import frames as wire
from hipwire import rawcodec

SLOT_BYTES = const(256)  # frames are capped at min(ATT payload, SLOT_BYTES)
# Samples a batch ring holds before framing: a frame's batch (50) plus a processing block (5 envelope
# or pelvis samples, 50 raw; up to ~100 raw when the virtual device runs faster than real time).
# A fuller ring is framed at once rather than dropped.
_RING_SAMPLES = const(128)


_B29 = const(1 << 29)
_M30 = const((1 << 30) - 1)


@micropython.viper
def _copy_shifted(dst: ptr32, d0: int, src: ptr32, s0: int, n: int, shift: int):
    """dst[d0 + i] = src[s0 + i] >> shift for i < n, in order (so d0 < s0 may overlap).
    Viper: the sample paths copy every value through here instead of a bytecode loop. shift 0
    copies whole 32-bit words. A ptr32 load is not sign-extended on a 64-bit build, so a shifted
    value is first sign-extended from 30 bits: shift > 0 is for AFE codes (24-bit)."""
    i = 0
    if shift == 0:
        while i < n:
            dst[d0 + i] = src[s0 + i]
            i += 1
        return
    while i < n:
        v = ((src[s0 + i] + _B29) & _M30) - _B29
        dst[d0 + i] = v >> shift
        i += 1


class _BatchRing:
    """Contiguous samples (interleaved channels) waiting to be framed, with the clock of the first."""

    def __init__(self, n_channels, period_ticks):
        self.n_channels = n_channels
        self.period = period_ticks
        self.values = array("i", bytes(4 * _RING_SAMPLES * n_channels))
        self.count = 0
        self.clock = 0

    def next_clock(self):
        return self.clock + self.count * self.period

    def drop_front(self, n):
        ch = self.n_channels
        _copy_shifted(self.values, 0, self.values, n * ch, (self.count - n) * ch, 0)
        self.count -= n
        self.clock += n * self.period


class Streamer:
    def __init__(self, outbox_slots=24, batch_samples=50):
        self.env = _BatchRing(4, 10)
        self.pel = _BatchRing(3, 10)
        self.raw = _BatchRing(4, rawcodec.RAW_PERIOD_TICKS)  # raw EMG (research mode)
        self.batch_samples = batch_samples
        self.outbox = bytearray(outbox_slots * SLOT_BYTES)
        mv = memoryview(self.outbox)
        self.slots = [mv[i * SLOT_BYTES:(i + 1) * SLOT_BYTES] for i in range(outbox_slots)]
        self.lengths = array("H", bytes(2 * outbox_slots))
        self.head = 0  # oldest frame
        self.count = 0
        self.seq = 0
        self.status = array("i", bytes(4 * wire.N_STATUS_VALUES))
        self._status_page = 0
        self._claim_index = 0
        self.frames_dropped = 0  # outbox overflow: never sent, shows as a seq gap on the host
        self.samples_dropped = 0  # ring overflow before framing
        self.live = False  # queue frames for the radio
        self.record = None  # fn(buf, n): the flash log, when recording

    # ---- input from the DSP
    def add_envelope(self, src, start, n, clock_first, max_len):
        self._add(self.env, wire.ENVELOPE, src, start, n, clock_first, max_len)

    def add_pelvis(self, src, start, n, clock_first, max_len):
        self._add(self.pel, wire.PELVIS, src, start, n, clock_first, max_len)

    def add_raw(self, codes, start, n, clock_first, max_len):
        """Raw EMG codes (research mode); sent losslessly at rawcodec.RAW_SHIFT fewer bits."""
        self._add(self.raw, wire.RAW_EMG, codes, start, n, clock_first, max_len)

    @micropython.native
    def _add(self, ring, ftype, src, start, n, clock_first, max_len):
        if ring.count and clock_first != ring.clock + ring.count * ring.period:
            self._flush_ring(ring, ftype, max_len, 1)  # a gap: frames carry contiguous samples only
        if ring.count == 0:
            ring.clock = clock_first
        ch = ring.n_channels
        shift = rawcodec.RAW_SHIFT if ftype == wire.RAW_EMG else 0
        k = 0
        while k < n:
            if ring.count == _RING_SAMPLES:
                self._flush_ring(ring, ftype, max_len, 1)
                if ring.count == _RING_SAMPLES:  # nothing could be framed (max_len too small)
                    self.samples_dropped += n - k
                    ring.count = 0
                    ring.clock = clock_first + (k + 1) * ring.period
                    return
                if ring.count == 0:
                    ring.clock = clock_first + k * ring.period
            # as many samples as the ring has room for, in one copy
            take = _RING_SAMPLES - ring.count
            if take > n - k:
                take = n - k
            _copy_shifted(ring.values, ring.count * ch, src, start + k * ch, take * ch, shift)
            ring.count += take
            k += take
        self._flush_ring(ring, ftype, max_len, self.batch_samples)

    def add_event(self, clock, kind, side, stride):
        slot = self._claim()
        self._commit(wire.encode_event(slot, self.seq, clock, kind, side, stride))

    def add_rep(self, start_clock, low_clock, end_clock, task, side, index, flags, depth):
        """One exam repetition (dsp.reps): recorded and streamed like an event."""
        slot = self._claim()
        self._commit(wire.encode_rep(slot, self.seq, start_clock, task, side, index, flags,
                                     low_clock - start_clock, end_clock - start_clock, depth))

    def send_status(self, clock, max_len):
        if max_len > SLOT_BYTES:
            max_len = SLOT_BYTES
        slot = self._claim()
        n = wire.encode_status(slot, max_len, self.seq, clock, self._status_page, self.status)
        self._status_page = (self._status_page + wire.status_pages_fitting(max_len)) % wire.N_PAGES
        self._commit(n)

    def flush(self, max_len):
        """Frame everything buffered (before stopping, or when the stream pauses)."""
        self._flush_ring(self.env, wire.ENVELOPE, max_len, 1)
        self._flush_ring(self.pel, wire.PELVIS, max_len, 1)
        self._flush_ring(self.raw, wire.RAW_EMG, max_len, 1)

    def _flush_ring(self, ring, ftype, max_len, min_samples):
        if max_len > SLOT_BYTES:
            max_len = SLOT_BYTES
        while ring.count >= min_samples and ring.count > 0:
            slot = self._claim()
            if ftype == wire.RAW_EMG:
                n = rawcodec.encode(slot, max_len, self.seq, ring.clock, ring.values, 0,
                                    ring.count, ring.n_channels)
            else:
                n = wire.encode_batch(slot, max_len, ftype, self.seq, ring.clock, ring.period,
                                      ring.values, 0, ring.count, ring.n_channels)
            if n == 0:  # not one sample fits max_len; the slot stays free
                return
            taken = slot[wire.HEADER_SIZE]
            self._commit(n)
            ring.drop_front(taken)

    # ---- outbox
    def _claim(self):
        """The slot the next frame is encoded into; evicts the oldest frame when full."""
        slots = len(self.slots)
        if self.count == slots:
            self.head = (self.head + 1) % slots
            self.count -= 1
            self.frames_dropped += 1
        self._claim_index = (self.head + self.count) % slots
        return self.slots[self._claim_index]

    def _commit(self, n):
        slot = self.slots[self._claim_index]
        self.seq = (self.seq + 1) & 0xFFFF
        if self.record is not None:
            self.record(slot, n)
        if self.live:
            self.lengths[self._claim_index] = n
            self.count += 1

    def peek(self):
        """Index of the oldest queued frame (its bytes: slots[i][:lengths[i]]), or -1 if none."""
        return self.head if self.count else -1

    def pop(self):
        self.head = (self.head + 1) % len(self.slots)
        self.count -= 1

    def clear(self):
        self.head = 0
        self.count = 0
