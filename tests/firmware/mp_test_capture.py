# EMG and IMU capture through the fake chips: order, clocks, exact loss counts, no allocation.
import array

import chip_feed
import hardware_clock
import micropython
from board import hw
from capture.emg_capture import EmgCapture
from capture.imu_capture import ImuCapture
from drivers import ads1294, icm42688

RING = 256
IMU_MAX = 128


def _no_delay(ms):
    pass


class Rig:
    """Fake chips, real drivers, both captures, and a consumer that checks every sample."""

    def __init__(self, schedule=False, mounting=None, ring=RING):
        self.clock = hardware_clock.install(schedule=schedule)
        b = hw.build()
        self.board = b
        afe = ads1294.Ads1294(b.afe_spi, b.afe_cs, b.afe_start, b.afe_reset_n, b.afe_pwdn_n,
                              delay_ms=_no_delay)
        afe.begin()
        imu = icm42688.Icm42688(b.imu_spi, b.imu_cs, delay_ms=_no_delay)
        imu.begin()
        self.mounting = mounting if mounting is not None else b.imu_to_body
        self.emg = EmgCapture(afe, b.afe_drdy, b.drdy_counter, ring_samples=ring)
        self.imu = ImuCapture(imu, self.mounting, self.emg)
        self.codes = array.array("i", bytes(4 * 4 * RING))
        self.leadoff = bytearray(RING)
        self.body = array.array("h", bytes(2 * 6 * IMU_MAX))
        self.emg_clocks = []  # (clock_first, n) runs
        self.imu_clocks = []
        self.check = True

    def start(self):
        self.emg.start()
        self.imu.start()

    def drain_emg(self):
        while True:
            n = self.emg.drain(self.codes, self.leadoff, RING)
            if n == 0:
                return
            first = self.emg.clock_first
            self.emg_clocks.append((first, n))
            if self.check:
                for i in range(n):
                    k = first + i
                    for c in range(4):
                        assert self.codes[4 * i + c] == chip_feed.pattern_code(k, c), (k, c)
                    assert self.leadoff[i] == chip_feed.pattern_leadoff(k), k

    def drain_imu(self):
        while True:
            n = self.imu.drain(self.body, IMU_MAX)
            if n == 0:
                return
            first = self.imu.clock_first
            self.imu_clocks.append((first, n))
            if self.check:
                m = self.mounting
                for i in range(n):
                    k = self.imu_index(first + 10 * i)
                    s = [chip_feed.pattern_imu(k, a) for a in range(6)]
                    for base in (0, 3):
                        for r in range(3):
                            want = sum(m[r][j] * s[base + j] for j in range(3))
                            assert self.body[6 * i + base + r] == want, (k, base + r)

    def imu_index(self, clock):
        """IMU sample index from the clock the capture gave it (clock0 is anchored +-5 ticks)."""
        return (clock - self.imu_clocks[0][0]) // 10

    def run(self, ticks, every=50):
        while ticks > 0:
            step = min(every, ticks)
            self.clock.advance(step)
            ticks -= step
            self.drain_emg()
            self.drain_imu()


def _runs_contiguous(runs, step):
    for (a, n), (b, _) in zip(runs, runs[1:]):
        if b != a + step * n:
            return False
    return True


def test_clean_run_delivers_every_sample_in_order_with_clocks():
    rig = Rig()
    rig.start()
    rig.run(5000)
    emg = rig.emg
    assert emg.delivered == 5000 and emg.lost_samples == 0
    assert emg.duplicate_irqs == 0 and emg.torn_reads == 0 and emg.bad_frames == 0
    assert rig.emg_clocks[0][0] == 0 and _runs_contiguous(rig.emg_clocks, 1)
    imu = rig.imu
    assert imu.delivered == 500 and imu.lost_samples == 0 and imu.overflows == 0
    assert _runs_contiguous(rig.imu_clocks, 10)
    # IMU stamps: within half a sample period of when the fake produced sample 0.
    assert abs(rig.imu_clocks[0][0] - rig.clock.imu.first_clock) <= 5
    assert abs(imu.skew_ticks) <= 10


def test_missed_drdy_reads_are_counted_exactly_and_clocks_stay_right():
    rig = Rig()
    rig.start()
    rig.run(300)
    dropped = 0
    for n in (1, 3, 17, 2):
        rig.clock.drop_drdy_reads(n)
        dropped += n
        rig.run(200)
    emg = rig.emg
    total = rig.board.drdy_counter.value()
    assert emg.missed == dropped and emg.overruns == 0
    assert emg.delivered + emg.lost_samples == total
    # Each gap shows as a clock jump of exactly the samples dropped there.
    jumps = [b - (a + n) for (a, n), (b, _) in zip(rig.emg_clocks, rig.emg_clocks[1:]) if b != a + n]
    assert jumps == [1, 3, 17, 2]


