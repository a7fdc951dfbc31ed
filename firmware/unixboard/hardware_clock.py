# Virtual time for the unix board: one tick = 1 ms = one ADS1294R conversion.
#
# advance(ticks) runs the chips: per tick the fake AFE converts (new frame, DRDY pulse: the
# Counter counts it and the Pin.irq handler is delivered), the fake IMU may add a FIFO packet, and
# the soft Timers move on. DRDY IRQs are delivered like the ESP32's soft IRQs: by a direct call
# (default, deterministic) or through micropython.schedule (schedule=True), and tests can make them
# misbehave:
#   drop_drdy_reads(n)  - the next n DRDY edges never reach the handler (the counter still counts),
#   pause_irqs(ticks)   - a GC pause: for the next `ticks` edges the IRQs queue (8 deep, as on the
#                         ESP32; more are lost) and run back to back when the pause ends,
#   stall consumption   - simply advance without draining; the IMU FIFO overflows after 128 samples.
# run(speed) is an asyncio task advancing virtual time at `speed` x real time (speed=0: as fast as
# the consumer tasks drain, one chunk per scheduling round).
#
# install(feed_path=None) builds the fake chips on the board.pins wiring and returns the clock.
import sys
import time

import machine
import micropython

# asyncio is frozen into the unix port; a MICROPYPATH without ".frozen" hides it.
if ".frozen" not in sys.path:
    sys.path.append(".frozen")
import asyncio  # noqa: E402

_SCHED_DEPTH = 8  # MICROPY_SCHEDULER_DEPTH on the ESP32 port


class HardwareClock:
    def __init__(self, afe, imu=None, drdy_gpio=None, schedule=False):
        self.afe = afe
        self.imu = imu
        self.ticks = 0  # virtual milliseconds since the clock was made
        self.schedule = schedule
        self.irqs_delivered = 0
        self.irqs_dropped = 0
        self._drop = 0
        self._pause = 0
        self._queued = 0
        self._st = afe._drdy if drdy_gpio is None else machine.board_pin(drdy_gpio)
        self._st.sink = self._deliver
        self.finished = False

    # --- test hooks ---------------------------------------------------------------------------------
    def drop_drdy_reads(self, n):
        self._drop += n

    def pause_irqs(self, ticks):
        self._pause = ticks

    # --- IRQ delivery --------------------------------------------------------------------------------
    def _deliver(self, st):
        if self._drop > 0:
            self._drop -= 1
            self.irqs_dropped += 1
            return
        if self._pause > 0:
            if self._queued < _SCHED_DEPTH:
                self._queued += 1
            else:
                self.irqs_dropped += 1
            return
        if self.schedule:
            try:
                micropython.schedule(st.handler, st.irq_pin)
            except RuntimeError:  # the scheduler queue is full: the ESP32 drops the IRQ too
                self.irqs_dropped += 1
                return
        else:
            st.handler(st.irq_pin)
        self.irqs_delivered += 1

    def _release(self):
        st = self._st
        q = self._queued
        self._queued = 0
        while q > 0 and st.handler is not None:
            st.handler(st.irq_pin)
            self.irqs_delivered += 1
            q -= 1

    # --- time -----------------------------------------------------------------------------------------
    def advance(self, ticks):
        """Run the chips for `ticks` ms of virtual time; returns the number of DRDY edges."""
        afe = self.afe
        imu = self.imu
        edges = 0
        for _ in range(ticks):
            if afe.convert():
                edges += 1
            elif afe.exhausted:
                self.finished = True
            if imu is not None:
                # The IMU sample is stamped (for tests) with the device clock: DRDY count - 1.
                cs = self._st.counters
                imu.tick(cs[0].value() - 1 if cs else afe.samples_converted - 1)
            machine.board_advance_ms(1)
            self.ticks += 1
            if self._pause > 0:
                self._pause -= 1
                if self._pause == 0:
                    self._release()
        return edges

    async def run(self, speed=1.0, chunk_ticks=10, until_ticks=-1):
        """Advance virtual time until the feed ends (or until_ticks): speed x real time, 0 = flat out."""
        t0 = time.ticks_ms()
        start = self.ticks
        while not self.finished and (until_ticks < 0 or self.ticks - start < until_ticks):
            if speed > 0:
                due = int(time.ticks_diff(time.ticks_ms(), t0) * speed) - (self.ticks - start)
                if due <= 0:
                    await asyncio.sleep_ms(1)
                    continue
                self.advance(min(due, chunk_ticks))
            else:
                self.advance(chunk_ticks)
            await asyncio.sleep_ms(0)


def install(feed_path=None, schedule=False, block_samples=256):
    """Fake ADS1294R and ICM-42688-P wired as board.pins says; returns the HardwareClock.

    The clock's .afe and .imu are the fake chips, .feed the ChipFeed behind them.
    """
    from board import pins
    from chip_feed import ChipFeed
    from fake_ads1294 import FakeAds1294
    from fake_icm42688 import FakeIcm42688

    feed = ChipFeed(feed_path, block_samples)
    afe = FakeAds1294(feed, pins.AFE_DRDY, pins.AFE_START, pins.AFE_RESET_N, pins.AFE_PWDN_N)
    imu = FakeIcm42688(feed, pins.IMU_INT1)
    machine.board_attach_spi(pins.AFE_SPI_ID, pins.AFE_CS, afe)
    machine.board_attach_spi(pins.IMU_SPI_ID, pins.IMU_CS, imu)
    clock = HardwareClock(afe, imu, schedule=schedule)
    clock.feed = feed
    return clock
