# The project's commands. `make run` and `make test` each set up what they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check lint typecheck imports pytest bench profile profile-raw mutation clean

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
	$(BIN)/python bench/index_cost.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/crosscheck.py
	$(BIN)/python bench/crypto.py
	$(BIN)/python bench/inbound.py
	$(BIN)/python bench/intake_ledger.py
	$(BIN)/python bench/stage_cpu.py
	$(BIN)/python bench/intake_cuts.py
	$(BIN)/python bench/smtp_data.py
	$(BIN)/python bench/outbound.py
	$(BIN)/python bench/deadlines.py
	$(BIN)/python bench/console.py
	$(BIN)/python bench/lmtp.py

# One round of bench/inbound.py under py-spy, samples of the threads that hold the GIL: where the
# gateway's Python CPU goes (the load generator runs in a process of its own, not sampled; the
# set-up and the baselines show as their own stacks). `make profile` writes a flame graph,
# bench/results/inbound-flame.svg; `make profile-raw` the same samples as collapsed stacks,
# bench/results/inbound-flame.txt, one line a stack, to grep or diff. PROFILE_ARGS go to
# bench/inbound.py (e.g. PROFILE_ARGS="--rounds 1 --protection fast"); its figures under the
# profiler are not the benchmark's.
PROFILE_ARGS ?= --rounds 1
PROFILE_RUN = $(BIN)/python bench/inbound.py $(PROFILE_ARGS) --out bench/results/inbound-profile.json

profile: $(STAMP)
	$(BIN)/py-spy record --gil --format flamegraph -o bench/results/inbound-flame.svg -- $(PROFILE_RUN)

profile-raw: $(STAMP)
	$(BIN)/py-spy record --gil --format raw -o bench/results/inbound-flame.txt -- $(PROFILE_RUN)

# Mutation testing of what decides what gets in, configured in pyproject.toml [tool.mutmut]; not
# part of `make test`. Mutated: the acceptance rule of OpenPGP messages (crypto/openpgp.py: gpg's
# run and status, decryption, integrity, the one signature, sending; crypto/pgpstatus.py) and the
# hardened XML parsing (forms/xmlforms.py: the byte checks, the parser's options, the limits, the
# schema resolver). Other functions of those files are left "not checked". Results stay in
# mutants/ (`rm -rf mutants` to start over); prints each module's score and the survivors
# (`.venv/bin/mutmut show NAME` prints one). About 25 minutes on 2 cores.
MUTATION_TARGETS := \
	'gateway.crypto.openpgp.x?GnuPG?_run__mutmut_*' \
	'gateway.crypto.openpgp.x?GnuPG?sign_encrypt__mutmut_*' \
	'gateway.crypto.openpgp.x?GnuPG?decrypt_verify__mutmut_*' \
	'gateway.crypto.openpgp.x?GnuPG?verify_detached__mutmut_*' \
	'gateway.crypto.openpgp.x?GnuPG?_check_decryption__mutmut_*' \
	'gateway.crypto.openpgp.x__integrity_protected__mutmut_*' \
	'gateway.crypto.openpgp.x__one_signature__mutmut_*' \
	'gateway.crypto.pgpstatus.*' \
	'gateway.forms.xmlforms.x__hardened_parser__mutmut_*' \
	'gateway.forms.xmlforms.x__syntax_error__mutmut_*' \
	'gateway.forms.xmlforms.x__depth_probe__mutmut_*' \
	'gateway.forms.xmlforms.x?_SetResolver?*' \
	'gateway.forms.xmlforms.x?_EntrySchema?explainer__mutmut_*' \
	'gateway.forms.xmlforms.x?FormValidator?_parser__mutmut_*' \
	'gateway.forms.xmlforms.x?FormValidator?validate__mutmut_*' \
	'gateway.forms.xmlforms.x?FormValidator?_check_raw__mutmut_*' \
	'gateway.forms.xmlforms.x?FormValidator?_check_limits__mutmut_*'

mutation: $(STAMP)
	mkdir -p mutants
	$(BIN)/mutmut run --max-children 2 $(MUTATION_TARGETS) > mutants/run.log 2>&1 \
		|| (tail -n 30 mutants/run.log; exit 1)
	$(BIN)/python tests/mutationscore.py --survivors

clean:
	rm -rf $(VENV) mutants .pytest_cache .mypy_cache .ruff_cache bench/results/*.json bench/results/inbound-flame.*
