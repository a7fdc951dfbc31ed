# Units, rates and channel order: the one definition shared by firmware, simulator and host.
from hipwire.compat import const

# The device sample clock ticks once per EMG sample. Every timestamp the device sends is in ticks.
CLOCK_HZ = const(1000)
EMG_RATE_HZ = const(1000)
IMU_RATE_HZ = const(100)
ENVELOPE_RATE_HZ = const(100)
PELVIS_RATE_HZ = const(100)
TICKS_PER_IMU_SAMPLE = const(10)
TICKS_PER_ENVELOPE_SAMPLE = const(10)

# Channel order everywhere (wire, store, CSV): left/right gluteus medius, left/right lumbar erector spinae.
EMG_CHANNELS = ("l_gmed", "r_gmed", "l_es", "r_es")
N_EMG = const(4)
PELVIS_ANGLES = ("obliquity", "tilt", "rotation")

# ADS1294R: VREF 2.4 V, PGA gain 12, 24-bit two's complement. uV per code = 2.4e6 / 12 / 2**23
# = 3125 / 2**17 exactly, so firmware converts with an integer multiply and shift.
AFE_GAIN = const(12)
EMG_UV_PER_CODE_NUM = const(3125)
EMG_UV_PER_CODE_SHIFT = const(17)
EMG_UV_PER_CODE = 3125 / 131072
EMG_CODE_MAX = const(0x7FFFFF)
EMG_CODE_MIN = const(-0x800000)

# ICM-42688-P: accelerometer +-8 g (4096 LSB/g), gyroscope +-1000 dps (32.8 LSB/dps).
ACC_LSB_PER_G = const(4096)
GYR_LSB_PER_DPS_X10 = const(328)
GYR_DPS_PER_LSB = 10 / 328

# Wire units: envelope in integer uV, pelvis angles in integer centidegrees.
ANGLE_CDEG_PER_DEG = const(100)
