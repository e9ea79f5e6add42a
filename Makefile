# Coinfrs: the two set-up commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
STAMP := $(VENV)/.installed
# the project's packages (pyproject.toml), compiled to bytecode at install with everything in the venv
PACKAGES := warehouse ingestion transforms reconciliation assets orchestration api samples

.PHONY: install demo test test-fast bench ui serve lock clean

# Bytecode is compiled here, once: uv installs without it, and where PYTHONDONTWRITEBYTECODE is set (these machines)
# Python never writes it, so every process compiled ~500 modules from source again (`coinfrs --help` 1.5 s -> 0.6 s).
$(STAMP): requirements.lock pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --python $(BIN)/python --quiet -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --quiet --no-deps -e .
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib $(PACKAGES)
	@touch $(STAMP)

install: $(STAMP) ## create .venv with the pinned dependency set

demo: install ## embedded PostgreSQL, migrations, the sample fund, its 60 daily closes, a summary
	$(BIN)/coinfrs demo

test: install ## the whole test suite against real PostgreSQL (DATABASE_URL if reachable, else embedded)
	$(BIN)/python -m pytest

bench: install ## the close benchmark (5 years x 10,000 ledger rows x 3 accounts) and one more day
	$(BIN)/python benchmarks/bench_close.py

ui: install ## the Dagster UI on the CLI's Dagster instance
	$(BIN)/coinfrs ui

serve: install ## the read API on http://127.0.0.1:8000/docs
	$(BIN)/coinfrs serve

lock: ## re-resolve requirements.lock from pyproject.toml
	@test -x $(BIN)/uv || (test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); $(BIN)/python -m pip install --quiet uv==$(UV_VERSION))
	$(BIN)/uv pip compile pyproject.toml --extra test --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .coinfrs .pytest_cache
