# The unix "board": a stand-in for MicroPython's `machine` module on the ESP32.
#
# Same names and call signatures as the ESP32 port for what the firmware uses (Pin with irq, SPI,
# I2C, ADC, WDT, Timer, Counter, reset, unique_id, freq). Behind them sits a tiny board model:
#   - one _PinState per GPIO, shared by every Pin object on that number (as on hardware),
#   - SPI buses by id with fake chips attached by their chip-select GPIO (routing by CS level),
#   - I2C buses by id with fake chips attached by address,
#   - Counter units counting edges of their source pin (the ESP32 PCNT behind machine.Counter).
#   - the button GPIO (board.pins.BUTTON) can also be pressed from outside the process, through
#     a file in the working folder (the virtual device's filesystem): see _ButtonFile.
# Fake chips and tests use the board_* functions; firmware never does.
# The read paths (Pin.value, SPI.readinto/write, Counter.value) allocate nothing, so capture code
# can be checked under micropython.heap_lock().
import time

UNIX_BOARD = True

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5


class BoardReset(Exception):
    """Raised by reset()/deepsleep() on the unix board: the device would restart here."""


# --- pins ----------------------------------------------------------------------------------------
class _PinState:
    def __init__(self, gpio):
        self.gpio = gpio
        self.mode = -1
        self.pull = -1
        self.level = 0
        self.listeners = []  # callables(level), called on every change of an output's level
        self.handler = None
        self.trigger = 0
        self.irq_pin = None
        self.sink = None  # when set, sink(state) delivers the IRQ instead of a direct call
        self.counters = []  # Counter objects counting this pin's edges
        self.analog_uv = 0
        self.irq_calls = 0
        self.source = None  # an outside input read when the pin is (the button's _ButtonFile)

    def set(self, level):
        level = 1 if level else 0
        old = self.level
        if level == old:
            return
        self.level = level
        for f in self.listeners:
            f(level)
        self._edge(old, level)

    def _edge(self, old, level):
        edge = Pin.IRQ_RISING if level else Pin.IRQ_FALLING
        for c in self.counters:
            c.count_edge(edge)
        if self.handler is not None and self.trigger & edge:
            if self.sink is not None:
                self.sink(self)
            else:
                self.irq_calls += 1
                self.handler(self.irq_pin)


_PINS = {}


def board_pin(gpio):
    """The shared state of one GPIO (created on first use)."""
    st = _PINS.get(gpio)
    if st is None:
        st = _PinState(gpio)
        _PINS[gpio] = st
    return st


def board_drive(gpio, level):
    """An external signal (a fake chip, a button) drives this GPIO to level."""
    board_pin(gpio).set(level)


def board_set_voltage_uv(gpio, uv):
    board_pin(gpio).analog_uv = int(uv)


# Virtual milliseconds (the hardware clock's ticks, board_advance_ms): the button's hold time.
_NOW_MS = [0]

BUTTON_FILE = "unixboard-button"  # in the working folder: hold time in ms, as text


class _ButtonFile:
    """A press of the button from another process (hipsync.sim.VirtualDevice.press_button): it
    writes the hold time in ms of device time to BUTTON_FILE (written elsewhere, renamed in). Read
    only when the firmware reads the button (Pin.value), so the sample path never touches it.
    Taking a press renames the file to BUTTON_FILE + ".held" (so a press written meanwhile is a
    new one); the pin reads low until the hold has passed on the virtual clock, then the .held
    file is removed: the presser sees both names gone when the press is over."""

    def __init__(self, path=BUTTON_FILE):
        self.path = path
        self.until_ms = -1  # virtual ms at which the press ends; -1: no press
        self.started = False

    def poll(self, st):
        import os

        if not self.started:  # a press a previous run of the process left behind has ended
            self.started = True
            try:
                os.remove(self.path + ".held")
            except OSError:
                pass
        if self.until_ms >= 0:
            if _NOW_MS[0] < self.until_ms:
                return
            self.until_ms = -1
            try:
                os.remove(self.path + ".held")
            except OSError:
                pass
            st.set(1)  # released (pull-up)
        try:
            os.rename(self.path, self.path + ".held")
        except OSError:
            return  # no press waiting
        try:
            with open(self.path + ".held") as f:
                hold_ms = int(f.read().strip() or "0")
        except (OSError, ValueError):
            hold_ms = 0
        self.until_ms = _NOW_MS[0] + hold_ms
        st.set(0)  # active low


def _button_gpio():
    try:
        from board import pins

        return pins.BUTTON
    except ImportError:  # a test that has no board package
        return -1


