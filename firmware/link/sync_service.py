# Device side of recording, session sync, erase and authentication: handlers the command
# dispatcher (link/control.py) calls, plus the task that streams sync chunks.
#
#   svc = SyncService(flash_log, authenticator, clock=capture_clock)   # clock() -> device ticks
#   if op in svc.HANDLED_OPS:
#       status, payload_len = svc.handle(conn, op, args, reply_buf, max_payload)
#       n = respond(reply_buf, token, op, status, payload_len)  # header + CRC; send reply_buf[:n]
#   svc.disconnect(conn)                 # from the BLE disconnect: ends auth and any read
#   asyncio.create_task(svc.run(server)) # streams SESSION_READ chunks through server.send_chunk
#
# handle() writes the response payload at reply_buf[RESPONSE_HEADER_SIZE:] (at most max_payload
# bytes: att_payload - RESPONSE_HEADER_SIZE - CRC_SIZE) and returns (status, payload length);
# with a status other than OK the payload length is 0. args are the values decode_command gave.
# The dispatcher checks authentication through OPS; handle() checks it again for protected ops
# (ERR_AUTH_REQUIRED), so a dispatcher bug cannot open the log to a stranger.
#
# Responses (formats in hipwire.commands.OPS):
#   REC_START -> session id | ERR_BUSY (already recording) | ERR_STORAGE (flash full)
#   REC_STOP -> id of the session stopped, 0 when none was recording
#   REC_STATUS -> flags (REC_RECORDING, REC_FLASH_FULL), open session id (0 none), seconds
#       recorded (device clock), bytes recorded, flash free (KiB)
#   SESSION_LIST(first_id) -> count + entries with id >= first_id, as many as fit (page with the
#       last id + 1 until count is 0)
#   SESSION_READ(id, offset, length) -> (id, offset, length clipped to the session) | ERR_NOT_FOUND
#       | ERR_BUSY (still recording) | ERR_BAD_ARG (offset past the end); then chunks of
#       [offset, offset + length) on the sync characteristic, data sized to att_payload, then an
#       empty chunk at the end offset. A new read replaces an unfinished one.
#   SESSION_CONFIRM(id, crc) -> OK, session marked synced | ERR_BAD_ARG (CRC differs) | ERR_BUSY
#   SESSION_DAMAGED(id, crc) -> OK, session listed with SESSION_DAMAGED (kept, still unsynced)
#       | ERR_BAD_ARG (CRC differs) | ERR_BUSY
#   ERASE(id | ERASE_ALL_SYNCED) -> sessions erased | ERR_BAD_ARG (not synced: never erased)
#   AUTH_CHALLENGE / AUTH_RESPONSE -> see security/authenticator.py
# Filesystem errors answer ERR_STORAGE.
#
# For firmware/app.py, the service is both its `auth` and its `sessions` object:
#   svc = SyncService(FlashLog("log"), Authenticator(load_secret(), device_id), clock=emg.clock_now)
#   app = App(board, ble, device_id, auth=svc, sessions=svc)
#   svc.attach(app.server, app.control.reply)   # where handlers write payloads; att_payload; epoch
#   handlers() -> {op: fn(args, conn)} returning (status, payload_len) (Control's contract)
#   is_authenticated(conn), set_time_anchor(host_unix_ms, clock), state_flags(), free_kib(),
#   recording(), poll_button(pin) (hold 2 s of device clock to start / stop recording),
#   append(frame, n); on_start: called (no arguments) right after a session opened, by button or
#   REC_START, so the app writes the session's first record (its calibration record)
# is_authenticated also compares the server's connection counter with the one at authentication,
# so a new central that gets the same connection handle never inherits an authentication even if
# the disconnect hook was missed.
import asyncio
import struct

from micropython import const

from hipwire import commands as cmd
from hipwire.frames import CRC_SIZE, seal
from store.flashlog import (CRC, FLAGS, ID, SIZE, START, CrcMismatch, FlashFull, NotFound,
                            NotSynced, SessionOpen)

