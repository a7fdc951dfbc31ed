# The device's GATT server: the hipsync service (stream, control, sync) and the Battery Service.
#
# Interface used by the app (exported by link/__init__.py):
#   server = BleServer(ble, device_id_bytes, on_command)   # ble = bluetooth.BLE() from the board
#   server.start()                     # activate, register services, advertise
#   server.connected, .conn_handle, .mtu, .att_payload (MTU - 3; 20 until the MTU exchange),
#   .mtu_settled() (the exchange finished: encode frames for att_payload from then on)
#   server.notify_stream(buf, n) -> bool
#   server.send_chunk(buf, n) -> bool
#   server.send_response(buf, n) -> bool
#   server.poll_command(out_buf) -> n (0: none; also retries a deferred response)
#   async server.serve()               # alternative to poll_command: calls on_command(mv, n)
#   server.drop_frame(count=1)         # the caller gave up on frames: counted in frames_dropped
#   server.set_battery(pct)
#   counters: frames_dropped, notify_failures, notify_errors, oversize, responses_lost,
#             commands_overrun, connections, disconnects
#
# Back-pressure, so that nothing is lost silently: gatts_notify raises OSError(ENOMEM) when the
# stack's notification buffers are all queued. notify_stream/send_chunk then return False, count
# the failure in notify_failures and refuse further sends for backoff_ms (without touching the
# stack), while the caller keeps its frame and offers it again later. A caller that discards frames
# instead (e.g. while no central is connected) reports them with drop_frame(), so frames_dropped is
# the number of frames the live stream lost on this side of the radio (STATUS page PAGE_LINK).
#
# Responses have priority: send_response() copies the response into its own buffer; if the stack
# is full it stays pending and goes out before any further stream frame or chunk (and from serve()).
#
# Allocation: in steady state notify_stream/send_chunk allocate nothing (checked under
# micropython.heap_lock in tests/firmware/mp_test_ble_server.py), whatever buffer the caller passes.
# gatts_notify sends a whole buffer object and slicing a memoryview allocates, so each frame is
# copied (viper, n bytes) into one server-owned TX buffer whose views [:n] are made once per length
# and kept. The stack copies the data before gatts_notify returns, so the TX buffer is free again.
#
# IRQ handler: only stores. A control write is copied out of the stack (the value is overwritten by
# the next write) into a preallocated buffer and command_flag (asyncio.ThreadSafeFlag) is set; the
# app's task does the work.
import asyncio
import binascii
import errno
import time

import micropython
from micropython import const

from hipwire import gatt

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_IRQ_MTU_EXCHANGED = const(21)
_IRQ_ENCRYPTION_UPDATE = const(28)
_IRQ_GET_SECRET = const(29)
_IRQ_SET_SECRET = const(30)

_FLAG_READ = const(0x0002)
_FLAG_WRITE = const(0x0008)
_FLAG_NOTIFY = const(0x0010)
# Writes to the control characteristic need an encrypted link: NimBLE answers "insufficient
# encryption" otherwise, and the central's stack then pairs (LE Secure Connections, Just Works:
# the device has no display or keys) and bonds. Every other protected exchange follows a control
# write, so nothing protected moves over an unencrypted link. The virtual radio accepts the flag
# without modelling encryption (firmware/unixboard/bluetooth.py).
_FLAG_WRITE_ENCRYPTED = const(0x1000)
_IO_NO_INPUT_OUTPUT = const(3)

_DEFAULT_MTU = const(23)
_MAX_ATT_PAYLOAD = const(509)  # MTU 512, the largest MicroPython accepts
_CONTROL_VALUE_SIZE = const(128)  # longest command: AUTH_RESPONSE, 54 bytes
_ADV_INTERVAL_US = const(100_000)

_ADV_TYPE_FLAGS = const(0x01)
_ADV_TYPE_UUID128_COMPLETE = const(0x07)
_ADV_TYPE_NAME_COMPLETE = const(0x09)
_ADV_FLAGS_LE_GENERAL_NO_BREDR = const(0x06)


