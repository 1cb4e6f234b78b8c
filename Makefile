# The README's two commands: `make run` (the default pipeline) and `make test` (the test suite).
# Both create .venv when missing and install genzoo into it; torch comes from TORCH_SPEC.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# Test workers: each takes one thread, so two workers (and the stages they start) share 2 cores without waiting on
# each other's threads; `make test TEST_WORKERS=0` runs in this process.
TEST_WORKERS ?= 2
# Extra pytest arguments: `make test TEST_ARGS='-m "not slow"'` leaves out the tests that run the pipeline or real
# training processes (marked slow in tests/; about 2 min instead of 10 on 2 cores).
TEST_ARGS ?=
# Stages run at once by `make run` (genzoo repro: DVC's parallel stage execution, each stage by `dvc repro`);
# `make run JOBS=1` runs them one after another.
JOBS ?= 2
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test gpu install clean-venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/genzoo repro --jobs $(JOBS)

# --no-loadscope-reorder keeps the order tests/conftest.py gives (the slow modules first), so the end-to-end module
# starts at once on one worker; xdist's default would queue files by their number of tests and start it last.
test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(TEST_ARGS)

gpu: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash pipeline/gpu.sh

clean-venv:
	rm -rf $(VENV)
