# The README's two commands. Both create .venv here if missing and install the project into it.
# On a machine without CUDA the pinned CPU build of torch is installed first (it is on disk on
# the project's machines; a plain `torch` requirement would pull several GB of CUDA packages).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_CPU := torch==2.13.0

.PHONY: demo test test-all lint setup clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		$(BIN)/pip install -q torch; \
	else \
		$(BIN)/pip install -q $(TORCH_CPU); \
	fi
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/tagtune demo

# Lint (ruff), format check (ruff format) and type check (mypy over the installed layout).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	MYPY=$(BIN)/mypy .ci/typecheck

test: lint
	$(BIN)/python -m pytest -q

test-all: setup
	$(BIN)/python -m pytest -q -m ''

clean:
	rm -rf $(VENV) tagtune-demo tagtune-runs mlflow.db mlartifacts
