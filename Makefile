# Reflow developer commands. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: help install run test lint bench lock clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create .venv and install the locked dependencies

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

run: install ## start Reflow on the embedded default (SQLite state in .reflow/, local executor, demo workspace on first start)
	$(BIN)/reflow serve --init --demo --host $(HOST) --port $(PORT)

test: install ## run the full test suite against the local services
	$(BIN)/python -m pytest

lint: install ## ruff and mypy
	$(BIN)/ruff check src tests
	$(BIN)/mypy src

bench: install ## side-by-side benchmarks (not part of the test suite)
	$(BIN)/python -m bench.run

lock: ## re-resolve requirements.lock from pyproject.toml
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra bench -o requirements.lock

clean: ## remove the virtualenv and local state
	rm -rf $(VENV) .reflow
