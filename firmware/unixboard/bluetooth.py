# The unix "board": a stand-in for MicroPython's `bluetooth` module on the ESP32.
#
# It implements the subset of bluetooth.BLE that firmware/link/ble_server.py uses, with the
# constraints of the real NimBLE stack:
#   - characteristic values hold 20 bytes unless gatts_set_buffer() says otherwise; longer writes
#     from the central are truncated, as NimBLE does;
#   - the ATT MTU is 23 until an MTU exchange (started by either side) settles on
#     min(central MTU, config(mtu=...)); notifications longer than MTU - 3 are truncated;
#   - gatts_notify() sends whether or not the central subscribed, and raises OSError(ENOMEM) when
#     its pool of notification buffers is used up. The pool size comes from the air's link model;
#     a buffer comes back when the air has put that notification on air (or lost it);
#   - advertising and scan-response payloads are limited to 31 bytes each.
#
# The radio is a TCP connection to the virtual air (host/hipsync/sim/air.py) at 127.0.0.1:PORT, taken
# from the environment variable HIPSYNC_AIR. The socket is non-blocking and serviced by poll(): the
# unix board must call it often (run_virtual.py starts poll_task()). IRQ callbacks are invoked from
# poll() as the real stack schedules them, with memoryview data for addresses.
#
# Without HIPSYNC_AIR the radio runs offline: nothing is transmitted, and the sim_* functions at the
# end drive connections, writes and buffer releases by hand (tests/firmware/mp_test_ble_*.py).
#
# The socket messages mirror host/hipsync/sim/air.py (the one definition; tests/host/test_ble_air.py
# checks that the numbers below agree with it): header "<HBHH" = body length, kind, a, b; then the
# body (data bytes or UTF-8 JSON).
import errno
import json
import os
import struct
import sys

try:
    from micropython import const
except ImportError:  # imported by CPython only to compare constants with the air
    def const(value):
        return value

UNIX_BOARD = True

FLAG_BROADCAST = const(0x0001)
FLAG_READ = const(0x0002)
FLAG_WRITE_NO_RESPONSE = const(0x0004)
FLAG_WRITE = const(0x0008)
FLAG_NOTIFY = const(0x0010)
FLAG_INDICATE = const(0x0020)

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_IRQ_GATTS_INDICATE_DONE = const(20)
_IRQ_MTU_EXCHANGED = const(21)

# --- socket protocol (mirrors host/hipsync/sim/air.py)
HEADER = "<HBHH"
HEADER_SIZE = const(7)
D_HELLO = const(1)  # body: JSON {"mac": hex}
D_REGISTER = const(2)  # body: JSON service table
D_ADV = const(3)  # a: len(adv_data), b: connectable; body: adv_data + resp_data
D_ADV_STOP = const(4)
D_NOTIFY = const(5)  # a: conn, b: value handle; body: data
D_INDICATE = const(6)  # a: conn, b: value handle; body: data
D_WRITE_RSP = const(7)  # a: conn, b: value handle
D_READ_RSP = const(8)  # a: conn, b: value handle; body: value
D_DISCONNECT = const(9)  # a: conn
D_MTU_REQ = const(10)  # a: conn, b: preferred MTU
D_SET_MTU = const(11)  # a: preferred MTU (config(mtu=...))
D_UPDATE = const(12)  # a: conn, b: value handle; body: data (gatts_write send_update)
A_CONFIG = const(20)  # a: notification buffers in the stack's pool
A_CONNECT = const(21)  # a: conn; body: central address (6 bytes)
A_DISCONNECT = const(22)  # a: conn, b: HCI reason
A_WRITE_REQ = const(23)  # a: conn, b: value handle; body: data (answer with D_WRITE_RSP)
A_WRITE_CMD = const(24)  # a: conn, b: value handle; body: data
A_READ = const(25)  # a: conn, b: value handle
A_MTU = const(26)  # a: conn, b: negotiated MTU
A_TX_DONE = const(27)  # a: buffers freed, b: conn
A_INDICATE_DONE = const(28)  # a: conn, b: value handle

_DEFAULT_MTU = const(23)
_MAX_MTU = const(512)
_DEFAULT_VALUE_SIZE = const(20)
_MAX_ADV = const(31)
_DEFAULT_POOL = const(10)
_TX_SIZE = const(16384)
_RX_SIZE = const(4096)

