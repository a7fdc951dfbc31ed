# The unix "board": a stand-in for MicroPython's `esp32` module.
#
# PCNT follows the ESP32 port's esp32.PCNT (the pulse-counter unit behind machine.Counter): one
# channel counting edges of a machine.Pin, rising/falling actions, min/max limits that reset the
# count to 0 and raise IRQ_MIN/IRQ_MAX, start/stop. machine.Counter on this board counts by itself
# (it needs no PCNT object), as the firmware only uses machine.Counter.
import machine

UNIX_BOARD = True

WAKEUP_ALL_LOW = 0
WAKEUP_ANY_HIGH = 1


class _PcntIrq:
    def __init__(self, unit):
        self._unit = unit

    def flags(self):
        f = self._unit._flags
        self._unit._flags = 0
        return f


class PCNT:
    IGNORE = 0
    INCREMENT = 1
    DECREMENT = 2
    REVERSE = 3
    HOLD = 4
    NORMAL = 5
    IRQ_ZERO = 1
    IRQ_MIN = 2
    IRQ_MAX = 4
    IRQ_THRESHOLD0 = 8
    IRQ_THRESHOLD1 = 16
    _UNITS = {}

    def __new__(cls, id, **kwargs):
        self = cls._UNITS.get(id)
        if self is None:
            self = object.__new__(cls)
            self._st = None
            self._rising = PCNT.IGNORE
            self._falling = PCNT.IGNORE
            self._min = -32768
            self._max = 32767
            self._count = 0
            self._running = False
            self._handler = None
            self._trigger = 0
            self._flags = 0
            cls._UNITS[id] = self
        return self

    def __init__(self, id, **kwargs):
        self._id = id
        if kwargs:
            self.init(**kwargs)

    def init(self, *, channel=0, pin=None, rising=None, falling=None, mode_pin=None, mode_low=None,
             mode_high=None, filter=None, min=None, max=None, threshold0=None, threshold1=None,
             value=None):
        if channel != 0:
            return  # only channel 0 is modelled
        if pin is not None:
            if self._st is not None and self in self._st.counters:
                self._st.counters.remove(self)
            self._st = pin._st
            self._st.counters.append(self)
        if rising is not None:
            self._rising = rising
        if falling is not None:
            self._falling = falling
        if min is not None:
            self._min = min
        if max is not None:
            self._max = max
        if value is not None:
            self._count = 0

    def count_edge(self, edge):
        if not self._running:
            return
        action = self._rising if edge == machine.Pin.IRQ_RISING else self._falling
        if action == PCNT.INCREMENT:
            self._count += 1
        elif action == PCNT.DECREMENT:
            self._count -= 1
        else:
            return
        hit = 0
        if self._count >= self._max:
            hit = PCNT.IRQ_MAX
        elif self._count <= self._min:
            hit = PCNT.IRQ_MIN
        if hit:
            self._count = 0  # the ESP32 PCNT resets to zero at a limit
            if self._handler is not None and self._trigger & hit:
                self._flags |= hit
                self._handler(self)

    def value(self, value=None):
        v = self._count
        if value is not None:
            if value != 0:
                raise ValueError("PCNT can only be set to 0")
            self._count = 0
        return v

    def irq(self, handler=None, trigger=IRQ_ZERO):
        if handler is not None or trigger:
            self._handler = handler
            self._trigger = trigger
        return _PcntIrq(self)

    def start(self):
        self._running = True

    def stop(self):
        self._running = False

    def deinit(self):
        self._running = False
        if self._st is not None and self in self._st.counters:
            self._st.counters.remove(self)
        self._st = None


def mcu_temperature():
    return 35


def wake_on_ext0(pin, level):
    pass


def wake_on_ext1(pins, level):
    pass


def gpio_deep_sleep_hold(enable):
    pass
