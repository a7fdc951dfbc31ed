# Challenge-response authentication of a BLE central (see hipwire/auth.py for the messages).
#
#   auth = Authenticator(secret, device_id)             # secret None: unprovisioned, nobody gets in
#   status = auth.challenge(conn, out, off)             # OK: 16-byte device nonce at out[off:]
#   status = auth.respond(conn, client_nonce, mac, out, off)   # OK: 32-byte device proof at out[off:]
#   auth.is_authenticated(conn) -> bool                 # the dispatcher checks it for protected ops
#   auth.disconnect(conn)                               # from the BLE disconnect handler
#
# Rules:
# - A device nonce is fresh (os.urandom), bound to the connection that asked for it, and consumed
#   by the first AUTH_RESPONSE whatever its outcome: a recorded response can never be replayed.
# - A wrong response (or one without an outstanding challenge) locks AUTH out for 1 s, 2 s, 4 s ...
#   up to lockout_cap_ms, device-wide (a reconnect does not reset it; a success or a reboot does).
#   While locked out both AUTH ops answer ERR_LOCKED_OUT and nothing is checked.
# - Authentication belongs to one connection and ends with it.
# Time comes from the injected now_ms (time.ticks_ms on the board) and is compared with
# time.ticks_diff, so wrap-around is handled.
import os
import time

from micropython import const

from hipwire import auth
from hipwire.commands import ERR_AUTH_FAILED, ERR_LOCKED_OUT, OK

_NO_CONN = const(-1)


class Authenticator:
    def __init__(self, secret, device_id, now_ms=None, urandom=None, lockout_base_ms=1000,
                 lockout_cap_ms=64000):
        self._secret = bytes(secret) if secret else None
        self._device_id = bytes(device_id)
        self._now_ms = now_ms or time.ticks_ms
        self._urandom = urandom or os.urandom
        self._base_ms = lockout_base_ms
        self._cap_ms = lockout_cap_ms
        self._nonce = b""
        self._nonce_conn = _NO_CONN
        self._authed_conn = _NO_CONN
        self._locked_until = 0
        self._locked = False
        self.failures = 0  # consecutive failures; the lock-out doubles with each
        self.failures_total = 0
        self.successes = 0

    @property
    def provisioned(self):
        return self._secret is not None

    def is_authenticated(self, conn):
        return conn != _NO_CONN and conn == self._authed_conn

    def lockout_remaining_ms(self):
        if not self._locked:
            return 0
        left = time.ticks_diff(self._locked_until, self._now_ms())
        if left <= 0:
            self._locked = False
            return 0
        return left

    def challenge(self, conn, out, off):
        """AUTH_CHALLENGE: a fresh nonce for conn at out[off:off+16]. A new challenge replaces an
        outstanding one and ends any authentication of conn (re-authentication starts clean)."""
        if self.lockout_remaining_ms():
            return ERR_LOCKED_OUT
        if self._authed_conn == conn:
            self._authed_conn = _NO_CONN
        nonce = self._urandom(auth.NONCE_SIZE)
        self._nonce = nonce
        self._nonce_conn = conn
        out[off:off + auth.NONCE_SIZE] = nonce
        return OK

    def respond(self, conn, client_nonce, client_mac, out, off):
        """AUTH_RESPONSE: check client_mac against this connection's outstanding nonce (consumed
        here in every case); on success write the device proof at out[off:off+32]."""
        if self.lockout_remaining_ms():
            return ERR_LOCKED_OUT
        nonce = self._nonce
        valid = self._nonce_conn == conn and len(nonce) == auth.NONCE_SIZE
        self._nonce = b""
        self._nonce_conn = _NO_CONN
        ok = False
        if valid and self._secret is not None and len(client_nonce) == auth.NONCE_SIZE:
            expected = auth.client_mac(self._secret, self._device_id, nonce, client_nonce)
            ok = auth.equal(expected, client_mac)
        if not ok:
            self._fail(conn)
            return ERR_AUTH_FAILED
        self.failures = 0
        self.successes += 1
        self._authed_conn = conn
        out[off:off + auth.MAC_SIZE] = auth.device_mac(self._secret, self._device_id, client_nonce,
                                                       nonce)
        return OK

    def _fail(self, conn):
        if self._authed_conn == conn:
            self._authed_conn = _NO_CONN
        self.failures += 1
        self.failures_total += 1
        delay = self._base_ms
        for _ in range(self.failures - 1):
            delay *= 2
            if delay >= self._cap_ms:
                delay = self._cap_ms
                break
        self._locked_until = time.ticks_add(self._now_ms(), delay)
        self._locked = True

    def disconnect(self, conn):
        """The connection ended: its authentication and any outstanding nonce are gone."""
        if self._authed_conn == conn:
            self._authed_conn = _NO_CONN
        if self._nonce_conn == conn:
            self._nonce = b""
            self._nonce_conn = _NO_CONN
