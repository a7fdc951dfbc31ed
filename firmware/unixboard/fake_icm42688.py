# A fake TDK ICM-42688-P on the unix board's SPI (or I2C) bus, good enough for the real driver.
#
# Emulated: bank-0 registers with reset values (WHO_AM_I 0x47), soft reset (DEVICE_CONFIG), SPI
# framing (bit 7 of the first byte = read, auto-increment except FIFO_DATA which pops), SPI modes 0
# and 3, PWR_MGMT0, GYRO/ACCEL_CONFIG0 output data rates (1 kHz down to 25 Hz, in 1 ms ticks),
# TMST_CONFIG (16 us or 1 us timestamps), FIFO_CONFIG modes (bypass, stream: drop oldest,
# STOP-on-FULL: drop newest), FIFO_CONFIG1 packet 3 (16 bytes: header 0x68, accel, gyro, temp,
# 16-bit timestamp), FIFO_COUNTH/L (bytes or records, big- or little-endian per INTF_CONFIG0),
# FIFO flush (SIGNAL_PATH_RESET), INT_STATUS (FIFO_FULL, FIFO_THS, DATA_RDY; clear on read), and
# INT1 driven high while the FIFO is at or above the watermark when INT_SOURCE0 asks for it.
# Not emulated: other packet formats (packets are written only when accel and gyro both go to the
# FIFO), APEX features, register banks 1-4, the 20-bit mode.
import machine

NAME = "ICM-42688-P"
REG_DEVICE_CONFIG = 0x11
REG_FIFO_CONFIG = 0x16
REG_INT_STATUS = 0x2D
REG_FIFO_COUNTH = 0x2E
REG_FIFO_COUNTL = 0x2F
REG_FIFO_DATA = 0x30
REG_SIGNAL_PATH_RESET = 0x4B
REG_INTF_CONFIG0 = 0x4C
REG_PWR_MGMT0 = 0x4E
REG_GYRO_CONFIG0 = 0x4F
REG_ACCEL_CONFIG0 = 0x50
REG_TMST_CONFIG = 0x54
REG_FIFO_CONFIG1 = 0x5F
REG_FIFO_CONFIG2 = 0x60
REG_FIFO_CONFIG3 = 0x61
REG_INT_SOURCE0 = 0x65
REG_WHO_AM_I = 0x75

FIFO_BYTES = 2048
PACKET_BYTES = 16
INT_FIFO_FULL = 0x02
INT_FIFO_THS = 0x04
INT_DATA_RDY = 0x08
# ODR code -> period in 1 ms ticks (0 = faster than the 1 kHz tick: not modelled).
_ODR_TICKS = {0x06: 1, 0x0F: 2, 0x07: 5, 0x08: 10, 0x09: 20, 0x0A: 40}


def _reset_values():
    r = bytearray(128)
    r[REG_INTF_CONFIG0] = 0x30
    r[REG_GYRO_CONFIG0] = 0x06
    r[REG_ACCEL_CONFIG0] = 0x06
    r[REG_TMST_CONFIG] = 0x23
    r[REG_FIFO_CONFIG2] = 0x00
    r[REG_FIFO_CONFIG3] = 0x00
    r[REG_INT_SOURCE0] = 0x10
    r[REG_WHO_AM_I] = 0x47
    return r


