# actionnb: the commands README.md documents.  Each target creates or reuses the virtual environment in .venv.
#   make test   export + clean checks, then nbdev_test and pytest
#   make demo   the main job on the embedded dataset
#   make lab    JupyterLab on nbs/
#   make docs   every notebook rendered to HTML under _docs/, with a sidebar
#   make outputs  execute the teaching notebooks and store their outputs (figures) in nbs/; commit them
#   make data   the embedded Synthetic Something datasets (the mini and demo presets) into data/
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Parallel notebook/pytest workers; 2 suits the CI machine.
JOBS ?= 2
export PYTHONHASHSEED := 0
# Matplotlib's Agg backend, for the headless jobs only (tests, papermill runs): it displays nothing, so the targets that
# show figures to readers (lab, docs, outputs) run their kernels without $$MPLBACKEND, whatever the caller's shell has.
HEADLESS_TARGETS := test check-export check-clean demo demo-control stw-ablation stasta-ablation stdformer-ablation data report gpu-check test-gpu
$(HEADLESS_TARGETS): export MPLBACKEND = Agg
NO_AGG := env -u MPLBACKEND

.PHONY: test demo demo-control stw-ablation stasta-ablation stdformer-ablation report gpu-check gpu-wheels test-gpu lab docs outputs check-outputs readme data install check-export check-clean clean

install: $(STAMP)

$(STAMP): settings.ini setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name 'Python 3 (actionnb)' >/dev/null
	@touch $(STAMP)

