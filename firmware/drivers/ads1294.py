# TI ADS1294R driver: 4-channel 24-bit biopotential AFE, configured for sEMG at 1 kSPS, gain 12.
#
# Register-level only: the SPI bus and the control pins are passed in (board/hw.py builds them).
# Capture (DRDY interrupt, ring buffer) lives in capture/emg_capture.py; this module only knows the
# chip: opcodes, registers, the power-up sequence and the 15-byte RDATAC frame layout.
import time

from micropython import const

# Opcodes (datasheet "SPI Command Definitions").
_WAKEUP = const(0x02)
_STANDBY = const(0x04)
_RESET = const(0x06)
_START = const(0x08)
_STOP = const(0x0A)
_RDATAC = const(0x10)
_SDATAC = const(0x11)
_RREG = const(0x20)
_WREG = const(0x40)

# Register addresses.
REG_ID = const(0x00)
REG_CONFIG1 = const(0x01)
REG_CONFIG2 = const(0x02)
REG_CONFIG3 = const(0x03)
REG_LOFF = const(0x04)
REG_CH1SET = const(0x05)  # CH1SET..CH4SET = 0x05..0x08 on the 4-channel part
REG_RLD_SENSP = const(0x0D)
REG_RLD_SENSN = const(0x0E)
REG_LOFF_SENSP = const(0x0F)
REG_LOFF_SENSN = const(0x10)
REG_LOFF_FLIP = const(0x11)
REG_LOFF_STATP = const(0x12)
REG_LOFF_STATN = const(0x13)
REG_GPIO = const(0x14)
REG_CONFIG4 = const(0x17)
REG_WCT1 = const(0x18)
REG_WCT2 = const(0x19)
N_REGS = const(0x1A)

# ID register: bits 7:5 family (100 = ADS129x, 110 = ADS129xR), bits 4:3 = 10 (fixed),
# bits 2:0 channels (000 = 4). ADS1294R reads 0xD0, ADS1294 0x90.
ID_ADS1294R = const(0xD0)
ID_ADS1294 = const(0x90)

# Our configuration (one value per register, reasons beside each).
CONFIG1_HR_1KSPS = const(0x85)  # HR=1 (high-resolution mode), DAISY_EN'=0, CLK_EN=0, DR=101 -> 1 kSPS
CONFIG2_NO_TEST = const(0x00)  # no internal test signal
CONFIG3_REF_RLD = const(0xCC)  # PD_REFBUF'=1 (internal 2.4 V ref), bit6 reserved 1, VREF_4V=0,
#                                RLDREF_INT=1 (mid-supply), PD_RLD'=1 (right-leg drive on)
LOFF_DC_6NA = const(0x03)  # COMP_TH 95 %, current source, 6 nA, FLEAD_OFF=11 (DC lead-off)
CHSET_GAIN12 = const(0x60)  # PD=0, GAIN=110 (x12), MUX=000 (normal electrode input)
CHANNELS_1_TO_4 = const(0x0F)  # RLD derivation and lead-off sensing on IN1..IN4, P and N
CONFIG4_LOFF_COMP = const(0x02)  # continuous conversion, PD_LOFF_COMP'=1 (comparators on)

FRAME_BYTES = const(15)  # 24-bit status + 4 x 24-bit channel codes, one RDATAC read per DRDY
N_CHANNELS = const(4)
# Power-up: wait for the oscillator and supplies (tPOR = 2^18 tCLK = 128 ms at 2.048 MHz).
_POWER_UP_MS = const(150)


class AfeError(Exception):
    """The AFE did not answer as an ADS1294R (wrong ID, bus or wiring problem)."""


def leadoff_mask(frame):
    """Bit c set = channel c has an electrode off (P or N comparator), from an RDATAC frame."""
    statp = ((frame[0] & 0x0F) << 4) | (frame[1] >> 4)
    statn = ((frame[1] & 0x0F) << 4) | (frame[2] >> 4)
    return (statp | statn) & 0x0F


def frame_code(frame, channel):
    """Signed 24-bit code of one channel (0..3) in an RDATAC frame."""
    i = 3 + 3 * channel
    v = (frame[i] << 16) | (frame[i + 1] << 8) | frame[i + 2]
    if v & 0x800000:
        v -= 0x1000000
    return v


