# The radio link: frames from shared/hipwire onto BLE notifications, back-pressure counted.
from link.ble_server import BleServer, device_name  # noqa: F401