# Raised without allocating: the real stack's ENOMEM is the back-pressure signal of the hot path.
_ENOMEM = OSError(errno.ENOMEM)
_ENOTCONN = OSError(errno.ENOTCONN)
_EINVAL = OSError(errno.EINVAL)


def _hex(b):
    return "".join("%02x" % x for x in b)


def _unhex(s):
    return bytes(int(s[i:i + 2], 16) for i in range(0, len(s), 2))


def _adv_too_long(data):
    return data is not None and len(data) > _MAX_ADV


class UUID:
    """bluetooth.UUID: a 16-bit int or a 128-bit string. Compared by value."""

    def __init__(self, value):
        if isinstance(value, UUID):
            value = value._s
        if isinstance(value, int):
            if not 0 <= value <= 0xFFFF:
                raise ValueError("16-bit UUID out of range")
            self._s = "0000%04x-0000-1000-8000-00805f9b34fb" % value
            self._short = value
        else:
            s = str(value).lower()
            if len(s) != 36 or s[8] != "-":
                raise ValueError("invalid UUID string")
            self._s = s
            self._short = None

    def __eq__(self, other):
        return isinstance(other, UUID) and other._s == self._s

    def __hash__(self):
        return hash(self._s)

    def __str__(self):
        return self._s

    def __repr__(self):
        if self._short is not None:
            return "UUID(0x%04x)" % self._short
        return "UUID('%s')" % self._s


class _Attr:
    def __init__(self, uuid, flags):
        self.uuid = uuid
        self.flags = flags
        self.buf = bytearray(_DEFAULT_VALUE_SIZE)
        self.length = 0
        self.append = False


