# Runs one test function of a MicroPython test module: micropython mprunner.py MODULE FUNCTION
import sys

_MARK = "MPTEST-RESULT "


def main():
    module_name, function_name = sys.argv[1], sys.argv[2]
    module = __import__(module_name)
    test = getattr(module, function_name)
    try:
        test()
    except Exception as e:  # noqa: BLE001 - report any failure with its traceback
        sys.print_exception(e)
        print(_MARK + "FAIL")
        sys.exit(1)
    print(_MARK + "PASS")


main()
