# `make run` runs the main job on the embedded default data; `make test` runs the tests.
# Both create/update the virtual environment from pyproject.toml first. The other targets
# wrap the tools installed there (or put them on PATH: `source .venv/bin/activate`).
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
N ?= 8

export DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
# Stage commands that DVC starts find `halocm` here.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: venv run tune tuned ui dashboard plots box screenshots test lint clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: venv  ## the whole pipeline (dvc repro under one MLflow run), then its summary
	$(BIN)/halocm pipeline

tune: venv  ## an Optuna study of N trials → params.tuned.yaml
	$(BIN)/halocm tune --n-trials $(N)

tuned: venv  ## the pipeline with the study's best values, as a DVC experiment
	$(BIN)/halocm pipeline --set-file params.tuned.yaml

ui: venv  ## MLflow on http://127.0.0.1:5000
	$(BIN)/halocm ui

dashboard: venv  ## the Optuna study on http://127.0.0.1:8080
	$(BIN)/optuna-dashboard optuna.journal

plots: venv  ## DVC's plots → dvc_plots/index.html
	$(BIN)/dvc plots show

box: venv  ## a 50 Mpc/h DMO box and its halo catalogue → box/ (the input of halocm paint)
	$(BIN)/halocm box --out box

screenshots: venv  ## docs/img/*.png from a tiny pipeline (needs chromium)
	$(BIN)/python scripts/screenshots.py

test: venv
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf data models metrics reports mlflow.db mlartifacts dvc_plots box
