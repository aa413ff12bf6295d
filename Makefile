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

.PHONY: test demo lab docs readme data install check-export check-clean clean

install: $(STAMP)

$(STAMP): settings.ini setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name 'Python 3 (actionnb)' >/dev/null
	@touch $(STAMP)

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

test: check-export check-clean
	$(BIN)/nbdev_test --n_workers $(JOBS) --timing
	$(BIN)/python -m pytest -n $(JOBS) -q tests

demo: $(STAMP)
	$(BIN)/nbdev_export
	@mkdir -p runs/demo
	$(BIN)/papermill --kernel python3 --no-progress-bar --cwd nbs nbs/00_core.ipynb runs/demo/00_core.ipynb
	@echo 'demo record: runs/demo/00_core.ipynb'

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

# README.md is generated from nbs/index.ipynb (nbdev_readme needs Quarto); tests/test_project.py checks they agree.
readme: $(STAMP)
	$(BIN)/jupyter nbconvert --to markdown --stdout nbs/index.ipynb 2>/dev/null > README.md

clean:
	rm -rf _docs _proc .pytest_cache .fp-*.tmp
