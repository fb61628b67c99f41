# Two commands for a fresh clone: `make bench` (set-up + the default job) and `make test` (set-up + tests).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUITE ?= suites/quick.yaml
PYTEST_ARGS ?=

.PHONY: setup test bench extras clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel

$(STAMP): $(BIN)/python requirements.txt setup.py $(wildcard csrc/*.cpp csrc/*.h)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

extras: setup
	$(BIN)/pip install -q --no-deps -r requirements-extra.txt

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests

bench: setup
	$(BIN)/ctrbench run $(SUITE) --executor process --workers 2
	$(BIN)/ctrbench report $(SUITE)

clean:
	rm -rf $(VENV) build *.egg-info kernels/_C*.so
