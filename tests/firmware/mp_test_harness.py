# The harness itself: these run inside MicroPython, never CPython.
import sys


def test_runs_in_micropython():
    assert sys.implementation.name == "micropython"


def test_fake_board_shadows_hardware_modules():
    import machine
    import bluetooth

    assert hasattr(machine, "UNIX_BOARD")
    assert hasattr(bluetooth, "UNIX_BOARD")
