"""The web console (`sentiops console`): one page over the sources `sentiops status` reads.

FastAPI serves a static page (`static/index.html`, plain JavaScript, uPlot for the charts,
vendored from npm with its licence) and a small JSON API the page calls:

    GET  /api/config                  the URLs the console was started with, links to MLflow
    POST /api/predict {"text": ...}   label, probabilities, token attributions (the predictor's
                                      :predict and :explain), model version, request id
    POST /api/feedback {"id", "label"} a person's label for that prediction, sent to the
                                      predictor's feedback API (stored, counted in live accuracy)
    GET  /api/status                  sentiops.console.status.gather() as JSON (registry, rollout,
                                      traffic, drift, live accuracy; each may be unavailable)
    GET  /api/series?kind=K&minutes=M one chart (K = drift | accuracy | traffic) from
                                      Prometheus' query_range
    GET  /healthz

Every client mistake is a 4xx JSON `{"error": ..., "hint": ...}`; a source that is down is a
502/503/504 naming it; never a traceback. Before any handler runs, `guard` refuses a Host that
is not allowed (400; DNS rebinding), a state-changing request from another origin or site (403;
CSRF) or without `Content-Type: application/json` (415), and a body over 64 kB while it streams
(413). `sentiops.console.app.create_app(ConsoleConfig(...))` builds the ASGI app (imported
lazily: the CLI imports no FastAPI until the console runs).

    status      what is happening, section by section (registry, rollout, traffic, drift, live
                accuracy), each failing soft: what `sentiops status` prints and the page shows
    charts      the page's time series
    prometheus  the Prometheus HTTP API they read
    guard       the ASGI middleware in front of every route: allowed hosts, same origin, JSON,
                body size
    deps        what every route shares: the settings (`ConsoleConfig`), the app's state (the
                predictor's client, the warm-up), `ApiError`, the request's JSON body and token
    predictor   the calls to the predictor, their failures as errors that name them
    routes      one router per resource: page, predict, feedback, status, series
    app         `create_app`: the routers behind the guard, every failure a JSON error
"""
