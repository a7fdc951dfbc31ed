# MicroPython benchmark of the whole device app on the unix board, run by bench/bench_firmware.py
# (not part of the deploy set). The app is built as firmware/app.py main() builds it (SyncService as
# auth and sessions, flash log in the working folder), on the offline fake radio, with the fake chips
# replaying a chip feed (or their generated pattern when FEED is "-").
#
#   micropython -X heapsize=512k bench/mp_bench_app.py FEED SECONDS [clean|fakebus] [ROMFS_IMAGE]
#
# Every 50 ms of device time (the app's processing period) the fake chips run (clock.advance), then
# app_step() does what the app's processing, radio (every 10 ms) and status tasks do in that
# period. Printed:
#   HEAP_ALLOC   gc.mem_alloc() after the app is built and started and gc.collect() ran (the ROMFS
#                image, if given, left out: it stands in for flash)
#   HEAP_FAKES   part of it held by the fake chips, their feed buffers, the unix board's clock and
#                its fake radio module (everything imported before the firmware's own modules)
#   HEAP_IMPORTS part of it held by the firmware's modules once imported (bytecode, globals; from a
#                ROMFS image the bytecode stays in the image and only the module objects count)
#   DEVICE_S     device seconds measured (after a 3 s warm-up)
#   WALL_US      wall time of the measured loop: fake chips + app
#   CHAIN_US     time inside app_step only (clock.advance excluded)
#   ALLOC        micropython.mem_total() growth inside app_step (every heap allocation, including
#                bytecode frames that MicroPython puts on the heap and frees on return)
#   UNFREED      gc.mem_alloc() growth inside app_step (allocations not freed on return:
#                what the GC must collect)
#   HEAP_GROWN   gc.mem_alloc() growth across the sample path alone (app.step(), which runs with the
#                heap locked once warm: there MicroPython keeps call frames on the C stack, and
#                mem_total still counts those attempts, so ALLOC is not heap use)
#   ALLOC, UNFREED and HEAP_GROWN are measured in mode "fakebus" only (0 in mode "clean"): each
#   gc.mem_alloc() call scans the heap's allocation table, which would swamp the timings.
#   DRDY_US      the DRDY IRQ handler's own time per sample (EmgCapture._on_drdy: one SPI frame read,
#                the 24-bit decode, the ring store), measured after the loop on the app's capture
#                with its pulse counter, chip select and SPI bus swapped for minimal Python stubs:
#                the handler's loop less the same stub calls made without it, median of rounds. On
#                the ESP32 the handler runs 1000 times a second, as a scheduled soft IRQ, but here
#                it runs inside clock.advance, so neither CHAIN_US nor the fake-board share sees it.
# Mode "fakebus" also wraps the fake board objects the app calls during app_step (the IMU's SPI bus
# and chip select, the DRDY pulse counter: Python on the unix board, C on the ESP32) and prints the
# time and allocation inside them (FAKEBUS_US, FAKEBUS_ALLOC, FAKEBUS_CALLS) and the wrapper's own
# cost per call, measured on a no-op (WRAP_US, WRAP_ALLOC), so the caller can subtract them.
import gc
import sys
import time

import micropython

# The firmware as deployed: bytecode in flash. ROM (argument 4) is the deploy set as a ROMFS image
# (tools/device.py romfs_image, compiled for this machine); mounted from a buffer read before the
# baseline, it stands in for the flash, and imports run their bytecode in place from it.
_ROM = sys.argv[4] if len(sys.argv) > 4 else None
gc.collect()
_rom_heap = gc.mem_alloc()
if _ROM:
    import vfs

    with open(_ROM, "rb") as f:
        _image = f.read()
    vfs.mount(vfs.VfsRom(_image), "/rom")
    sys.path.insert(0, "/rom")
gc.collect()
_rom_heap = gc.mem_alloc() - _rom_heap  # the image and its mount

_base = gc.mem_alloc()

import bluetooth  # noqa: E402
import hardware_clock  # noqa: E402

_FEED = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != "-" else None
_SECONDS = int(sys.argv[2]) if len(sys.argv) > 2 else 60
_MODE = sys.argv[3] if len(sys.argv) > 3 else "clean"
_STEP_MS = 50  # the app's processing block: app._BLOCK_SAMPLES EMG samples at 1 kHz
_WARMUP_STEPS = 60
_RADIO_ROUNDS = _STEP_MS // 10  # the radio task's period is 10 ms (app._PERIOD_MS)

clock = hardware_clock.install(_FEED)
gc.collect()
_fakes = gc.mem_alloc() - _base

