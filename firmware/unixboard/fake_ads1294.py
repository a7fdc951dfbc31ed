# A fake TI ADS1294R behind the unix board's SPI bus, good enough for the real driver to run unchanged.
#
# Emulated: the register map with reset values (ID 0xD0, read-only ID and LOFF_STATP/N), the
# opcodes WAKEUP/STANDBY/RESET/START/STOP/RDATAC/SDATAC/RDATA/RREG/WREG byte by byte (a CS rising
# edge aborts a half-sent command, as on the chip), RREG/WREG ignored in RDATAC mode (the chip
# requires SDATAC first), SPI mode 1 only, the START/RESET/PWDN pins, and one 15-byte RDATAC frame per
# conversion: DRDY falls once per sample (a pulse on the DRDY GPIO: counters and Pin.irq see it).
# Not emulated: data rates other than 1 kSPS (rate_ok() says whether CONFIG1 asks for it), test
# signals, lead-off current physics (the lead-off bits come from the feed).
import machine

NAME = "ADS1294R"
_RESET_VALUES = bytes((0xD0, 0x06, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                       0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0F, 0x00, 0x00, 0x00, 0x00, 0x00))
_READ_ONLY = (0x00, 0x12, 0x13)
_FRAME = 15
_IDLE = 0
_RREG_COUNT = 1
_RREG_DATA = 2
_WREG_COUNT = 3
_WREG_DATA = 4


class FakeAds1294:
    NAME = NAME

    def __init__(self, feed, drdy_gpio, start_gpio=None, reset_gpio=None, pwdn_gpio=None):
        self.feed = feed
        self.regs = bytearray(_RESET_VALUES)
        self.frame = bytearray(_FRAME)
        self._drdy = machine.board_pin(drdy_gpio)
        self._drdy.level = 1
        self._start_pin = machine.board_pin(start_gpio) if start_gpio is not None else None
        self._reset_pin = machine.board_pin(reset_gpio) if reset_gpio is not None else None
        self._pwdn_pin = machine.board_pin(pwdn_gpio) if pwdn_gpio is not None else None
        if self._reset_pin is not None:
            self._reset_pin.listeners.append(self._on_reset_pin)
        self.rdatac = True  # the chip powers up in RDATAC mode
        self.start_cmd = False
        self.standby = False
        self.samples_converted = 0
        self.exhausted = False
        self.commands = []  # opcodes seen (not RREG/WREG), for tests
        self.ignored = 0  # RREG/WREG sent in RDATAC mode
        self._phase = _IDLE
        self._addr = 0
        self._left = 0
        self._rdata = False
        self._pos = _FRAME  # read position in the current frame; _FRAME = nothing new to read

    # --- pins ------------------------------------------------------------------------------------
    def _on_reset_pin(self, level):
        if level == 0:
            self._reset()

    def _reset(self):
        self.regs[:] = _RESET_VALUES
        self.rdatac = True
        self.start_cmd = False
        self.standby = False
        self._phase = _IDLE

    def powered(self):
        if self._pwdn_pin is not None and self._pwdn_pin.level == 0:
            return False
        if self._reset_pin is not None and self._reset_pin.level == 0:
            return False
        return not self.standby

    def converting(self):
        start = self.start_cmd or (self._start_pin is not None and self._start_pin.level == 1)
        return start and self.powered()

    def rate_ok(self):
        return self.regs[1] & 0x87 == 0x85  # HR mode, DR = 1 kSPS

    # --- conversions (called by the hardware clock) ----------------------------------------------
    def convert(self):
        """One conversion if converting: new frame, DRDY pulse. Returns True if DRDY fell."""
        if not self.converting() or self.exhausted:
            return False
        if not self.feed.emg_frame_into(self.samples_converted, self.frame):
            self.exhausted = True
            return False
        self.regs[0x12] = self.frame[1] >> 4
        self.samples_converted += 1
        self._pos = 0
        self._rdata = False
        d = self._drdy
        d.set(0)
        d.set(1)
        return True

    # --- SPI ---------------------------------------------------------------------------------------
    def spi_mode_ok(self, mode):
        return mode == 1

    def spi_select(self, level):
        if level:
            self._phase = _IDLE  # CS high resets the serial interface

    def spi_transfer(self, wbuf, rbuf, fill):
        if (wbuf is None and self.rdatac and self._phase == _IDLE and fill == 0 and self._pos == 0
                and len(rbuf) == _FRAME):
            frame = self.frame
            for i in range(_FRAME):
                rbuf[i] = frame[i]
            self._pos = _FRAME
            return
        n = len(wbuf) if wbuf is not None else len(rbuf)
        for i in range(n):
            out = self._byte(wbuf[i] if wbuf is not None else fill)
            if rbuf is not None:
                rbuf[i] = out
        return

    def _byte(self, b):
        phase = self._phase
        if phase == _RREG_DATA:
            out = self.regs[self._addr] if self._addr < len(self.regs) else 0
            self._addr += 1
            self._left -= 1
            if self._left == 0:
                self._phase = _IDLE
            return out
        if phase == _RREG_COUNT:
            self._left = (b & 0x1F) + 1
            self._phase = _RREG_DATA
            return 0
        if phase == _WREG_COUNT:
            self._left = (b & 0x1F) + 1
            self._phase = _WREG_DATA
            return 0
        if phase == _WREG_DATA:
            a = self._addr
            if a < len(self.regs) and a not in _READ_ONLY:
                self.regs[a] = b
            self._addr += 1
            self._left -= 1
            if self._left == 0:
                self._phase = _IDLE
            return 0
        out = 0
        if self._pos < _FRAME and (self.rdatac or self._rdata):
            out = self.frame[self._pos]
            self._pos += 1
        self._opcode(b)
        return out

    def _opcode(self, b):
        if b == 0x00:
            return
        if 0x20 <= b < 0x60:
            if self.rdatac:
                self.ignored += 1
                return
            self._addr = b & 0x1F
            self._phase = _RREG_COUNT if b < 0x40 else _WREG_COUNT
            return
        self.commands.append(b)
        if b == 0x02:
            self.standby = False
        elif b == 0x04:
            self.standby = True
        elif b == 0x06:
            self._reset()
        elif b == 0x08:
            self.start_cmd = True
        elif b == 0x0A:
            self.start_cmd = False
        elif b == 0x10:
            self.rdatac = True
        elif b == 0x11:
            self.rdatac = False
        elif b == 0x12:
            self._rdata = True  # RDATA: the current frame is clocked out next
            self._pos = 0
