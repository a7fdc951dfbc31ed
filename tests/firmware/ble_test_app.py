# A minimal GATT app for the BLE link tests (run by firmware/unixboard/run_virtual.py with
# HIPSYNC_APP=ble_test_app): the real BleServer, a few real commands, and a synthetic ENVELOPE
# stream as fast as the link takes it. Not the product app (firmware/app.py).
#
# Commands: INFO; STREAM_START(0) starts the stream (mode 1 answers ERR_BAD_ARG); STREAM_STOP stops
# it and prints the counters; TIME_SYNC answers the device clock; SESSION_READ(session, offset,
# length) answers, then sends that range of a synthetic log (byte i = i & 0xFF) as sync chunks and
# an empty end chunk. Every stop prints "BLE-COUNTERS {json}" on stdout.
#
# While streaming without a central the app goes on making frames at the 100 Hz envelope pace
# and gives them up with drop_frame(): the live stream's gap equals what the link dropped plus
# frames_dropped, which is what the tests check.
import asyncio
import json
import os

import bluetooth

from hipwire import commands, frames
from link.ble_server import BleServer

_CHANNELS = 4
_BATCH_MAX = 64  # enough to fill a 244-byte ATT payload
_PERIOD_TICKS = 10
_DISCONNECTED_FRAME_MS = 10


class _State:
    streaming = False
    seq = 0
    clock = 0
    sent = 0
    session_job = None


_state = _State()
_resp = bytearray(128)
_frame = bytearray(512)
_chunk = bytearray(512)
_samples = [0] * (_CHANNELS * _BATCH_MAX)
_server = None


def _device_id():
    hexid = os.getenv("HIPSYNC_DEVICE_ID") or "02a1b2c3d4e5"
    return bytes(int(hexid[i:i + 2], 16) for i in range(0, 12, 2))


def counters():
    s = _server
    return {"frames_dropped": s.frames_dropped, "notify_failures": s.notify_failures,
            "notify_errors": s.notify_errors, "oversize": s.oversize,
            "responses_lost": s.responses_lost, "commands_overrun": s.commands_overrun,
            "connections": s.connections, "disconnects": s.disconnects, "sent": _state.sent,
            "seq": _state.seq, "radio": bluetooth.stats()}


def _print_counters():
    print("BLE-COUNTERS " + json.dumps(counters()))


def _respond(token, op, status, *values):
    n = commands.encode_response(_resp, token, op, status, *values)
    _server.send_response(_resp, n)


def on_command(view, n):
    try:
        token, op, args = commands.decode_command(view)
    except frames.FrameError as e:
        token = view[2] if n > 2 else 0
        op = view[3] if n > 3 else 0
        status = commands.ERR_UNKNOWN_OP if "unknown op" in str(e) else commands.ERR_MALFORMED
        _respond(token, op, status)
        return
    if op == commands.OP_INFO:
        _respond(token, op, commands.OK, 1, 0, 0, 1, 1000, 100, _CHANNELS, _device_id(), 0)
    elif op == commands.OP_STREAM_START:
        if args[0] != commands.MODE_PROCESSED:
            _respond(token, op, commands.ERR_BAD_ARG)
            return
        _state.streaming = True
        _respond(token, op, commands.OK)
    elif op == commands.OP_STREAM_STOP:
        _state.streaming = False
        _respond(token, op, commands.OK)
        _print_counters()
    elif op == commands.OP_TIME_SYNC:
        _respond(token, op, commands.OK, _state.clock & 0xFFFFFFFF)
    elif op == commands.OP_SESSION_READ:
        session, offset, length = args
        _respond(token, op, commands.OK, session, offset, length)
        _state.session_job = (session, offset, length)
    else:
        _respond(token, op, commands.ERR_INTERNAL)


def _encode_frame(max_len):
    st = _state
    for k in range(_BATCH_MAX):
        t = st.clock + k * _PERIOD_TICKS
        for c in range(_CHANNELS):
            _samples[k * _CHANNELS + c] = 50 + c * 10 + (t // 10) % 200
    return frames.encode_batch(_frame, max_len, frames.ENVELOPE, st.seq, st.clock, _PERIOD_TICKS,
                               _samples, 0, _BATCH_MAX, _CHANNELS)


async def stream_loop():
    st = _state
    n = 0
    while True:
        if not st.streaming:
            n = 0
            await asyncio.sleep_ms(5)
            continue
        if not _server.connected:
            # no central: the frame of this moment is given up, and counted
            st.seq = (st.seq + 1) & 0xFFFF
            st.clock += _PERIOD_TICKS
            _server.drop_frame()
            n = 0
            await asyncio.sleep_ms(_DISCONNECTED_FRAME_MS)
            continue
        if n == 0 or n > _server.att_payload:
            n = _encode_frame(_server.att_payload)
        if _server.notify_stream(_frame, n):
            st.sent += 1
            st.seq = (st.seq + 1) & 0xFFFF
            st.clock += _frame[frames.HEADER_SIZE] * _PERIOD_TICKS
            n = 0
            if st.sent % 8 == 0:
                await asyncio.sleep_ms(0)
        else:
            await asyncio.sleep_ms(1)


async def session_loop():
    while True:
        job = _state.session_job
        if job is None:
            await asyncio.sleep_ms(5)
            continue
        _state.session_job = None
        session, off, length = job
        end = off + length
        while _server.connected:
            room = _server.att_payload - commands.CHUNK_HEADER_SIZE - frames.CRC_SIZE
            k = min(room, end - off)
            pos = commands.encode_chunk_header(_chunk, session, off)
            for i in range(k):
                _chunk[pos + i] = (off + i) & 0xFF
            size = frames.seal(_chunk, pos + k)
            while not _server.send_chunk(_chunk, size):
                if not _server.connected:
                    break
                await asyncio.sleep_ms(2)
            if k == 0:
                break
            off += k


async def main():
    global _server
    _server = BleServer(bluetooth.BLE(), _device_id(), on_command)
    _server.start()
    print("BLE-APP advertising as " + _server.name)
    asyncio.create_task(_server.serve())
    asyncio.create_task(session_loop())
    try:
        await stream_loop()
    finally:
        _print_counters()

