# Quick start: `make demo` runs the demo training job, `make test` runs the test suite.
# Both prepare what they need: the venv, a Docker engine (`make engine`), the images (`make images`).

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv bytecode engine images toolkit-image sdk-venvs demo test test-fast lint bench clean

help:
	@echo "make demo    run the demo training job (examples/demo) on the local Docker engine"
	@echo "make test    run the whole test suite against the real engine"
	@echo "make engine  install and start a Docker engine if none answers (root + apt)"
	@echo "make images  build the offline images (busybox, probe, python, demo)"
	@echo "make toolkit-image  the sagemaker-training toolkit image (script mode tests; cached)"
	@echo "make sdk-venvs  the SageMaker SDK v2 and v3 venvs the serve tests use (cached)"
	@echo "make lint    ruff, mypy and the import contracts"
	@echo "make bench   benchmarks, with ratios against baselines measured in the same run"

venv: $(STAMP)
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@$(MAKE) --no-print-directory bytecode
	@touch $@

# The emulator's modules compiled ahead, as `pip install` of a wheel does: where
# PYTHONDONTWRITEBYTECODE is set (this project's CI machines), an editable install would
# otherwise compile every module again at every start (~50 ms of an `emulator run`).
bytecode:
	@$(BIN)/python -m compileall -q emulator >/dev/null

engine:
	@bash scripts/engine.sh

images: venv engine
	@$(BIN)/python containers/build.py

# Opt-in (1.5-2.5 min cold): the tests that use it build it on first use too.
toolkit-image: venv engine
	@$(BIN)/python containers/build.py toolkit

# The SageMaker Python SDK v2 and v3, each in its own venv under the cache dir (the tests make
# them on first use too; this makes them ahead, e.g. while PyPI is reachable).
sdk-venvs: venv
	$(BIN)/python -m tests.fixtures.sdk

demo: images
	cd examples/demo && ../../$(BIN)/emulator run --replace request.json

# --emulator-require-engine: a test using the pytest plugin's fixtures errors, never skips,
# when the engine is missing (CI runs `make test`).
test: images
	$(BIN)/pytest -q --emulator-require-engine tests

test-fast: venv
	$(BIN)/pytest -q tests/unit

lint: venv
	$(BIN)/ruff check emulator tests containers benchmarks
	$(BIN)/ruff format --check emulator tests containers benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

# The fixed-cost benchmarks (CLI start, a trivial job) first, on a quiet machine: they time
# the emulator's own cost, which the load left by file_staging (10 GiB written, load average
# 3) would add to.
# `make bench QUICK=1` passes --quick to each: a short run that checks the scripts, not figures
# to quote.
FIRST_BENCHMARKS := benchmarks/cli_start.py benchmarks/job_overhead.py
bench: images bytecode
	@for b in $(FIRST_BENCHMARKS) $(filter-out $(FIRST_BENCHMARKS),$(wildcard benchmarks/*.py)); do \
		echo "== $$b"; $(BIN)/python $$b $(if $(QUICK),--quick) || exit 1; done

clean:
	rm -rf build $(VENV) .pytest_cache .mypy_cache .ruff_cache
