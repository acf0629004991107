# Label Studio as the labelling workbench (issue 25). Included by the main Makefile (PYTHON,
# BIN, WORKDIR).
#   make labelling-install  .venv-labelstudio: Label Studio 1.23.2 in its own environment
#                           (labelling/requirements.txt, every package pinned: Django 5.2,
#                           numpy 2, pandas 3 cannot share .venv); built once, then cached
#                           like .venv-drift. Part of `make test`, not of `make install`:
#                           `make run` and `make up` use Label Studio when it is built.
#   make labelstudio        Label Studio on loopback with the installation's admin and token
#                           (`sentiops labels studio`: $SENTIOPS_HOME/labelstudio), until Ctrl-C
#   make test-labelling     the labelling tests only (a real Label Studio server, Chromium)

LABELSTUDIO_VENV ?= .venv-labelstudio
LABELSTUDIO_BIN := $(LABELSTUDIO_VENV)/bin
LABELSTUDIO_STAMP := $(LABELSTUDIO_VENV)/.installed
export SENTIOPS_LABEL_STUDIO ?= $(CURDIR)/$(LABELSTUDIO_BIN)/label-studio

.PHONY: labelling-install labelstudio test-labelling

$(LABELSTUDIO_STAMP): labelling/requirements.txt mk/labelling.mk
	@if test -x $(LABELSTUDIO_BIN)/python; then echo "[labelling-install 1/3] virtualenv $(LABELSTUDIO_VENV): present"; \
	 else $(PHASE) "labelling-install 1/3" "virtualenv $(LABELSTUDIO_VENV)" -- $(PYTHON) -m venv $(LABELSTUDIO_VENV); fi
	@$(PHASE) "labelling-install 2/3" "Label Studio 1.23.2 (labelling/requirements.txt, every package pinned)" -- \
		$(LABELSTUDIO_BIN)/pip install $(PIP_FLAGS) -r labelling/requirements.txt
	@$(PHASE) "labelling-install 3/3" "check: import label_studio 1.23.2" -- \
		$(LABELSTUDIO_BIN)/python -c "import label_studio; assert label_studio.__version__ == '1.23.2'"
	@touch $(LABELSTUDIO_STAMP)

labelling-install: $(LABELSTUDIO_STAMP) ## Label Studio's own venv (.venv-labelstudio; Label Studio 1.23.2, pinned)

test: labelling-install

labelstudio: install labelling-install ## Label Studio on loopback (the installation's admin and token; until Ctrl-C)
	$(BIN)/sentiops labels studio

test-labelling: install labelling-install browser-tools ## the labelling tests: a real Label Studio, headless Chromium
	$(BIN)/pytest -q tests/labelling
