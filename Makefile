# Quick start:  make run   (set up, then the default config's workflow)
#               make test  (set up, then lint and the test suite)
VENV ?= .venv
CORES ?= 2
PYTHON ?= python3
BIN := $(abspath $(VENV))/bin
# Rules call `nmtkd`, so the environment's bin directory goes first on PATH.
export PATH := $(BIN):$(PATH)

.PHONY: setup run test bench clean-results

setup: $(VENV)/.installed

# torch is pinned to the CPU wheel; machines with GPUs install their own CUDA build first.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

run: setup
	$(BIN)/snakemake --cores $(CORES)

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: setup
	$(BIN)/python bench/trainer_throughput.py
	$(BIN)/python bench/decoding_speed.py
	$(BIN)/python bench/data_prep.py
	$(BIN)/python bench/cleaning_length.py
	$(BIN)/python bench/kd_step_time.py
	$(BIN)/python bench/distillation_speed.py
	$(BIN)/python bench/speed_noise.py

clean-results:
	rm -rf results .snakemake
