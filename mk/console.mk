# Web console and operations (issue 12). Included by the main Makefile (PYTHON, BIN, WORKDIR).
#   make browser-tools   Debian's chromium + chromium-driver for the console's browser test
#                        (scripts/console/install-browser.sh; idempotent); part of `make test`
#   make console         `sentiops console` on loopback (PREDICTOR_URL, PROMETHEUS_URL,
#                        MLFLOW_URL, CONSOLE_PORT)
#   make status          `sentiops status` (PROMETHEUS_URL)
#   make test-console    the console's tests only (real predictor, Prometheus, MLflow, Chromium)

CONSOLE_PORT ?= 8501
PREDICTOR_URL ?=
PROMETHEUS_URL ?=
MLFLOW_URL ?=

.PHONY: browser-tools console status test-console

browser-tools: ## headless Chromium + chromedriver from Debian (the console's browser test)
	@scripts/console/install-browser.sh

test: browser-tools

console: install ## the web console on http://localhost:8501 (PREDICTOR_URL=, PROMETHEUS_URL=, MLFLOW_URL=)
	$(BIN)/sentiops console --port $(CONSOLE_PORT) \
		$(if $(PREDICTOR_URL),--predictor-url $(PREDICTOR_URL)) \
		$(if $(PROMETHEUS_URL),--prometheus-url $(PROMETHEUS_URL)) \
		$(if $(MLFLOW_URL),--mlflow-url $(MLFLOW_URL))

status: install ## what serves, what is in canary, drift and live accuracy (PROMETHEUS_URL=)
	$(BIN)/sentiops status $(if $(PROMETHEUS_URL),--prometheus-url $(PROMETHEUS_URL))

test-console: install browser-tools ## the console's tests: API, sentiops status, headless Chromium
	$(BIN)/pytest -q tests/console
