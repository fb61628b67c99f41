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

# TorchRec + FBGEMM (CPU) for the TorchRec front door, its equivalence tests and the peer benchmarks: pinned,
# --no-deps (torchrec's declared deps pull the CUDA fbgemm-gpu); about 6 s from the local index.
EXTRAS_STAMP := $(VENV)/.extras-installed

$(EXTRAS_STAMP): $(STAMP) requirements-extra.txt
	$(BIN)/pip install -q --no-deps -r requirements-extra.txt
	$(BIN)/python -c "import torchrec, fbgemm_gpu"
	touch $(EXTRAS_STAMP)

extras: $(EXTRAS_STAMP)

test: setup extras
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests

bench: setup
	$(BIN)/ctrbench run $(SUITE) --executor process --workers 2
	$(BIN)/ctrbench report $(SUITE)

clean:
	rm -rf $(VENV) build *.egg-info kernels/_C*.so
