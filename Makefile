# reslab: two commands on a fresh machine.
#   make run   set up .venv, make sure the built-in data set is there, run the DVC pipeline, print the comparison
#   make test  set up .venv, run the whole test suite (slow end-to-end tests included)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export DVC_NO_ANALYTICS := 1
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test setup data repro report clean-runs

setup: $(STAMP)

# Reinstall only when the project's dependencies change.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --progress-bar off --upgrade pip 2> >(grep -v 'is ignored' >&2)
	$(BIN)/python -m pip install --quiet --progress-bar off -e '.[dev,postgres,dashboard]' 2> >(grep -v 'is ignored' >&2)
	touch $@

# The built-in data set: regenerated only when data/ is missing (a fresh clone); data.dvc records its hash.
data: $(STAMP)
	@if [ ! -d data ]; then $(BIN)/reslab data synth --out data; fi

repro: data
	$(BIN)/dvc repro

report: $(STAMP)
	@$(BIN)/reslab report

run: repro
	@$(BIN)/reslab report
	@echo "DVC: dvc metrics show | dvc plots show (writes dvc_plots/index.html) | dvc exp run -S train.epochs=20"

test: $(STAMP)
	$(BIN)/python -m pytest

# Forget MLflow runs, Optuna journals and resume checkpoints (not data, params or DVC outputs).
clean-runs:
	rm -rf mlflow.db mlartifacts .reslab tuning/*.log tuning/*.db
