# hipsync: every entry point a user or CI needs. Only python3 + pip are assumed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
# Re-install when the dependency pins change.
STAMP  := $(VENV)/.stamp-$(shell cat host/pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
PORT ?=
FIRMWARE ?=
# The 32-bit unix port (tools/build_micropython32.py): ints and objects laid out as on the ESP32.
MP32   := build/micropython32/micropython
# What `make test` runs again on it: every firmware test (all the heap-locked paths) and one
# virtual-device journey (demo, sync, lossy links). Empty: skip the 32-bit run.
TEST32 ?= tests/firmware tests/host/test_virtual_device_e2e.py tests/host/test_encode_batch_mp.py

.PHONY: help venv test test32 micropython32 demo bench lint flash deploy repl clean

help:
	@echo "make test   - install pinned deps into $(VENV) and run every test, then the firmware tests"
	@echo "              again on the 32-bit MicroPython (make test32; TEST32= skips it)"
	@echo "make micropython32 - build the 32-bit unix port from ../shared/micropython/ into build/"
	@echo "make demo   - simulated patient -> real firmware (MicroPython) -> bleak -> report in out/demo/"
	@echo "make bench  - print BENCH <name> <value> <unit> lines"
	@echo "make lint   - ruff (host, tests) + mypy of firmware/ against ESP32 stubs"
	@echo "make flash PORT=/dev/ttyUSB0 FIRMWARE=micropython.bin | make deploy PORT=... [DRY_RUN=1] | make repl PORT=..."

$(STAMP): host/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e 'host[test,lint,bench,device,lsl]'
	@rm -f $(VENV)/.stamp-*
	@touch $@

venv: $(STAMP)

test: $(STAMP)
	$(PY) tools/ensure_chromium.py
	$(BIN)/pytest -q $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory test32

micropython32:
	$(PYTHON) tools/build_micropython32.py

# HIPSYNC_MICROPYTHON is the one switch: harness, virtual device, replay and benchmarks use it.
# A failed build prints why and the run skips, as when the source or gcc-multilib is missing.
test32: $(STAMP)
	-$(PYTHON) tools/build_micropython32.py
	@if [ -z "$(strip $(TEST32))" ]; then echo "SKIP 32-bit firmware tests: TEST32 is empty"; \
	elif [ ! -x $(MP32) ]; then echo "SKIP 32-bit firmware tests: no $(MP32) (see the line above)"; \
	else echo "32-bit MicroPython ($(MP32)): $(TEST32)"; \
	  HIPSYNC_MICROPYTHON=$(CURDIR)/$(MP32) $(BIN)/pytest -q $(TEST32); fi

demo: $(STAMP)
	$(BIN)/hipsync demo --out out/demo

bench: $(STAMP)
	-$(PYTHON) tools/build_micropython32.py
	$(PY) bench/run.py

lint: $(STAMP)
	$(BIN)/ruff check host tests tools bench
	$(BIN)/mypy --config-file firmware/mypy.ini firmware

flash: $(STAMP)
	$(PY) tools/device.py flash --port "$(PORT)" --firmware "$(FIRMWARE)"

deploy: $(STAMP)
	$(PY) tools/device.py deploy --port "$(PORT)" $(if $(DRY_RUN),--dry-run,)

repl: $(STAMP)
	$(PY) tools/device.py repl --port "$(PORT)"

clean:
	rm -rf $(VENV) out .pytest_cache build
