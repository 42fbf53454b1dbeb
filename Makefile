# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first and pinned: a bare `torch` would pull a multi-GB CUDA build (see pyproject.toml).
TORCH_SPEC ?= torch==2.13.0

.PHONY: install test lint typecheck demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e '.[api,worker,dev]'
	$(BIN)/pip check

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

# Train, export, serve and query a small classifier on BBC News, offline (scripts/demo.py).
# `make demo ARGS=--serve` keeps the API and its web page running; ARGS=--fresh starts over.
demo: install
	$(BIN)/python scripts/demo.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
