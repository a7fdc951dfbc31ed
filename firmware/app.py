# The device application: wires capture -> dsp -> frames -> radio and flash log.
#
# Tasks (asyncio): processing (drain the capture rings, run the DSP, frame the results), radio
# (hand queued frames to the BLE server while it accepts), control (answer commands), status (one
# STATUS frame per second of the SAMPLE clock) and ui (button, LED). IRQs only store samples and set
# flags (capture, BLE server). A supervisor restarts a task that dies and counts it; the watchdog is
# fed only while every task keeps beating, so a hung loop resets the board.
#
# Time: everything the device measures or stamps uses the sample clock (the AFE's DRDY count), not
# the asyncio timers, which follow wall time (and on the virtual device run at another speed).
from array import array

import asyncio
import micropython
from micropython import const

from capture.emg_capture import EmgCapture
from capture.imu_capture import ImuCapture
from dsp.emg_envelope import EnvelopeChain
from dsp.emg_quality import SignalQuality
from dsp.gait import GaitDetector
from dsp.pelvis import PelvisEstimator
from hipwire import commands as cmd
from hipwire import frames as wire
from hipwire import rawcodec
from hipwire import records
from hipwire import units
from link.ble_server import BleServer
from link.control import Control
from link.streamer import SLOT_BYTES, Streamer
from store import calibration

FIRMWARE_VERSION = (0, 1, 0)

_EMG_BLOCK = const(100)  # samples per drain (100 ms at 1 kHz)
_IMU_BLOCK = const(128)  # a full FIFO, so an overflowed FIFO empties in one drain
_HOLD_LIMIT_TICKS = const(2000)  # longer EMG gaps restart the filters instead of bridging them
_STATUS_TICKS = const(1000)
_PERIOD_MS = const(10)  # task period: frames and replies leave within one connection interval
# Processing runs on blocks of 50 EMG samples (5 IMU samples: the IMU FIFO watermark). Its cost is
# mostly per call, not per sample: 10-sample blocks took 1.7x the CPU of 50-sample ones (unix
# port). The stream batches 500 ms per frame, so live latency barely changes, and the EMG ring
# (256 samples) still holds a block plus a 20 ms stall and GC pauses. The wait is counted in samples,
# not timer ms, so blocks stay 50 samples when the sample clock runs faster than the timers (the
# virtual device at a speed-up); a silent AFE still lets the IMU through every 100 ms.
_BLOCK_SAMPLES = const(50)
_MAX_WAIT_ROUNDS = const(10)
_TASKS = const(5)
_WDT_TIMEOUT_MS = const(8000)
_STALE_BEATS_MS = const(4000)
# Small ints end at 2**30 on the ESP32 (12.4 days of sample clock); a larger clock would be a heap
# object, which the locked sample path refuses. Rewind, while idle, after 2**29 ticks (6.2 days).
_CLOCK_REWIND_TICKS = const(1 << 29)


def _log(msg):
    print("hipsync:", msg)


