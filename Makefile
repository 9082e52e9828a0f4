# Conveyor: one entry point. `make run` does everything on a fresh clone; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# uv installs the project from uv.lock. Its version is pinned here and only here; uv is bootstrapped with pip
# (PyPI is the only network here) into its own tools venv, because `uv sync` makes .venv exactly uv.lock and
# would uninstall a uv living inside .venv.
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
UV_STAMP := $(TOOLS)/.uv-$(UV_VERSION)
# Re-install only when pyproject.toml or uv.lock changes.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml uv.lock 2>/dev/null | sha1sum | cut -c1-12)
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := false
export FEAST_USAGE := False

.PHONY: install lock run serve deploy test test-fast test-browser test-prod stop status lint bench clean-local

$(UV_STAMP):
	@rm -rf $(TOOLS)
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q --disable-pip-version-check 'uv==$(UV_VERSION)'
	@touch $@

# --locked: fail, and install nothing, when uv.lock no longer matches pyproject.toml. --extra dev: the dev extra.
# The project itself is installed editable (uv's default for a project with a build system).
# --compile-bytecode, as pip does: uv skips it by default, and where PYTHONDONTWRITEBYTECODE=1 is set every
# process would then re-compile what it imports (`import prefect, feast, great_expectations, sklearn` 2x slower).
$(STAMP): pyproject.toml uv.lock $(UV_STAMP)
	@$(UV) sync --locked --extra dev --compile-bytecode || { echo "make install: uv sync failed. If uv says uv.lock needs to be updated," \
	  "pyproject.toml changed without the lock: run 'make lock' and commit uv.lock." >&2; exit 1; }
	@rm -f $(VENV)/.installed-* && touch $@

## lock: re-generate uv.lock after a dependency change in pyproject.toml (keeps every other pin where it is);
## `make lock LOCK_ARGS='--upgrade-package boto3'` moves one package, LOCK_ARGS=--upgrade all of them.
lock: $(UV_STAMP)
	$(UV) lock $(LOCK_ARGS)

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
