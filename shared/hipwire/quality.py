# Per-channel signal-quality flags (a bitmask per EMG channel, sent in STATUS frames).
from hipwire.compat import const

LEAD_OFF = const(0x01)  # AFE lead-off comparator tripped (electrode lifted or dry)
CLIPPING = const(0x02)  # samples at or near the ADC rails
MAINS = const(0x04)  # 50/60 Hz power above threshold
FLAT = const(0x08)  # no variation: disconnected input or dead channel
MOTION = const(0x10)  # low-frequency (< 20 Hz) power: cable or electrode movement

NAMES = ((LEAD_OFF, "lead_off"), (CLIPPING, "clipping"), (MAINS, "mains"), (FLAT, "flat"),
         (MOTION, "motion"))


def describe(flags):
    """Names of the flags set in a bitmask, e.g. ['lead_off', 'mains']."""
    return [name for bit, name in NAMES if flags & bit]
