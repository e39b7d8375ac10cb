# make demo: create .venv, install precimed with the data extra, run the Rotterdam → GBSG demo.
# make test: create .venv, install with the dev and data extras, run the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-data: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[data]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[data,dev,private]'
	touch $@ $(VENV)/.installed-data

demo: $(VENV)/.installed-data
	$(BIN)/precimed demo --out runs/demo

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -n 2 --durations=10

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/train_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache
