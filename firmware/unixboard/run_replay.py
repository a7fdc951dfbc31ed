# Unix-board entry point of `hipsync replay`: a chip feed through the real firmware app, offline.
#
#   micropython -X heapsize=512k firmware/unixboard/run_replay.py FEED OUT [CAL_TICKS [MAINS_HZ]]
#   MICROPYPATH = firmware/unixboard : firmware : shared : .frozen
#
# FEED is a hipwire.feed file (host/hipsync/replay.py writes it); the fake AFE and IMU convert it
# and the real drivers, capture, DSP and streamer run on it exactly as in the device app. Virtual
# time advances in blocks of _BLOCK_TICKS; after each block app.process_once() drains the captures
# (the capture ring holds 256 samples, so blocks stay well below it and nothing is lost), and every
# _STATUS_TICKS a STATUS frame is made as the app's status task does. Every frame the streamer
# produces goes to OUT as a hipwire.records record (magic, length, frame, CRC-32), the flash log's
# format. CAL_TICKS > 0 runs the standing calibration over the first CAL_TICKS ticks; 0 leaves the
# pelvis uncalibrated (angles of the sensor itself). MAINS_HZ (50 or 60) configures the notch and
# the mains quality check as the SET_CONFIG command would.
#
# stdout: "replay: calibration ok|refused" (when asked) and a last line
# "replay: done ticks=T emg=N imu=M imu_first=C imu_stamp=S emg_lost=A imu_lost=B frames=F" that
# the host checks.
import sys

if ".frozen" not in sys.path:
    sys.path.append(".frozen")

import bluetooth  # noqa: E402
import hardware_clock  # noqa: E402
from board import hw  # noqa: E402
from hipwire import records  # noqa: E402
from link.streamer import SLOT_BYTES  # noqa: E402

import app as app_module  # noqa: E402

_BLOCK_TICKS = 100  # one app drain block (100 ms); the EMG ring holds 256 samples
_STATUS_TICKS = 1000  # one STATUS frame per second of sample clock, as the app's status task
# The IMU capture anchors its sample clocks at its first drain, taking the newest FIFO packet to be
# half a sample period (5 ticks) old: on the board the drain falls anywhere in the period, so that
# is right on average. The fake IMU delivers on ticks 9, 19, 29, ...; a drain right after a
# delivery would make every stamp 5 ticks early. So the first block is 5 ticks longer: the first
# drain comes half a period after a delivery and the stamps equal the delivery clocks.
_FIRST_EXTRA_TICKS = 5


class _RecordWriter:
    """streamer.record: each frame -> one record in the output file, through one preallocated buffer."""

    def __init__(self, f):
        self.f = f
        self.buf = bytearray(records.record_size(SLOT_BYTES))
        self.mv = memoryview(self.buf)
        self.frames = 0

    def __call__(self, frame, n):
        size = records.encode_record(self.buf, frame, n)
        self.f.write(self.mv[:size])
        self.frames += 1


def _status(app, clock):
    app._fill_status()
    app.streamer.send_status(clock, SLOT_BYTES)


def main(argv):
    feed_path = argv[1]
    out_path = argv[2]
    cal_ticks = int(argv[3]) if len(argv) > 3 else 0
    mains_hz = int(argv[4]) if len(argv) > 4 else 0
    clock = hardware_clock.install(feed_path)
    board = hw.build()
    ble = bluetooth.BLE()  # offline: HIPSYNC_AIR is not set, nothing is transmitted
    app = app_module.App(board, ble, b"replay")
    if mains_hz:
        app.envelope.set_mains_hz(mains_hz)
        app.quality.set_mains_hz(mains_hz)
    with open(out_path, "wb") as f:
        writer = _RecordWriter(f)
        app.streamer.record = writer
        app.start()
        if cal_ticks > 0:
            app.pelvis.begin_standing_calibration()
        next_status = _STATUS_TICKS
        last_status = -1
        calibrating = cal_ticks > 0
        extra = _FIRST_EXTRA_TICKS
        while not clock.finished:
            step = _BLOCK_TICKS + extra
            if calibrating and not extra and cal_ticks - (app.emg.clock_now() + 1) < step:
                step = cal_ticks - (app.emg.clock_now() + 1)  # end the calibration on its tick
            extra = 0
            clock.advance(step if step > 0 else 1)
            app.process_once()
            now = app.emg.clock_now()
            if calibrating and now + 1 >= cal_ticks:
                calibrating = False
                ok = app.pelvis.end_standing_calibration()
                print("replay: calibration", "ok" if ok else "refused")
            if now + 1 >= next_status:
                _status(app, now)
                last_status = now
                next_status += _STATUS_TICKS
        if calibrating:  # the recording ended inside the calibration window
            ok = app.pelvis.end_standing_calibration()
            print("replay: calibration", "ok" if ok else "refused")
        app.process_once()
        now = app.emg.clock_now()
        app.streamer.flush(SLOT_BYTES)
        if now != last_status:
            _status(app, now)  # the counters at the end of the recording
        # imu_first: clock at which the fake IMU delivered sample 0; imu_stamp: the clock the
        # capture gave it (anchor of index 0)
        print("replay: done ticks=%d emg=%d imu=%d imu_first=%d imu_stamp=%d emg_lost=%d "
              "imu_lost=%d frames=%d" % (now + 1, app.emg.delivered, clock.imu.produced,
                                         clock.imu.first_clock, app.imu_cap._clock0,
                                         app.emg.lost_samples, app.imu_cap.lost_samples,
                                         writer.frames))
    clock.feed.close()


main(sys.argv)
