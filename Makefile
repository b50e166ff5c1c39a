# Reflow developer commands. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: help install install-dev run test lint bench lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create .venv with what serving needs (requirements.lock)

install-dev: $(VENV)/.installed-dev ## add the test, lint and bench tools (requirements-dev.lock)

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.lock
	touch $@

run: install ## start Reflow on the embedded default (SQLite state in .reflow/, local executor, demo workspace on first start)
	$(BIN)/reflow serve --init --demo --host $(HOST) --port $(PORT)

test: install-dev ## run the full test suite against the local services
	$(BIN)/python -m pytest

lint: install-dev ## ruff, mypy and the import-layering contracts (lint-imports; pyproject.toml)
	$(BIN)/ruff check src tests
	$(BIN)/mypy src
	$(BIN)/lint-imports

bench: install-dev ## side-by-side benchmarks (not part of the test suite)
	$(BIN)/python -m bench.run

lock: ## re-resolve both lock files from pyproject.toml (needs uv on PATH)
	uv pip compile pyproject.toml --extra dev --extra bench -o requirements-dev.lock
	uv pip compile pyproject.toml -c requirements-dev.lock -o requirements.lock

clean: ## remove the virtualenv and local state
	rm -rf $(VENV) .reflow
