# Unix-board entry point of the virtual device: the firmware app on the virtual radio.
#
#   micropython -X heapsize=512k firmware/unixboard/run_virtual.py
#   MICROPYPATH = firmware/unixboard : firmware : shared : .frozen (asyncio is frozen in the port)
#
# Environment (set by host/hipsync/sim/virtual_device.py):
#   HIPSYNC_AIR        127.0.0.1:PORT of the virtual air (firmware/unixboard/bluetooth.py reads it)
#   HIPSYNC_DEVICE_ID  12 hex digits: the fake radio's MAC; apps may use it as their device id
#   HIPSYNC_SPEED      modelled seconds per wall second: the simulated chips' pace
#   HIPSYNC_FEED       path of the chip feed file (shared/hipwire/feed.py) for the fake chips; without
#                      it they produce a generated test pattern
#   HIPSYNC_APP        module to run instead of `app` (tests use a small GATT test app)
#
# Contract with the app module: it defines `async def main()`; this script starts the unix board's
# radio task (bluetooth.poll_task: services the socket to the air and raises the BLE IRQs) and then
# runs main() under asyncio. On the ESP32 the NimBLE stack needs no such task.
import os
import sys

if ".frozen" not in sys.path:
    sys.path.append(".frozen")

import asyncio  # noqa: E402

import bluetooth  # noqa: E402

_BATTERY_UV = 4_000_000  # 4.0 V: about 82 % on the device's gauge


def main():
    name = os.getenv("HIPSYNC_APP") or "app"
    # The simulated chips: the fake ADS1294R and ICM-42688-P replay the feed at the modelled speed
    # (virtual time runs from the sample clock they produce, not from wall time).
    # Test apps (HIPSYNC_APP) exercise the radio alone and get no chips.
    app = __import__(name)
    asyncio.create_task(bluetooth.poll_task())
    if name == "app":
        import hardware_clock
        import machine
        from board import pins

        # a charged LiPo behind the sense divider (the battery gauge would read 0 % otherwise)
        machine.board_set_voltage_uv(pins.VBAT_SENSE, _BATTERY_UV * pins.VBAT_SENSE_DIVIDER_BOTTOM_OHM
                                     // pins.VBAT_SENSE_DIVIDER_TOTAL_OHM)

        chips = hardware_clock.install(os.getenv("HIPSYNC_FEED") or None)
        asyncio.create_task(chips.run(float(os.getenv("HIPSYNC_SPEED") or "1")))
    try:
        asyncio.run(app.main())
    except KeyboardInterrupt:  # VirtualDevice.stop() sends SIGINT
        pass


main()