import app as app_module  # noqa: E402
from board import hw  # noqa: E402
from link.sync_service import SyncService  # noqa: E402
from security.authenticator import Authenticator  # noqa: E402
from store.flashlog import FlashLog  # noqa: E402

gc.collect()
print("HEAP_IMPORTS", gc.mem_alloc() - _base - _fakes)  # firmware modules (bytecode, globals)

board = hw.build()
ble = bluetooth.BLE()
bluetooth.sim_reset()
_counter = board.drdy_counter


def _clock():
    return _counter.value() - 1


svc = SyncService(FlashLog("log"), Authenticator(bytes(32), board.device_id), clock=_clock)
a = app_module.App(board, ble, board.device_id, auth=svc, sessions=svc, log=lambda m: None)
a.start()
gc.collect()
print("HEAP_ALLOC", gc.mem_alloc() - _rom_heap)
print("HEAP_FAKES", _fakes)
print("HEAP_FREE", gc.mem_free())

a.streamer.live = True
streamer = a.streamer
frames = 0
by_type = bytearray(8)  # frames per type (first header byte), wrapping at 256 is fine for a check


grown = 0  # gc.mem_alloc() growth across the sample path (a.step(), heap-locked once warm)
chain_us = 0  # time inside app_step, heap accounting left out
# gc.mem_alloc() walks the whole allocation table (about 50 us for this heap, more than a step of
# the app): only mode "fakebus" calls it, and never inside the timed windows.
_HEAP = _MODE == "fakebus"


def app_step():
    """One 50 ms period of the app's processing, radio and status tasks (the radio, every 10 ms,
    hands each frame to the BLE server; offline the frame is taken off the queue instead)."""
    global frames, grown, chain_us
    if _HEAP:
        g0 = gc.mem_alloc()
    t0 = ticks_us()
    a.step()
    t1 = ticks_us()
    if _HEAP:
        grown += gc.mem_alloc() - g0
    t2 = ticks_us()
    now = a.emg.clock_now()
    if now >= a.next_status:
        a.next_status = now + 1000
        a._fill_status()
        streamer.send_status(now, 244)
    for _ in range(_RADIO_ROUNDS):
        a.emg.available()  # the processing task's wait for a full block, every 10 ms
        while True:
            i = streamer.peek()
            if i < 0:
                break
            t = streamer.slots[i][0]
            if t < 8:
                by_type[t] = (by_type[t] + 1) & 0xFF
            streamer.pop()
            frames += 1
    chain_us += ticks_diff(t1, t0) + ticks_diff(ticks_us(), t2)


ticks_us = time.ticks_us
ticks_diff = time.ticks_diff
mem_total = micropython.mem_total
mem_current = micropython.mem_current

# --- fake-board accounting (mode fakebus) -------------------------------------------------------
fake_us = 0
fake_alloc = 0
fake_calls = 0


def _wrap0(fn):
    def w():
        global fake_us, fake_alloc, fake_calls
        m0 = mem_total()
        t0 = ticks_us()
        r = fn()
        t1 = ticks_us()
        fake_alloc += mem_total() - m0
        fake_us += ticks_diff(t1, t0)
        fake_calls += 1
        return r
    return w


def _wrap1(fn):
    def w(x):
        global fake_us, fake_alloc, fake_calls
        m0 = mem_total()
        t0 = ticks_us()
        r = fn(x)
        t1 = ticks_us()
        fake_alloc += mem_total() - m0
        fake_us += ticks_diff(t1, t0)
        fake_calls += 1
        return r
    return w


def _wrap2(fn):
    def w(x, y):
        global fake_us, fake_alloc, fake_calls
        m0 = mem_total()
        t0 = ticks_us()
        r = fn(x, y)
        t1 = ticks_us()
        fake_alloc += mem_total() - m0
        fake_us += ticks_diff(t1, t0)
        fake_calls += 1
        return r
    return w


def _noop1(x):
    return x


def _wrapper_cost():
    """Time and allocation a wrapped call adds outside the measured inner window (per call)."""
    global fake_us, fake_alloc, fake_calls
    n = 20000
    plain = _noop1
    wrapped = _wrap1(_noop1)
    m0 = mem_total()
    t0 = ticks_us()
    for _ in range(n):
        plain(0)
    t_plain = ticks_diff(ticks_us(), t0)
    a_plain = mem_total() - m0
    fake_us = fake_alloc = fake_calls = 0
    m0 = mem_total()
    t0 = ticks_us()
    for _ in range(n):
        wrapped(0)
    t_wrapped = ticks_diff(ticks_us(), t0)
    a_wrapped = mem_total() - m0
    # the wrapped total minus what the inner call itself showed, minus the plain call
    extra_us = (t_wrapped - fake_us - t_plain) / n
    extra_alloc = (a_wrapped - fake_alloc - a_plain) / n
    fake_us = fake_alloc = fake_calls = 0
    return extra_us, extra_alloc


