"""The console's routes, one router per resource, over `sentiops.console.deps`:

    page      GET /, GET /healthz, GET /api/config: the page and what it starts from
    predict   POST /api/predict: label, probabilities, attributions, model version, request id
    feedback  POST /api/feedback: a person's label for a prediction, sent to the predictor
    status    GET /api/status, GET /api/labelling: what is happening, section by section
    series    GET /api/series: one chart's time series from Prometheus

`sentiops.console.app.create_app` includes them in this order (`ROUTERS`)."""

from __future__ import annotations

from sentiops.console.routes import feedback, page, predict, series, status

ROUTERS = (page.router, predict.router, feedback.router, status.router, series.router)
