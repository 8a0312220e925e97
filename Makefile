# The two commands: `make run` and `make test`. Both create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STATE_DIR ?= .state
CONFIG ?= config.example.toml

.PHONY: run test lint typecheck unit bench bench-cluster clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "gatewayd needs Python 3.11+, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/gatewayd serve --config $(CONFIG) --state-dir $(STATE_DIR)

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check gatewayd tests benchmarks
	$(BIN)/ruff format --check gatewayd tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

# Benchmarks beside their peers (APScheduler); see benchmarks/RESULTS.md. Minutes, not seconds.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/python -m benchmarks

# B8: three gateways on one PostgreSQL, beside APScheduler 4 (in .venv-ap4); see RESULTS.md.
AP4 := .venv-ap4
$(AP4)/.installed: pyproject.toml
	$(PYTHON) -m venv $(AP4)
	$(AP4)/bin/python -m pip install --quiet --disable-pip-version-check '.[bench-ap4]'
	@touch $@

bench-cluster: $(STAMP) $(AP4)/.installed
	$(BIN)/python -m benchmarks.b8_cluster

clean:
	rm -rf $(VENV) $(AP4) $(STATE_DIR) .mypy_cache .ruff_cache .pytest_cache
