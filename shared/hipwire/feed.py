# The simulator's chip feed: what the unix board's fake AFE and IMU deliver to the real drivers.
# Not a product format; it lives here so the host simulator (writer) and the unix board (reader)
# share one definition.
#
# Header "<8sIIII": magic, EMG rate (Hz), IMU rate (Hz), number of EMG samples, number of IMU
# samples. Then the EMG block: per sample "<4iI" = 4 signed 24-bit AFE codes (l_gmed, r_gmed, l_es,
# r_es) and the lead-off bit mask (bit c = channel c off). Then the IMU block: per sample "<6h" =
# ax, ay, az, gx, gy, gz counts in the SENSOR frame (the board's mounting matrix maps them to the body).
#
# The live feed (a simulated person who follows instructions) is read once, front to back, from
# a pipe: the same header with LIVE_MAGIC and both counts 0, then blocks of 100 ms, each
# LIVE_BLOCK_EMG EMG records followed by LIVE_BLOCK_IMU IMU records. The pipe is the pacing: the
# writer can be at most a pipe buffer ahead of the chips, so what the person does next reaches the
# chips a fraction of a second after they decide it, whatever the device's speed.
from hipwire.compat import const

MAGIC = b"HSFEED\x00\x01"
LIVE_MAGIC = b"HSFEED\x00\x02"
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


LIVE_BLOCK_EMG = const(100)
LIVE_BLOCK_IMU = const(10)
LIVE_BLOCK_SIZE = const(2120)  # LIVE_BLOCK_EMG * EMG_RECORD_SIZE + LIVE_BLOCK_IMU * IMU_RECORD_SIZE
