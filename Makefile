# Conveyor: one entry point. `make run` does everything on a fresh clone; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Re-install only when pyproject.toml changes.
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := false
export FEAST_USAGE := False

.PHONY: install run serve deploy test test-fast test-browser test-prod stop status lint bench clean-local

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

## run: venv + install + start the local stack (S3 + Prefect server) + run the pipeline end to end
run: install
	$(VENV)/bin/conveyor stack up
	$(VENV)/bin/conveyor run

## serve: start the local stack + a Prefect process worker, apply every deployment in prefect.yaml.
## Schedules then fire by themselves and the UI's "Run" works; `make stop` stops all of it by PID.
serve: install
	$(VENV)/bin/conveyor stack up --worker
	$(VENV)/bin/conveyor deploy

## deploy: (re)apply prefect.yaml's deployments to the running server
deploy: install
	$(VENV)/bin/conveyor deploy

## test: venv + install + the whole suite (it starts and stops its own servers on free ports)
test: install
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest tests/unit

## test-browser: the Prefect UI in headless Chromium (needs Debian's `chromium`); skipped without it
test-browser: install
	$(PY) -m pytest -m browser

## test-prod: the production profile on PostgreSQL, Redis, Dask (needs Debian's postgresql + redis-server)
test-prod: install
	$(PY) -m pytest -m prod

## stop: stop the local stack's processes (by the PIDs it recorded)
stop:
	@if [ -x $(VENV)/bin/conveyor ]; then $(VENV)/bin/conveyor stack down; fi

status: install
	$(VENV)/bin/conveyor stack status

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check conveyor flows tasks configs tests bench feature_repo
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

## clean-local: stop the stack and delete its data (.local/)
clean-local: stop
	rm -rf .local
