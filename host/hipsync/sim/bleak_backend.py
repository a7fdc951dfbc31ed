"""bleak backends for the virtual air: `BleakScanner(backend=VirtualScanner)` and
`BleakClient(device, backend=VirtualClient)`.

Code above bleak cannot tell these from a real radio: devices are found by their advertisement
(name, service UUIDs), GATT services are discovered on connect, reads and writes wait for the ATT
response, notifications arrive through the callbacks given to start_notify, the MTU is exchanged
after connecting (the central offers LinkModel.central_mtu, like BlueZ), and an unsolicited link
loss calls the disconnected callback.

Where the air is: the `air="127.0.0.1:PORT"` keyword (bleak passes unknown keywords through to the
backend), else the BLEDevice found by VirtualScanner, else the environment variable HIPSYNC_AIR.
Only loopback addresses are accepted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError

from . import air as wire

log = logging.getLogger(__name__)

CCCD_UUID = "00002902-0000-1000-8000-00805f9b34fb"
_PROPERTY_NAMES = ((0x0002, "read"), (0x0004, "write-without-response"), (0x0008, "write"),
                   (0x0010, "notify"), (0x0020, "indicate"))


@dataclass(frozen=True)
class VirtualDetails:
    """BLEDevice.details of a virtual device: where its air is."""

    air: str
    address: str


def air_address(explicit: str | None = None) -> tuple[str, int]:
    spec = explicit or os.environ.get("HIPSYNC_AIR")
    if not spec:
        raise BleakError("virtual backend: no air address (set HIPSYNC_AIR=127.0.0.1:PORT)")
    host, _, port = spec.rpartition(":")
    if host not in ("127.0.0.1", "localhost") or not port.isdigit():
        raise BleakError(f"virtual backend: HIPSYNC_AIR must be 127.0.0.1:PORT, got {spec!r}")
    return "127.0.0.1", int(port)


class _AirLink:
    """One TCP connection to the air, with a reader task handing messages to on_message."""

    def __init__(self, on_message, on_closed):
        self._on_message = on_message
        self._on_closed = on_closed
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task | None = None

    async def open(self, spec: str | None) -> None:
        host, port = air_address(spec)
        try:
            reader, self._writer = await asyncio.open_connection(host, port)
        except OSError as e:
            raise BleakError(f"virtual backend: cannot reach the air at {host}:{port}: {e}") from e
        self._task = asyncio.get_running_loop().create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                self._on_message(*await wire.read_message(reader))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._on_closed()

    def send(self, kind: int, a: int = 0, b: int = 0, body: bytes = b"") -> None:
        if self._writer is None or self._writer.is_closing():
            raise BleakError("virtual backend: not connected to the air")
        self._writer.write(wire.pack(kind, a, b, body))

    async def close(self) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.close()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing anyway
                pass
        self._writer = None
        self._task = None


class VirtualScanner(BaseBleakScanner):
    def __init__(self, detection_callback: AdvertisementDataCallback | None,
                 service_uuids: list[str] | None, scanning_mode: str = "active", *,
                 air: str | None = None, **kwargs: Any):
        super().__init__(detection_callback, service_uuids)
        self._air = air
        self._link: _AirLink | None = None

    async def start(self) -> None:
        self.seen_devices = {}
        self._link = _AirLink(self._on_message, lambda: None)
        await self._link.open(self._air)
        self._link.send(wire.C_SCAN, 1)

    async def stop(self) -> None:
        if self._link is not None:
            await self._link.close()
            self._link = None

    def _on_message(self, kind: int, a: int, b: int, body: bytes) -> None:
        if kind != wire.C_ADV_REPORT:
            return
        report = json.loads(body)
        uuids = [u.lower() for u in report["service_uuids"]]
        if not self.is_allowed_uuid(uuids):
            return
        adv = AdvertisementData(local_name=report["name"], manufacturer_data={}, service_data={},
                                service_uuids=uuids, tx_power=None, rssi=report["rssi"],
                                platform_data=(report,))
        host, port = air_address(self._air)
        air = f"{host}:{port}"
        device = self.create_or_update_device(report["address"], report["address"],
                                              report["name"], VirtualDetails(air, report["address"]),
                                              adv)
        self.call_detection_callbacks(device, adv)


class VirtualClient(BaseBleakClient):
    def __init__(self, address_or_ble_device: BLEDevice | str, *, air: str | None = None,
                 central_mtu: int | None = None, **kwargs: Any):
        services = kwargs.pop("services", None)
        kwargs.pop("bluez", None)
        kwargs.pop("winrt", None)
        super().__init__(address_or_ble_device, disconnected_callback=kwargs.pop(
            "disconnected_callback", None), timeout=kwargs.pop("timeout", 10.0))
        details = getattr(address_or_ble_device, "details", None)
        self._air = air or (details.air if isinstance(details, VirtualDetails) else None)
        self._central_mtu = central_mtu
        self._wanted_services = services
        self._link: _AirLink | None = None
        self._connected = False
        self._closing = False
        self._mtu = wire.ATT_DEFAULT_MTU
        self._name = getattr(address_or_ble_device, "name", None) or ""
        self._callbacks: dict[int, NotifyCallback] = {}
        self._subscribed: set[int] = set()
        self._att_lock = asyncio.Lock()
        self._waiting: dict[int, asyncio.Future] = {}  # reply kind -> future

    # -- properties
    @property
    def name(self) -> str:
        return self._name

    @property
    def mtu_size(self) -> int:
        return self._mtu

    @property
    def is_connected(self) -> bool:
        return self._connected

    # -- connection
    async def connect(self, pair: bool, **kwargs: Any) -> None:
        if self._connected:
            return
        self._closing = False
        self._link = _AirLink(self._on_message, self._on_air_closed)
        await self._link.open(self._air)
        try:
            async with asyncio.timeout(self._timeout):
                kind, a, _, body = await self._request(
                    (wire.C_CONNECTED, wire.C_CONNECT_FAILED), wire.C_CONNECT,
                    body=json.dumps({"address": self.address}).encode())
                if kind == wire.C_CONNECT_FAILED:
                    raise BleakDeviceNotFoundError(self.address, body.decode())
                info = json.loads(body)
                self._name = info.get("name") or self._name
                self.services = self._build_services(info["services"])
                self._connected = True
                # BlueZ and CoreBluetooth start the MTU exchange themselves after connecting
                mtu = self._central_mtu or 517
                _, self._mtu, _, _ = await self._request((wire.C_MTU,), wire.C_MTU_REQ, mtu)
        except BaseException:
            self._connected = False
            await self._link.close()
            raise

    async def disconnect(self) -> None:
        if self._link is None:
            return
        self._closing = True
        if self._connected:
            try:
                async with asyncio.timeout(2.0):
                    await self._request((wire.C_DISCONNECTED,), wire.C_DISCONNECT)
            except (BleakError, TimeoutError):
                pass
        self._connected = False
        await self._link.close()
        self._link = None

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        log.info("virtual backend: pairing is not modelled; ignored")

    async def unpair(self) -> None:
        log.info("virtual backend: pairing is not modelled; ignored")

    # -- GATT
    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, *,
                             use_cached: bool = False, **kwargs: Any) -> bytearray:
        _, _, status, body = await self._att((wire.C_READ_RSP,), wire.C_READ, characteristic.handle)
        if status:
            raise BleakGATTProtocolError(status)
        return bytearray(body)

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, *,
                                   use_cached: bool = False, **kwargs: Any) -> bytearray:
        if descriptor.uuid == CCCD_UUID:
            on = descriptor.characteristic_handle in self._subscribed
            return bytearray(b"\x01\x00" if on else b"\x00\x00")
        raise BleakGATTProtocolError(wire.ATT_ERR_READ_NOT_PERMITTED)

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data,
                              response: bool) -> None:
        payload = bytes(data)
        if response:
            if len(payload) > 512:
                raise BleakError("write with response: at most 512 bytes")
            _, _, status, _ = await self._att((wire.C_WRITE_RSP,), wire.C_WRITE,
                                              characteristic.handle, 1, payload)
            if status:
                raise BleakGATTProtocolError(status)
        else:
            if len(payload) > self._mtu - 3:
                raise BleakError(f"write without response: at most {self._mtu - 3} bytes")
            self._require_connected()
            self._link.send(wire.C_WRITE, characteristic.handle, 0, payload)

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data) -> None:
        if descriptor.uuid != CCCD_UUID:
            raise BleakGATTProtocolError(wire.ATT_ERR_WRITE_NOT_PERMITTED)
        await self._set_subscription(descriptor.characteristic_handle, bool(bytes(data)[0] & 0x03))

    async def start_notify(self, characteristic: BleakGATTCharacteristic,
                           callback: NotifyCallback, **kwargs: Any) -> None:
        self._callbacks[characteristic.handle] = callback
        await self._set_subscription(characteristic.handle, True)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        await self._set_subscription(characteristic.handle, False)
        self._callbacks.pop(characteristic.handle, None)

    async def _set_subscription(self, handle: int, on: bool) -> None:
        _, _, status, _ = await self._att((wire.C_SUBSCRIBE_RSP,), wire.C_SUBSCRIBE, handle,
                                          1 if on else 0)
        if status:
            raise BleakGATTProtocolError(status)
        if on:
            self._subscribed.add(handle)
        else:
            self._subscribed.discard(handle)

    # -- plumbing
    def _require_connected(self) -> None:
        if not self._connected or self._link is None:
            raise BleakError("Not connected")

    async def _att(self, replies: tuple[int, ...], kind: int, a: int = 0, b: int = 0,
                   body: bytes = b"") -> tuple[int, int, int, bytes]:
        """One ATT request at a time, as the protocol requires."""
        self._require_connected()
        async with self._att_lock:
            self._require_connected()
            async with asyncio.timeout(self._timeout):
                return await self._request(replies, kind, a, b, body)

    async def _request(self, replies: tuple[int, ...], kind: int, a: int = 0, b: int = 0,
                       body: bytes = b"") -> tuple[int, int, int, bytes]:
        fut = asyncio.get_running_loop().create_future()
        for r in replies:
            self._waiting[r] = fut
        try:
            self._link.send(kind, a, b, body)
            return await fut
        finally:
            for r in replies:
                if self._waiting.get(r) is fut:
                    del self._waiting[r]

    def _on_message(self, kind: int, a: int, b: int, body: bytes) -> None:
        if kind == wire.C_NOTIFY:
            callback = self._callbacks.get(a)
            if callback is not None:
                callback(bytearray(body))
            return
        if kind == wire.C_MTU:
            self._mtu = a
        if kind == wire.C_DISCONNECTED and not self._closing:
            fut = self._waiting.get(kind)
            if fut is None or fut.done():
                self._lost(f"link lost (HCI reason 0x{b:02x})")
                return
        fut = self._waiting.get(kind)
        if fut is not None and not fut.done():
            fut.set_result((kind, a, b, body))

    def _on_air_closed(self) -> None:
        if not self._closing:
            self._lost("the air closed the connection")

    def _lost(self, why: str) -> None:
        was_connected = self._connected
        self._connected = False
        self._subscribed.clear()
        for fut in list(self._waiting.values()):
            if not fut.done():
                fut.set_exception(BleakError(f"virtual backend: {why}"))
        self._waiting.clear()
        if self._link is not None:
            link, self._link = self._link, None
            asyncio.get_running_loop().create_task(link.close())
        if was_connected and self._disconnected_callback is not None:
            asyncio.get_running_loop().call_soon(self._disconnected_callback)

    def _build_services(self, table: list[dict]) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        wanted = self._wanted_services
        for s in table:
            if wanted is not None and s["uuid"] not in wanted:
                continue
            service = BleakGATTService(s, s["handle"], s["uuid"])
            collection.add_service(service)
            for c in s["chars"]:
                props = [name for bit, name in _PROPERTY_NAMES if c["props"] & bit]
                char = BleakGATTCharacteristic(c, c["handle"], c["uuid"], props,
                                               lambda: self._mtu - 3, service)
                collection.add_characteristic(char)
                if c.get("cccd") is not None:
                    collection.add_descriptor(BleakGATTDescriptor(None, c["cccd"], CCCD_UUID, char))
                for d in c.get("descriptors", ()):
                    collection.add_descriptor(BleakGATTDescriptor(d, d["handle"], d["uuid"], char))
        return collection


# what a caller hands to hipsync.ble (`backend=`) to use the virtual radio
VIRTUAL_BACKEND = (VirtualScanner, VirtualClient)
