# The whole device app on the unix board: fake chips feed the real drivers, the real DSP runs,
# frames come out of the (offline) fake radio. Runs inside MicroPython.
from array import array

import micropython

import bluetooth
import hardware_clock
from board import hw
from hipwire import commands as cmd
from hipwire import frames as wire

import app as app_module


def _app():
    clock = hardware_clock.install(None)  # generated test pattern: sEMG-like codes, moving IMU
    board = hw.build()
    ble = bluetooth.BLE()
    bluetooth.sim_reset()
    a = app_module.App(board, ble, b"\x01\x02\x03\x04\x05\x06")
    a.start()
    return clock, a


def _send(a, op, token, *args):
    frame = cmd.encode_command(op, token, *args)
    n = a.control.handle(frame, 1, 244)
    return cmd.decode_response(bytes(a.control.reply[:n]))


def test_processing_turns_samples_into_envelope_pelvis_and_status_frames():
    clock, a = _app()
    got = []

    def record(buf, n):
        got.append(bytes(buf[:n]))

    a.streamer.record = record
    for _ in range(300):  # 3 s of device time in 10 ms steps
        clock.advance(10)
        a.process_once()
        if a.emg.clock_now() >= a.next_status:
            a.next_status = a.emg.clock_now() + 1000
            a._fill_status()
            a.streamer.send_status(a.emg.clock_now(), 244)
    a.streamer.flush(20)
    types = {}
    env_samples = 0
    last_env_clock = -1
    for frame in got:
        ftype, _v, seq, clk = wire.check(frame)
        types[ftype] = types.get(ftype, 0) + 1
        if ftype == wire.ENVELOPE:
            assert clk > last_env_clock
            assert clk % 10 == 9  # on the 100 Hz grid of the chain's outputs
            last_env_clock = clk
            env_samples += frame[wire.HEADER_SIZE]
    assert types.get(wire.ENVELOPE, 0) >= 4 and types.get(wire.PELVIS, 0) >= 4
    assert types.get(wire.STATUS, 0) >= 3
    assert 280 <= env_samples <= 300, env_samples
    assert a.emg.lost_samples == 0 and a.imu_cap.lost_samples == 0


def test_the_sample_path_runs_with_the_heap_locked_and_allocates_nothing():
    import gc

    clock, a = _app()
    a.streamer.live = True
    for _ in range(100):
        clock.advance(10)
        a.step()
        while a.streamer.peek() >= 0:
            a.streamer.pop()
    assert a.warm  # from here on step() runs with the heap locked
    grown = 0
    for _ in range(300):
        clock.advance(10)  # the fake chips are test equipment: they may allocate
        before = gc.mem_alloc()
        a.step()  # locked: any allocation would raise MemoryError out of here
        grown += gc.mem_alloc() - before
        while a.streamer.peek() >= 0:
            a.streamer.pop()
    assert a.emg.delivered >= 3900 and a.imu_cap.delivered >= 390
    assert grown == 0, grown


def test_steady_state_sample_path_allocates_nothing():
    clock, a = _app()
    a.streamer.live = True
    for _ in range(100):  # warm up: first calls bind buffers, the rings fill once
        clock.advance(10)
        a.process_once()
        while a.streamer.peek() >= 0:
            a.streamer.pop()
    micropython.heap_lock()
    try:
        for _ in range(200):
            a.process_once()
            while a.streamer.peek() >= 0:
                a.streamer.pop()
            micropython.heap_unlock()  # the fake chips (test equipment) may allocate
            clock.advance(10)
            micropython.heap_lock()
    finally:
        micropython.heap_unlock()
    assert a.emg.delivered >= 2900


def test_lost_samples_are_counted_and_clocks_stay_on_the_grid():
    clock, a = _app()
    got = []
    a.streamer.record = lambda buf, n: got.append(bytes(buf[:n]))
    for k in range(100):
        clock.advance(10)
        if k == 50:
            clock.drop_drdy_reads(7)
        a.process_once()
    a.streamer.flush(244)
    assert a.emg.lost_samples == 7
    expected = -1
    for frame in got:
        ftype, _v, _s, clk = wire.check(frame)
        if ftype == wire.ENVELOPE:
            assert clk % 10 == 9
            # the short gap is bridged: the envelope timeline has no hole and no jump
            assert expected < 0 or clk == expected, (clk, expected)
            expected = clk + 10 * frame[wire.HEADER_SIZE]


