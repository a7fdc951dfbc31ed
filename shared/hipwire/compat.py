# Lets the same source run on MicroPython and CPython: const() folds at compile time on MicroPython,
# and @micropython.viper kernels run as plain Python on CPython with the same results (their code
# must then keep to integer arithmetic whose results fit 32 bits, as it does on the ESP32).
try:
    from micropython import const  # noqa: F401
except ImportError:  # CPython

    def const(value):
        return value


try:
    import micropython  # noqa: F401
except ImportError:  # CPython

    class micropython:  # noqa: N801 - stands in for the MicroPython module of that name
        @staticmethod
        def viper(f):
            return f


# Named only in viper kernels' annotations (the viper compiler knows them; it does not look these up).
ptr8 = ptr16 = ptr32 = None
