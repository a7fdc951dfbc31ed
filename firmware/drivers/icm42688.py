# TDK ICM-42688-P driver (SPI, 4-wire): accel +-8 g, gyro +-1000 dps, 100 Hz, FIFO packets of 16 bytes.
#
# Register-level only: the SPI bus and chip-select are passed in. The FIFO runs in STOP-on-FULL
# mode with 16-bit timestamps in 16 us units, so after an overflow the FIFO still holds an unbroken
# run of packets and the gap to the next packet shows in the timestamps (capture/imu_capture.py
# turns that into an exact lost-sample count).
import time

import micropython
from micropython import const

# Bank 0 registers.
REG_DEVICE_CONFIG = const(0x11)
REG_INT_CONFIG = const(0x14)
REG_FIFO_CONFIG = const(0x16)
REG_INT_STATUS = const(0x2D)
REG_FIFO_COUNTH = const(0x2E)
REG_FIFO_DATA = const(0x30)
REG_SIGNAL_PATH_RESET = const(0x4B)
REG_INTF_CONFIG0 = const(0x4C)
REG_PWR_MGMT0 = const(0x4E)
REG_GYRO_CONFIG0 = const(0x4F)
REG_ACCEL_CONFIG0 = const(0x50)
REG_TMST_CONFIG = const(0x54)
REG_FIFO_CONFIG1 = const(0x5F)
REG_FIFO_CONFIG2 = const(0x60)
REG_FIFO_CONFIG3 = const(0x61)
REG_INT_SOURCE0 = const(0x65)
REG_WHO_AM_I = const(0x75)
REG_BANK_SEL = const(0x76)

WHO_AM_I_VALUE = const(0x47)
_READ = const(0x80)

# Configuration values.
SOFT_RESET = const(0x01)
INT1_PUSH_PULL_HIGH = const(0x03)  # INT1 pulsed, push-pull, active high
FIFO_STOP_ON_FULL = const(0x80)  # FIFO_MODE=10: keep the oldest run when full, drop new packets
FIFO_BYPASS = const(0x00)
FIFO_FLUSH = const(0x02)  # SIGNAL_PATH_RESET.FIFO_FLUSH
INTF_SPI_BE_BYTES = const(0x33)  # count in bytes, big-endian count and data, I2C disabled (SPI only)
PWR_ACCEL_GYRO_LN = const(0x0F)  # gyro and accel in low-noise mode
GYRO_1000DPS_100HZ = const(0x28)  # GYRO_FS_SEL=001 (+-1000 dps), GYRO_ODR=1000 (100 Hz)
ACCEL_8G_100HZ = const(0x28)  # ACCEL_FS_SEL=001 (+-8 g), ACCEL_ODR=1000 (100 Hz)
TMST_EN_16US = const(0x09)  # TMST_RES=1 (16 us), TMST_EN=1, delta and FSYNC off
FIFO_ACC_GYRO_TEMP_TMST = const(0x0F)  # packet 3: accel + gyro + temp + timestamp (16 bytes)
INT1_FIFO_THS = const(0x04)  # INT_SOURCE0.FIFO_THS_INT1_EN

INT_STATUS_FIFO_FULL = const(0x02)
INT_STATUS_FIFO_THS = const(0x04)

PACKET_BYTES = const(16)
FIFO_BYTES = const(2048)
FIFO_PACKETS = const(128)
HEADER_EMPTY = const(0x80)  # HEADER_MSG: FIFO empty, no data
HEADER_ACC_GYRO = const(0x60)  # accel and gyro present (packet 3 without the 20-bit flag)
TS_PER_SAMPLE_100HZ = const(625)  # 10 ms in 16 us timestamp units
TS_WRAP = const(0x10000)


class ImuError(Exception):
    """The IMU did not answer as an ICM-42688-P."""