def test_commands_configure_the_pipeline():
    clock, a = _app()
    assert _send(a, cmd.OP_INFO, 1)[2:] == (cmd.OK, (0, 1, 0, wire.VERSION, 1000, 100, 4,
                                                    b"\x01\x02\x03\x04\x05\x06", 0))
    assert _send(a, cmd.OP_SET_CONFIG, 2, 60)[2] == cmd.OK and a.envelope.mains_hz == 60
    assert _send(a, cmd.OP_SET_CONFIG, 3, 55)[2] == cmd.ERR_BAD_ARG
    assert _send(a, cmd.OP_STREAM_START, 4, cmd.MODE_PROCESSED)[2] == cmd.OK and a.streamer.live
    assert _send(a, cmd.OP_CALIBRATE, 5, cmd.CAL_MVC_BEGIN + 2)[2] == cmd.OK
    for _ in range(50):
        clock.advance(10)
        a.process_once()
    status, values = _send(a, cmd.OP_CALIBRATE, 6, cmd.CAL_MVC_END + 2)[2:]
    assert status == cmd.OK and values[1] > 0
    assert _send(a, cmd.OP_CALIBRATE, 7, cmd.CAL_MVC_END + 1)[2] == cmd.ERR_BAD_ARG
    status, values = _send(a, cmd.OP_TIME_SYNC, 8, 1763700000000)[2:]
    assert status == cmd.OK and values[0] == a.emg.clock_now()
    assert _send(a, cmd.OP_STREAM_STOP, 9)[2] == cmd.OK and not a.streamer.live


def test_raw_mode_streams_the_exact_codes_beside_the_processed_stream():
    from hipwire import rawcodec

    clock, a = _app()
    got = []
    a.streamer.record = lambda buf, n: got.append(bytes(buf[:n]))
    assert _send(a, cmd.OP_STREAM_START, 1, cmd.MODE_RAW)[2] == cmd.OK and a.raw_mode
    # preallocated: growing lists of 1200 ints ran the 512 KiB test heap out beside the app
    sent = array("i", bytes(4 * 4 * 400))
    n_sent = 0
    for _ in range(30):
        clock.advance(10)
        n = a.emg.drain(a.codes, a.leadoff, 100)
        for i in range(n * 4):
            sent[n_sent] = a.codes[i] >> rawcodec.RAW_SHIFT
            n_sent += 1
        a._emg_block(n, a.emg.clock_first, 244)
    a.streamer.flush(244)
    n_raw = 0
    types = set()
    for frame in got:
        types.add(frame[0])
        if frame[0] == wire.RAW_EMG:
            period, channels = rawcodec.decode(frame)
            for k in range(len(channels[0])):
                for c in range(4):
                    assert channels[c][k] == sent[n_raw], (n_raw, channels[c][k], sent[n_raw])
                    n_raw += 1
    assert wire.ENVELOPE in types
    assert n_raw == n_sent == 4 * 300
    assert _send(a, cmd.OP_STREAM_STOP, 2)[2] == cmd.OK and not a.raw_mode


def _run_for(a, clock, ms, watchdog=True):
    import asyncio

    async def main():
        asyncio.create_task(clock.run(1.0))
        try:
            await asyncio.wait_for_ms(a.run(watchdog=watchdog), ms)
        except asyncio.TimeoutError:
            pass

    asyncio.run(main())


def _block_sizes(speed, ms, stalled_afe=False):
    """Run the app's tasks with the chips at `speed` x real time; EMG samples per processing step."""
    import asyncio

    clock = hardware_clock.install(None)
    a = app_module.App(hw.build(), bluetooth.BLE(), b"\x01\x02\x03\x04\x05\x06",
                       log=lambda msg: None)
    sizes = []
    real_step = a.step

    def step():
        before = a.emg.delivered
        real_step()
        sizes.append(a.emg.delivered - before)

    a.step = step
    if stalled_afe:
        a.emg.available = lambda: 0

    async def main():
        asyncio.create_task(clock.run(speed))
        try:
            await asyncio.wait_for_ms(a.run(watchdog=False), ms)
        except asyncio.TimeoutError:
            pass

    asyncio.run(main())
    return a, sizes


