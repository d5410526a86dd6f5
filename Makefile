# streamalert: `make demo` replays the bundled incident; `make test` runs lint, types and the whole test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/streamalert check config/rules
	$(BIN)/streamalert replay examples/incident.jsonl --rules config/rules --format table

test: $(STAMP)
	scripts/ensure-packages
	$(MAKE) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check streamalert tests bench
	$(BIN)/ruff format --check streamalert tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	scripts/ensure-packages
	$(BIN)/python bench/replay_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