class Icm42688:
    """ICM-42688-P on SPI (mode 0 or 3); cs is a Pin, active low."""

    def __init__(self, spi, cs, delay_ms=time.sleep_ms, watermark_packets=5):
        self.spi = spi
        self.cs = cs
        self._delay_ms = delay_ms
        self.watermark_packets = watermark_packets
        self._addr = bytearray(1)
        self._one = bytearray(1)
        self._two = bytearray(2)
        self._status_tx = bytearray(4)  # INT_STATUS | READ, then 3 clock-out bytes
        self._status_rx = bytearray(4)
        self._status_tx[0] = REG_INT_STATUS | _READ
        cs.value(1)

    # --- bus primitives ------------------------------------------------------------------------
    def read_into(self, reg, buf):
        """Burst read starting at reg (auto-increment; FIFO_DATA pops instead)."""
        self._addr[0] = reg | _READ
        self.cs.value(0)
        self.spi.write(self._addr)
        self.spi.readinto(buf, 0)
        self.cs.value(1)
        return buf

    def read_reg(self, reg):
        return self.read_into(reg, self._one)[0]

    def write_reg(self, reg, value):
        self._two[0] = reg
        self._two[1] = value
        self.cs.value(0)
        self.spi.write(self._two)
        self.cs.value(1)

    # --- bring-up --------------------------------------------------------------------------------
    def begin(self):
        self.write_reg(REG_BANK_SEL, 0)
        self.write_reg(REG_DEVICE_CONFIG, SOFT_RESET)
        self._delay_ms(2)  # soft reset takes 1 ms
        who = self.read_reg(REG_WHO_AM_I)
        if who != WHO_AM_I_VALUE:
            raise ImuError("IMU WHO_AM_I 0x%02x, expected 0x%02x (ICM-42688-P): check SPI wiring "
                           "and chip select" % (who, WHO_AM_I_VALUE))
        self.write_reg(REG_INTF_CONFIG0, INTF_SPI_BE_BYTES)
        self.write_reg(REG_INT_CONFIG, INT1_PUSH_PULL_HIGH)
        self.write_reg(REG_GYRO_CONFIG0, GYRO_1000DPS_100HZ)
        self.write_reg(REG_ACCEL_CONFIG0, ACCEL_8G_100HZ)
        tmst = self.read_reg(REG_TMST_CONFIG)
        self.write_reg(REG_TMST_CONFIG, (tmst & 0xE0) | TMST_EN_16US)  # keep reserved bits
        self.write_reg(REG_FIFO_CONFIG1, FIFO_ACC_GYRO_TEMP_TMST)
        wm = self.watermark_packets * PACKET_BYTES
        self.write_reg(REG_FIFO_CONFIG2, wm & 0xFF)
        self.write_reg(REG_FIFO_CONFIG3, (wm >> 8) & 0x0F)
        self.write_reg(REG_INT_SOURCE0, INT1_FIFO_THS)
        got_g = self.read_reg(REG_GYRO_CONFIG0)
        got_a = self.read_reg(REG_ACCEL_CONFIG0)
        if got_g != GYRO_1000DPS_100HZ or got_a != ACCEL_8G_100HZ:
            raise ImuError("IMU register read-back mismatch: GYRO_CONFIG0 0x%02x ACCEL_CONFIG0 0x%02x"
                           % (got_g, got_a))

    def start(self):
        """Sensors on, FIFO flushed and in STOP-on-FULL mode: packets arrive at 100 Hz."""
        self.write_reg(REG_FIFO_CONFIG, FIFO_STOP_ON_FULL)
        self.write_reg(REG_PWR_MGMT0, PWR_ACCEL_GYRO_LN)
        self._delay_ms(1)  # no register writes for 200 us after a power-mode change
        self.flush()
        self.read_reg(REG_INT_STATUS)  # clear stale flags

    def stop(self):
        self.write_reg(REG_PWR_MGMT0, 0)
        self.write_reg(REG_FIFO_CONFIG, FIFO_BYPASS)

    def flush(self):
        self.write_reg(REG_SIGNAL_PATH_RESET, FIFO_FLUSH)

    # --- FIFO ------------------------------------------------------------------------------------
    # fifo_status() and the fifo_* reads run every drain (every 50 ms): native, and each bus
    # transaction written out rather than through read_reg/read_into, which saves Python calls.
    def int_status(self):
        """INT_STATUS (clears on read): FIFO_FULL tells the FIFO reached 2 KB since the last read."""
        return self.read_reg(REG_INT_STATUS)

    def fifo_bytes(self):
        two = self.read_into(REG_FIFO_COUNTH, self._two)
        return (two[0] << 8) | two[1]

    @micropython.native
    def fifo_status(self):
        """INT_STATUS (clears on read) and the FIFO byte count in one 4-byte transfer: the
        registers are neighbours (0x2D, 0x2E, 0x2F) and burst reads auto-increment. Returns
        count << 8 | status. One bus transaction instead of two per drain."""
        rx = self._status_rx
        cs = self.cs
        cs.value(0)
        self.spi.write_readinto(self._status_tx, rx)
        cs.value(1)
        return (rx[2] << 16) | (rx[3] << 8) | rx[1]

    @micropython.native
    def fifo_begin(self):
        """Start a FIFO_DATA burst; follow with fifo_read_packet() calls, then fifo_end()."""
        self._addr[0] = REG_FIFO_DATA | _READ
        self.cs.value(0)
        self.spi.write(self._addr)

    @micropython.native
    def fifo_read_packet(self, packet):
        self.spi.readinto(packet, 0)

    @micropython.native
    def fifo_end(self):
        self.cs.value(1)
