# The board's entry point: MicroPython runs main.py after boot.py. It starts the firmware app.
# A crash is printed (for whoever is on the USB console) and the board restarts, as the watchdog
# would, so a unit on a patient never sits at the REPL; Ctrl-C on the console still reaches it.
import sys
import time

import asyncio
import machine

import app

try:
    asyncio.run(app.main())
except KeyboardInterrupt:
    pass
except Exception as e:  # noqa: BLE001 - anything that ends the app restarts the board
    sys.print_exception(e)
    time.sleep(2)
    machine.reset()