class _Radio:
    """The one radio behind every BLE() object (the real BLE() is a singleton too)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.active = False
        self.handler = None
        self.gap_name = b"MPY NIMBLE"
        self.mtu_pref = _DEFAULT_MTU
        mac = os.getenv("HIPSYNC_DEVICE_ID") if hasattr(os, "getenv") else None
        self.mac = _unhex(mac) if mac else b"\x02\xa1\xb2\xc3\xd4\xe5"
        self.attrs = {}
        self.conn = -1
        self.central = b"\x00" * 6
        self.att_mtu = _DEFAULT_MTU
        self.pool = _DEFAULT_POOL
        self.in_flight = 0
        self.advertising = False
        self.sock = None
        self.air_lost = False
        self.tx = bytearray(_TX_SIZE)
        self.txmv = memoryview(self.tx)
        self.tx_start = 0
        self.tx_end = 0
        self.rx = bytearray(_RX_SIZE)
        self.rxmv = memoryview(self.rx)
        self.rx_end = 0
        # counters, read by tests and the bench through stats()
        self.notify_ok = 0
        self.enomem = 0
        self.truncated = 0
        self.capture = None  # offline mode: list of (handle, bytes) when sim_capture(True)

    # -- air connection
    def open_air(self):
        spec = os.getenv("HIPSYNC_AIR") if hasattr(os, "getenv") else None
        if not spec or self.sock is not None:
            return
        import socket

        host, _, port = spec.rpartition(":")
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError("HIPSYNC_AIR must be 127.0.0.1:PORT, got %s" % spec)
        sock = socket.socket()
        # TCP_NODELAY (Linux: IPPROTO_TCP 6, option 1; the unix port names neither): without it a
        # small reply waits for the ACK of the previous message, up to the 40 ms delayed ACK
        sock.setsockopt(6, 1, 1)
        sock.connect(socket.getaddrinfo("127.0.0.1", int(port))[0][-1])
        sock.setblocking(False)
        self.sock = sock
        self.send_json(D_HELLO, 0, 0, {"mac": _hex(self.mac)})
        if self.mtu_pref != _DEFAULT_MTU:
            self.send(D_SET_MTU, self.mtu_pref, 0, None)

    def room(self, n):
        return self.tx_end + HEADER_SIZE + n <= _TX_SIZE

    def send(self, kind, a, b, data, n=-1):
        """Queue one message for the air; allocation-free. Offline, nothing is queued."""
        if n < 0:
            n = len(data) if data is not None else 0
        if self.sock is None:
            return True
        if not self.room(n):
            self.flush()
            if not self.room(n):
                self.compact()
                if not self.room(n):
                    return False
        end = self.tx_end
        struct.pack_into(HEADER, self.tx, end, n, kind, a, b)
        end += HEADER_SIZE
        if n:
            self.txmv[end:end + n] = data
        self.tx_end = end + n
        return True

    def send_json(self, kind, a, b, obj):
        body = json.dumps(obj).encode()
        if not self.send(kind, a, b, body):
            raise OSError(errno.ENOMEM)

    def compact(self):
        if self.tx_start:
            n = self.tx_end - self.tx_start
            self.tx[0:n] = self.tx[self.tx_start:self.tx_end]
            self.tx_start = 0
            self.tx_end = n

    def flush(self):
        while self.sock is not None and self.tx_start < self.tx_end:
            try:
                sent = self.sock.send(self.txmv[self.tx_start:self.tx_end])
            except OSError as e:
                if e.errno == errno.EAGAIN:
                    return
                self.lost_air()
                return
            if not sent:
                return
            self.tx_start += sent
        self.tx_start = 0
        self.tx_end = 0

    def lost_air(self):
        # The air went away (the host stopped): behave like a supervision timeout.
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.air_lost = True
        self.tx_start = self.tx_end = 0
        if self.conn >= 0:
            self.on_disconnect(self.conn, 0x08)

    def poll(self):
        if self.sock is None:
            return 0
        self.flush()
        count = 0
        while self.sock is not None:
            if self.rx_end == _RX_SIZE:
                break
            try:
                got = self.sock.readinto(self.rxmv[self.rx_end:])
            except OSError as e:
                if e.errno == errno.EAGAIN:
                    break
                self.lost_air()
                break
            if got is None:
                break
            if got == 0:
                self.lost_air()
                break
            self.rx_end += got
            count += self.parse()
        self.flush()
        return count

    def parse(self):
        off = 0
        count = 0
        while self.rx_end - off >= HEADER_SIZE:
            n, kind, a, b = struct.unpack_from(HEADER, self.rx, off)
            if self.rx_end - off < HEADER_SIZE + n:
                break
            body = bytes(self.rxmv[off + HEADER_SIZE:off + HEADER_SIZE + n])
            off += HEADER_SIZE + n
            self.dispatch(kind, a, b, body)
            count += 1
        if off:
            rest = self.rx_end - off
            self.rx[0:rest] = self.rx[off:self.rx_end]
            self.rx_end = rest
        return count

    def dispatch(self, kind, a, b, body):
        if kind == A_TX_DONE:
            if b == self.conn:
                self.in_flight = self.in_flight - a if self.in_flight > a else 0
        elif kind == A_WRITE_REQ or kind == A_WRITE_CMD:
            self.on_write(a, b, body)
            if kind == A_WRITE_REQ:
                self.send(D_WRITE_RSP, a, b, None)
        elif kind == A_READ:
            attr = self.attrs.get(b)
            value = bytes(attr.buf[:attr.length]) if attr else b""
            self.send(D_READ_RSP, a, b, value)
        elif kind == A_CONNECT:
            self.on_connect(a, body)
        elif kind == A_DISCONNECT:
            self.on_disconnect(a, b)
        elif kind == A_MTU:
            self.on_mtu(a, b)
        elif kind == A_CONFIG:
            self.pool = a
        elif kind == A_INDICATE_DONE:
            self.irq(_IRQ_GATTS_INDICATE_DONE, (a, b, 0))

    # -- events, as the stack raises them
    def irq(self, event, data):
        if self.handler is None:
            return
        try:
            self.handler(event, data)
        except Exception as e:  # noqa: BLE001 - the real stack prints and carries on
            print("bluetooth: exception in IRQ handler (event %d)" % event)
            sys.print_exception(e)

    def on_connect(self, conn, addr):
        self.conn = conn
        self.central = bytes(addr[:6]) if addr else b"\x00" * 6
        self.att_mtu = _DEFAULT_MTU
        self.in_flight = 0
        self.advertising = False  # a connection ends advertising, as on NimBLE
        self.irq(_IRQ_CENTRAL_CONNECT, (conn, 0, memoryview(self.central)))

    def on_disconnect(self, conn, reason):
        if conn != self.conn:
            return
        self.conn = -1
        self.att_mtu = _DEFAULT_MTU
        self.in_flight = 0  # the stack frees every queued notification of that connection
        self.irq(_IRQ_CENTRAL_DISCONNECT, (conn, 0, memoryview(self.central)))

    def on_mtu(self, conn, mtu):
        if conn != self.conn:
            return
        self.att_mtu = mtu
        self.irq(_IRQ_MTU_EXCHANGED, (conn, mtu))

    def on_write(self, conn, handle, data):
        attr = self.attrs.get(handle)
        if attr is None or conn != self.conn:
            return
        start = attr.length if attr.append else 0
        n = len(data)
        if start + n > len(attr.buf):  # NimBLE truncates to the value buffer
            n = len(attr.buf) - start
        attr.buf[start:start + n] = data[:n]
        attr.length = start + n
        self.irq(_IRQ_GATTS_WRITE, (conn, handle))


_radio = _Radio()



class BLE:
    """bluetooth.BLE(): every instance drives the same radio."""

    def active(self, state=None):
        r = _radio
        if state is not None:
            state = bool(state)
            if state and not r.active:
                r.active = True
                r.open_air()
            elif not state and r.active:
                r.active = False
                if r.conn >= 0:
                    r.on_disconnect(r.conn, 0x16)
        return r.active

    def config(self, *args, **kwargs):
        r = _radio
        if args:
            name = args[0]
            if name == "mac":
                return (0, r.mac)
            if name == "gap_name":
                return r.gap_name
            if name == "mtu":
                return r.mtu_pref
            raise ValueError("unknown config param")
        for key, value in kwargs.items():
            if key == "gap_name":
                r.gap_name = value.encode() if isinstance(value, str) else bytes(value)
            elif key == "mtu":
                if not _DEFAULT_MTU <= value <= _MAX_MTU:
                    raise ValueError("mtu must be 23..512")
                r.mtu_pref = value
                r.send(D_SET_MTU, value, 0, None)
            elif key in ("rxbuf", "addr_mode", "io", "mitm", "le_secure", "bond", "interval"):
                pass  # accepted, no effect on the virtual link
            else:
                raise ValueError("unknown config param")

    def irq(self, handler):
        _radio.handler = handler

    def _check_active(self):
        if not _radio.active:
            raise OSError(errno.EPERM)

    # -- GATT server
    def gatts_register_services(self, services):
        """Handles as NimBLE assigns them: service, then per characteristic its declaration, value
        and (for notify/indicate) CCCD, then its descriptors. Replaces any earlier services."""
        self._check_active()
        r = _radio
        r.attrs = {}
        handle = 1
        result = []
        table = []
        for svc_uuid, chars in services:
            svc = {"uuid": str(UUID(svc_uuid)), "handle": handle, "chars": []}
            handle += 1
            handles = []
            for ch in chars:
                uuid, flags = ch[0], ch[1]
                descriptors = ch[2] if len(ch) > 2 else ()
                value = handle + 1
                handle += 2
                r.attrs[value] = _Attr(UUID(uuid), flags)
                handles.append(value)
                cccd = None
                if flags & (FLAG_NOTIFY | FLAG_INDICATE):
                    cccd = handle
                    handle += 1
                entry = {"uuid": str(UUID(uuid)), "handle": value, "props": flags, "cccd": cccd,
                         "descriptors": []}
                for d_uuid, d_flags in descriptors:
                    r.attrs[handle] = _Attr(UUID(d_uuid), d_flags)
                    handles.append(handle)
                    entry["descriptors"].append({"uuid": str(UUID(d_uuid)), "handle": handle})
                    handle += 1
                svc["chars"].append(entry)
            result.append(tuple(handles))
            table.append(svc)
        r.send_json(D_REGISTER, 0, 0, table)
        return tuple(result)

    def gatts_read(self, value_handle):
        attr = _radio.attrs.get(value_handle)
        if attr is None:
            raise OSError(errno.EINVAL)
        return bytes(attr.buf[:attr.length])

    def gatts_write(self, value_handle, data, send_update=False):
        r = _radio
        attr = r.attrs.get(value_handle)
        if attr is None:
            raise OSError(errno.EINVAL)
        n = len(data)
        if n > len(attr.buf):
            attr.buf = bytearray(n)  # a local write grows the value, as NimBLE's gatts_db does
        attr.buf[:n] = data
        attr.length = n
        if send_update and r.conn >= 0:
            r.send(D_UPDATE, r.conn, value_handle, data)

    def gatts_set_buffer(self, value_handle, length, append=False):
        attr = _radio.attrs.get(value_handle)
        if attr is None:
            raise OSError(errno.EINVAL)
        attr.buf = bytearray(length)
        attr.length = 0
        attr.append = bool(append)

    def gatts_notify(self, conn_handle, value_handle, data=None):
        """Send one notification. Allocation-free when data is given; raises OSError(ENOMEM)
        when the notification buffers are all in use, OSError(ENOTCONN) without a connection."""
        r = _radio
        if not r.active:
            raise OSError(errno.EPERM)
        if conn_handle != r.conn:
            raise _ENOTCONN
        if data is None:
            attr = r.attrs.get(value_handle)
            if attr is None:
                raise _EINVAL
            data = attr.buf[:attr.length]
        if r.in_flight >= r.pool:
            r.enomem += 1
            raise _ENOMEM
        n = len(data)
        payload = r.att_mtu - 3
        if n > payload:  # ATT truncates a notification to MTU - 3
            r.truncated += 1
            data = data[:payload]
            n = payload
        if not r.send(D_NOTIFY, conn_handle, value_handle, data, n):
            r.enomem += 1
            raise _ENOMEM
        r.in_flight += 1
        r.notify_ok += 1
        if r.capture is not None:
            r.capture.append((value_handle, bytes(data)))
        return None

    def gatts_indicate(self, conn_handle, value_handle, data=None):
        r = _radio
        if conn_handle != r.conn:
            raise _ENOTCONN
        if data is None:
            attr = r.attrs.get(value_handle)
            data = attr.buf[:attr.length] if attr else b""
        r.send(D_INDICATE, conn_handle, value_handle, data)

    # -- GAP
    def gap_advertise(self, interval_us, adv_data=None, resp_data=None, connectable=True):
        self._check_active()
        r = _radio
        if interval_us is None:
            r.advertising = False
            r.send(D_ADV_STOP, 0, 0, None)
            return
        if _adv_too_long(adv_data) or _adv_too_long(resp_data):
            raise OSError(errno.EINVAL)  # legacy advertising carries at most 31 bytes each
        adv = bytes(adv_data or b"")
        resp = bytes(resp_data or b"")
        r.advertising = True
        r.send(D_ADV, len(adv), 1 if connectable else 0, adv + resp)

    def gap_disconnect(self, conn_handle):
        r = _radio
        if conn_handle != r.conn:
            return False
        r.send(D_DISCONNECT, conn_handle, 0, None)
        return True

    def gattc_exchange_mtu(self, conn_handle):
        r = _radio
        if conn_handle != r.conn:
            raise OSError(errno.ENOTCONN)
        r.send(D_MTU_REQ, conn_handle, r.mtu_pref, None)


# ---------------------------------------------------------------- unix-board hooks
def poll():
    """Service the virtual radio: send queued messages, raise IRQs for what arrived. Returns the
    number of messages handled."""
    return _radio.poll()


async def poll_task(period_ms=1):
    """The unix board's radio task (started by run_virtual.py): poll() every period_ms."""
    import asyncio

    while True:
        _radio.poll()
        await asyncio.sleep_ms(period_ms)


