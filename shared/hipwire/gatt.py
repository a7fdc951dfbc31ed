# The GATT service: UUIDs and the advertised name. Values are strings so that both MicroPython's
# bluetooth.UUID and bleak accept them.
SERVICE_UUID = "6e7a0001-8b1d-4c5e-9a43-68697073796e"
# Notify: ENVELOPE, PELVIS, EVENT, STATUS and RAW_EMG frames.
STREAM_UUID = "6e7a0002-8b1d-4c5e-9a43-68697073796e"
# Write (with response) commands; notify responses.
CONTROL_UUID = "6e7a0003-8b1d-4c5e-9a43-68697073796e"
# Notify sync chunks of stored sessions.
SYNC_UUID = "6e7a0004-8b1d-4c5e-9a43-68697073796e"
# Standard Battery Service / Battery Level, readable without authentication.
BATTERY_SERVICE_UUID = "0000180f-0000-1000-8000-00805f9b34fb"
BATTERY_LEVEL_UUID = "00002a19-0000-1000-8000-00805f9b34fb"

NAME_PREFIX = "hipsync-"
# What the device asks for; a central may grant less. MicroPython accepts up to 512.
PREFERRED_MTU = 247
