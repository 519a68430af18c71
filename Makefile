# `make demo` runs the main job on a fresh machine; `make test` runs the test suite. Each builds .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/synthembed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

.PHONY: demo test test-fast test-all bench clean
demo: $(BIN)/synthembed
	$(BIN)/synthembed pipeline --config configs/demo.yaml

test: $(BIN)/synthembed
	$(BIN)/pytest -q -ra

test-fast: $(BIN)/synthembed
	$(BIN)/pytest -q -ra -m "not slow and not anchor"

test-all: $(BIN)/synthembed  # adds the MTEB anchors (SciFact, Banking77): 10+ minutes on 2 cores
	$(BIN)/pytest -q -ra -m ""

bench: $(BIN)/synthembed  # every benchmark against its baseline: bench/results/summary.md
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) runs bench/out