def _uuid_le(uuid_str):
    """The 16 bytes of a 128-bit UUID string in advertising (little-endian) order."""
    return bytes(reversed(binascii.unhexlify(uuid_str.replace("-", ""))))


def _ad(ad_type, value):
    return bytes((len(value) + 1, ad_type)) + value


def device_name(device_id_bytes):
    """hipsync-XXXX: the advertised name, from the last two bytes of the device id."""
    return gatt.NAME_PREFIX + "%02x%02x" % (device_id_bytes[-2], device_id_bytes[-1])


class _Views:
    """memoryviews buf[:n], made on first use of each n and kept (slicing allocates)."""

    def __init__(self, buf):
        self.buf = buf
        self._mv = memoryview(buf)
        self._cache = [None] * (len(buf) + 1)

    def get(self, n):
        v = self._cache[n]
        if v is None:
            v = self._mv[:n]
            self._cache[n] = v
        return v


@micropython.viper
def _copy(dst: ptr8, src: ptr8, n: int):  # noqa: F821 - viper pointer type
    for i in range(n):
        dst[i] = src[i]


class BleServer:
    def __init__(self, ble, device_id_bytes, on_command=None, backoff_ms=4):
        self._ble = ble
        self.name = device_name(device_id_bytes)
        self._on_command = on_command
        self._backoff_ms = backoff_ms
        self.connected = False
        self.conn_handle = -1
        self.mtu = _DEFAULT_MTU
        self.att_payload = _DEFAULT_MTU - 3
        # counters
        self.frames_dropped = 0  # frames the caller gave up on (drop_frame) or that could never fit
        self.notify_failures = 0  # ENOMEM from the stack (back-pressure)
        self.notify_errors = 0  # other stack errors (e.g. the link went down under us)
        self.oversize = 0  # frames longer than att_payload (counted in frames_dropped too)
        self.responses_lost = 0  # responses that could not be sent (no link, or one still pending)
        self.commands_overrun = 0  # a command arrived before the previous one was taken
        self.connections = 0
        self.disconnects = 0
        # flags for the app's tasks
        self.command_flag = asyncio.ThreadSafeFlag()
        self.link_flag = asyncio.ThreadSafeFlag()  # set on connect, disconnect, MTU change
        self._backoff = False
        self._backoff_until = 0
        self._mtu_settled = False
        self._cmd_buf = bytearray(_CONTROL_VALUE_SIZE)
        self._cmd_len = 0
        self._cmd_out = bytearray(_CONTROL_VALUE_SIZE)
        self._cmd_views = _Views(self._cmd_out)
        self._resp_buf = bytearray(_MAX_ATT_PAYLOAD)
        self._resp_len = 0
        self._tx = _Views(bytearray(_MAX_ATT_PAYLOAD))
        self._battery = bytearray(1)
        self._battery[0] = 100
        self._adv = _ad(_ADV_TYPE_FLAGS, bytes((_ADV_FLAGS_LE_GENERAL_NO_BREDR,))) + _ad(
            _ADV_TYPE_UUID128_COMPLETE, _uuid_le(gatt.SERVICE_UUID))
        self._scan_resp = _ad(_ADV_TYPE_NAME_COMPLETE, self.name.encode())
        self._stream_handle = self._control_handle = self._sync_handle = -1
        self.encrypted = False  # link encryption of the current connection (real radio only)
        self.bonded = False
        self._bond_keys = {}
        self._battery_handle = -1

    # ------------------------------------------------------------ setup
    def start(self):
        import bluetooth

        ble = self._ble
        ble.active(True)
        ble.config(gap_name=self.name, mtu=gatt.PREFERRED_MTU)
        ble.config(bond=True, le_secure=True, mitm=False, io=_IO_NO_INPUT_OUTPUT)
        ble.irq(self._irq)
        hipsync = (bluetooth.UUID(gatt.SERVICE_UUID), (
            (bluetooth.UUID(gatt.STREAM_UUID), _FLAG_NOTIFY),
            (bluetooth.UUID(gatt.CONTROL_UUID), _FLAG_WRITE | _FLAG_WRITE_ENCRYPTED | _FLAG_NOTIFY),
            (bluetooth.UUID(gatt.SYNC_UUID), _FLAG_NOTIFY),
        ))
        battery = (bluetooth.UUID(gatt.BATTERY_SERVICE_UUID), (
            (bluetooth.UUID(gatt.BATTERY_LEVEL_UUID), _FLAG_READ | _FLAG_NOTIFY),
        ))
        ((self._stream_handle, self._control_handle, self._sync_handle),
         (self._battery_handle,)) = ble.gatts_register_services((hipsync, battery))
        ble.gatts_set_buffer(self._control_handle, _CONTROL_VALUE_SIZE)
        ble.gatts_write(self._battery_handle, self._battery)
        self._advertise()

    def _advertise(self):
        self._ble.gap_advertise(_ADV_INTERVAL_US, self._adv, self._scan_resp)

    def stop(self):
        if self.connected:
            self._ble.gap_disconnect(self.conn_handle)
        self._ble.gap_advertise(None)

    # ------------------------------------------------------------ IRQ (stores only)
    def _irq(self, event, data):
        if event == _IRQ_GATTS_WRITE:
            conn, handle = data
            if handle != self._control_handle:
                return
            if self._cmd_len:
                self.commands_overrun += 1
                return
            value = self._ble.gatts_read(handle)
            n = len(value)
            self._cmd_buf[0:n] = value
            self._cmd_len = n
            self.command_flag.set()
        elif event == _IRQ_CENTRAL_CONNECT:
            conn, _, _ = data
            if self.connected:  # one central at a time
                self._ble.gap_disconnect(conn)
                return
            self.connected = True
            self.conn_handle = conn
            self.mtu = _DEFAULT_MTU
            self.att_payload = _DEFAULT_MTU - 3
            self._backoff = False
            self._mtu_settled = False
            self.connections += 1
            try:
                self._ble.gattc_exchange_mtu(conn)  # centrals usually start it; NimBLE may too
            except OSError:
                self._mtu_settled = True  # no exchange coming: 23 it is
            self.link_flag.set()
        elif event == _IRQ_CENTRAL_DISCONNECT:
            conn, _, _ = data
            if conn != self.conn_handle:
                return
            self.connected = False
            self.conn_handle = -1
            self.encrypted = False
            self.bonded = False
            self.mtu = _DEFAULT_MTU
            self.att_payload = _DEFAULT_MTU - 3
            if self._resp_len:
                self.responses_lost += 1
                self._resp_len = 0
            self.disconnects += 1
            self._advertise()
            self.link_flag.set()
        elif event == _IRQ_MTU_EXCHANGED:
            conn, mtu = data
            if conn == self.conn_handle:
                self.mtu = mtu
                self.att_payload = mtu - 3
                self._mtu_settled = True
                self.link_flag.set()
        elif event == _IRQ_ENCRYPTION_UPDATE:
            conn, encrypted, _authenticated, bonded, _key_size = data
            if conn == self.conn_handle:
                self.encrypted = bool(encrypted)
                self.bonded = bool(bonded)
        elif event == _IRQ_SET_SECRET:
            # bond keys, kept in RAM: after a reboot the central pairs again (Just Works)
            sec_type, key, value = data
            key = (sec_type, bytes(key))
            if value is None:
                self._bond_keys.pop(key, None)
            else:
                self._bond_keys[key] = bytes(value)
            return True
        elif event == _IRQ_GET_SECRET:
            sec_type, index, key = data
            if key is None:
                matches = [v for (t, _k), v in self._bond_keys.items() if t == sec_type]
                return matches[index] if index < len(matches) else None
            return self._bond_keys.get((sec_type, bytes(key)))

    # ------------------------------------------------------------ sending
    def _can_send(self):
        if not self.connected:
            return False
        if self._backoff:
            if time.ticks_diff(self._backoff_until, time.ticks_ms()) > 0:
                return False
            self._backoff = False
        if self._resp_len:
            return self._flush_response()
        return True

    def _notify(self, handle, view):
        try:
            self._ble.gatts_notify(self.conn_handle, handle, view)
            return True
        except OSError as e:
            if e.errno == errno.ENOMEM:
                self.notify_failures += 1
                self._backoff = True
                self._backoff_until = time.ticks_add(time.ticks_ms(), self._backoff_ms)
            else:
                self.notify_errors += 1
            return False

    def _send(self, handle, buf, n):
        if not self.connected:
            return False
        if n <= 0 or n > len(buf):  # a caller bug; never read past the buffer
            self.notify_errors += 1
            self.frames_dropped += 1
            return True
        if n > self.att_payload:
            if not self._mtu_settled:  # the MTU exchange is still under way: try again soon
                return False
            # the stack would truncate it: a corrupt frame is worse than none
            self.oversize += 1
            self.frames_dropped += 1
            return True
        if not self._can_send():
            return False
        _copy(self._tx.buf, buf, n)
        return self._notify(handle, self._tx.get(n))

    def notify_stream(self, buf, n):
        """Notify buf[0:n] on the stream characteristic. Never raises.

        True: the server is done with the frame (sent; or longer than att_payload, which is dropped
        and counted). False: not connected, back-pressure or backing off; keep the frame and offer
        it again later, or give it up with drop_frame()."""
        return self._send(self._stream_handle, buf, n)

    def send_chunk(self, buf, n):
        """Notify one sync chunk buf[0:n] on the sync characteristic; same contract as
        notify_stream (the sync reader resumes from its offset after a False)."""
        return self._send(self._sync_handle, buf, n)

    def drop_frame(self, count=1):
        """The caller discards `count` stream frames: they are counted, never silently lost."""
        self.frames_dropped += count

    def send_response(self, buf, n):
        """Queue the control response buf[0:n] and try to send it now. False (and responses_lost)
        when there is no link, a response is still pending, or it exceeds att_payload (the host
        must raise the MTU first; see commands.MIN_CONTROL_ATT_PAYLOAD)."""
        if (not self.connected or self._resp_len or n > self.att_payload or n > len(buf)
                or n > _MAX_ATT_PAYLOAD):
            self.responses_lost += 1
            return False
        _copy(self._resp_buf, buf, n)
        self._resp_len = n
        if not self._flush_response():
            self.command_flag.set()  # wake serve(): it retries the response
        return True

    def _flush_response(self):
        if not self.connected:
            return False
        if self._backoff and time.ticks_diff(self._backoff_until, time.ticks_ms()) > 0:
            return False
        _copy(self._tx.buf, self._resp_buf, self._resp_len)
        if self._notify(self._control_handle, self._tx.get(self._resp_len)):
            self._resp_len = 0
            return True
        return False

    def mtu_settled(self):
        """True once the MTU exchange of this connection finished (att_payload is final)."""
        return self._mtu_settled

    @property
    def response_pending(self):
        return self._resp_len > 0

    def set_battery(self, pct):
        self._battery[0] = pct
        if self._battery_handle >= 0:
            self._ble.gatts_write(self._battery_handle, self._battery, self.connected)

    # ------------------------------------------------------------ commands
    def poll_command(self, out_buf):
        """Copy a received command into out_buf; return its length (0 when there is none).
        Also retries a response that the stack had no buffer for."""
        if self._resp_len:
            self._flush_response()
        n = self._cmd_len
        if not n:
            return 0
        _copy(out_buf, self._cmd_buf, n)
        self._cmd_len = 0  # only now may the IRQ store the next one
        return n

    async def serve(self):
        """Task: hands each command to on_command(view, n) (view: exactly the n command bytes,
        valid until on_command returns) and retries a deferred response."""
        while True:
            if self._resp_len:
                if not self._flush_response():
                    await asyncio.sleep_ms(self._backoff_ms)
                    continue
            n = self.poll_command(self._cmd_out)
            if n:
                if self._on_command is not None:
                    self._on_command(self._cmd_views.get(n), n)
                continue
            await self.command_flag.wait()