class Ads1294:
    """ADS1294R on an SPI bus in mode 1 (CPOL 0, CPHA 1), chip-select driven here.

    spi: machine.SPI; cs: Pin (active low); start/reset_n/pwdn_n: Pins or None when tied off.
    delay_ms: injected so tests can skip the power-up wait.
    """

    def __init__(self, spi, cs, start=None, reset_n=None, pwdn_n=None, delay_ms=time.sleep_ms):
        self.spi = spi
        self.cs = cs
        self._start_pin = start
        self._reset_pin = reset_n
        self._pwdn_pin = pwdn_n
        self._delay_ms = delay_ms
        self._cmd = bytearray(1)
        self._hdr = bytearray(2)
        self.device_id = 0
        cs.value(1)

    # --- bus primitives ------------------------------------------------------------------------
    def command(self, opcode):
        self._cmd[0] = opcode
        self.cs.value(0)
        self.spi.write(self._cmd)
        self.cs.value(1)

    def read_regs(self, addr, buf):
        """Read len(buf) registers starting at addr (SDATAC mode only)."""
        self._hdr[0] = _RREG | addr
        self._hdr[1] = len(buf) - 1
        self.cs.value(0)
        self.spi.write(self._hdr)
        self.spi.readinto(buf, 0)
        self.cs.value(1)
        return buf

    def write_regs(self, addr, data):
        self._hdr[0] = _WREG | addr
        self._hdr[1] = len(data) - 1
        self.cs.value(0)
        self.spi.write(self._hdr)
        self.spi.write(data)
        self.cs.value(1)

    def read_reg(self, addr):
        return self.read_regs(addr, bytearray(1))[0]

    def write_reg(self, addr, value):
        self.write_regs(addr, bytes((value,)))

    # --- bring-up --------------------------------------------------------------------------------
    def power_up(self):
        """PWDN high, RESET pulse, SDATAC so registers can be read; returns the ID register."""
        if self._start_pin is not None:
            self._start_pin.value(0)
        if self._pwdn_pin is not None:
            self._pwdn_pin.value(1)
        if self._reset_pin is not None:
            self._reset_pin.value(1)
        self._delay_ms(_POWER_UP_MS)
        if self._reset_pin is not None:
            self._reset_pin.value(0)
            self._delay_ms(1)
            self._reset_pin.value(1)
        else:
            self.command(_RESET)
        self._delay_ms(1)
        self.command(_SDATAC)  # the chip wakes up in RDATAC mode
        self.device_id = self.read_reg(REG_ID)
        if self.device_id != ID_ADS1294R:
            raise AfeError("AFE ID 0x%02x, expected 0x%02x (ADS1294R): check SPI wiring, mode 1, "
                           "PWDN/RESET levels" % (self.device_id, ID_ADS1294R))
        return self.device_id

    def configure(self):
        """Write the sEMG configuration (1 kSPS HR, gain 12, internal ref, RLD, DC lead-off)."""
        self.command(_SDATAC)
        self.write_regs(REG_CONFIG1, bytes((CONFIG1_HR_1KSPS, CONFIG2_NO_TEST, CONFIG3_REF_RLD,
                                            LOFF_DC_6NA)))
        self.write_regs(REG_CH1SET, bytes((CHSET_GAIN12,) * N_CHANNELS))
        self.write_regs(REG_RLD_SENSP, bytes((CHANNELS_1_TO_4, CHANNELS_1_TO_4, CHANNELS_1_TO_4,
                                              CHANNELS_1_TO_4, 0x00)))
        self.write_regs(REG_CONFIG4, bytes((CONFIG4_LOFF_COMP, 0x00, 0x00)))
        # Read back: a bus fault shows here, not later as silent garbage.
        got = self.read_regs(REG_CONFIG1, bytearray(4))
        if got[0] != CONFIG1_HR_1KSPS or got[2] != CONFIG3_REF_RLD:
            raise AfeError("AFE register read-back mismatch: CONFIG1 0x%02x CONFIG3 0x%02x"
                           % (got[0], got[2]))

    def begin(self):
        self.power_up()
        self.configure()

    # --- conversions ----------------------------------------------------------------------------
    def start_continuous(self):
        """Enter RDATAC and start converting: DRDY then falls once per sample (1 kHz)."""
        self.command(_RDATAC)
        if self._start_pin is not None:
            self._start_pin.value(1)
        else:
            self.command(_START)

    def stop(self):
        if self._start_pin is not None:
            self._start_pin.value(0)
        else:
            self.command(_STOP)
        self.command(_SDATAC)

    def read_frame_into(self, frame):
        """One RDATAC read (15 bytes) into a preallocated buffer; no allocation."""
        self.cs.value(0)
        self.spi.readinto(frame, 0)
        self.cs.value(1)

    def standby(self):
        self.command(_STANDBY)

    def wakeup(self):
        self.command(_WAKEUP)
