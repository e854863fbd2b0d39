# Each target does its own set-up: .venv is created or updated when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-unit test-integration lint demo

$(STAMP): pyproject.toml Makefile infra/constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@# The CPU build of torch unless a CUDA driver is present (an unpinned torch pulls a multi-GB CUDA build).
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		$(PY) -m pip install -q 'torch>=2.4,<=2.14.1'; \
	else \
		$(PY) -m pip install -q torch==2.13.0; \
	fi
	@$(PY) -m pip install -q -e '.[test]' -c infra/constraints.txt
	@touch $(STAMP)

# The whole suite: unit tests, then the scale-out integration tests (real Prefect server on
# PostgreSQL, two workers, S3-compatible store on loopback).
test: test-unit test-integration

test-unit: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -m "not integration"

test-integration: $(STAMP)
	$(PY) -m pytest -q -m integration

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

demo: $(STAMP)
	$(VENV)/bin/dataworth demo
