"""The sidecar's HTTP routes, one module per resource, over `drift.deps`:

    events   POST /: CloudEvents of the inference log (with a bearer token when the sidecar
             has a token file; a rate limit per client)
    metrics  GET /metrics: Prometheus
    health   GET /healthz (alive), GET /readyz (detector loaded)
    status   GET /status: JSON per model version

`drift.server.create_app` serves them in this order (`ROUTES`)."""

from __future__ import annotations

from drift.routes import events, health, metrics, status

ROUTES = [*events.routes, *metrics.routes, *health.routes, *status.routes]