def test_processing_takes_blocks_of_50_samples_at_any_clock_speed():
    for speed in (1.0, 4.0):
        a, sizes = _block_sizes(speed, 800)
        steady = sorted(sizes[2:-1])  # past start-up (the filters seed on the first blocks)
        assert len(steady) >= 5, (speed, sizes)
        # never a 10 ms sliver, even when the sample clock outruns the task timers
        assert steady[0] >= 50, (speed, sizes)
        if speed == 1.0:  # 50 ms blocks: the wait ends within one 10 ms task round
            assert steady[len(steady) // 2] <= 60, sizes
            assert a.emg.lost_samples == 0 and a.imu_cap.lost_samples == 0


def test_a_silent_afe_still_lets_the_imu_through():
    a, sizes = _block_sizes(1.0, 800, stalled_afe=True)
    # processed every 10th 10 ms round without waiting for EMG samples: IMU samples keep flowing
    assert len(sizes) >= 4, sizes
    assert a.imu_cap.delivered >= 40 and a.imu_cap.lost_samples == 0


def test_a_task_that_dies_is_restarted_and_counted():
    import machine

    clock = hardware_clock.install(None)
    board = hw.build()
    a = app_module.App(board, bluetooth.BLE(), b"\x01\x02\x03\x04\x05\x06",
                       log=lambda msg: None, watchdog_check_ms=100)
    calls = [0]
    real = a.process_once

    def flaky():
        calls[0] += 1
        if calls[0] == 3:
            raise ValueError("simulated bug")
        real()

    a.process_once = flaky
    _run_for(a, clock, 1500)
    assert a.restarts == 1
    assert calls[0] > 20  # it kept running after the restart
    assert a.emg.delivered > 500
    wdt = machine.board_watchdogs()[-1]
    assert wdt.feeds >= 5  # healthy loop: fed


def test_the_watchdog_starves_when_a_loop_hangs():
    import asyncio

    import machine

    clock = hardware_clock.install(None)
    board = hw.build()
    a = app_module.App(board, bluetooth.BLE(), b"\x01\x02\x03\x04\x05\x06",
                       log=lambda msg: None, watchdog_check_ms=100)
    hang = asyncio.Event()

    async def stuck(me):
        await hang.wait()  # never set: the status loop stops beating

    a._status = stuck
    _run_for(a, clock, 1000)
    wdt = machine.board_watchdogs()[-1]
    assert wdt.feeds == 0  # never fed, so the real watchdog resets the board


def test_holding_the_button_starts_and_stops_a_recording_with_the_led_showing_it():
    import machine

    import os

    from board import pins
    from link.sync_service import SyncService
    from security.authenticator import Authenticator
    from store.flashlog import FlashLog

    from binascii import hexlify

    root = "/tmp/hipsync-mp-button-" + hexlify(os.urandom(6)).decode()
    clock = hardware_clock.install(None)
    board = hw.build()
    svc = SyncService(FlashLog(root), Authenticator(b"\x11" * 32, board.device_id),
                      clock=lambda: board.drdy_counter.value() - 1)
    a = app_module.App(board, bluetooth.BLE(), board.device_id, auth=svc, sessions=svc,
                       log=lambda msg: None)
    a.start()

    ticks = [0]

    def ui_polls(k, level):
        machine.board_drive(pins.BUTTON, level)
        led = []
        for _ in range(k):  # what the ui task does every 100 ms
            clock.advance(100)
            a.step()
            ticks[0] += 1
            a.ui_tick(ticks[0])
            led.append(board.led.value())
        return led

    idle = ui_polls(40, 1)
    assert not svc.recording() and sum(idle) == 2  # idle: a blip every 2 s
    ui_polls(20, 0)  # held 2 s: a session starts
    recording = ui_polls(30, 1)  # released; frames go to the flash log
    assert svc.recording() and a.streamer.seq > 0
    assert sum(recording) == 15  # slow blink: half the time on
    ui_polls(20, 0)  # held again: the session is closed
    ui_polls(2, 1)
    assert not svc.recording()
    sessions = svc.log.sessions()
    assert len(sessions) == 1 and sessions[0][1] > 500  # (id, size, ...): bytes were recorded
    _remove_tree(root)


def test_the_led_tells_recording_from_streaming_and_a_full_flash_blinks_fast():
    import os
    import struct
    from binascii import hexlify

    import machine

    from board import pins
    from link.sync_service import SyncService
    from security.authenticator import Authenticator
    from store.flashlog import FlashLog

    root = "/tmp/hipsync-mp-led-" + hexlify(os.urandom(6)).decode()
    free = [1 << 20]
    clock = hardware_clock.install(None)
    board = hw.build()
    svc = SyncService(FlashLog(root, free_bytes=lambda: free[0]),
                      Authenticator(b"\x11" * 32, board.device_id),
                      clock=lambda: board.drdy_counter.value() - 1)
    a = app_module.App(board, bluetooth.BLE(), board.device_id, auth=svc, sessions=svc,
                       log=lambda msg: None)
    a.start()
    ticks = [0]

    def ui_polls(k, level=1):
        machine.board_drive(pins.BUTTON, level)
        led = []
        for _ in range(k):
            clock.advance(100)
            a.step()
            ticks[0] += 1
            a.ui_tick(ticks[0])
            led.append(board.led.value())
        return led

    a.streamer.live = True
    a.server.connected = True  # a host streams: solid
    assert sum(ui_polls(20)) == 20
    svc.start_recording()  # and the device records too: recording shows, not streaming
    assert sum(ui_polls(20)) == 10 and max(ui_polls(2)) == 1
    reply = bytearray(32)
    assert svc.rec_status(reply, 0) == 15
    flags, sid, seconds, size, free_kib = struct.unpack_from("<BHIII", reply, 0)
    assert flags == cmd.REC_RECORDING and sid == 1 and 1 <= seconds <= 3 and size > 0
    assert free_kib == 1024
    svc.log.stop()
    a.streamer.live = False
    a.server.connected = False
    free[0] = 0  # the flash is full: a button press cannot start a recording
    ui_polls(21, 0)
    assert not svc.recording() and svc.log.full
    led = ui_polls(20)
    assert sum(led) == 10 and led[0] != led[1]  # fast blink: every other 100 ms
    svc.rec_status(reply, 0)
    assert struct.unpack_from("<BH", reply, 0) == (cmd.REC_FLASH_FULL, 0)
    _remove_tree(root)


def _remove_tree(path):
    import os

    for name, kind, *_ in os.ilistdir(path):
        full = path + "/" + name
        if kind == 0x4000:
            _remove_tree(full)
        else:
            os.remove(full)
    os.rmdir(path)


def test_the_sample_clock_rewinds_while_idle_before_it_leaves_the_small_int_range():
    clock, a = _app()
    for _ in range(20):
        clock.advance(10)
        a.step()
    assert not a.rewind_clock_if_idle()  # far from the limit
    a.board.drdy_counter.value(1 << 29)  # six days later
    clock.advance(10)
    a.step()
    assert a.emg.clock_now() >= 1 << 29
    _, (synced_at,) = a._cmd_time_sync((1763700000000,), 1)
    a.streamer.live = True
    assert not a.rewind_clock_if_idle()  # never under a host's feet
    a.streamer.live = False
    before = a.emg.clock_now()
    assert a.rewind_clock_if_idle()
    assert a.emg.clock_now() < 10 and a.clock_rewinds == 1
    # the wall-clock anchor moved with the clock: the rewind instant is clock 0 now
    assert a.time_anchor == (1763700000000 + before - synced_at, 0)
    got = []
    a.streamer.record = lambda buf, n: got.append(bytes(buf[:n]))  # allocates: not step()
    for _ in range(100):
        clock.advance(10)
        a.process_once()
    a.streamer.flush(244)
    clocks = [wire.check(f)[3] for f in got if f[0] == wire.ENVELOPE]
    # samples buffered before the rewind go out first, with their own clocks; then from clock 0
    assert len(clocks) >= 2 and clocks[0] >= 1 << 29
    assert all(c < 2000 for c in clocks[1:])
    assert a.emg.lost_samples == 0, (a.emg.lost_samples, a.emg.missed, a.emg.overruns)