NOTEBOOKS = $(sort $(wildcard nbs/*.ipynb))
# The teaching notebooks, whose outputs are stored (not index, not the papermill experiments).
TEACHING = $(sort $(wildcard nbs/[0-9]*.ipynb))

# A fingerprint of the notebooks and the library, to detect that export or clean changed anything.
FINGERPRINT = find actionnb nbs -type f \( -name '*.py' -o -name '*.ipynb' \) -not -path '*/.ipynb_checkpoints/*' -not -path '*/__pycache__/*' | LC_ALL=C sort | xargs sha1sum

check-export: $(STAMP)
	@$(FINGERPRINT) > .fp-before.tmp
	$(BIN)/nbdev_export
	@$(FINGERPRINT) > .fp-after.tmp
	@if ! diff -u .fp-before.tmp .fp-after.tmp; then rm -f .fp-*.tmp; echo 'nbdev_export changed the library: run it and commit actionnb/'; exit 1; fi
	@rm -f .fp-*.tmp

check-clean: $(STAMP)
	@$(FINGERPRINT) > .fp-before.tmp
	$(BIN)/nbdev_clean
	@$(FINGERPRINT) > .fp-after.tmp
	@if ! diff -u .fp-before.tmp .fp-after.tmp; then rm -f .fp-*.tmp; echo 'nbdev_clean changed notebooks: run it and commit nbs/'; exit 1; fi
	@rm -f .fp-*.tmp

# One torch thread per test process: JOBS processes share the cores, and small models run several times slower when
# torch's threads outnumber the free cores.
test: export OMP_NUM_THREADS = 1
test: check-export check-clean
	@# Each notebook in a fresh process (as a reader's fresh kernel would run it): nbdev_test's own workers run several
	@# notebooks in one process, so global state one leaves behind (grad mode, threads, the registry) leaks into the next.
	@printf '%s\n' $(NOTEBOOKS) | xargs -P $(JOBS) -I{} sh -c 'log=$$(mktemp); t0=$$(date +%s); \
	  if $(BIN)/nbdev_test --path {} > $$log 2>&1; then echo "passed {} in $$(( $$(date +%s) - t0 )) s"; rm -f $$log; \
	  else cat $$log; rm -f $$log; echo "FAILED {}"; exit 1; fi'
	$(BIN)/python -m pytest -n $(JOBS) -q -m 'not gpu' tests

# The main job: generate the demo dataset (the demo preset: mini with 3x the training clips) if needed, train the demo
# TSM on it, evaluate, write runs/demo/.
PAPERMILL = ACTIONNB_PROGRESS=0 $(BIN)/papermill --kernel python3 --no-progress-bar --log-output
demo: $(STAMP)
	$(BIN)/nbdev_export
	$(BIN)/python -m actionnb.synth --preset demo --out data/synth-sth-demo --seed 0 --workers $(JOBS)
	@mkdir -p runs/demo
	$(PAPERMILL) nbs/experiments/train.ipynb runs/demo/train.ipynb
	@echo 'demo record: runs/demo/ (metrics.json, figures, checkpoint; executed notebook runs/demo/train.ipynb)'

# The control: the same run with the frame-averaging TSN, which cannot tell time-reversed classes apart.
demo-control: $(STAMP)
	$(BIN)/nbdev_export
	$(BIN)/python -m actionnb.synth --preset demo --out data/synth-sth-demo --seed 0 --workers $(JOBS)
	@mkdir -p runs/demo-tsn
	$(PAPERMILL) nbs/experiments/train.ipynb runs/demo-tsn/train.ipynb -p model tsn_r50 -p name demo-tsn
	@echo 'control record: runs/demo-tsn/'

# STW's ablations under the chosen protocol (every row from the frame backbone of nbs/36_pretrain.ipynb, pre-trained
# once, ~5 min, cached under runs/stw_ablation/pretrain-frames/; Tables 6, 8 and the gain rows, 12 epochs, 3 seeds, 55 min
# on a 2-core Intel Xeon); writes results/stw_ablation.md and .json. Other rows or protocols: ARGS='-p protocol scratch ...'.
stw-ablation: $(STAMP)
	$(BIN)/nbdev_export
	$(BIN)/python -m actionnb.synth --preset mini --out data/synth-sth-mini --seed 0 --workers $(JOBS)
	@mkdir -p runs/stw_ablation
	$(PAPERMILL) nbs/experiments/stw_ablation.ipynb runs/stw_ablation/stw_ablation.ipynb $(ARGS)

# STASTA's ablations (Tables 3, 4; 5 variants x 3 seeds, from scratch) on the embedded dataset; writes
# results/stasta_ablation.md and .json. About an hour on 2 cores. From notebook 36's frame backbone (results/
# stasta_ablation_frames.md): make stasta-ablation ARGS='-p protocol frames -p epochs 12 -p label cpu-frames-12ep'.
stasta-ablation: $(STAMP)
	$(BIN)/nbdev_export
	$(BIN)/python -m actionnb.synth --preset mini --out data/synth-sth-mini --seed 0 --workers $(JOBS)
	@mkdir -p runs/stasta_ablation
	$(PAPERMILL) nbs/experiments/stasta_ablation.ipynb runs/stasta_ablation/stasta_ablation.ipynb $(ARGS)

# STD-Former's ablations (Tables 2, 4, 3; 10 variants x 3 seeds, from the pre-trained image model) on the embedded
# dataset; writes results/stdformer_ablation.md and .json. Several hours on 2 cores; a subset: make stdformer-ablation ARGS='-p tables 2'.
stdformer-ablation: $(STAMP)
	$(BIN)/nbdev_export
	$(BIN)/python -m actionnb.synth --preset mini --out data/synth-sth-mini --seed 0 --workers $(JOBS)
	@mkdir -p runs/stdformer_ablation
	$(PAPERMILL) nbs/experiments/stdformer_ablation.ipynb runs/stdformer_ablation/stdformer_ablation.ipynb $(ARGS)

# The reproduction report (no retraining: it reads results/*_ablation.json and counts costs from the registry): writes
# results/REPRODUCTION.md, results/reproduction.png and the summary cell of nbs/index.ipynb, then regenerates README.md.
report: $(STAMP)
	$(BIN)/nbdev_export
	@mkdir -p runs/report
	$(PAPERMILL) nbs/experiments/reproduction.ipynb runs/report/reproduction.ipynb
	$(BIN)/nbdev_clean --fname nbs/index.ipynb
	$(MAKE) --no-print-directory readme

# On a GPU machine (nbs/35_gpu.ipynb): every registered model's paper preset, bf16 training clips/s, peak memory and
# MFU, then the demo on the small embedded dataset (generated on first use); writes results/gpu.md and .json. < 10 min.
gpu-check: $(STAMP)
	$(BIN)/nbdev_export
	$(BIN)/python -m actionnb.gpu check --out results/gpu.md $(ARGS)

# The wheels a GPU machine without a package registry lacks (CPython 3.12, manylinux x86-64) into .whl/; see the
# docstring of tools/gpu_wheels.py for the install line there.
gpu-wheels:
	$(PYTHON) tools/gpu_wheels.py .whl

# The training notebook on CUDA for every paper model at tiny on the small dataset, asserted to learn; skipped (with
# its reason, never passed) without CUDA.
test-gpu: $(STAMP)
	$(BIN)/nbdev_export
	$(BIN)/python -m pytest -q -rs -m gpu tests/test_gpu.py

data: $(STAMP)
	$(BIN)/python -m actionnb.synth --preset mini --out data/synth-sth-mini --seed 0 --workers $(JOBS)
	$(BIN)/python -m actionnb.synth --preset demo --out data/synth-sth-demo --seed 0 --workers $(JOBS)

# Jupyter refuses to run as root without --allow-root (containers run as root). LAB_ARGS: e.g. --no-browser --port=8899.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
LAB_DIR ?= nbs
LAB_ARGS ?=
lab: $(STAMP)
	$(NO_AGG) $(BIN)/jupyter lab --notebook-dir=$(LAB_DIR) $(ALLOW_ROOT) $(LAB_ARGS)

# Stored outputs (tools/book.py has the rules): every teaching notebook executed in a fresh kernel with inline PNG
# figures, JOBS at a time, one torch thread each; timings and addresses made rerun-stable; the code hash recorded;
# then nbdev_clean, so that what is committed is the clean form. One notebook: make outputs NBS=nbs/20_stw.ipynb
NBS ?= $(TEACHING)
outputs: $(STAMP)
	$(BIN)/nbdev_export
	OMP_NUM_THREADS=1 $(NO_AGG) $(BIN)/python tools/book.py outputs $(NBS) --jobs $(JOBS) $(if $(REFRESH),--refresh)
	$(BIN)/nbdev_clean
	@$(BIN)/python tools/book.py check $(NBS)

# The check tests/test_book.py makes: stored outputs present, from the current code, under the size limits.
check-outputs: $(STAMP)
	$(BIN)/python tools/book.py check

# The book: notebooks with fresh stored outputs are rendered as stored, stale ones are executed first (into _docs/,
# never into nbs/); a sidebar in the learning-path order of nbs/index.ipynb, .ipynb links made .html links.
# (Quarto is not installable offline, so nbdev_docs cannot run; nbconvert renders instead.)
docs: $(STAMP)
	$(BIN)/nbdev_export
	@rm -rf _docs && mkdir -p _docs
	OMP_NUM_THREADS=1 $(NO_AGG) $(BIN)/python tools/book.py docs --out _docs --jobs $(JOBS)
	@echo "docs: _docs/index.html"

# README.md is generated from nbs/index.ipynb (nbdev_readme needs Quarto), with notebook links (and ../ links) made
# relative to the repository root; tests/test_project.py checks they agree.
readme: $(STAMP)
	$(BIN)/jupyter nbconvert --to markdown --stdout nbs/index.ipynb 2>/dev/null | sed -E -e 's#\]\(([0-9e][^)]*\.ipynb)\)#](nbs/\1)#g' -e 's#\]\(\.\./#](#g' > README.md

clean:
	rm -rf _docs _proc .pytest_cache .fp-*.tmp
