# make demo: create .venv, install precimed with the data extra, run the Rotterdam → GBSG demo.
# make test: create .venv, install with the dev and data extras, run the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean imaging-data

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-data: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[data]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[data,dev,onnx,private,scale,service]'
	touch $@ $(VENV)/.installed-data

demo: $(VENV)/.installed-data
	$(BIN)/precimed demo --out runs/demo

# Real images for the imaging runs and tests (issue 12): the pyradiomics 3.1.0 sdist's data/ (checked by sha256),
# Debian's mricron-data (Colin27) and invesalius-examples (head CT). Fetched here, at install / test time, never at
# run time; when it cannot be fetched the tests that need it are skipped with the reason.
imaging-data:
	@bash scripts/fetch_imaging_data.sh || echo "imaging data not fetched: the tests that need it are skipped"

# The browser tests (tests/browser) drive Debian's Chromium, which scripts/install-chromium.sh installs with apt if
# missing.
# The service tests also run against a real PostgreSQL: scripts/start_postgres.sh installs it with apt if
# missing and starts a throwaway cluster under /tmp; that cluster (only) is stopped after the tests.
test: $(VENV)/.installed-dev imaging-data
	@bash scripts/install-chromium.sh || echo "Chromium not installed: the browser tests (tests/browser) are skipped with the reason"
	@url=$$(bash scripts/start_postgres.sh 2>.postgres.log) || { url=""; \
	  echo "PostgreSQL did not start (see .postgres.log): its tests are skipped with the reason"; }; \
	$(BIN)/lint-imports --no-cache && PRECIMED_TEST_PG_URL="$$url" $(BIN)/python -m pytest -n 2 --durations=10; \
	status=$$?; \
	base=$$(grep -o '/tmp/precimed-pg\.[A-Za-z0-9]*' .postgres.log | head -n 1); \
	if [ -n "$$base" ] && [ -x "$$base/stop.sh" ]; then "$$base/stop.sh" >/dev/null 2>&1; fi; \
	exit $$status

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports --no-cache

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/train_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache

# Mutation testing (issue 11, finding 13) with mutmut, one module at a time against its own test files, on one core.
# Not part of `make test`: it takes several minutes per module. MODULES=metrics,news2 picks a subset; the work
# folders land in mutants/ (git-ignored) and the results table in mutants/summary.md (see docs/mutation.md).
.PHONY: mutation
mutation: $(VENV)/.installed-dev
	OMP_NUM_THREADS=1 $(BIN)/python mutation/run.py
