# streamalert: `make demo` replays the bundled incident; `make demo-live` runs live mode on 127.0.0.1:8080;
# `make test` runs lint, types and the whole test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# stamps: DEMO, the package with its runtime dependencies (all the demos need); STAMP, with the dev extras too
# (tests, linters, the Kafka broker)
DEMO   := $(VENV)/.installed
STAMP  := $(VENV)/.installed-dev

.PHONY: demo demo-live test test-slow lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(DEMO): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $(DEMO)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP) $(DEMO)

demo: $(DEMO)
	$(BIN)/streamalert check config/rules
	$(BIN)/streamalert replay examples/incident.jsonl --rules config/rules --format table
	@echo "streamalert is installed in $(BIN): '. $(BIN)/activate' puts it on PATH in this shell"

demo-live: $(DEMO)
	@echo "live mode on http://$${STREAMALERT_LISTEN:-127.0.0.1:8080}/vector (Ctrl-C stops it); post logs as the README's Quickstart shows"
	$(BIN)/streamalert run --config config/demo-live.yaml

# The Debian packages install (scripts/ensure-packages: apt-get, mostly waiting on the network) while pip
# installs the venv and the linters run: neither needs them, and CI starts from a bare machine.
test: | $(BIN)/python
	@scripts/ensure-packages & packages=$$!; \
	$(MAKE) lint typecheck; checks=$$?; \
	wait $$packages; installed=$$?; \
	if [ $$installed -ne 0 ]; then echo "scripts/ensure-packages failed" >&2; exit $$installed; fi; \
	if [ $$checks -ne 0 ]; then exit $$checks; fi; \
	$(MAKE) pytest

lint: $(STAMP)
	$(BIN)/ruff check streamalert tests bench
	$(BIN)/ruff format --check streamalert tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

# the tests marked slow (not part of `make test` / CI): long fault rows and soak tests
test-slow: $(STAMP)
	scripts/ensure-packages
	$(BIN)/pytest -q -m slow

bench: $(STAMP)
	scripts/ensure-packages
	$(BIN)/python bench/replay_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
