# Lets the same source run on MicroPython (where const() folds at compile time) and CPython.
try:
    from micropython import const  # noqa: F401
except ImportError:  # CPython

    def const(value):
        return value