class App:
    def __init__(self, board, ble, device_id, auth=None, sessions=None, log=_log,
                 watchdog_check_ms=_STALE_BEATS_MS // 2, calibration_path=None):
        """board: board.hw.build(); ble: bluetooth.BLE(); auth: an authenticator with
        is_authenticated(conn) and its command handlers (None: the sync/auth service provides it);
        sessions: the flash log's command handlers (None: no recording); calibration_path: where
        the standing calibration and the MVCs survive a restart (None: kept in RAM only)."""
        self.board = board
        self.log = log
        self.device_id = device_id
        self.afe = board.afe_driver()
        self.imu = board.imu_driver()
        self.emg = EmgCapture(self.afe, board.afe_drdy, board.drdy_counter)
        self.imu_cap = ImuCapture(self.imu, board.imu_to_body, self.emg)
        self.envelope = EnvelopeChain()
        self.quality = SignalQuality()
        self.pelvis = PelvisEstimator()
        self.calibration_path = calibration_path
        # what every recording's calibration record carries (hipwire.records)
        self.cal = (calibration.load(calibration_path) if calibration_path is not None
                    else calibration.Calibration())
        if self.cal.mounting is not None:
            self.pelvis.set_mounting(self.cal.mounting)
        self.cal_frame = bytearray(records.CALIBRATION_SIZE)
        self.gait = GaitDetector()
        self.reps = None  # the exam's repetition search: made by the first TASK command
        self.streamer = Streamer()
        self.server = BleServer(ble, device_id)
        self.auth = auth
        self.sessions = sessions
        handlers = {
            cmd.OP_INFO: self._cmd_info,
            cmd.OP_BATTERY: self._cmd_battery,
            cmd.OP_STREAM_START: self._cmd_stream_start,
            cmd.OP_STREAM_STOP: self._cmd_stream_stop,
            cmd.OP_SET_CONFIG: self._cmd_set_config,
            cmd.OP_CALIBRATE: self._cmd_calibrate,
            cmd.OP_TIME_SYNC: self._cmd_time_sync,
            cmd.OP_SET_MVC: self._cmd_set_mvc,
            cmd.OP_CAL_INFO: self._cmd_cal_info,
            cmd.OP_TASK: self._cmd_task,
        }
        for extra in (auth, sessions):
            if extra is not None:
                handlers.update(extra.handlers())
        # the replayed-reply entry belongs to one connection: NimBLE may reuse a handle, so the
        # server's connection count tells a new connection apart
        self.control = Control(handlers, auth if auth is not None else _Open(), log,
                               connection_epoch=self._connection_count)
        if sessions is not None:
            sessions.attach(self.server, self.control.reply)
            sessions.on_start = self._recording_started
            self.streamer.record = self._record
        # preallocated working buffers: the sample path allocates nothing
        self.codes = array("i", bytes(4 * units.N_EMG * _EMG_BLOCK))
        self.leadoff = bytearray(_EMG_BLOCK)
        self.env_out = array("i", bytes(4 * units.N_EMG * (_EMG_BLOCK // 10 + 1)))
        self.imu_block = array("h", bytes(2 * 6 * _IMU_BLOCK))
        self.pel_out = array("i", bytes(4 * 3 * _IMU_BLOCK))
        self.event = array("i", bytes(4 * 4))
        self.rep = array("i", bytes(4 * 8))
        self.command = bytearray(256)
        self.hold = array("i", bytes(4 * units.N_EMG * _EMG_BLOCK))
        # state
        self.emg_next = -1  # clock of the next EMG sample the filters expect
        self.emg_in = 0  # EMG samples the envelope chain has taken since its reset
        self.emg_origin = 0  # clock of the chain's first sample
        self.next_status = 0
        self.raw_mode = False
        self.mvc_channel = -1
        self.mvc_peak_uv = 0
        self.time_anchor = None  # (host unix ms, device clock) from TIME_SYNC
        self.beats = array("i", bytes(4 * _TASKS))
        self.watchdog_check_ms = watchdog_check_ms
        self.restarts = 0
        self.running = False
        self.battery_mv = 0
        self.battery_pct = 0
        self.warm = False  # the sample path runs heap-locked once every stage has seen data
        self.clock_rewinds = 0

    # ------------------------------------------------------------------ start / stop
    def start(self):
        self.afe.begin()
        self.afe.configure()
        self.imu.begin()
        self.server.start()
        self.emg.start()
        self.imu.start()
        self.imu_cap.start()
        self.afe.start_continuous()
        self.running = True

    async def run(self, watchdog=True):
        self.start()
        tasks = self.tasks()
        for i in range(len(tasks)):
            asyncio.create_task(self._supervise(i, tasks[i]))
        if self.sessions is not None:  # sync chunks: waits on its own event, so no heartbeat
            asyncio.create_task(self._supervise(-1, self._sync_chunks))
        wdt = self.board.wdt_factory(_WDT_TIMEOUT_MS) if watchdog else None
        await self._watchdog(wdt)

    def tasks(self):
        """The supervised tasks, in heartbeat order."""
        return (self._processing, self._radio, self._control, self._status, self._ui)

    async def _sync_chunks(self, me):
        await self.sessions.run(self.server)

    def _recording_started(self):
        """A session has just opened (button or REC_START): its first record says whether its
        pelvis angles are relative to a standing calibration, since when, and the MVCs."""
        cal = self.cal
        flags = cmd.CAL_HAS_STANDING if self.pelvis.calibrated else 0
        n = records.encode_calibration(self.cal_frame, self.emg.clock_now(), flags,
                                       cal.standing_unix if flags else 0, cal.mvc_uv, cal.mvc_unix)
        self.sessions.append(self.cal_frame, n)

    def _record(self, buf, n):
        if self.sessions.recording():
            # the flash log opens a new segment file every 64 KiB: that may allocate
            micropython.heap_unlock()
            try:
                self.sessions.append(buf, n)
            finally:
                micropython.heap_lock()

    async def _supervise(self, index, task):
        while True:
            try:
                await task(index)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - log, count, restart: the device keeps going
                self.restarts += 1
                self.log("task %d died (%r); restarting" % (index, e))
                await asyncio.sleep_ms(100)

    async def _watchdog(self, wdt):
        seen = array("i", bytes(4 * _TASKS))
        while True:
            await asyncio.sleep_ms(self.watchdog_check_ms)
            healthy = True
            for i in range(_TASKS):
                if self.beats[i] == seen[i]:
                    healthy = False
                seen[i] = self.beats[i]
            if healthy and wdt is not None:
                wdt.feed()

    # ------------------------------------------------------------------ processing
    async def _processing(self, me):
        waited = 0
        while True:
            self.beats[me] += 1
            if waited >= _MAX_WAIT_ROUNDS or self.emg.available() >= _BLOCK_SAMPLES:
                self.step()
                waited = 0
            else:
                waited += 1
            await asyncio.sleep_ms(_PERIOD_MS)

    def step(self):
        """The sample path, run with the heap locked. Locked, MicroPython keeps the call frames
        of large bytecode functions on the C stack instead of allocating and freeing them on the
        heap, so the path allocates nothing at all; a real allocation would raise MemoryError (a
        bug: logged, the task restarted, the capture rings keep every sample) instead of feeding
        the garbage collector."""
        if not self.warm:  # start-up: filters seed themselves from the first samples (may allocate)
            self.process_once()
            self.warm = self.emg.delivered > 0 and self.imu_cap.delivered > 0
            return
        micropython.heap_lock()
        try:
            self.process_once()
        finally:
            micropython.heap_unlock()

    def process_once(self):
        """Drain both captures and run the DSP on what they held. Allocates nothing."""
        max_len = self._max_frame()
        # drain again only when a block came back full (or ended at a gap): another drain that
        # returns nothing still costs bus transactions on the IMU
        while True:
            n = self.emg.drain(self.codes, self.leadoff, _EMG_BLOCK)
            if n == 0:
                break
            self._emg_block(n, self.emg.clock_first, max_len)
            if self.emg.available() == 0:
                break
        while True:
            n = self.imu_cap.drain(self.imu_block, _IMU_BLOCK)
            if n == 0:
                break
            self._imu_block(n, self.imu_cap.clock_first, max_len)
            if n < _IMU_BLOCK and not self.imu_cap.pending_after_gap():
                break

    def _emg_block(self, n, clock, max_len):
        if self.emg_next >= 0 and clock != self.emg_next:
            gap = clock - self.emg_next
            if 0 < gap <= _HOLD_LIMIT_TICKS:
                self._bridge(gap, max_len)  # lost samples are counted by the capture
            else:
                self.envelope.reset()
                self.emg_in = 0
        if self.emg_in == 0:
            self.emg_origin = clock
        lead = 0
        for i in range(n):
            lead |= self.leadoff[i]
        self.quality.process(self.codes, n, lead)
        self._envelope(self.codes, n, max_len)
        if self.raw_mode:
            self.streamer.add_raw(self.codes, 0, n, clock, max_len)
        self.emg_next = clock + n

    def _bridge(self, gap, max_len):
        """Feed the last good sample through the filters for a short gap, so that envelope clocks
        stay on the 100 Hz grid; the capture has counted the samples as lost."""
        last = (_EMG_BLOCK - 1) * units.N_EMG
        hold = self.hold
        for k in range(_EMG_BLOCK):
            for c in range(units.N_EMG):
                hold[k * units.N_EMG + c] = self.codes[c] if self.emg_next < 0 else hold[last + c]
        while gap > 0:
            step = gap if gap < _EMG_BLOCK else _EMG_BLOCK
            self._envelope(hold, step, max_len)
            gap -= step

    def _envelope(self, codes, n, max_len):
        first_out = self.emg_in
        m = self.envelope.process(codes, n, self.env_out, 0)
        self.emg_in += n
        if m == 0:
            return
        # output j of the chain is the envelope at input (j + 1) * 10 - 1 since its reset
        j0 = first_out // 10
        clock = self.emg_origin + (j0 + 1) * 10 - 1
        if self.mvc_channel >= 0:
            ch = self.mvc_channel
            for k in range(m):
                v = self.env_out[k * units.N_EMG + ch]
                if v > self.mvc_peak_uv:
                    self.mvc_peak_uv = v
        self.streamer.add_envelope(self.env_out, 0, m, clock, max_len)
        for k in range(units.N_EMG):
            self.hold[(_EMG_BLOCK - 1) * units.N_EMG + k] = codes[(n - 1) * units.N_EMG + k]

    def _imu_block(self, n, clock, max_len):
        self.pelvis.process(self.imu_block, n, self.pel_out, 0)
        self.streamer.add_pelvis(self.pel_out, 0, n, clock, max_len)
        self.gait.process(self.imu_block, n, clock)
        ev = self.event
        while self.gait.pop(ev):
            self.streamer.add_event(ev[0], ev[1], ev[2], ev[3])
        reps = self.reps
        if reps is not None:
            reps.process(self.imu_block, n, self.pel_out, 0, clock)  # between tasks: gyro bias
            self._send_reps()

    def _send_reps(self):
        r = self.rep
        while self.reps.pop(r):
            self.streamer.add_rep(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7])

    def _max_frame(self):
        """Frames for the flash log alone use whole slots; once a central is connected they must
        fit its ATT payload, which is the 20-byte minimum until the MTU exchange settles."""
        server = self.server
        if not server.connected:
            return SLOT_BYTES
        return server.att_payload if server.mtu_settled() else wire.MIN_ATT_PAYLOAD

    # ------------------------------------------------------------------ radio
    async def _radio(self, me):
        streamer = self.streamer
        server = self.server
        conn = -1
        while True:
            self.beats[me] += 1
            if server.connected:
                conn = server.conn_handle
            elif conn >= 0:  # the central left: its authentication and sync read end with it
                if self.sessions is not None:
                    self.sessions.disconnect(conn)
                conn = -1
            while True:
                i = streamer.peek()
                if i < 0:
                    break
                # the stream goes only to the host that started it: after a link drop whoever
                # connects next gets nothing until it has authenticated (what queues meanwhile is
                # counted as dropped, as while nobody is connected)
                if not server.connected or not self.control.auth.is_authenticated(conn):
                    server.drop_frame(streamer.count)
                    streamer.clear()
                    break
                if not server.notify_stream(streamer.slots[i], streamer.lengths[i]):
                    break  # back-pressure: the frame stays queued and goes out next round
                streamer.pop()
            await asyncio.sleep_ms(_PERIOD_MS)

    # ------------------------------------------------------------------ control
    async def _control(self, me):
        while True:
            self.beats[me] += 1
            n = self.server.poll_command(self.command)
            if n:
                reply_len = self.control.handle(memoryview(self.command)[:n],
                                                self.server.conn_handle, self.server.att_payload)
                self.server.send_response(self.control.reply, reply_len)
            else:
                await asyncio.sleep_ms(_PERIOD_MS)

    def _cmd_info(self, args, conn):
        major, minor, patch = FIRMWARE_VERSION
        auth_required = 0 if self.auth is None else 1
        return cmd.OK, (major, minor, patch, wire.VERSION, units.EMG_RATE_HZ, units.IMU_RATE_HZ,
                        units.N_EMG, self.device_id, auth_required)

    def _cmd_battery(self, args, conn):
        self._measure_battery()
        return cmd.OK, (self.battery_pct, self.battery_mv)

    def _cmd_stream_start(self, args, conn):
        mode = args[0]
        if mode not in (cmd.MODE_PROCESSED, cmd.MODE_RAW):
            return cmd.ERR_BAD_ARG
        if mode == cmd.MODE_RAW and self._max_frame() < rawcodec.RAW_MIN_ATT_PAYLOAD:
            return cmd.ERR_MTU  # one 4-channel raw sample needs more than the 20-byte minimum
        self.raw_mode = mode == cmd.MODE_RAW
        self.streamer.live = True
        self.next_status = 0
        return cmd.OK

    def _cmd_stream_stop(self, args, conn):
        self.streamer.flush(self._max_frame())
        self.streamer.live = False
        self.raw_mode = False
        return cmd.OK

    def _cmd_set_config(self, args, conn):
        mains_hz = args[0]
        if mains_hz not in (50, 60):
            return cmd.ERR_BAD_ARG
        self.envelope.set_mains_hz(mains_hz)
        self.quality.set_mains_hz(mains_hz)
        return cmd.OK

    def _cmd_calibrate(self, args, conn):
        step = args[0]
        if step == cmd.CAL_STANDING_BEGIN:
            self.pelvis.begin_standing_calibration()
            return cmd.OK, (step, 1)
        if step == cmd.CAL_STANDING_END:
            if not self.pelvis.end_standing_calibration():
                return cmd.OK, (step, 0)
            self.cal.mounting = tuple(self.pelvis.mounting())
            self.cal.standing_unix = self._unix_now()
            if not self._save_calibration():  # measured all the same; only a restart loses it
                self.log("standing calibration not saved")
            return cmd.OK, (step, 1)
        channel = step & 0x0F
        if channel >= units.N_EMG:
            return cmd.ERR_BAD_ARG
        if step & 0xF0 == cmd.CAL_MVC_BEGIN:
            self.mvc_channel = channel
            self.mvc_peak_uv = 0
            return cmd.OK, (step, 0)
        if step & 0xF0 == cmd.CAL_MVC_END:
            if self.mvc_channel != channel:
                return cmd.ERR_BAD_ARG
            self.mvc_channel = -1
            return cmd.OK, (step, self.mvc_peak_uv)
        return cmd.ERR_BAD_ARG

    def _cmd_task(self, args, conn):
        """The exam task now done (code 1 + index into EXAM_TASKS, 0: none) on the stance side:
        the repetition search runs until the next TASK. The same task and side again changes
        nothing and answers the clock it started at (a host may repeat it after a reconnect)."""
        task, side, expected = args
        if self.reps is None:
            self.reps = _rep_detector()
        reps = self.reps
        if task > len(cmd.EXAM_TASKS) or (task and side not in (wire.LEFT, wire.RIGHT)):
            return cmd.ERR_BAD_ARG
        if task and reps.active and reps.task == task and reps.side == side:
            return cmd.OK, (reps.begin_clock & 0xFFFFFFFF,)
        clock = self.emg.clock_now()
        reps.end(clock)  # an open repetition is sent as truncated
        self._send_reps()
        if task:
            reps.begin(task, side, expected, clock)
        return cmd.OK, (clock & 0xFFFFFFFF,)

    def _cmd_set_mvc(self, args, conn):
        """The MVCs the host accepted (uV per channel, 0 = none): replace the four kept ones."""
        for v in args:
            if v >= 1 << 30:  # an envelope is never near this; keeps ESP32 small ints
                return cmd.ERR_BAD_ARG
        cal = self.cal
        for c in range(units.N_EMG):
            cal.mvc_uv[c] = args[c]
        cal.mvc_unix = self._unix_now() if cal.has_mvc() else 0
        if not self._save_calibration():
            return cmd.ERR_STORAGE  # kept in RAM until a restart; the host may try again
        return cmd.OK

    def _cmd_cal_info(self, args, conn):
        cal = self.cal
        calibrated = self.pelvis.calibrated
        m = cal.mvc_uv
        return cmd.OK, (cmd.CAL_HAS_STANDING if calibrated else 0,
                        cal.standing_unix if calibrated else 0, m[0], m[1], m[2], m[3],
                        cal.mvc_unix)

    def _save_calibration(self):
        if self.calibration_path is None:
            return True
        try:
            calibration.save(self.cal, self.calibration_path)
            return True
        except OSError as e:
            self.log("calibration not saved: %r" % e)
            return False

    def _unix_now(self):
        """Unix seconds now from the last TIME_SYNC, 0 without one since boot."""
        if self.time_anchor is None:
            return 0
        host_ms, at = self.time_anchor
        return (host_ms + self.emg.clock_now() - at) // 1000

    def _cmd_time_sync(self, args, conn):
        clock = self.emg.clock_now()
        self.time_anchor = (args[0], clock)
        if self.sessions is not None:
            self.sessions.set_time_anchor(args[0], clock)
        return cmd.OK, (clock & 0xFFFFFFFF,)

    # ------------------------------------------------------------------ status
    async def _status(self, me):
        while True:
            self.beats[me] += 1
            self.rewind_clock_if_idle()
            clock = self.emg.clock_now()
            if clock >= self.next_status:
                self.next_status = clock + _STATUS_TICKS
                self._fill_status()
                self.streamer.send_status(clock, self._max_frame())
            await asyncio.sleep_ms(_PERIOD_MS * 10)

    def rewind_clock_if_idle(self):
        """Start the sample clock again at 0 once it passed _CLOCK_REWIND_TICKS, when nothing is
        streamed or recorded (nobody holds its timestamps then; a home recording lasts hours, the
        battery a day). The TIME_SYNC anchor moves with it. Returns True when it rewound."""
        clock = self.emg.clock_now()
        if clock < _CLOCK_REWIND_TICKS or self.streamer.live:
            return False
        if self.sessions is not None and self.sessions.recording():
            return False
        if self.time_anchor is not None:  # ticks are milliseconds
            host_ms, at = self.time_anchor
            self.time_anchor = (host_ms + clock - at, 0)
            if self.sessions is not None:
                self.sessions.set_time_anchor(self.time_anchor[0], 0)
        self.emg.start()  # resets the DRDY counter: the clock counts from 0 again
        self.imu_cap.start()
        self.envelope.reset()
        self.emg_in = 0
        self.emg_next = -1
        self.gait = GaitDetector()
        if self.reps is not None:
            self.reps = _rep_detector()  # a search in progress counted the old clock
        self.next_status = 0
        self.warm = False
        self.clock_rewinds += 1
        return True

    def _measure_battery(self):
        mv = self.board.battery_uv() // 1000
        # LiPo: ~3.3 V empty, ~4.15 V full under light load; linear is honest enough for a gauge
        pct = (mv - 3300) * 100 // 850
        self.battery_mv = mv
        self.battery_pct = 0 if pct < 0 else 100 if pct > 100 else pct

    def _fill_status(self):
        v = self.streamer.status
        self._measure_battery()
        mv = self.battery_mv
        pct = self.battery_pct
        state = 0
        if self.streamer.live:
            state |= wire.STATE_STREAMING
        if self.raw_mode:
            state |= wire.STATE_RAW_MODE
        if self.auth is not None and self.auth.is_authenticated(self.server.conn_handle):
            state |= wire.STATE_AUTHENTICATED
        if self.pelvis.calibrated:
            state |= wire.STATE_CALIBRATED
        if pct < 15:
            state |= wire.STATE_LOW_BATTERY
        free_kib = 0
        if self.sessions is not None:
            state |= self.sessions.state_flags()
            free_kib = self.sessions.free_kib()
        v[wire.V_BATTERY_PCT] = pct
        v[wire.V_STATE] = state
        v[wire.V_BATTERY_MV] = mv
        for c in range(units.N_EMG):
            v[wire.V_QUALITY + c] = self.quality.flags(c)
            mains = self.quality.mains_uv(c)
            v[wire.V_MAINS_UV + c] = mains if mains < 0xFFFF else 0xFFFF
        v[wire.V_EMG_LOST] = self.emg.lost_samples
        # samples a fast IMU oscillator made one too many count with the lost ones (capture note)
        v[wire.V_IMU_LOST] = self.imu_cap.lost_samples + self.imu_cap.rate_drops
        v[wire.V_FRAMES_DROPPED] = self.server.frames_dropped + self.streamer.frames_dropped
        v[wire.V_FLASH_FREE_KIB] = free_kib
        reps_dropped = self.reps.dropped if self.reps is not None else 0
        v[wire.V_EVENTS_DROPPED] = (self.gait.dropped_events + reps_dropped
                                    + self.streamer.samples_dropped)
        v[wire.V_TASK_RESTARTS] = self.restarts

    # ------------------------------------------------------------------ ui
    async def _ui(self, me):
        tick = 0
        while True:
            self.beats[me] += 1
            tick += 1
            self.ui_tick(tick)
            await asyncio.sleep_ms(100)

    def ui_tick(self, tick):
        """Every 100 ms: the LED pattern and the button (held 2 s: start or stop a recording).
        LED (docs/STORAGE.md): recording - slow blink, 0.5 s on / 0.5 s off (whether or not a host
        streams too); flash full, not recording - fast blink, 0.1 s on / 0.1 s off; streaming to a
        host - solid; idle - a 0.1 s blip every 2 s."""
        led = self.board.led
        sessions = self.sessions
        if sessions is not None and sessions.recording():
            led.value(tick % 10 < 5)
        elif sessions is not None and sessions.state_flags() & wire.STATE_FLASH_FULL:
            led.value(tick % 2 == 0)
        elif self.streamer.live and self.server.connected:
            led.value(1)
        else:
            led.value(tick % 20 == 0)
        if self.sessions is not None:
            self.sessions.poll_button(self.board.button)

    def _connection_count(self):
        return self.server.connections


def _rep_detector():
    # imported when the first exam task starts: its code (~10 kB of heap unless frozen) and its
    # histories cost a session without an exam nothing
    from dsp.reps import RepDetector

    return RepDetector()


class _Open:
    """No authenticator configured (development builds): every command is allowed."""

    def is_authenticated(self, conn):
        return True


async def main():
    import bluetooth

    from board import hw
    from link.sync_service import SyncService
    from security.authenticator import Authenticator
    from security.secret import load_secret
    from store.flashlog import FlashLog

    board = hw.build()
    ble = bluetooth.BLE()
    counter = board.drdy_counter

    def clock():
        return counter.value() - 1

    secret = load_secret()
    if secret is None:
        _log("not provisioned: every protected command is refused (run `make deploy`)")
    svc = SyncService(FlashLog("log"), Authenticator(secret, board.device_id), clock=clock)
    app = App(board, ble, board.device_id, auth=svc, sessions=svc,
              calibration_path=calibration.CALIBRATION_PATH)
    await app.run()
