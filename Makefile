# The project's commands. `make run` and `make test` each set up what they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job: validate every valid sample form, then show how invalid ones are reported.
run: $(STAMP)
	$(BIN)/gateway validate forms/samples/*/valid-*.xml
	@echo
	@echo "Invalid samples (each must be refused, exit code 1):"
	@$(BIN)/gateway validate forms/samples/G/invalid-*.xml; test $$? -eq 1

# Lint, type-check and run the whole test suite.
test: $(STAMP) check pytest

check: lint typecheck

lint: $(STAMP)
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/validate.py
	$(BIN)/python bench/crypto.py
	$(BIN)/python bench/inbound.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bench/results/*.json
