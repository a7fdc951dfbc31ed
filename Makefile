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

.PHONY: help venv test demo bench lint flash deploy repl clean

help:
	@echo "make test   - install pinned deps into $(VENV) and run every test"
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

demo: $(STAMP)
	$(BIN)/hipsync demo --out out/demo

bench: $(STAMP)
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