class _Irq:
    def __init__(self, state):
        self._state = state

    def trigger(self):
        return self._state.trigger

    def flags(self):
        return self._state.trigger


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_RISING = 1
    IRQ_FALLING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5
    DRIVE_0 = 0
    DRIVE_1 = 1
    DRIVE_2 = 2
    DRIVE_3 = 3

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        self._id = id
        self._st = board_pin(id)
        self.init(mode, pull, value=value)
        if mode == Pin.IN and self._st.source is None and id == _button_gpio():
            self._st.source = _ButtonFile()

    def init(self, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        st = self._st
        if mode != -1:
            st.mode = mode
        if pull != -1:
            st.pull = pull
            if st.mode == Pin.IN and pull == Pin.PULL_UP:
                st.level = 1  # idle high until something drives it
        if value is not None:
            st.set(value)

    def value(self, v=None):
        st = self._st
        if v is None:
            if st.source is not None:
                st.source.poll(st)
            return st.level
        st.set(v)

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self._st.set(1)

    def off(self):
        self._st.set(0)

    def irq(self, handler=None, trigger=3, *, priority=1, wake=None, hard=False):
        st = self._st
        st.handler = handler
        st.trigger = trigger if handler is not None else 0
        st.irq_pin = self
        return _Irq(st)

    def __repr__(self):
        return "Pin(%d)" % self._id


# --- SPI -----------------------------------------------------------------------------------------
class _SpiBus:
    def __init__(self):
        self.devices = []  # (cs _PinState, device)


_SPI_BUSES = {}


def board_attach_spi(bus_id, cs_gpio, device):
    """Attach a fake chip to SPI bus bus_id, selected when GPIO cs_gpio is low."""
    bus = _SPI_BUSES.get(bus_id)
    if bus is None:
        bus = _SpiBus()
        _SPI_BUSES[bus_id] = bus
    cs = board_pin(cs_gpio)
    cs.level = 1
    for entry in bus.devices:  # a new chip on the same chip-select replaces the old one
        if entry[0] is cs:
            bus.devices.remove(entry)
            if entry[1].spi_select in cs.listeners:
                cs.listeners.remove(entry[1].spi_select)
            break
    bus.devices.append((cs, device))
    cs.listeners.append(device.spi_select)


class SPI:
    MSB = 0
    LSB = 1

    def __init__(self, id, baudrate=1000000, *, polarity=0, phase=0, bits=8, firstbit=0,
                 sck=None, mosi=None, miso=None):
        self._id = id
        bus = _SPI_BUSES.get(id)
        if bus is None:
            bus = _SpiBus()
            _SPI_BUSES[id] = bus
        self._bus = bus
        self.init(baudrate, polarity=polarity, phase=phase, bits=bits, firstbit=firstbit)

    def init(self, baudrate=1000000, *, polarity=0, phase=0, bits=8, firstbit=0, sck=None,
             mosi=None, miso=None):
        self.baudrate = baudrate
        self.mode = (polarity << 1) | phase
        self.bits = bits
        self.firstbit = firstbit

    def deinit(self):
        pass

    def _selected(self):
        found = None
        for cs, dev in self._bus.devices:
            if cs.level == 0:
                if found is not None:
                    raise OSError("SPI%d: two chips selected at once" % self._id)
                found = dev
        if found is not None and not found.spi_mode_ok(self.mode):
            raise OSError("SPI%d: %s does not work in SPI mode %d" % (self._id, found.NAME, self.mode))
        return found

    def write(self, buf):
        dev = self._selected()
        if dev is not None:
            dev.spi_transfer(buf, None, 0)

    def readinto(self, buf, write=0):
        dev = self._selected()
        if dev is None:
            for i in range(len(buf)):
                buf[i] = 0xFF
        else:
            dev.spi_transfer(None, buf, write)

    def read(self, nbytes, write=0):
        buf = bytearray(nbytes)
        self.readinto(buf, write)
        return bytes(buf)

    def write_readinto(self, write_buf, read_buf):
        dev = self._selected()
        if dev is None:
            for i in range(len(read_buf)):
                read_buf[i] = 0xFF
        else:
            dev.spi_transfer(write_buf, read_buf, 0)


# --- I2C -----------------------------------------------------------------------------------------
_I2C_BUSES = {}


def board_attach_i2c(bus_id, addr, device):
    """Attach a fake chip answering i2c_read(reg, buf) / i2c_write(reg, buf) at addr."""
    _I2C_BUSES.setdefault(bus_id, {})[addr] = device


class I2C:
    def __init__(self, id=0, *, scl=None, sda=None, freq=400000, timeout=50000):
        self._id = id
        self._devices = _I2C_BUSES.setdefault(id, {})
        self.freq = freq

    def _dev(self, addr):
        dev = self._devices.get(addr)
        if dev is None:
            raise OSError(19)  # ENODEV: no ACK, as the ESP32 port reports it
        return dev

    def scan(self):
        return sorted(self._devices)

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        self._dev(addr).i2c_read(memaddr, buf)

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        buf = bytearray(nbytes)
        self.readfrom_mem_into(addr, memaddr, buf)
        return bytes(buf)

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        self._dev(addr).i2c_write(memaddr, buf)

    def writeto(self, addr, buf, stop=True):
        dev = self._dev(addr)
        if len(buf) > 1:
            dev.i2c_write(buf[0], memoryview(buf)[1:])
        return len(buf)


SoftI2C = I2C


# --- ADC -----------------------------------------------------------------------------------------
class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_12BIT = 12
    _FULL_SCALE_UV = (950000, 1250000, 1750000, 3100000)

    def __init__(self, pin, *, atten=0):
        self._st = pin._st if isinstance(pin, Pin) else board_pin(pin)
        self._atten = atten

    def atten(self, atten):
        self._atten = atten

    def read_uv(self):
        return min(self._st.analog_uv, self._FULL_SCALE_UV[self._atten])

    def read_u16(self):
        return self.read_uv() * 65535 // self._FULL_SCALE_UV[self._atten]

    def read(self):
        return self.read_u16() >> 4


# --- watchdog, timers, counter -------------------------------------------------------------------
class WDT:
    """Records feeds; expired() says whether the real watchdog would have reset the chip."""

    def __init__(self, id=0, timeout=5000):
        self.timeout_ms = timeout
        self.feeds = 0
        self.created_ms = time.ticks_ms()
        self.last_feed_ms = self.created_ms
        _WDTS.append(self)

    def feed(self):
        self.feeds += 1
        self.last_feed_ms = time.ticks_ms()

    def expired(self):
        return time.ticks_diff(time.ticks_ms(), self.last_feed_ms) > self.timeout_ms


_WDTS = []


def board_watchdogs():
    return _WDTS


class Timer:
    """Soft timers on virtual time: the unix board's hardware clock advances them (board_advance_ms)."""

    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=-1, *args, **kwargs):
        self._id = id
        self._callback = None
        if args or kwargs:
            self.init(*args, **kwargs)

    def init(self, *, mode=1, period=-1, freq=-1, callback=None):
        if freq > 0:
            period = 1000 // freq
        self._mode = mode
        self._period_ms = max(1, period)
        self._due_ms = self._period_ms
        self._callback = callback
        if self not in _TIMERS:
            _TIMERS.append(self)

    def deinit(self):
        if self in _TIMERS:
            _TIMERS.remove(self)

    def value(self):
        return self._period_ms - self._due_ms


