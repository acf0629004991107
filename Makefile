# SentiOps — one entry point for set-up, the main job, tests and benchmarks.
# `make run` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKDIR ?= .sentiops
export PATH := $(CURDIR)/$(BIN):$(PATH)
export SENTIOPS_HOME ?= $(CURDIR)/$(WORKDIR)

.PHONY: help install stack-tools run up quickstart test test-unit lint typecheck bench-quality bench-retrain bench-serving bench-batch bench-estimate clean

help:
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

# Set-up says what it does: scripts/phase.sh prints each phase, a line every 10 s with pip's
# latest step, and the time each took (pip's own output goes to a log, shown when it fails).
ifndef PHASE_T0
export PHASE_T0 := $(shell date +%s)
endif
PHASE := bash scripts/phase.sh
PIP_FLAGS := --disable-pip-version-check --progress-bar off
TORCH_PIN := $(shell grep -m1 '^torch==' requirements.lock)

# torch first (the largest download), then everything else; both under the lock's pins
$(STAMP): pyproject.toml requirements.lock
	@if test -x $(BIN)/python; then echo "[install 1/4] virtualenv $(VENV): present"; \
	 else $(PHASE) "install 1/4" "virtualenv $(VENV)" -- $(PYTHON) -m venv $(VENV); fi
	@$(PHASE) "install 2/4" "$(TORCH_PIN) (CPU)" -- \
		$(BIN)/pip install $(PIP_FLAGS) -c requirements.lock torch
	@$(PHASE) "install 3/4" "sentiops[all,dev]: transformers, kfp, kserve, mlflow, ... (requirements.lock)" -- \
		$(BIN)/pip install $(PIP_FLAGS) -c requirements.lock -e '.[all,dev]'
	@$(PHASE) "install 4/4" "check: import sentiops, torch, transformers, kfp, mlflow, kserve" -- \
		$(BIN)/python -c "import sentiops, torch, transformers, kfp, mlflow, kserve"
	@touch $(STAMP)

install: $(STAMP) ## create the virtualenv with pinned dependencies (idempotent)

stack-tools: ## Debian's Prometheus for the local stack (idempotent)
	@bash scripts/stack-tools.sh

run: install stack-tools ## main job: the whole loop on this machine (train, gate, serve, canary, drift, labels, retrain)
	$(BIN)/sentiops loop

up: install stack-tools ## the local stack until Ctrl-C: champion + drift sidecar + Prometheus + MLflow UI + console
	$(BIN)/sentiops up

quickstart: install ## no pipeline: train + evaluate both models in-process, print a comparison
	$(BIN)/sentiops quickstart --workdir $(WORKDIR)

test: install cluster-tools stack-tools ## all tests: unit + integration (real S3, MLflow, kube-apiserver, Prometheus)
	$(BIN)/pytest -q --durations=30 tests

test-unit: install cluster-tools ## fast unit tests only
	$(BIN)/pytest -q -m "not integration and not slow" tests

lint: install ## ruff (lint and format check) + mypy on the core
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

typecheck: install
	$(BIN)/mypy

bench-quality: install ## macro-F1 in and out of domain (four VADER domains) beside the VADER lexicon
	$(BIN)/python benchmarks/quality.py --workdir $(WORKDIR)

bench-retrain: install ## the loop's retraining offline: warm start, weight of the new labels (table)
	$(BIN)/python benchmarks/retrain.py --workdir $(WORKDIR)

bench-serving: install ## our predictor vs a transformers pipeline behind FastAPI (locust), table
	$(BIN)/python benchmarks/serving.py --workdir $(WORKDIR) $(if $(MODEL),--model $(MODEL))

NANNYML_VENV ?= .venv-bench-nannyml
$(NANNYML_VENV)/.installed: benchmarks/requirements-nannyml.txt
	@if test -x $(NANNYML_VENV)/bin/python; then echo "[nannyml 1/3] virtualenv $(NANNYML_VENV): present"; \
	 else $(PHASE) "nannyml 1/3" "virtualenv $(NANNYML_VENV)" -- $(PYTHON) -m venv $(NANNYML_VENV); fi
	@$(PHASE) "nannyml 2/3" "NannyML (benchmarks/requirements-nannyml.txt)" -- \
		$(NANNYML_VENV)/bin/pip install $(PIP_FLAGS) -r benchmarks/requirements-nannyml.txt
	@$(PHASE) "nannyml 3/3" "check: import nannyml" -- \
		env NML_DISABLE_USAGE_LOGGING=1 $(NANNYML_VENV)/bin/python -c "import nannyml"
	@touch $@

bench-estimate: install $(NANNYML_VENV)/.installed ## estimated vs realized accuracy and macro-F1 in domain and under the loop's shifts (calibration, NannyML's CBPE in its own venv), table
	$(BIN)/python benchmarks/estimate.py --workdir $(WORKDIR)/bench-estimate \
		--nannyml-python $(NANNYML_VENV)/bin/python

bench-batch: install ## batch scoring: sentiops batch vs the in-process ceiling (TF-IDF, the transformer's serving form), table
	$(BIN)/python benchmarks/batch.py --workdir $(WORKDIR)/bench-batch $(if $(MODEL),--transformer $(MODEL))

.PHONY: bench-judge
bench-judge: install ## canary judges over simulated rollouts at 10/100/1000 req/min: false rollbacks, power, time (ROLLOUTS=200)
	$(BIN)/python benchmarks/judge.py $(if $(ROLLOUTS),--rollouts $(ROLLOUTS))

clean:
	rm -rf $(WORKDIR) .pytest_cache .mypy_cache .ruff_cache

-include mk/*.mk
