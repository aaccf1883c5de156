# The README's commands. `make setup` is idempotent: a second call does nothing.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export NO_ALBUMENTATIONS_UPDATE := 1
export DVC_NO_ANALYTICS := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

PLOTS_TEMPLATE := .dvc/plots/offline.html

.PHONY: setup run test sweep lint ui

setup: $(VENV)/.installed $(PLOTS_TEMPLATE)

# pip takes torch 2.14.1 / torchvision 0.29.1 from the local wheel cache where it has them.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(PLOTS_TEMPLATE): scripts/offline_plots_template.sh
	bash scripts/offline_plots_template.sh $@

run: setup
	$(BIN)/dvc repro
	@echo
	@echo "Done. Look at the results with:"
	@echo "  .venv/bin/dvc metrics show            # model beside gray on the test photos"
	@echo "  .venv/bin/dvc plots show              # curves, trade-off, samples, prior -> dvc_plots/index.html"
	@echo "  make ui                               # MLflow: runs, images, registered model"
	@echo "  .venv/bin/colorize predict photo.jpg --out colorized/   # your own photos"

# Optuna sweep (params.yaml: sweep); not part of dvc repro.
WORKERS ?= 2
sweep: setup
	$(BIN)/dvc repro prior
	$(BIN)/colorize sweep --workers $(WORKERS)

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check src tests bench scripts

ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db