def stats():
    """Counters of the fake stack: notifications accepted, ENOMEM raised, truncated, in flight."""
    r = _radio
    return {"notify_ok": r.notify_ok, "enomem": r.enomem, "truncated": r.truncated,
            "in_flight": r.in_flight, "pool": r.pool, "att_mtu": r.att_mtu, "conn": r.conn,
            "advertising": r.advertising, "air_lost": r.air_lost}


# ---------------------------------------------------------------- offline test hooks
def sim_reset():
    """Forget everything (a fresh boot of the stack)."""
    _radio.reset()


def sim_connect(conn=1, addr=b"\xc0\xff\xee\x00\x00\x01"):
    _radio.on_connect(conn, addr)


def sim_disconnect(conn=None, reason=0x13):
    _radio.on_disconnect(_radio.conn if conn is None else conn, reason)


def sim_mtu(mtu, conn=None):
    r = _radio
    mtu = min(mtu, r.mtu_pref)
    r.on_mtu(r.conn if conn is None else conn, mtu)


def sim_write(handle, data, conn=None):
    _radio.on_write(_radio.conn if conn is None else conn, handle, data)


def sim_tx_done(count):
    """The link sent `count` notifications: their buffers return to the pool."""
    r = _radio
    r.in_flight = r.in_flight - count if r.in_flight > count else 0


def sim_set_pool(buffers):
    _radio.pool = buffers


def sim_capture(on=True):
    """Offline: keep (handle, bytes) of every notification in sim_captured() (allocates)."""
    _radio.capture = [] if on else None


def sim_captured():
    return _radio.capture