_TIMERS = []


def board_advance_ms(ms):
    """Advance virtual time for the soft timers and the button (called by the hardware clock)."""
    _NOW_MS[0] += ms
    if not _TIMERS:
        return
    for t in list(_TIMERS):
        t._due_ms -= ms
        while t._due_ms <= 0 and t in _TIMERS:
            if t._mode == Timer.PERIODIC:
                t._due_ms += t._period_ms
            else:
                _TIMERS.remove(t)
            if t._callback is not None:
                t._callback(t)


class Counter:
    """machine.Counter as on the ESP32 (a PCNT unit): counts edges of src, value([v])."""

    RISING = 1
    FALLING = 2
    UP = 1
    DOWN = 2
    _INSTANCES = {}

    def __new__(cls, id, *args, **kwargs):
        self = cls._INSTANCES.get(id)
        if self is None:
            self = object.__new__(cls)
            self._st = None
            cls._INSTANCES[id] = self
        return self

    def __init__(self, id, *args, **kwargs):
        self._id = id
        if args or kwargs:
            self.init(*args, **kwargs)

    def init(self, src, *, edge=1, direction=1, filter_ns=0):
        self.deinit()
        self._st = src._st
        self._edge = Pin.IRQ_FALLING if edge == Counter.FALLING else Pin.IRQ_RISING
        self._step = -1 if direction == Counter.DOWN else 1
        self._count = 0
        self._st.counters.append(self)

    def deinit(self):
        if self._st is not None and self in self._st.counters:
            self._st.counters.remove(self)

    def count_edge(self, edge):
        if self._edge & edge:
            self._count += self._step

    def value(self, value=None):
        v = self._count
        if value is not None:
            self._count = value
        return v


# --- chip-level functions ------------------------------------------------------------------------
_FREQ = [240000000]
board_resets = []


def reset():
    board_resets.append("reset")
    raise BoardReset("machine.reset()")


def soft_reset():
    board_resets.append("soft_reset")
    raise BoardReset("machine.soft_reset()")


def reset_cause():
    return PWRON_RESET


def unique_id():
    # The virtual device's id (HIPSYNC_DEVICE_ID, 12 hex digits) when it has one, so that several
    # virtual devices differ as real boards do.
    import os

    spec = os.getenv("HIPSYNC_DEVICE_ID")
    if spec and len(spec) == 12:
        return bytes(int(spec[i:i + 2], 16) for i in range(0, 12, 2))
    return b"\x24\x6f\x28\x4e\x53\x01"


def freq(hz=None):
    if hz is None:
        return _FREQ[0]
    _FREQ[0] = hz


def idle():
    pass


def lightsleep(ms=None):
    if ms:
        time.sleep_ms(ms)


def deepsleep(ms=None):
    board_resets.append("deepsleep")
    raise BoardReset("machine.deepsleep()")


def disable_irq():
    return 0


def enable_irq(state=0):
    pass
