# diffact: two commands for users.
#   make reproduce   install (first time only) and run the whole workflow of the active profile
#   make test        install (first time only) and run the test suite
# The venv is (re)installed only when requirements.lock or pyproject.toml change (stamp file).

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.diffact-installed
WHEELHOUSE ?= $(HOME)/.cache/diffact/wheels
CORES ?= all
SNAKEMAKE_ARGS ?=
PYTEST_ARGS ?=
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export OMP_WAIT_POLICY := PASSIVE
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install reproduce test figures lint dry-run bench clean-results

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml scripts/install_mmcv.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.lock
	bash scripts/install_mmcv.sh $(BIN) $(WHEELHOUSE)
	$(BIN)/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name diffact --display-name "diffact (.venv)" >/dev/null
	touch $@

reproduce: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

figures: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) figures $(SNAKEMAKE_ARGS)

dry-run: $(STAMP)
	$(BIN)/snakemake -n --cores $(CORES) $(SNAKEMAKE_ARGS)

lint: $(STAMP)
	$(BIN)/snakemake --lint

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_extraction.py
	$(BIN)/python benchmarks/bench_scarce_memory.py

clean-results:
	rm -rf results/* && find paper_figures -type f ! -name README.md ! -name .gitkeep -delete