class FakeIcm42688:
    NAME = NAME

    def __init__(self, feed, int1_gpio=None, ts_start=54321):
        self.feed = feed
        self.regs = _reset_values()
        self._int1 = machine.board_pin(int1_gpio) if int1_gpio is not None else None
        self.fifo = bytearray(FIFO_BYTES)
        self._rd = 0
        self.fifo_len = 0
        self._packet = bytearray(PACKET_BYTES)
        self._ts_start = ts_start
        self._count_latch = 0
        self.produced = 0  # samples the sensor produced since the first power-on (feed index)
        self.dropped = 0  # samples lost to a full FIFO
        self.first_clock = -1  # device clock at which sample 0 was produced
        # The IMU's own oscillator against the AFE's (the device clock): > 0 runs fast, i.e. more
        # samples per device second. Percent-level on real parts over temperature. The feed's
        # samples are still taken one after the other (the motion plays at the IMU's rate), which
        # is right for timing tests, not for a physical model of the walk.
        self.rate_error_ppm = 0
        self._phase = 0  # ppm-weighted ticks since the last sample
        self.sample_clocks = None  # a list to record each sample's device clock (tests)
        self.exhausted = False
        self._in_txn = False
        self._addr = 0
        self._read = False

    # --- sample production (called by the hardware clock once per 1 ms tick) ---------------------
    def _period(self):
        g = self.regs[REG_GYRO_CONFIG0] & 0x0F
        return _ODR_TICKS.get(g, 0)

    def tick(self, clock):
        r = self.regs
        if (r[REG_PWR_MGMT0] & 0x0F) != 0x0F or self.exhausted:
            self._phase = 0
            return
        period = self._period()
        if period == 0:
            return
        # sample when the IMU's own clock has run one period: period * 1e6 ppm-weighted ticks
        self._phase += 1_000_000 + self.rate_error_ppm
        if self._phase < period * 1_000_000:
            return
        self._phase -= period * 1_000_000
        k = self.produced
        pkt = self._packet
        if not self.feed.imu_into(k, pkt, 1):
            self.exhausted = True
            return
        if self.first_clock < 0:
            self.first_clock = clock
        if self.sample_clocks is not None:
            self.sample_clocks.append(clock)
        self.produced = k + 1
        r[REG_INT_STATUS] |= INT_DATA_RDY
        mode = r[REG_FIFO_CONFIG] >> 6
        if mode == 0 or (r[REG_FIFO_CONFIG1] & 0x03) != 0x03:
            return
        pkt[0] = 0x68  # accel + gyro + ODR timestamp
        pkt[13] = 25  # temperature byte (about 25 degC + offset; not used)
        per_ts = 625 if r[REG_TMST_CONFIG] & 0x08 else 10000
        ts = (self._ts_start + k * per_ts * period // 10) & 0xFFFF
        pkt[14] = ts >> 8
        pkt[15] = ts & 0xFF
        if self.fifo_len + PACKET_BYTES > FIFO_BYTES:
            if mode == 1:  # stream: the oldest packet makes room
                self._rd = (self._rd + PACKET_BYTES) % FIFO_BYTES
                self.fifo_len -= PACKET_BYTES
                self.dropped += 1
            else:  # STOP-on-FULL: the new packet is lost
                self.dropped += 1
                r[REG_INT_STATUS] |= INT_FIFO_FULL
                return
        w = (self._rd + self.fifo_len) % FIFO_BYTES
        fifo = self.fifo
        for i in range(PACKET_BYTES):
            fifo[w] = pkt[i]
            w += 1
            if w == FIFO_BYTES:
                w = 0
        self.fifo_len += PACKET_BYTES
        if self.fifo_len + PACKET_BYTES > FIFO_BYTES:
            r[REG_INT_STATUS] |= INT_FIFO_FULL
        self._update_int1()

    def _watermark(self):
        return self.regs[REG_FIFO_CONFIG2] | ((self.regs[REG_FIFO_CONFIG3] & 0x0F) << 8)

    def _update_int1(self):
        wm = self._watermark()
        ths = wm > 0 and self.fifo_len >= wm
        if ths:
            self.regs[REG_INT_STATUS] |= INT_FIFO_THS
        if self._int1 is not None:
            self._int1.set(1 if ths and self.regs[REG_INT_SOURCE0] & INT_FIFO_THS else 0)

    def flush(self):
        self._rd = 0
        self.fifo_len = 0
        self._update_int1()

    # --- register access (shared by SPI and I2C) --------------------------------------------------
    def _read_reg(self, a):
        r = self.regs
        if a == REG_FIFO_DATA:
            if self.fifo_len == 0:
                return 0xFF
            b = self.fifo[self._rd]
            self._rd += 1
            if self._rd == FIFO_BYTES:
                self._rd = 0
            self.fifo_len -= 1
            return b
        if a == REG_INT_STATUS:
            v = r[a]
            r[a] = 0
            return v
        if a == REG_FIFO_COUNTH or a == REG_FIFO_COUNTL:
            if a == REG_FIFO_COUNTH:
                n = self.fifo_len
                if r[REG_INTF_CONFIG0] & 0x40:
                    n //= PACKET_BYTES
                self._count_latch = n
            n = self._count_latch
            hi = (n >> 8) & 0xFF
            lo = n & 0xFF
            be = r[REG_INTF_CONFIG0] & 0x20
            if a == REG_FIFO_COUNTH:
                return hi if be else lo
            return lo if be else hi
        return r[a]

    def _write_reg(self, a, v):
        if a == REG_WHO_AM_I or a == REG_INT_STATUS:
            return
        if a == REG_DEVICE_CONFIG and v & 0x01:
            self.regs[:] = _reset_values()
            self.flush()
            self._phase = 0
            return
        if a == REG_SIGNAL_PATH_RESET:
            if v & 0x02:
                self.flush()
            return
        self.regs[a] = v
        if a == REG_PWR_MGMT0 and (v & 0x0F) != 0x0F:
            self._phase = 0

    def _next_addr(self, a):
        return a if a == REG_FIFO_DATA else (a + 1) & 0x7F

    # --- SPI ---------------------------------------------------------------------------------------
    def spi_mode_ok(self, mode):
        return mode == 0 or mode == 3

    def spi_select(self, level):
        if level == 0:
            self._in_txn = False
        elif self._in_txn:
            self._in_txn = False
            self._update_int1()

    def spi_transfer(self, wbuf, rbuf, fill):
        n = len(wbuf) if wbuf is not None else len(rbuf)
        i = 0
        if not self._in_txn:
            first = wbuf[0] if wbuf is not None else fill
            self._read = bool(first & 0x80)
            self._addr = first & 0x7F
            self._in_txn = True
            if rbuf is not None:
                rbuf[0] = 0
            i = 1
        a = self._addr
        if self._read:
            if a == REG_FIFO_DATA and rbuf is not None and self.fifo_len >= n - i:
                fifo = self.fifo
                rd = self._rd
                self.fifo_len -= n - i
                while i < n:  # FIFO burst: pop bytes
                    rbuf[i] = fifo[rd]
                    rd += 1
                    if rd == FIFO_BYTES:
                        rd = 0
                    i += 1
                self._rd = rd
                return
            while i < n:
                v = self._read_reg(a)
                if rbuf is not None:
                    rbuf[i] = v
                a = self._next_addr(a)
                i += 1
        else:
            while i < n:
                self._write_reg(a, wbuf[i] if wbuf is not None else fill)
                if rbuf is not None:
                    rbuf[i] = 0
                a = (a + 1) & 0x7F
                i += 1
        self._addr = a

    # --- I2C ---------------------------------------------------------------------------------------
    def i2c_read(self, reg, buf):
        a = reg & 0x7F
        for i in range(len(buf)):
            buf[i] = self._read_reg(a)
            a = self._next_addr(a)
        self._update_int1()

    def i2c_write(self, reg, buf):
        a = reg & 0x7F
        for i in range(len(buf)):
            self._write_reg(a, buf[i])
            a = (a + 1) & 0x7F