def test_gc_pause_queues_eight_irqs_and_counts_the_rest():
    rig = Rig()
    rig.start()
    rig.run(100)
    rig.clock.pause_irqs(20)  # a 20 ms pause: 8 soft IRQs queue, 12 are lost, all 20 frames but one
    rig.run(200)
    emg = rig.emg
    assert rig.clock.irqs_dropped == 12
    assert emg.duplicate_irqs == 7  # queued IRQs whose (newest) frame was already read
    assert emg.missed == 19
    assert emg.delivered + emg.lost_samples == rig.board.drdy_counter.value()


def test_consumer_stall_longer_than_the_ring_is_counted_as_overrun():
    rig = Rig()
    rig.start()
    rig.run(100)
    rig.clock.advance(1000)  # nobody drains for 1 s; the ring holds 256
    rig.drain_emg()
    rig.drain_imu()
    rig.run(400)
    emg = rig.emg
    assert emg.overruns == 1000 - RING
    assert emg.missed == 0
    assert emg.delivered == 1500 - emg.overruns
    jumps = [b - (a + n) for (a, n), (b, _) in zip(rig.emg_clocks, rig.emg_clocks[1:]) if b != a + n]
    assert jumps == [1000 - RING]


def test_imu_fifo_overflow_is_counted_exactly():
    rig = Rig()
    rig.start()
    rig.run(500)
    for stall_ms in (3000, 1700, 25000):  # 1.3 s, 0.4 s and 23.7 s past a full FIFO
        left = stall_ms
        while left > 0:  # EMG keeps draining; the IMU does not
            rig.clock.advance(50)
            rig.drain_emg()
            left -= 50
        rig.run(1000)
    imu = rig.imu
    fake = rig.clock.imu
    # Each stall lasts stall_ms + 50 ms (the first advance of rig.run() comes before its drain).
    assert fake.dropped == (3050 + 1750 + 25050) // 10 - 3 * icm42688.FIFO_PACKETS
    assert imu.lost_samples == fake.dropped
    assert imu.overflows == 3
    assert imu.delivered + imu.lost_samples == fake.produced
    # Values after each gap match the sample index implied by the clocks (checked in drain_imu).
    assert rig.emg.lost_samples == 0


def test_imu_rotation_uses_the_mounting_matrix():
    for m in (((1, 0, 0), (0, 1, 0), (0, 0, 1)), ((0, 1, 0), (0, 0, 1), (1, 0, 0)),
              ((0, 0, -1), (-1, 0, 0), (0, 1, 0))):
        rig = Rig(mounting=m)
        rig.start()
        rig.run(300)  # drain_imu compares every value with M @ sensor
        assert rig.imu.delivered == 30


def test_capture_read_path_allocates_nothing():
    rig = Rig()
    rig.start()
    rig.check = False
    rig.run(500)
    emg, imu, clock = rig.emg, rig.imu, rig.clock
    codes, leadoff, body = rig.codes, rig.leadoff, rig.body
    delivered = emg.delivered
    micropython.heap_lock()
    try:
        for _ in range(40):
            clock.advance(50)  # 50 DRDY IRQ handler calls, 5 IMU packets
            emg.drain(codes, leadoff, RING)
            imu.drain(body, IMU_MAX)
    finally:
        micropython.heap_unlock()
    assert emg.delivered - delivered == 2000 and emg.lost_samples == 0
    assert imu.lost_samples == 0


def test_scheduled_soft_irqs_deliver_every_sample():
    rig = Rig(schedule=True)
    rig.start()
    rig.run(2000)
    assert rig.emg.delivered == 2000 and rig.emg.lost_samples == 0
    assert rig.clock.irqs_delivered == 2000


def test_asyncio_run_flat_out_with_a_draining_task():
    import asyncio

    rig = Rig()
    rig.start()

    async def consumer(stop):
        while not stop[0]:
            rig.drain_emg()
            rig.drain_imu()
            await asyncio.sleep_ms(0)
        rig.drain_emg()
        rig.drain_imu()

    async def main():
        stop = [False]
        task = asyncio.create_task(consumer(stop))
        await rig.clock.run(speed=0, chunk_ticks=20, until_ticks=3000)
        stop[0] = True
        await task

    asyncio.run(main())
    assert rig.emg.delivered == 3000 and rig.emg.lost_samples == 0
    assert rig.imu.delivered == 300 and rig.imu.lost_samples == 0


