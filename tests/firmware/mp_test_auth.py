# Authentication inside MicroPython: HMAC-SHA256 against RFC 4231 vectors, and the device's rules
# (protected ops refused before auth, single-use nonces, growing lock-out, per-connection state).
import os
from binascii import unhexlify

from hipwire import auth
from hipwire import commands as cmd
from link.sync_service import SyncService
from security import Authenticator
from store.flashlog import FlashLog

SECRET = bytes(range(32))
DEVICE_ID = b"\x10\x20\x30\x40\x50\x60"
OFF = cmd.RESPONSE_HEADER_SIZE

# RFC 4231 test cases 1, 2 and 6 (a key longer than the SHA-256 block is hashed first)
_RFC4231 = (
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
)


class _Clock:
    def __init__(self):
        self.ms = 1000

    def __call__(self):
        return self.ms


def _nonces():
    state = [0]

    def urandom(n):
        state[0] += 1
        return bytes((state[0] + i) & 0xFF for i in range(n))
    return urandom


def _authenticate(a, conn, secret=SECRET, client_nonce=b"C" * 16):
    out = bytearray(64)
    assert a.challenge(conn, out, 0) == cmd.OK
    dn = bytes(out[:16])
    mac = auth.client_mac(secret, DEVICE_ID, dn, client_nonce)
    status = a.respond(conn, client_nonce, mac, out, 0)
    return status, dn, mac, bytes(out[:32])


def test_hmac_matches_rfc4231():
    for key, msg, hexmac in _RFC4231:
        assert auth.hmac_sha256(key, msg) == unhexlify(hexmac)
        # the message may come in parts
        assert auth.hmac_sha256(key, msg[:3], msg[3:]) == unhexlify(hexmac)


def test_constant_time_equal():
    assert auth.equal(b"abc", b"abc")
    assert not auth.equal(b"abc", b"abd")
    assert not auth.equal(b"abc", b"ab")
    assert auth.equal(bytearray(b"\x00" * 32), bytes(32))


def test_correct_response_authenticates_and_device_proves_itself():
    a = Authenticator(SECRET, DEVICE_ID, now_ms=_Clock(), urandom=_nonces())
    status, dn, mac, proof = _authenticate(a, conn=1)
    assert status == cmd.OK
    assert a.is_authenticated(1) and not a.is_authenticated(2)
    assert proof == auth.device_mac(SECRET, DEVICE_ID, b"C" * 16, dn)
    assert proof != mac
    a.disconnect(1)
    assert not a.is_authenticated(1)


def test_unauthenticated_client_gets_an_error_and_no_data_for_every_protected_op():
    root = "/tmp/hs-auth-%s" % "".join("%02x" % b for b in os.urandom(4))
    log = FlashLog(root, reserve_bytes=0)
    a = Authenticator(SECRET, DEVICE_ID, now_ms=_Clock(), urandom=_nonces())
    svc = SyncService(log, a)
    args_for = {cmd.OP_REC_START: (), cmd.OP_REC_STOP: (), cmd.OP_SESSION_LIST: (0,),
                cmd.OP_SESSION_READ: (1, 0, 1000), cmd.OP_SESSION_CONFIRM: (1, 0),
                cmd.OP_SESSION_DAMAGED: (1, 0),
                cmd.OP_ERASE: (cmd.ERASE_ALL_SYNCED,), cmd.OP_REC_STATUS: ()}
    protected = [spec[0] for spec in cmd.OPS if spec[4]]
    handled = [op for op in protected if op in svc.HANDLED_OPS]
    assert sorted(handled) == sorted(args_for)
    reply = bytearray(256)
    for op in handled:
        reply[OFF:] = bytes(256 - OFF)
        status, n = svc.handle(7, op, args_for[op], reply, 200)
        assert status == cmd.ERR_AUTH_REQUIRED and n == 0, (op, status, n)
        assert bytes(reply[OFF:]) == bytes(256 - OFF)
    assert not log.recording and log.sessions() == [] and not svc.reading
    # a wrong answer does not open them either
    out = bytearray(64)
    svc.handle(7, cmd.OP_AUTH_CHALLENGE, (), out, 200)
    assert svc.handle(7, cmd.OP_AUTH_RESPONSE, (b"C" * 16, b"\x00" * 32), out, 200) == (
        cmd.ERR_AUTH_FAILED, 0)
    assert svc.handle(7, cmd.OP_REC_START, (), reply, 200) == (cmd.ERR_AUTH_REQUIRED, 0)
    os.rmdir(root)


