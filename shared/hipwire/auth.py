# Device authentication: HMAC-SHA256 challenge-response over the control characteristic.
#
# One definition for the firmware (MicroPython has hashlib.sha256 but no hmac module) and the host.
# The exchange (ops in commands.py):
#   host   -> AUTH_CHALLENGE                       device -> device_nonce (16 random bytes)
#   host   -> AUTH_RESPONSE(client_nonce, client_mac)
#             client_mac = HMAC(secret, CLIENT_LABEL | device_id | device_nonce | client_nonce)
#   device -> device_mac = HMAC(secret, DEVICE_LABEL | device_id | client_nonce | device_nonce)
# The device checks client_mac in constant time; the host checks device_mac, so it knows it talks
# to the device holding the same secret. The two labels keep one proof from ever being usable as
# the other. Nothing here keeps state: nonce bookkeeping and lock-out are in firmware/security.
import hashlib

from hipwire.compat import const

SECRET_SIZE = const(32)
NONCE_SIZE = const(16)
MAC_SIZE = const(32)
CLIENT_LABEL = b"hipsync-auth-v1"
DEVICE_LABEL = b"hipsync-device-v1"

_BLOCK = const(64)  # SHA-256 block size


def _pad(key, byte):
    out = bytearray(_BLOCK)
    for i in range(len(key)):
        out[i] = key[i] ^ byte
    for i in range(len(key), _BLOCK):
        out[i] = byte
    return out


def hmac_sha256(key, *parts):
    """HMAC-SHA256 (RFC 2104) of the concatenation of parts; returns 32 bytes."""
    key = bytes(key)
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    inner = hashlib.sha256(_pad(key, 0x36))
    for p in parts:
        inner.update(p)
    outer = hashlib.sha256(_pad(key, 0x5C))
    outer.update(inner.digest())
    return outer.digest()


def client_mac(secret, device_id, device_nonce, client_nonce):
    """What the host sends in AUTH_RESPONSE."""
    return hmac_sha256(secret, CLIENT_LABEL, device_id, device_nonce, client_nonce)


def device_mac(secret, device_id, client_nonce, device_nonce):
    """What the device answers to a correct AUTH_RESPONSE."""
    return hmac_sha256(secret, DEVICE_LABEL, device_id, client_nonce, device_nonce)


def equal(a, b):
    """Constant-time comparison of two byte strings: the time taken does not depend on where they
    differ (the length is not secret)."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0
