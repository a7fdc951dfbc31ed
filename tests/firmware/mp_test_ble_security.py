# Link security of the GATT server: the control characteristic demands encryption, the server asks
# NimBLE for LE Secure Connections bonding, tracks encryption and keeps bond keys for the stack.
import bluetooth

from link.ble_server import BleServer

_FLAG_WRITE_ENCRYPTED = 0x1000
_IRQ_CENTRAL_CONNECT = 1
_IRQ_CENTRAL_DISCONNECT = 2
_IRQ_ENCRYPTION_UPDATE = 28
_IRQ_GET_SECRET = 29
_IRQ_SET_SECRET = 30


def _server():
    bluetooth.sim_reset()
    server = BleServer(bluetooth.BLE(), b"\x01\x02\x03\x04\x05\x06")
    server.start()
    return server


def test_control_writes_require_an_encrypted_link():
    server = _server()
    attrs = bluetooth._radio.attrs
    assert attrs[server._control_handle].flags & _FLAG_WRITE_ENCRYPTED
    assert not attrs[server._stream_handle].flags & _FLAG_WRITE_ENCRYPTED


def test_encryption_state_follows_the_connection():
    server = _server()
    server._irq(_IRQ_CENTRAL_CONNECT, (5, 0, b"\x00" * 6))
    assert not server.encrypted
    server._irq(_IRQ_ENCRYPTION_UPDATE, (5, 1, 0, 1, 16))
    assert server.encrypted and server.bonded
    server._irq(_IRQ_CENTRAL_DISCONNECT, (5, 0, b"\x00" * 6))
    assert not server.encrypted and not server.bonded


def test_bond_keys_are_stored_and_returned_for_the_stack():
    server = _server()
    assert server._irq(_IRQ_SET_SECRET, (1, b"peer-a", b"key-a")) is True
    assert server._irq(_IRQ_SET_SECRET, (1, b"peer-b", b"key-b")) is True
    assert server._irq(_IRQ_GET_SECRET, (1, 0, b"peer-b")) == b"key-b"
    assert server._irq(_IRQ_GET_SECRET, (1, 1, None)) in (b"key-a", b"key-b")
    assert server._irq(_IRQ_GET_SECRET, (2, 0, None)) is None
    server._irq(_IRQ_SET_SECRET, (1, b"peer-a", None))
    assert server._irq(_IRQ_GET_SECRET, (1, 0, b"peer-a")) is None