def test_replayed_response_is_refused():
    clock = _Clock()
    a = Authenticator(SECRET, DEVICE_ID, now_ms=clock, urandom=_nonces())
    status, dn, mac, _ = _authenticate(a, conn=1)
    assert status == cmd.OK
    a.disconnect(1)
    out = bytearray(64)
    # the same response again, on a new connection without a challenge, or after a new one
    assert a.respond(2, b"C" * 16, mac, out, 0) == cmd.ERR_AUTH_FAILED
    clock.ms += 100000
    assert a.challenge(2, out, 0) == cmd.OK
    assert bytes(out[:16]) != dn
    assert a.respond(2, b"C" * 16, mac, out, 0) == cmd.ERR_AUTH_FAILED
    assert not a.is_authenticated(2)
    # a nonce is consumed by a response, even a correct one cannot be sent twice
    clock.ms += 100000
    status, dn, mac, _ = _authenticate(a, conn=3)
    assert status == cmd.OK
    assert a.respond(3, b"C" * 16, mac, out, 0) == cmd.ERR_AUTH_FAILED
    # and a challenge is bound to the connection that asked for it
    clock.ms += 100000
    assert a.challenge(4, out, 0) == cmd.OK
    dn = bytes(out[:16])
    assert a.respond(5, b"C" * 16, auth.client_mac(SECRET, DEVICE_ID, dn, b"C" * 16), out, 0) \
        == cmd.ERR_AUTH_FAILED


def test_wrong_answers_lock_out_with_growing_delays():
    clock = _Clock()
    a = Authenticator(SECRET, DEVICE_ID, now_ms=clock, urandom=_nonces(), lockout_base_ms=1000,
                      lockout_cap_ms=8000)
    out = bytearray(64)
    delays = []
    for attempt in range(6):
        assert a.challenge(1, out, 0) == cmd.OK
        assert a.respond(1, b"C" * 16, b"\x11" * 32, out, 0) == cmd.ERR_AUTH_FAILED
        # locked out: both AUTH ops refused until the delay has passed, reconnecting changes nothing
        waited = 0
        while a.challenge(2 + attempt, out, 0) == cmd.ERR_LOCKED_OUT:
            assert a.respond(1, b"C" * 16, b"\x11" * 32, out, 0) == cmd.ERR_LOCKED_OUT
            clock.ms += 250
            waited += 250
        a.disconnect(2 + attempt)
        delays.append(waited)
    assert delays == [1000, 2000, 4000, 8000, 8000, 8000], delays
    # the right secret still works after the lock-out, and resets the count
    status = _authenticate(a, conn=9)[0]
    assert status == cmd.OK
    assert a.failures == 0
    # an unprovisioned device (no secret) lets nobody in
    b = Authenticator(None, DEVICE_ID, now_ms=clock, urandom=_nonces())
    assert _authenticate(b, conn=1)[0] == cmd.ERR_AUTH_FAILED
    # nor does a response computed with another secret
    c = Authenticator(SECRET, DEVICE_ID, now_ms=clock, urandom=_nonces())
    assert _authenticate(c, conn=1, secret=b"\x01" * 32)[0] == cmd.ERR_AUTH_FAILED


def test_lockout_survives_the_tick_wrap():
    import time
    clock = _Clock()
    clock.ms = time.ticks_add(0, -300)  # 300 ms before the tick counter wraps
    a = Authenticator(SECRET, DEVICE_ID, now_ms=clock, urandom=_nonces())
    out = bytearray(64)
    a.challenge(1, out, 0)
    a.respond(1, b"C" * 16, b"\x00" * 32, out, 0)
    clock.ms = time.ticks_add(clock.ms, 900)
    assert a.challenge(1, out, 0) == cmd.ERR_LOCKED_OUT
    clock.ms = time.ticks_add(clock.ms, 200)
    assert a.challenge(1, out, 0) == cmd.OK
