# diffact: three commands for users.
#   make reproduce   install (first time only) and run the whole workflow of the active profile
#   make test        install (first time only), lint (ruff, snakemake --lint) and run the test suite
#   make lab         install (first time only) and open JupyterLab on the repository: notebooks/*.py open as
#                    notebooks (right-click → Open With → Notebook); LAB_ARGS=--no-browser (or any jupyter lab flag)
# The venv is (re)installed only when requirements.lock or pyproject.toml change (stamp file).

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.diffact-installed
# the notebooks' Jupyter kernel (diffact.viz.kernel: forked from the workflow's preload server when one runs);
# rewritten when that module changes, so an existing .venv gets it without a reinstall
KERNELSPEC := $(VENV)/share/jupyter/kernels/diffact/kernel.json
WHEELHOUSE ?= $(HOME)/.cache/diffact/wheels
CORES ?= all
SNAKEMAKE_ARGS ?=
PYTEST_ARGS ?=
LAB_ARGS ?=
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export OMP_WAIT_POLICY := PASSIVE
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: rehearsal-scarce-paper-scale install reproduce test lab test-slurm figures lint dry-run bench clean-results rehearsal
REHEARSAL_DATA := data/rehearsal
# One SPair category and the fewest images each split and task can run on (every store still has two images:
# a pair, or one DDPM-seg train + one test image, which the label-scarce re-splits pool).
REHEARSAL_FIXTURES ?= --spair-categories cat --counts spair-trn=2,spair-val=2,spair-test=2,spair-val-360=1,spair-test-360=1,ddpmseg-train=1,ddpmseg-test=1,ade-train=2,ade-val=1,cityscapes-train=2,cityscapes-val=1

install: $(STAMP) $(KERNELSPEC)

$(STAMP): requirements.lock pyproject.toml scripts/install_mmcv.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.lock
	bash scripts/install_mmcv.sh $(BIN) $(WHEELHOUSE)
	$(BIN)/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $@

$(KERNELSPEC): $(STAMP) src/diffact/viz/kernel.py
	$(BIN)/diffact kernel --install --prefix $(VENV)

reproduce: $(STAMP) $(KERNELSPEC)
	$(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS)

test: lint $(KERNELSPEC)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The SLURM profile for real (README "Paper profile / cluster"): a one-node Slurm cluster on this machine
# (installed from Debian's packages the first time; needs root), the tests marked `slurm`, then the cluster stopped.
test-slurm: $(STAMP)
	bash scripts/slurm-local.sh start
	$(BIN)/python -m pytest -m slurm $(PYTEST_ARGS); status=$$?; bash scripts/slurm-local.sh stop; exit $$status

# The paper profile on full-size random-weight stand-ins and real-size fixture datasets (README "Paper-scale
# rehearsal"): about 20 GB of stand-ins, then every rule of the paper DAG once, on CPU.
$(REHEARSAL_DATA)/.fixtures: | $(STAMP)
	$(BIN)/diffact make-paper-fixtures --out $(REHEARSAL_DATA) $(REHEARSAL_FIXTURES)
	touch $@

$(REHEARSAL_DATA)/.standins: | $(STAMP)
	$(BIN)/diffact --log results/rehearsal/logs/setup/make-standin-models.log make-standin-models --cache $(REHEARSAL_DATA)/hf-hub
	touch $@

# One output per rule first (scripts/rule_cover_targets.py, cheapest model first), so that a break in any rule shows
# early; --keep-going so that one failed job does not stop the others; then everything.
rehearsal: $(REHEARSAL_DATA)/.fixtures $(REHEARSAL_DATA)/.standins
	mkdir -p results/rehearsal
	$(BIN)/snakemake --configfile config/rehearsal.yaml --summary > results/rehearsal/summary.tsv
	$(BIN)/python scripts/rule_cover_targets.py results/rehearsal/summary.tsv > results/rehearsal/cover_targets.txt
	$(BIN)/snakemake --configfile config/rehearsal.yaml --cores $(CORES) --keep-going $(SNAKEMAKE_ARGS) \
	  $$(cat results/rehearsal/cover_targets.txt)
	$(BIN)/snakemake --configfile config/rehearsal.yaml --cores $(CORES) --keep-going $(SNAKEMAKE_ARGS)
	$(BIN)/diffact usage-report --logs results/rehearsal/logs --csv results/rehearsal/usage.csv
	$(MAKE) rehearsal-scarce-paper-scale

# The label-scarce command (`diffact scarce`, rule scarce_set) at the paper's scale: 30 training images at 256²,
# SDXL practical's 3840 channels, the paper's 10 members and stream buffer. The rehearsal's own stores hold one
# DDPM-seg training image (30 SDXL passes at 1024 px would add ~20 min here), so the store is synthetic, with the
# exact layers and shapes of SDXL practical; its peak RSS (goal ≤ 8 GiB, exit 1 above) is what the real job holds.
rehearsal-scarce-paper-scale: | $(STAMP)
	$(BIN)/python benchmarks/bench_scarce_memory.py --paper-scale --threads 2 --out results/rehearsal/bench

# JupyterLab with config/jupyter/ (README "Opening a figure's notebook"); tests/test_lab.py runs this recipe.
lab: $(STAMP) $(KERNELSPEC)
	bash scripts/lab.sh $(BIN) $(LAB_ARGS)

figures: $(STAMP) $(KERNELSPEC)
	$(BIN)/snakemake --cores $(CORES) figures $(SNAKEMAKE_ARGS)

dry-run: $(STAMP)
	$(BIN)/snakemake -n --cores $(CORES) $(SNAKEMAKE_ARGS)

# ruff (pinned in requirements.lock, rules in pyproject.toml's [tool.ruff]) and Snakemake's own lint; `make test`
# runs it first.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/snakemake --lint

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_extraction.py
	$(BIN)/python benchmarks/bench_scarce_memory.py

clean-results:
	rm -rf results/* && find paper_figures -type f ! -name README.md ! -name .gitkeep -delete
