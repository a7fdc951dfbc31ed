# The unix "board": a stand-in for MicroPython's `bluetooth` module on the ESP32.
UNIX_BOARD = True
