# The unix "board": a stand-in for MicroPython's `machine` module on the ESP32.
UNIX_BOARD = True
