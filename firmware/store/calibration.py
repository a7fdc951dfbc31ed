# The device's calibration, kept across restarts: the standing calibration (the pelvis mounting
# quaternion: angles are measured against the patient's standing pose) and the MVC per muscle the
# clinic's host accepted (SET_MVC). A device that resets (flat battery, watchdog) in a session, or
# between the clinic's calibration and a recording at home, keeps both; every recording starts
# with a record of them (hipwire.records.encode_calibration), so a home session synced later can
# be normalised and its pelvic angles read as relative to standing.
#
# File (device-local), little-endian:
#   b"HSC2", u8 flags (0x01: a standing calibration is held), 4 x int16 mounting quaternion (Q14,
#   dsp/pelvis.py; zeros without one), u32 standing calibration time (unix s, 0 unknown),
#   4 x u32 MVC (uV, l_gmed r_gmed l_es r_es, 0 = none), u32 time the MVCs were given (unix s,
#   0 unknown), CRC-16 (hipwire.frames.crc16) of the 37 bytes before. 39 bytes.
#   The first format, b"HSC1" + quaternion + CRC-16 (14 bytes), still loads: a standing
#   calibration of unknown time and no MVCs.
# Written under a temporary name and renamed over the old one, so a power cut leaves the old file
# or the new one, never half of one. Anything else (missing, torn, wrong CRC, not a unit
# quaternion) reads as "nothing calibrated".
import os
import struct

from hipwire.frames import crc16

CALIBRATION_PATH = "calibration.bin"
_MAGIC_V1 = b"HSC1"
_FORMAT_V1 = "<4s4hH"
_SIZE_V1 = 14  # struct.calcsize(_FORMAT_V1)
_MAGIC = b"HSC2"
_FORMAT = "<4sB4hI4IIH"
_SIZE = 39  # struct.calcsize(_FORMAT)
_HAS_STANDING = 0x01  # = hipwire.commands.CAL_HAS_STANDING
_ONE_Q14_SQ = (1 << 14) * (1 << 14)


class Calibration:
    """What the device keeps: mounting (4 ints, Q14) or None, standing_unix, mvc_uv (list of 4
    ints, 0 = none), mvc_unix. Unix times are 0 when the device had no TIME_SYNC."""

    def __init__(self, mounting=None, standing_unix=0, mvc_uv=None, mvc_unix=0):
        self.mounting = mounting
        self.standing_unix = standing_unix
        self.mvc_uv = list(mvc_uv) if mvc_uv is not None else [0, 0, 0, 0]
        self.mvc_unix = mvc_unix

    def flags(self):
        return _HAS_STANDING if self.mounting is not None else 0

    def has_mvc(self):
        for v in self.mvc_uv:
            if v:
                return True
        return False

    def __eq__(self, other):
        return (self.mounting == other.mounting and self.standing_unix == other.standing_unix
                and self.mvc_uv == other.mvc_uv and self.mvc_unix == other.mvc_unix)


def save(cal, path=CALIBRATION_PATH):
    """Write a Calibration. Raises OSError if the flash refuses it (the old file then stands)."""
    m = cal.mounting if cal.mounting is not None else (0, 0, 0, 0)
    v = cal.mvc_uv
    data = bytearray(struct.pack(_FORMAT, _MAGIC, cal.flags(), m[0], m[1], m[2], m[3],
                                 cal.standing_unix, v[0], v[1], v[2], v[3], cal.mvc_unix, 0))
    struct.pack_into("<H", data, _SIZE - 2, crc16(data, _SIZE - 2))
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    try:
        os.rename(tmp, path)  # LittleFS (the ESP32's) and POSIX replace the old file
    except OSError:  # a filesystem that will not rename over a file (FAT)
        os.remove(path)
        os.rename(tmp, path)


def _unit(q):
    norm = q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]
    return abs(norm - _ONE_Q14_SQ) <= _ONE_Q14_SQ // 50  # a rotation has norm 1 (2 % rounding)


def load(path=CALIBRATION_PATH):
    """The saved Calibration; an empty one (no mounting, no MVCs) when there is none."""
    try:
        with open(path, "rb") as f:
            data = f.read(_SIZE + 1)
    except OSError:
        return Calibration()
    n = len(data)
    if n == _SIZE and data[:4] == _MAGIC and crc16(data, _SIZE - 2) == struct.unpack_from(
            "<H", data, _SIZE - 2)[0]:
        _, flags, w, x, y, z, t_st, a, b, c, d, t_mvc, _ = struct.unpack(_FORMAT, data)
        mounting = None
        if flags & _HAS_STANDING:
            mounting = (w, x, y, z)
            if not _unit(mounting):
                return Calibration()
        return Calibration(mounting, t_st if mounting else 0, (a, b, c, d), t_mvc)
    if n == _SIZE_V1 and data[:4] == _MAGIC_V1 and crc16(data, _SIZE_V1 - 2) == struct.unpack_from(
            "<H", data, _SIZE_V1 - 2)[0]:
        _, w, x, y, z, _ = struct.unpack(_FORMAT_V1, data)
        if _unit((w, x, y, z)):
            return Calibration((w, x, y, z))
    return Calibration()
