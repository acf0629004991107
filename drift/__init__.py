"""The SentiOps drift sidecar: `python -m drift` (settings: drift/settings.py).

Receives the KServe logger's CloudEvents, keeps a prediction log, tests tumbling windows with
the model's detector (sentiops.detection), exports Prometheus metrics, queues the texts of
persistently drifting traffic for labelling and triggers retraining when labels exist. Runs in
the drift environment (.venv-drift / the drift image: alibi-detect 0.11.4, pydantic<2).
"""
