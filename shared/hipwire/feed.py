# The simulator's chip feed: what the unix board's fake AFE and IMU deliver to the real drivers.
# Not a product format; it lives here so the host simulator (writer) and the unix board (reader)
# share one definition.
#
# Header "<8sIIII": magic, EMG rate (Hz), IMU rate (Hz), number of EMG samples, number of IMU
# samples. Then the EMG block: per sample "<4iI" = 4 signed 24-bit AFE codes (l_gmed, r_gmed, l_es,
# r_es) and the lead-off bit mask (bit c = channel c off). Then the IMU block: per sample "<6h" =
# ax, ay, az, gx, gy, gz counts in the SENSOR frame (the board's mounting matrix maps them to the body).
from hipwire.compat import const

MAGIC = b"HSFEED\x00\x01"
HEADER_FORMAT = "<8sIIII"
HEADER_SIZE = const(24)
EMG_RECORD_FORMAT = "<4iI"
EMG_RECORD_SIZE = const(20)
IMU_RECORD_FORMAT = "<6h"
IMU_RECORD_SIZE = const(12)


def emg_offset(index):
    return HEADER_SIZE + index * EMG_RECORD_SIZE


def imu_offset(n_emg, index):
    return HEADER_SIZE + n_emg * EMG_RECORD_SIZE + index * IMU_RECORD_SIZE
