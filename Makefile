# The project's commands. `make run` and `make test` each set up what they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check lint typecheck imports pytest bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job: three bureaux on this machine exchange forms (keys, TLS, SMTP, receipts,
# replies, reminders), told step by step; everything lands in a new folder under /tmp.
run: $(STAMP)
	$(BIN)/gateway demo

# Lint, type-check and run the whole test suite.
test: $(STAMP) check pytest

check: lint typecheck imports

lint: $(STAMP)
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# The layer contracts in pyproject.toml: nothing imports upward, each library behind its package.
imports: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/validate.py
	$(BIN)/python bench/crypto.py
	$(BIN)/python bench/inbound.py
	$(BIN)/python bench/outbound.py
	$(BIN)/python bench/deadlines.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bench/results/*.json