_INV_131 = 58031  # 131 * 58031 = 1 (mod 65535): chip_feed.pattern_imu(k, axis) gives k back
_INV_131_HI = (256 * _INV_131) % 65535


def _pattern_index(x):
    """k (mod 65535) from x = 131 k (mod 65535). x * 58031 reaches 2^32, a long int per sample on a
    32-bit port (and a fragmented heap): x is split in bytes so every product stays a small int."""
    x %= 65535
    return ((x >> 8) * _INV_131_HI + (x & 0xFF) * _INV_131) % 65535


def _drift_run(ppm, seconds=60):
    """Capture with the IMU's oscillator ppm off the AFE's. Returns (stamps, chip sample index of
    each delivered sample, device clock at which the chip took each of its samples, capture)."""
    rig = Rig()
    rig.check = False  # repeated and dropped samples: the consumer's own pattern check does not apply
    rig.clock.imu.rate_error_ppm = ppm
    rig.clock.imu.sample_clocks = array.array("i")
    m = rig.mounting
    j = [c for c in range(3) if m[0][c]][0]  # body x is +-sensor axis j
    sign = m[0][j]
    rig.start()
    stamps = array.array("i")
    index = array.array("i")
    for _ in range(seconds * 20):  # 50 ms drains, as the app does
        rig.clock.advance(50)
        rig.drain_emg()
        while True:
            n = rig.imu.drain(rig.body, IMU_MAX)
            if n == 0:
                break
            first = rig.imu.clock_first
            for i in range(n):
                stamps.append(first + 10 * i)
                v = sign * rig.body[6 * i]
                index.append(_pattern_index(v + 32767 - 7 - j * 4099))
    return stamps, index, rig.clock.imu.sample_clocks, rig.imu


def _worst_stamp_error(stamps, index, taken, skip=200):
    return max(abs(stamps[i] - taken[index[i]]) for i in range(skip, len(stamps)))


def test_a_drifting_imu_oscillator_stays_on_the_device_clock():
    for ppm in (20000, -20000):  # 2 % fast and slow: 1.2 s of drift a minute with nominal stamps
        stamps, index, taken, imu = _drift_run(ppm)
        # the stream stays contiguous on the 10-tick grid, in the chip's order
        assert all(stamps[i + 1] - stamps[i] == 10 for i in range(len(stamps) - 1)), ppm
        assert all(0 <= index[i + 1] - index[i] <= 2 for i in range(len(index) - 1)), ppm
        assert imu.lost_samples == 0 and imu.overflows == 0
        # one sample dropped (fast) or repeated (slow) per 50 samples of drift, and counted
        if ppm > 0:
            assert imu.rate_dups == 0 and 100 <= imu.rate_drops <= 125, imu.rate_drops
            assert len(stamps) == len(taken) - imu.rate_drops
        else:
            assert imu.rate_drops == 0 and 100 <= imu.rate_dups <= 125, imu.rate_dups
            assert len(stamps) == len(taken) + imu.rate_dups
        # every sample stamped within 25 ticks of when the chip took it (by the end of the run,
        # nominal stamps would be 1200 ticks off)
        assert _worst_stamp_error(stamps, index, taken) <= 25, ppm


def test_a_matched_imu_oscillator_is_never_resampled():
    stamps, index, taken, imu = _drift_run(0, seconds=30)
    assert imu.rate_dups == 0 and imu.rate_drops == 0
    assert len(stamps) == len(taken)
    assert all(index[i] == i for i in range(len(index)))
    assert _worst_stamp_error(stamps, index, taken, skip=0) <= 5  # the anchor's +-5 ticks


def test_repeating_and_dropping_imu_samples_allocates_nothing():
    for ppm in (20000, -20000):
        rig = Rig()
        rig.clock.imu.rate_error_ppm = ppm
        rig.start()
        rig.check = False
        rig.run(2000)  # anchored, drift measured
        before = rig.imu.rate_dups + rig.imu.rate_drops
        for _ in range(200):  # 10 s of 50 ms drains with the heap locked
            rig.clock.advance(50)
            rig.drain_emg()
            micropython.heap_lock()
            try:
                while rig.imu.drain(rig.body, IMU_MAX):
                    pass
            finally:
                micropython.heap_unlock()
        assert rig.imu.rate_dups + rig.imu.rate_drops >= before + 15, ppm
