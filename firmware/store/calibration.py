# The standing calibration, kept across restarts: a device that resets (flat battery, watchdog)
# in a session, or between the clinic's calibration and a recording at home, goes on measuring
# pelvic angles against the patient's standing pose instead of its own mounting.
#
# File (device-local; the host never reads it): b"HSC1", the pelvis mounting quaternion as 4
# little-endian int16 (Q14, dsp/pelvis.py), CRC-16 (hipwire.frames.crc16) of the 12 bytes before.
# Written under a temporary name and renamed over the old one, so a power cut leaves the old file
# or the new one, never half of one. Anything else (missing, torn, wrong CRC, not a unit
# quaternion) reads as "no calibration".
import os
import struct

from hipwire.frames import crc16

CALIBRATION_PATH = "calibration.bin"
_MAGIC = b"HSC1"
_FORMAT = "<4s4hH"
_SIZE = 14  # struct.calcsize(_FORMAT)
_ONE_Q14_SQ = (1 << 14) * (1 << 14)


def save(mounting, path=CALIBRATION_PATH):
    """Write the mounting quaternion (4 ints, Q14). Raises OSError if the flash refuses it."""
    data = bytearray(struct.pack(_FORMAT, _MAGIC, mounting[0], mounting[1], mounting[2],
                                 mounting[3], 0))
    struct.pack_into("<H", data, _SIZE - 2, crc16(data, _SIZE - 2))
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    try:
        os.rename(tmp, path)  # LittleFS (the ESP32's) and POSIX replace the old file
    except OSError:  # a filesystem that will not rename over a file (FAT)
        os.remove(path)
        os.rename(tmp, path)


def load(path=CALIBRATION_PATH):
    """The saved mounting quaternion (tuple of 4 ints, Q14), or None."""
    try:
        with open(path, "rb") as f:
            data = f.read(_SIZE + 1)
    except OSError:
        return None
    if len(data) != _SIZE:
        return None
    magic, w, x, y, z, crc = struct.unpack(_FORMAT, data)
    if magic != _MAGIC or crc != crc16(data, _SIZE - 2):
        return None
    norm = w * w + x * x + y * y + z * z
    if abs(norm - _ONE_Q14_SQ) > _ONE_Q14_SQ // 50:  # a rotation has norm 1 (2 % for rounding)
        return None
    return (w, x, y, z)
