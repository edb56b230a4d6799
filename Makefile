# Ember. `make help` lists what you can do; `make run` starts the shop, `make test` checks it all.
#
# Needs only Python 3.11 with pip: uv is installed into .tools/ when it is not on PATH, and every
# server (Postgres, Redis, Caddy) comes from a Python package.

.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
UV_LOCAL := .tools/uv/bin/uv
UV ?= $(shell command -v uv 2>/dev/null || echo $(UV_LOCAL))
RUN := $(UV) run --frozen --no-sync

PY_SOURCES := shared devkit services standins tests
TYPED_SOURCES := shared/src devkit/src $(wildcard services/*/src) standins/src
TEST_PATHS := shared/tests devkit/tests $(wildcard services/*/tests) tests
#: The fault suite: its own stack and Redis server, run by `make chaos` (and .ci/run), not `make pytest`.
CHAOS_PATHS := tests/chaos
#: The replica profile: the flow tests and tests/replicas on a stack with two processes of each
#: service, run by `make test-replicas` (and .ci/run), not `make pytest`.
REPLICA_PATHS := tests/replicas
TEST_DIRS = $(shell find $(TEST_PATHS) -type d -not -name __pycache__ -not -path '*/.*' 2>/dev/null)
PYTEST_ARGS ?=
space := $(subst ,, )

.PHONY: help uv install run test pytest chaos test-replicas lint format typecheck imports caddy-validate bench migrate clean clean-data asyncapi contract-baselines

help: ## Show this list.
	@echo "Ember: make <target>"
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-15s\033[0m %s\n", $$1, $$2}'
	@echo
	@echo "Settings: DATABASE_URL / REDIS_URL (use real servers, else embedded ones in .data/),"
	@echo "EMBER_PORT_OFFSET (shift every port), EMBER_WORKERS (uvicorn workers per service)."
	@echo "make -k test runs every step even after one fails."

$(UV_LOCAL):
	@echo "uv is not on PATH: installing it into .tools/uv with pip"
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target .tools/uv uv

uv: $(if $(filter $(UV_LOCAL),$(UV)),$(UV_LOCAL))

install: uv ## Install every package (and the dev tools) into .venv from uv.lock.
	@# Bytecode written once here: a process that may not write it (PYTHONDONTWRITEBYTECODE, a
	@# read-only image) would compile every module it imports at each start, ~2 s more CPU per
	@# service process. Already compiled files cost ~1 s to check.
	$(UV) sync --frozen --compile-bytecode

run: install ## Run the whole shop: embedded Postgres/Redis, migrations, demo data, services, Caddy.
	$(RUN) python -m ember_devkit.devstack run

test: install lint typecheck imports pytest ## Everything CI checks: lint, types, import contracts, all tests.

# importlib mode (many tests/ folders, test files named uniquely); the test folders are on the path
# so that a folder's helper modules (uniquely named too) import as they do in pytest's default mode.
pytest: install ## Only the tests (PYTEST_ARGS="-k cart -x" narrows them).
	PYTHONPATH="$(subst $(space),:,$(strip $(TEST_DIRS)))$${PYTHONPATH:+:$$PYTHONPATH}" \
		$(RUN) pytest --import-mode=importlib $(TEST_PATHS) --ignore=$(CHAOS_PATHS) --ignore=$(REPLICA_PATHS) $(PYTEST_ARGS)

chaos: install ## The fault suite (a few minutes): Redis restart, kill -9, poison events under traffic; the books must balance.
	PYTHONPATH="$(subst $(space),:,$(strip $(TEST_DIRS)))$${PYTHONPATH:+:$$PYTHONPATH}" \
		$(RUN) pytest --import-mode=importlib $(CHAOS_PATHS) $(PYTEST_ARGS)

# Smaller pools: twice the processes share one Postgres.
test-replicas: install ## The flow tests, a rolling restart and a crash-ridden burst with 2 processes of every service.
	PYTHONPATH="$(subst $(space),:,$(strip $(TEST_DIRS)))$${PYTHONPATH:+:$$PYTHONPATH}" \
		EMBER_REPLICAS=2 EMBER_STACK_POOL_SIZE=2 EMBER_STACK_MAX_OVERFLOW=4 \
		$(RUN) pytest --import-mode=importlib tests/flows $(REPLICA_PATHS) -m "not browser" $(PYTEST_ARGS)

lint: install ## ruff check and ruff format --check.
	$(RUN) ruff check $(PY_SOURCES)
	$(RUN) ruff format --check $(PY_SOURCES)
	$(RUN) caddy validate --config Caddyfile --adapter caddyfile >/dev/null 2>&1 || \
		$(RUN) caddy validate --config Caddyfile --adapter caddyfile

format: install ## Fix what ruff can fix and format the code.
	$(RUN) ruff check --fix $(PY_SOURCES)
	$(RUN) ruff format $(PY_SOURCES)

typecheck: install ## mypy (strict) over the shared library, the services and the stand-ins.
	$(RUN) mypy $(TYPED_SOURCES)

imports: install ## import-linter: no service imports another; shared imports no service.
	$(RUN) lint-imports

asyncapi: install ## Regenerate the AsyncAPI document of every event (after changing an event or a handler).
	$(RUN) python tests/contract/published_contracts.py asyncapi

contract-baselines: install ## Accept the current OpenAPI/AsyncAPI documents as the published contracts.
	$(RUN) python tests/contract/published_contracts.py baselines

bench: install ## Run the benchmarks (bench/).
	$(RUN) python -m bench

migrate: install ## Apply every service's migrations (embedded Postgres unless DATABASE_URL is set).
	$(RUN) python -m ember_devkit.devstack migrate

clean: ## Remove caches and the bootstrap tools (keeps .venv and your data).
	rm -rf .tools .mypy_cache .ruff_cache .pytest_cache
	find . -name __pycache__ -type d -not -path './.venv/*' -prune -exec rm -rf {} +

clean-data: ## Delete .data/ (embedded databases, uploads, local secrets): the next run starts afresh.
	rm -rf .data
