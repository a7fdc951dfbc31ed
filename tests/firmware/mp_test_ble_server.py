# BleServer on the offline fake radio (no air): the sim_* hooks of firmware/unixboard/bluetooth.py
# play the central and the link. Runs inside MicroPython.
import sys
import time

# asyncio is frozen into the unix port; tests/micropython_port.py's MICROPYPATH leaves out ".frozen".
if ".frozen" not in sys.path:
    sys.path.append(".frozen")

import bluetooth
import micropython

from hipwire import commands, frames, gatt
from link.ble_server import BleServer

_DEVICE_ID = b"\x24\x0a\xc4\x12\xab\xcd"


def _server(pool=10, on_command=None):
    bluetooth.sim_reset()
    bluetooth.sim_set_pool(pool)
    server = BleServer(bluetooth.BLE(), _DEVICE_ID, on_command, backoff_ms=3)
    server.start()
    return server


def _connect(server, mtu=247):
    bluetooth.sim_connect(1)
    bluetooth.sim_mtu(mtu)
    assert server.connected and server.mtu_settled()


def _frame(buf, seq, n_samples=5):
    samples = [100 + seq, 200, 300, 400] * n_samples
    return frames.encode_batch(buf, len(buf), frames.ENVELOPE, seq, seq * 50, 10, samples, 0,
                               n_samples, 4)


def test_start_registers_and_advertises_within_31_bytes():
    server = _server()
    assert server.name == "hipsync-abcd"
    assert server.name.startswith(gatt.NAME_PREFIX)
    assert bluetooth.stats()["advertising"]
    assert len(server._adv) <= 31 and len(server._scan_resp) <= 31
    # the 128-bit service UUID is in the advertisement, little-endian
    assert bytes(reversed(server._adv[-16:])) == bytes.fromhex(gatt.SERVICE_UUID.replace("-", ""))
    assert server._scan_resp[2:] == b"hipsync-abcd"
    assert not server.connected and server.att_payload == 20


def test_mtu_exchange_sets_att_payload():
    server = _server()
    bluetooth.sim_connect(1)
    assert server.connected and server.att_payload == 20 and not server.mtu_settled()
    bluetooth.sim_mtu(517)  # the central offers more than we asked for: we keep PREFERRED_MTU
    assert server.mtu == gatt.PREFERRED_MTU and server.att_payload == gatt.PREFERRED_MTU - 3


def test_notify_stream_sends_exact_bytes():
    server = _server()
    _connect(server)
    bluetooth.sim_capture(True)
    buf = bytearray(244)
    n = _frame(buf, 7)
    assert server.notify_stream(buf, n)
    (handle, data), = bluetooth.sim_captured()
    assert handle == server._stream_handle and data == bytes(buf[:n])
    assert frames.check(data)[2] == 7


def test_enomem_backs_off_counts_and_recovers():
    server = _server(pool=3)
    _connect(server)
    buf = bytearray(244)
    n = _frame(buf, 1)
    for _ in range(3):
        assert server.notify_stream(buf, n)
    assert not server.notify_stream(buf, n)  # pool full: ENOMEM, caller keeps the frame
    assert server.notify_failures == 1 and bluetooth.stats()["enomem"] == 1
    for _ in range(50):  # backing off: the stack is not asked again
        assert not server.notify_stream(buf, n)
    assert bluetooth.stats()["enomem"] == 1 and server.notify_failures == 1
    bluetooth.sim_tx_done(3)
    time.sleep_ms(5)
    assert server.notify_stream(buf, n)
    assert server.frames_dropped == 0  # nothing was given up: the caller still held the frame


def test_notify_allocates_nothing_in_steady_state_even_on_enomem():
    server = _server(pool=4)
    _connect(server)
    slots = [bytearray(244) for _ in range(3)]  # the app rotates frame slots
    lengths = []
    for seq in range(1, 6):  # warm up: one TX view per frame length used below
        n = _frame(slots[seq % 3], seq, seq)
        lengths.append(n)
        server.notify_stream(slots[seq % 3], n)
    bluetooth.sim_tx_done(10)
    time.sleep_ms(5)
    sent = 0
    refused = 0
    micropython.heap_lock()
    try:
        for i in range(2000):
            if server.notify_stream(slots[(i // 5) % 3], lengths[i % 5]):
                sent += 1
            else:
                refused += 1
                bluetooth.sim_tx_done(2)
    finally:
        micropython.heap_unlock()
    assert sent > 0 and refused > 0
    assert server.notify_failures > 0 and server.notify_errors == 0


def test_control_write_is_copied_out_of_the_irq():
    got = []
    server = _server(on_command=lambda view, n: got.append(bytes(view)))
    _connect(server)
    cmd = commands.encode_command(commands.OP_AUTH_RESPONSE, 9, b"c" * 16, b"r" * 32)
    assert len(cmd) > 20  # needs the enlarged control buffer
    bluetooth.sim_write(server._control_handle, cmd)
    bluetooth.sim_write(server._control_handle, b"second")  # before the first was taken
    assert server.commands_overrun == 1
    out = bytearray(128)
    n = server.poll_command(out)
    assert bytes(out[:n]) == cmd
    assert commands.decode_command(bytes(out[:n]))[1] == commands.OP_AUTH_RESPONSE
    assert server.poll_command(out) == 0


def test_response_waits_for_buffers_and_goes_before_stream():
    server = _server(pool=2)
    _connect(server)
    bluetooth.sim_capture(True)
    buf = bytearray(244)
    n = _frame(buf, 3)
    assert server.notify_stream(buf, n) and server.notify_stream(buf, n)
    resp = bytearray(64)
    rn = commands.encode_response(resp, 5, commands.OP_STREAM_STOP, commands.OK)
    assert server.send_response(resp, rn)  # queued: the pool is full
    assert server.response_pending
    assert not server.notify_stream(buf, n)
    bluetooth.sim_tx_done(2)
    time.sleep_ms(5)
    assert server.notify_stream(buf, n)
    sent = bluetooth.sim_captured()
    assert sent[2] == (server._control_handle, bytes(resp[:rn]))
    assert sent[3][0] == server._stream_handle
    assert not server.response_pending


def test_disconnect_readvertises_and_refuses_sends():
    server = _server()
    _connect(server)
    bluetooth.sim_disconnect()
    assert not server.connected and server.disconnects == 1
    assert server.att_payload == 20
    assert bluetooth.stats()["advertising"]
    buf = bytearray(244)
    n = _frame(buf, 1)
    assert not server.notify_stream(buf, n)  # not connected: the caller decides
    server.drop_frame()
    assert server.frames_dropped == 1 and server.notify_failures == 0


def test_oversize_frame_is_dropped_and_counted_once_mtu_is_known():
    server = _server()
    bluetooth.sim_connect(1)
    buf = bytearray(244)
    n = _frame(buf, 1, 20)
    assert n > 20
    assert not server.notify_stream(buf, n)  # MTU exchange pending: retry later
    bluetooth.sim_mtu(23)  # the central will not go above the minimum
    assert server.notify_stream(buf, n)
    assert server.oversize == 1 and server.frames_dropped == 1
    assert bluetooth.stats()["truncated"] == 0
