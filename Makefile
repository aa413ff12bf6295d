# actionnb: the commands README.md documents.  Each target creates or reuses the virtual environment in .venv.
#   make test   export + clean checks, then nbdev_test and pytest
#   make demo   the main job on the embedded dataset
#   make lab    JupyterLab on nbs/
#   make docs   every notebook rendered to HTML under _docs/
#   make data   the embedded Synthetic Something dataset (mini preset) into data/
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Parallel notebook/pytest workers; 2 suits the CI machine.
JOBS ?= 2
export PYTHONHASHSEED := 0
export MPLBACKEND := Agg

.PHONY: test demo demo-control stw-ablation lab docs readme data install check-export check-clean clean

install: $(STAMP)

$(STAMP): settings.ini setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name 'Python 3 (actionnb)' >/dev/null
	@touch $(STAMP)

NOTEBOOKS = $(sort $(wildcard nbs/*.ipynb))

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
	$(BIN)/python -m pytest -n $(JOBS) -q tests

# The main job: generate the embedded dataset if needed, train the demo TSM on it, evaluate, write runs/demo/.
PAPERMILL = ACTIONNB_PROGRESS=0 $(BIN)/papermill --kernel python3 --no-progress-bar --log-output
demo: $(STAMP)
	$(BIN)/nbdev_export
	$(BIN)/python -m actionnb.synth --preset mini --out data/synth-sth-mini --seed 0 --workers $(JOBS)
	@mkdir -p runs/demo
	$(PAPERMILL) nbs/experiments/train.ipynb runs/demo/train.ipynb
	@echo 'demo record: runs/demo/ (metrics.json, figures, checkpoint; executed notebook runs/demo/train.ipynb)'

# The control: the same run with the frame-averaging TSN, which cannot tell time-reversed classes apart.
demo-control: $(STAMP)
	$(BIN)/nbdev_export
	$(BIN)/python -m actionnb.synth --preset mini --out data/synth-sth-mini --seed 0 --workers $(JOBS)
	@mkdir -p runs/demo-tsn
	$(PAPERMILL) nbs/experiments/train.ipynb runs/demo-tsn/train.ipynb -p model tsn_r50 -p name demo-tsn
	@echo 'control record: runs/demo-tsn/'

# STW's ablations (Tables 5, 6, 8) on the embedded dataset; writes results/stw_ablation.md and .json.
stw-ablation: $(STAMP)
	$(BIN)/nbdev_export
	$(BIN)/python -m actionnb.synth --preset mini --out data/synth-sth-mini --seed 0 --workers $(JOBS)
	@mkdir -p runs/stw_ablation
	$(PAPERMILL) nbs/experiments/stw_ablation.ipynb runs/stw_ablation/stw_ablation.ipynb

data: $(STAMP)
	$(BIN)/python -m actionnb.synth --preset mini --out data/synth-sth-mini --seed 0 --workers $(JOBS)

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=nbs

# Quarto is not installable offline, so nbdev_docs cannot run: render with nbconvert instead (notebooks are executed).
docs: $(STAMP)
	$(BIN)/nbdev_export
	@rm -rf _docs && mkdir -p _docs
	$(BIN)/jupyter nbconvert --to html --execute --ExecutePreprocessor.kernel_name=python3 --ExecutePreprocessor.timeout=1200 \
	  --output-dir _docs nbs/index.ipynb nbs/[0-9]*.ipynb
	@sed -i -E 's/href="([^"]+)\.ipynb/href="\1.html/g' _docs/*.html
	@echo "docs: _docs/index.html"

# README.md is generated from nbs/index.ipynb (nbdev_readme needs Quarto), with notebook links made relative to the
# repository root; tests/test_project.py checks they agree.
readme: $(STAMP)
	$(BIN)/jupyter nbconvert --to markdown --stdout nbs/index.ipynb 2>/dev/null | sed -E 's#\]\(([0-9e][^)]*\.ipynb)\)#](nbs/\1)#g' > README.md

clean:
	rm -rf _docs _proc .pytest_cache .fp-*.tmp
