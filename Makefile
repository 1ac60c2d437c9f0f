# `make run` runs the main job on the embedded default data; `make test` runs the tests.
# Both create/update the virtual environment from pyproject.toml first.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

export DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1

.PHONY: venv run ui test lint clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: venv
	$(BIN)/halocm pipeline

ui: venv
	$(BIN)/halocm ui

test: venv
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf data models metrics reports mlflow.db mlartifacts
