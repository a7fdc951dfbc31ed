# What the fake chips convert: samples from a hipwire.feed file (written by host/hipsync/sim/feed.py),
# read in blocks with seek; or a live feed read front to back from a pipe (a simulated person
# deciding what to do next, host/hipsync/sim/live_patient.py); or a generated pattern when no file
# is given.
#
# The fake chips ask for one sample at a time and get bytes already in the chip's wire layout:
#   emg_frame_into(k, frame): the ADS1294R RDATAC frame of EMG sample k (status word with the
#                             lead-off bits in LOFF_STATP, then 4 big-endian 24-bit codes),
#   imu_into(k, dst, off):    12 bytes of IMU sample k, ax ay az gx gy gz big-endian int16, sensor frame.
# Both return False past the end of the file. Neither allocates (block reads go into fixed buffers),
# so the capture path stays allocation-free under micropython.heap_lock().
# In a live feed the EMG records are consumed in order, one per conversion, and the IMU is given
# the record of the 10 ms the AFE is in: the motion at the time of the sample, as a real sensor
# sees it, whichever chip started first and whatever the IMU's own rate.
import struct

from hipwire import feed as _fmt

_CODE_SPAN = 0x1000000
_CODE_HALF = 0x800000


def pattern_code(k, channel):
    """Generated-pattern AFE code of EMG sample k, channel 0..3 (spans the whole 24-bit range)."""
    return (k * 7919 + channel * 1048583 + 12345) % _CODE_SPAN - _CODE_HALF


def pattern_leadoff(k):
    """Generated-pattern lead-off mask of EMG sample k (changes every 512 samples)."""
    return (k >> 9) & 0x0F


def pattern_imu(k, axis):
    """Generated-pattern IMU count of sample k, axis 0..5 (ax ay az gx gy gz), in [-32767, 32767]."""
    return (k * 131 + axis * 4099 + 7) % 65535 - 32767


class ChipFeed:
    def __init__(self, path=None, block_samples=256):
        self.path = path
        self.block_samples = block_samples
        self._file = None
        self.emg_rate_hz = 1000
        self.imu_rate_hz = 100
        self.n_emg = -1  # -1: endless pattern
        self.n_imu = -1
        self.live = False
        if path is not None:
            f = open(path, "rb")
            head = f.read(_fmt.HEADER_SIZE)
            magic, self.emg_rate_hz, self.imu_rate_hz, self.n_emg, self.n_imu = struct.unpack(
                _fmt.HEADER_FORMAT, head)
            self.live = magic == _fmt.LIVE_MAGIC
            if magic != _fmt.MAGIC and not self.live:
                raise ValueError("%s is not a hipwire chip feed (magic %r)" % (path, magic))
            self._file = f
        # live feed: the current 100 ms block and the next EMG record in it
        self._live_block = bytearray(_fmt.LIVE_BLOCK_SIZE if self.live else 0)
        self._live_next = _fmt.LIVE_BLOCK_EMG  # block used up: read the next one
        self._live_ok = False  # a block has been read
        self._live_end = False
        self._emg_buf = bytearray(block_samples * _fmt.EMG_RECORD_SIZE)
        self._emg_first = 0
        self._emg_count = 0
        self._imu_buf = bytearray(block_samples * _fmt.IMU_RECORD_SIZE)
        self._imu_first = 0
        self._imu_count = 0

    def _live_load(self):
        """The next block from the pipe (waits for the writer); False at the end of the feed."""
        buf = self._live_block
        got = self._file.readinto(buf)
        if got and got < len(buf):  # a pipe returns what has arrived: read the rest
            mv = memoryview(buf)
            while got < len(buf):
                n = self._file.readinto(mv[got:])
                if not n:
                    break
                got += n
        if got != len(buf):
            self._live_end = True
            return False
        self._live_next = 0
        self._live_ok = True
        return True

    def _live_emg_into(self, frame):
        if self._live_end or (self._live_next >= _fmt.LIVE_BLOCK_EMG and not self._live_load()):
            return -1
        r = self._live_next * _fmt.EMG_RECORD_SIZE
        buf = self._live_block
        for c in range(4):
            i = 3 + 3 * c
            s = r + 4 * c
            frame[i] = buf[s + 2]
            frame[i + 1] = buf[s + 1]
            frame[i + 2] = buf[s]
        self._live_next += 1
        return buf[r + 16] & 0x0F

    def _live_imu_into(self, dst, off):
        if self._live_end or (not self._live_ok and not self._live_load()):
            return False
        j = (self._live_next - 1) // (_fmt.LIVE_BLOCK_EMG // _fmt.LIVE_BLOCK_IMU)
        r = _fmt.LIVE_BLOCK_EMG * _fmt.EMG_RECORD_SIZE + (j if j > 0 else 0) * _fmt.IMU_RECORD_SIZE
        buf = self._live_block
        for a in range(6):
            dst[off + 2 * a] = buf[r + 2 * a + 1]
            dst[off + 2 * a + 1] = buf[r + 2 * a]
        return True

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def _load_emg(self, k):
        n = self.block_samples
        if k + n > self.n_emg:
            n = self.n_emg - k
        f = self._file
        f.seek(_fmt.emg_offset(k))
        f.readinto(self._emg_buf)
        self._emg_first = k
        self._emg_count = n

    def _load_imu(self, k):
        n = self.block_samples
        if k + n > self.n_imu:
            n = self.n_imu - k
        f = self._file
        f.seek(_fmt.imu_offset(self.n_emg, k))
        f.readinto(self._imu_buf)
        self._imu_first = k
        self._imu_count = n

    def emg_frame_into(self, k, frame):
        if self._file is None:
            mask = pattern_leadoff(k)
            for c in range(4):
                v = pattern_code(k, c) & 0xFFFFFF
                i = 3 + 3 * c
                frame[i] = v >> 16
                frame[i + 1] = (v >> 8) & 0xFF
                frame[i + 2] = v & 0xFF
        elif self.live:
            mask = self._live_emg_into(frame)
            if mask < 0:
                return False
        else:
            if k >= self.n_emg:
                return False
            j = k - self._emg_first
            if j < 0 or j >= self._emg_count:
                self._load_emg(k)
                j = 0
            buf = self._emg_buf
            r = j * _fmt.EMG_RECORD_SIZE
            for c in range(4):
                i = 3 + 3 * c
                s = r + 4 * c
                frame[i] = buf[s + 2]  # little-endian int32 -> big-endian 24-bit
                frame[i + 1] = buf[s + 1]
                frame[i + 2] = buf[s]
            mask = buf[r + 16] & 0x0F
        # Status: 1100 + LOFF_STATP (IN1P..IN4P in bits 0..3) + LOFF_STATN (0) + GPIO (0).
        frame[0] = 0xC0
        frame[1] = mask << 4
        frame[2] = 0
        return True

    def imu_into(self, k, dst, off):
        if self._file is None:
            for a in range(6):
                v = pattern_imu(k, a) & 0xFFFF
                dst[off + 2 * a] = v >> 8
                dst[off + 2 * a + 1] = v & 0xFF
            return True
        if self.live:
            return self._live_imu_into(dst, off)
        if k >= self.n_imu:
            return False
        j = k - self._imu_first
        if j < 0 or j >= self._imu_count:
            self._load_imu(k)
            j = 0
        buf = self._imu_buf
        r = j * _fmt.IMU_RECORD_SIZE
        for a in range(6):
            dst[off + 2 * a] = buf[r + 2 * a + 1]
            dst[off + 2 * a + 1] = buf[r + 2 * a]
        return True
