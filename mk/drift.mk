# Drift sidecar (issue 9). Included by the main Makefile, which defines PYTHON and BIN.
#   make drift-install   .venv-drift: alibi-detect 0.11.4 (pydantic<2) + sentiops core/models
#                        (drift/requirements.txt under requirements.lock); part of `make install`
#   make drift-serve     the sidecar on loopback (DRIFT_DETECTOR=<model dir>, port 9081)
#   make bench-drift     false alarms / power / time per window -> benchmarks/results/drift.md

DRIFT_VENV ?= .venv-drift
DRIFT_BIN := $(DRIFT_VENV)/bin
DRIFT_STAMP := $(DRIFT_VENV)/.installed
DRIFT_CONSTRAINTS := $(DRIFT_VENV)/constraints.txt
export SENTIOPS_DRIFT_PYTHON ?= $(CURDIR)/$(DRIFT_BIN)/python

.PHONY: drift-install drift-serve bench-drift

# requirements.lock minus every package drift/requirements.txt pins itself (numpy, scipy,
# pydantic, Pillow, ...): the rest of the sidecar's environment matches the main one.
$(DRIFT_STAMP): pyproject.toml requirements.lock drift/requirements.txt mk/drift.mk
	@if test -x $(DRIFT_BIN)/python; then echo "[drift-install 1/4] virtualenv $(DRIFT_VENV): present"; \
	 else $(PHASE) "drift-install 1/4" "virtualenv $(DRIFT_VENV)" -- $(PYTHON) -m venv $(DRIFT_VENV); fi
	@awk -F'[=<>!~;[ ]' \
		'NR==FNR { if ($$0 ~ /^[A-Za-z0-9]/ && $$0 ~ /[=<>!~]/) { n=tolower($$1); gsub(/_/,"-",n); p[n]=1 }; next } \
		 /^[A-Za-z0-9]/ { n=tolower($$1); gsub(/_/,"-",n); if (n in p) next } { print }' \
		drift/requirements.txt requirements.lock > $(DRIFT_CONSTRAINTS)
	@$(PHASE) "drift-install 2/4" "alibi-detect 0.11.4, torch, pydantic 1 (drift/requirements.txt under the lock)" -- \
		$(DRIFT_BIN)/pip install $(PIP_FLAGS) -c $(DRIFT_CONSTRAINTS) -r drift/requirements.txt
	@$(PHASE) "drift-install 3/4" "sentiops itself (editable, --no-deps)" -- \
		$(DRIFT_BIN)/pip install $(PIP_FLAGS) --no-deps -e .
	@$(PHASE) "drift-install 4/4" "check: the sidecar's imports, pydantic 1" -- \
		$(DRIFT_BIN)/python -c "import sentiops.detection.windows, drift, alibi_detect, pydantic, starlette, uvicorn, cloudevents; assert pydantic.VERSION.startswith('1.')"
	@touch $(DRIFT_STAMP)

drift-install: $(DRIFT_STAMP) ## the drift sidecar's own venv (.venv-drift; alibi-detect 0.11.4, pydantic<2)

install: drift-install

DRIFT_DETECTOR ?=
DRIFT_PORT ?= 9081

drift-serve: drift-install ## the drift sidecar on loopback (DRIFT_DETECTOR=<model dir with drift/>)
	MALLOC_ARENA_MAX=2 $(DRIFT_BIN)/python -m drift --host 127.0.0.1 --port $(DRIFT_PORT) \
		$(if $(DRIFT_DETECTOR),--detector $(DRIFT_DETECTOR))

bench-drift: drift-install ## drift detector: false alarms / power at windows 50,100,200 -> benchmarks/results/drift.md
	nice -n 10 $(DRIFT_BIN)/python benchmarks/drift.py --workdir $(WORKDIR)/bench-drift
