"""shared/hipwire/auth.py on CPython and inside MicroPython agrees with Python's hmac module."""

from __future__ import annotations

import hashlib
import hmac
import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from hipwire import auth
from micropython_port import check_code


@settings(max_examples=200, deadline=None)
@given(key=st.binary(min_size=0, max_size=200), msg=st.binary(max_size=300))
def test_cpython_hmac_matches_the_hmac_module(key, msg):
    assert auth.hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()


def test_micropython_and_cpython_agree_with_the_hmac_module():
    rnd = random.Random(7)
    vectors = []
    for _ in range(40):
        key = rnd.randbytes(rnd.choice([0, 1, 16, 32, 63, 64, 65, 100, 131]))
        msg = rnd.randbytes(rnd.randrange(0, 200))
        vectors.append((key.hex(), msg.hex()))
    sid, dn, cn = b"\x01\x02\x03\x04\x05\x06", rnd.randbytes(16), rnd.randbytes(16)
    secret = rnd.randbytes(32)
    code = (
        "import json\nfrom binascii import hexlify, unhexlify as u\nfrom hipwire import auth\n"
        f"v = json.loads({json.dumps(json.dumps(vectors))})\n"
        "print(json.dumps([hexlify(auth.hmac_sha256(u(k), u(m))).decode() for k, m in v]))\n"
        f"s, i, d, c = u('{secret.hex()}'), u('{sid.hex()}'), u('{dn.hex()}'), u('{cn.hex()}')\n"
        "print(hexlify(auth.client_mac(s, i, d, c)).decode())\n"
        "print(hexlify(auth.device_mac(s, i, c, d)).decode())\n")
    lines = check_code(code).splitlines()
    mp = json.loads(lines[0])
    for (k, m), got in zip(vectors, mp):
        want = hmac.new(bytes.fromhex(k), bytes.fromhex(m), hashlib.sha256).hexdigest()
        assert got == want
        assert auth.hmac_sha256(bytes.fromhex(k), bytes.fromhex(m)).hex() == want
    # the protocol messages: label | device id | nonces, in this order
    assert lines[1] == hmac.new(secret, b"hipsync-auth-v1" + sid + dn + cn, hashlib.sha256).hexdigest()
    assert lines[2] == hmac.new(secret, b"hipsync-device-v1" + sid + cn + dn,
                                hashlib.sha256).hexdigest()
    assert lines[1] == auth.client_mac(secret, sid, dn, cn).hex()


def test_equal_is_exact():
    a = bytes(range(32))
    assert auth.equal(a, bytes(a))
    for i in range(32):
        b = bytearray(a)
        b[i] ^= 1
        assert not auth.equal(a, bytes(b))
    assert not auth.equal(a, a[:31])