_MAX_ATT_PAYLOAD = const(509)
_MAX_CHUNK_DATA = const(499)  # 509 - CHUNK_HEADER_SIZE - CRC_SIZE
_CHUNKS_PER_PUMP = const(8)  # then yield to the other tasks
_HOLD_TICKS = const(2000)  # button hold that starts / stops a recording: 2 s of sample clock
_POLL_TICKS = const(100)  # the ui task's poll period, for a service without a clock


def respond(buf, token, op, status, payload_len):
    """Response header and CRC around a payload handle() wrote; returns the frame length."""
    cmd.pack_response_header(buf, token, op, status)
    return seal(buf, cmd.RESPONSE_HEADER_SIZE + (payload_len if status == cmd.OK else 0))


class SyncService:
    HANDLED_OPS = (cmd.OP_AUTH_CHALLENGE, cmd.OP_AUTH_RESPONSE, cmd.OP_REC_START,
                   cmd.OP_REC_STOP, cmd.OP_REC_STATUS, cmd.OP_SESSION_LIST,
                   cmd.OP_SESSION_READ, cmd.OP_SESSION_CONFIRM, cmd.OP_SESSION_DAMAGED,
                   cmd.OP_ERASE)

    def __init__(self, log, authenticator, clock=None):
        self.log = log
        self.auth = authenticator
        self._clock = clock
        self._chunk = bytearray(_MAX_ATT_PAYLOAD)
        self._data = memoryview(self._chunk)[cmd.CHUNK_HEADER_SIZE:]
        self._reader = None
        self._read_id = 0
        self._pos = 0
        self._end = 0
        self._pending = 0  # length of a built chunk the server refused, sent again first
        self._pending_data = 0
        self._end_sent = True
        self._wake = asyncio.Event()
        self.chunks_sent = 0
        self.bytes_sent = 0
        self.sends_refused = 0
        self.reads = 0
        self._server = None
        self.reply = None
        self._auth_epoch = -1
        self._released_at = -1  # device clock of the last poll that saw the button up
        self._held_ticks = 0  # without a clock: polls x _POLL_TICKS
        self._button_done = False  # this press acted already: nothing until it is released
        self._rec_start_clock = 0
        self.on_start = None

    # ------------------------------------------------------------ app interface
    def attach(self, server, reply):
        """The BLE server (att_payload, connections, send_chunk) and the reply buffer handlers
        write payloads into (Control.reply)."""
        self._server = server
        self.reply = reply

    def _epoch(self):
        return self._server.connections if self._server is not None else 0

    def is_authenticated(self, conn):
        if not self.auth.is_authenticated(conn):
            return False
        if self._epoch() != self._auth_epoch:
            self.auth.disconnect(conn)  # a new connection: never inherits an authentication
            return False
        return True

    def handlers(self):
        table = {}
        for op in self.HANDLED_OPS:
            table[op] = self._handler(op)
        return table

    def _handler(self, op):
        def run(args, conn):
            server = self._server
            att = server.att_payload if server is not None else 244
            return self.handle(conn, op, args, self.reply,
                               att - cmd.RESPONSE_HEADER_SIZE - CRC_SIZE)
        return run

    def set_time_anchor(self, host_unix_ms, clock):
        self.log.set_time_anchor(host_unix_ms // 1000, clock)

    def state_flags(self):
        flags = 0
        if self.log.recording:
            flags |= 0x02  # frames.STATE_RECORDING
        if self.log.full:
            flags |= 0x04  # frames.STATE_FLASH_FULL
        return flags

    def free_kib(self):
        try:
            return self.log.free_bytes() >> 10
        except OSError:
            return 0

    def recording(self):
        return self.log.recording

    def append(self, frame, n):
        """Record one frame while a session is open (see FlashLog.append)."""
        return self.log.append(frame, n)

    def _now(self):
        return self._clock() if self._clock else None

    def start_recording(self):
        """Open a session (FlashLog.start) and let the app write its first record; returns its id.
        Raises SessionOpen, FlashFull, OSError as FlashLog.start does."""
        now = self._now()
        sid = self.log.start(now)
        self._rec_start_clock = now if now is not None else 0
        if self.on_start is not None:
            self.on_start()
        return sid

    def poll_button(self, pin, hold_ticks=_HOLD_TICKS):
        """Call every 100 ms: holding the button (active low) for hold_ticks of the sample clock
        starts a session, or stops the one recording. Nothing happens again until it is released.
        The hold is timed by the sample clock, not by counting polls, so it means the same on a
        virtual device whose clock runs faster than its timers."""
        now = self._now()
        if pin.value():
            self._released_at = now if now is not None else 0
            self._held_ticks = 0
            self._button_done = False
            self.log.tick()
            return
        if self._button_done:
            return
        if now is None:
            self._held_ticks += _POLL_TICKS
            held = self._held_ticks
        else:
            if self._released_at < 0 or now < self._released_at:  # held since boot, or rewound
                self._released_at = now
            held = now - self._released_at
        if held < hold_ticks:
            return
        self._button_done = True
        try:
            if self.log.recording:
                self.log.stop()
            else:
                self.start_recording()
        except (SessionOpen, FlashFull, OSError):
            pass  # full: state_flags and the LED show it

    def rec_status(self, reply, off):
        """REC_STATUS payload at reply[off:]; returns its length."""
        flags = 0
        sid = 0
        seconds = 0
        size = 0
        if self.log.recording:
            flags |= cmd.REC_RECORDING
            sid = self.log.current_id
            size = self.log.find(sid)[SIZE]
            now = self._now()
            if now is not None and now >= self._rec_start_clock:
                seconds = (now - self._rec_start_clock) // 1000
        if self.log.full:
            flags |= cmd.REC_FLASH_FULL
        struct.pack_into("<BHIII", reply, off, flags, sid, seconds, size, self.free_kib())
        return 15

    # ------------------------------------------------------------ commands
    def handle(self, conn, op, args, reply, max_payload):
        spec = cmd.op_spec(op)
        if spec is None:
            return cmd.ERR_UNKNOWN_OP, 0
        if spec[4] and not self.is_authenticated(conn):
            return cmd.ERR_AUTH_REQUIRED, 0
        off = cmd.RESPONSE_HEADER_SIZE
        try:
            if op == cmd.OP_AUTH_CHALLENGE:
                status = self.auth.challenge(conn, reply, off)
                return status, (16 if status == cmd.OK else 0)
            if op == cmd.OP_AUTH_RESPONSE:
                status = self.auth.respond(conn, args[0], args[1], reply, off)
                if status == cmd.OK:
                    self._auth_epoch = self._epoch()
                return status, (32 if status == cmd.OK else 0)
            if op == cmd.OP_REC_START:
                struct.pack_into("<H", reply, off, self.start_recording())
                return cmd.OK, 2
            if op == cmd.OP_REC_STATUS:
                return cmd.OK, self.rec_status(reply, off)
            if op == cmd.OP_REC_STOP:
                struct.pack_into("<H", reply, off, self.log.stop())
                return cmd.OK, 2
            if op == cmd.OP_SESSION_LIST:
                return cmd.OK, self._list(args[0], reply, off, max_payload)
            if op == cmd.OP_SESSION_READ:
                return self._start_read(args[0], args[1], args[2], reply, off)
            if op == cmd.OP_SESSION_CONFIRM:
                self.log.confirm(args[0], args[1])
                return cmd.OK, 0
            if op == cmd.OP_SESSION_DAMAGED:
                self.log.mark_damaged(args[0], args[1])
                return cmd.OK, 0
            if op == cmd.OP_ERASE:
                return self._erase(args[0], reply, off)
        except NotFound:
            return cmd.ERR_NOT_FOUND, 0
        except (SessionOpen, FlashFull) as e:
            return (cmd.ERR_BUSY if isinstance(e, SessionOpen) else cmd.ERR_STORAGE), 0
        except (CrcMismatch, NotSynced):
            return cmd.ERR_BAD_ARG, 0
        except OSError:
            return cmd.ERR_STORAGE, 0
        return cmd.ERR_UNKNOWN_OP, 0

    def _list(self, first_id, reply, off, max_payload):
        room = (max_payload - 1) // cmd.SESSION_ENTRY_SIZE
        if room > 255:
            room = 255
        count = 0
        p = off + 1
        for info in self.log.sessions():
            if count >= room:
                break
            if info[ID] < first_id:
                continue
            struct.pack_into(cmd.SESSION_ENTRY, reply, p, info[ID], info[SIZE], info[CRC],
                             info[FLAGS], info[START])
            p += cmd.SESSION_ENTRY_SIZE
            count += 1
        reply[off] = count
        return p - off

    def _start_read(self, sid, offset, length, reply, off):
        info = self.log.find(sid)
        if info[FLAGS] & cmd.SESSION_OPEN:
            return cmd.ERR_BUSY, 0
        if offset > info[SIZE]:
            return cmd.ERR_BAD_ARG, 0
        if length > info[SIZE] - offset:
            length = info[SIZE] - offset
        if self._reader is None or self._read_id != sid:
            self._close_reader()
            self._reader = self.log.open_reader(sid)
            self._read_id = sid
        self._pos = offset
        self._end = offset + length
        self._pending = 0
        self._end_sent = False
        self.reads += 1
        self._wake.set()
        struct.pack_into("<HII", reply, off, sid, offset, length)
        return cmd.OK, 10

    def _erase(self, sid, reply, off):
        if sid == cmd.ERASE_ALL_SYNCED:
            self._close_reader()
            count = self.log.erase_synced()
        else:
            if sid == self._read_id:
                self._close_reader()
            self.log.erase(sid)
            count = 1
        struct.pack_into("<H", reply, off, count)
        return cmd.OK, 2

    def _close_reader(self):
        if self._reader is not None:
            self._reader.close()
        self._reader = None
        self._read_id = 0
        self._end_sent = True
        self._pending = 0

    def disconnect(self, conn):
        """The central left: its authentication and any read in progress end here."""
        self.auth.disconnect(conn)
        self._close_reader()

    # ------------------------------------------------------------ chunks
    @property
    def reading(self):
        return self._reader is not None and not self._end_sent

    def pump(self, send_chunk, att_payload, max_chunks=_CHUNKS_PER_PUMP):
        """Offer up to max_chunks chunks of the current read to send_chunk(buf, n) (the BLE
        server's: False = back-pressure, keep the chunk for next time). Returns the number sent."""
        sent = 0
        room = att_payload - cmd.CHUNK_HEADER_SIZE - CRC_SIZE
        if room > _MAX_CHUNK_DATA:
            room = _MAX_CHUNK_DATA
        while sent < max_chunks and self.reading:
            if not self._pending:
                n = self._end - self._pos
                if n > room:
                    n = room
                if n > 0:
                    n = self._reader.read_into(self._pos, self._data, n)
                cmd.encode_chunk_header(self._chunk, self._read_id, self._pos)
                self._pending = seal(self._chunk, cmd.CHUNK_HEADER_SIZE + n)
                self._pending_data = n
            if not send_chunk(self._chunk, self._pending):
                self.sends_refused += 1
                break
            sent += 1
            self.chunks_sent += 1
            n = self._pending_data
            self.bytes_sent += n
            self._pending = 0
            if n == 0:
                self._end_sent = True  # the end marker went out
            self._pos += n
        return sent

    async def run(self, server, idle_ms=5):
        """Task: streams the current read through server.send_chunk while the link accepts."""
        while True:
            if not self.reading:
                self._wake.clear()
                await self._wake.wait()
                continue
            if not server.connected:
                self._close_reader()
                continue
            if self.pump(server.send_chunk, server.att_payload):
                await asyncio.sleep_ms(0)
            else:
                await asyncio.sleep_ms(idle_ms)