if _MODE == "fakebus":
    wrap_us, wrap_alloc = _wrapper_cost()
    spi = a.imu.spi
    cs = a.imu.cs
    spi.write = _wrap1(spi.write)
    spi.readinto = _wrap2(spi.readinto)
    cs.value = _wrap1(cs.value)
    _counter.value = _wrap0(_counter.value)

# warm-up: buffers bound, rings filled once, filters and gait detector past their start
for _ in range(_WARMUP_STEPS):
    clock.advance(_STEP_MS)
    app_step()
gc.collect()
fake_us = fake_alloc = fake_calls = 0

steps = _SECONDS * 1000 // _STEP_MS
chain_us = 0
alloc = 0
grown = 0  # count the steady state only, not the warm-up
unfreed = 0
# the fake board is also called from clock.advance (DRDY IRQ handler, IMU stamping): only what it
# does inside app_step counts here
step_fake_us = 0
step_fake_alloc = 0
step_fake_calls = 0
t_start = ticks_us()
if _HEAP:
    for _ in range(steps):
        clock.advance(_STEP_MS)
        fu, fa, fc = fake_us, fake_alloc, fake_calls
        c0 = gc.mem_alloc()
        m0 = mem_total()
        app_step()
        alloc += mem_total() - m0
        unfreed += gc.mem_alloc() - c0
        step_fake_us += fake_us - fu
        step_fake_alloc += fake_alloc - fa
        step_fake_calls += fake_calls - fc
else:
    for _ in range(steps):
        clock.advance(_STEP_MS)
        app_step()
wall_us = ticks_diff(ticks_us(), t_start)


class _BusStub:
    """Stands in for the pulse counter, chip select and SPI bus at the cost of one Python call."""

    def __init__(self, count):
        self.count = count

    def value(self, v=None):
        return self.count

    def readinto(self, buf, write=0):
        pass


def _drdy_handler_us(n=20000, rounds=9):
    emg = a.emg
    from capture.emg_capture import HEAD, LAST_COUNT, TAIL

    st = emg._st
    saved = (emg._counter, emg._cs, emg._spi)
    stub = _BusStub(0)
    emg._counter = emg._cs = emg._spi = stub
    handler = emg._handler
    frame = emg._frame  # the last real conversion: the handler decodes real data
    diffs = []
    for _ in range(rounds):
        first = st[LAST_COUNT] + 1
        t0 = ticks_us()
        for i in range(first, first + n):
            stub.count = i
            handler(None)
            st[TAIL] = st[HEAD]  # keep the ring from filling
        t_handler = ticks_diff(ticks_us(), t0)
        t0 = ticks_us()
        for i in range(first, first + n):  # the handler's bus calls alone, same loop
            stub.count = i
            stub.value()
            stub.value(0)
            stub.readinto(frame, 0)
            stub.value(1)
            stub.value()
            st[TAIL] = st[HEAD]
        diffs.append(t_handler - ticks_diff(ticks_us(), t0))
    emg._counter, emg._cs, emg._spi = saved
    # the two loops of a round run back to back, so a slow spell of the machine hits both: the
    # median of the rounds' differences, not the difference of two independent minima
    diffs.sort()
    return diffs[rounds // 2] / n


lost = (a.emg.lost_samples, a.imu_cap.lost_samples)
drdy_us = _drdy_handler_us()
print("DEVICE_S", steps * _STEP_MS / 1000)
print("WALL_US", wall_us)
print("CHAIN_US", chain_us)
print("ALLOC", alloc)
print("HEAP_GROWN", grown)
print("UNFREED", unfreed)
print("FRAMES", frames)
print("LOST", lost[0], lost[1])
print("DRDY_US", drdy_us)
print("EVENT_FRAMES_MOD256", by_type[3])
if _MODE == "fakebus":
    print("FAKEBUS_US", step_fake_us)
    print("FAKEBUS_ALLOC", step_fake_alloc)
    print("FAKEBUS_CALLS", step_fake_calls)
    print("WRAP_US", wrap_us)
    print("WRAP_ALLOC", wrap_alloc)
