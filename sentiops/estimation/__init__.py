"""How good a model is before the labels arrive: calibrated probabilities, and performance
estimated from them per window of traffic (confidence-based performance estimation).

    calibration  temperature (or per-class vector) scaling fitted on the validation split when
                 a model is packaged, stored in the model directory as JSON and applied by
                 `sentiops.models.LoadedModel`; ECE, Brier score and log-loss
    performance  the expected confusion matrix of a window of calibrated probability rows:
                 estimated accuracy, per-class recall and macro-F1 with analytic (delta-method)
                 intervals; the same from a confidence histogram (the canary judge's
                 Prometheus data); two versions' estimates compared with their uncertainty;
                 the estimate's own error where labels of the random sample exist

Plain numpy and scipy: it imports nothing of SentiOps above the foundation, so the model
directory loader, the drift sidecar's environment (pydantic 1) and the judge can all use it.
docs/estimation.md describes the method and its measured limits.
"""
