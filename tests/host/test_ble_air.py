"""The virtual air on its own: socket protocol agreement with the fake radio, advertisement parsing,
the link model's figures, and backend selection."""

from __future__ import annotations

import importlib.util
import re
import uuid
from pathlib import Path

import pytest

from hipsync import ble
from hipsync.sim import air as air_mod
from hipsync.sim.air import Air, LinkModel, parse_advertisement
from hipwire import gatt
from micropython_port import UNIX_BOARD


def _fake_radio_module():
    spec = importlib.util.spec_from_file_location("fake_bluetooth", UNIX_BOARD / "bluetooth.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fake_radio_speaks_the_air_protocol():
    fake = _fake_radio_module()
    assert fake.UNIX_BOARD is True
    assert fake.HEADER == air_mod.HEADER and fake.HEADER_SIZE == air_mod.HEADER_SIZE
    names = [n for n in dir(air_mod) if n[:2] in ("D_", "A_") and n.isupper()]
    assert len(names) >= 20
    for name in names:
        assert getattr(fake, name) == getattr(air_mod, name), name


def test_parse_advertisement_reads_name_and_128_bit_uuid():
    le = bytes(reversed(uuid.UUID(gatt.SERVICE_UUID).bytes))
    adv = bytes([2, 0x01, 0x06, 17, 0x07]) + le
    resp = bytes([13, 0x09]) + b"hipsync-abcd"
    assert len(adv) <= 31 and len(resp) <= 31
    name, uuids = parse_advertisement(adv + resp)
    assert name == "hipsync-abcd"
    assert uuids == [gatt.SERVICE_UUID]
    # a 16-bit UUID list and a truncated structure
    name, uuids = parse_advertisement(bytes([3, 0x03, 0x0F, 0x18, 9, 0x09]) + b"abc")
    assert uuids == [gatt.BATTERY_SERVICE_UUID] and name is None


def test_model_capacity_is_notifications_times_payload_over_interval():
    link = LinkModel(interval_s=0.030, max_notifications_per_interval=5)
    assert link.capacity_bytes_per_s(247) == pytest.approx(5 * 244 / 0.030)
    fast = LinkModel(speed=4.0)
    assert fast.wall(0.030) == pytest.approx(0.0075)


def test_air_binds_loopback_only():
    with Air() as air:
        host, port = air.address.split(":")
        assert host == "127.0.0.1" and int(port) > 0
        assert air.devices() == []
        with pytest.raises(TimeoutError):
            air.wait_for_device("hipsync-0000", timeout_s=0.05)


def test_the_radio_module_takes_the_backend_its_caller_chose(monkeypatch):
    from hipsync.commands._device import backend
    from hipsync.sim.bleak_backend import VIRTUAL_BACKEND, VirtualClient, VirtualScanner

    assert ble.resolve_backend(VIRTUAL_BACKEND) == (VirtualScanner, VirtualClient)
    assert ble.resolve_backend() == (None, None)
    monkeypatch.setenv("HIPSYNC_BACKEND", "virtual")
    assert ble.resolve_backend() == (None, None)  # the radio module reads no environment
    assert backend() == VIRTUAL_BACKEND  # the CLI does
    monkeypatch.setenv("HIPSYNC_BACKEND", "bleak")
    assert backend() is None
    with pytest.raises(ValueError, match="backend must be"):
        ble.resolve_backend("virtual")
    source = Path(ble.__file__).read_text()
    assert "sim" not in re.findall(r"^\s*(?:from|import)\s+\S*", source, flags=re.M).__repr__()


def test_virtual_backend_refuses_non_loopback_air(monkeypatch):
    from bleak.exc import BleakError

    from hipsync.sim.bleak_backend import air_address

    monkeypatch.setenv("HIPSYNC_AIR", "10.0.0.5:4000")
    with pytest.raises(BleakError, match="127.0.0.1"):
        air_address()
    assert air_address("127.0.0.1:4000") == ("127.0.0.1", 4000)
