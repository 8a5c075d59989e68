# Convenience targets; each creates .venv and installs requirements.txt when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

.PHONY: setup demo test bench
setup: $(VENV)/.installed

demo: setup          ## compress + decompress the bundled sample with the bundled model, verify
	$(PY) examples/demo.py

test: setup          ## the test suite (what CI runs)
	$(PY) -m pytest

bench: setup         ## codec-stage throughput (never part of the tests)
	$(PY) benchmarks/bench_codec.py
