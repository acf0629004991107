"""Prometheus metrics exported by the SentiOps predictor and drift sidecar.

Plain module-level prometheus_client objects on the default registry: KServe's ModelServer
serves that registry on ``/metrics`` of its HTTP port, and the drift sidecar serves it on
``:9081/metrics``. Import the objects, never redefine them::

    from sentiops import metrics
    metrics.PREDICTIONS.labels(model_name="sentiment", model_version="3", label="positive").inc()

Alert rules (``monitoring/rules``) and the Grafana dashboard (``monitoring/dashboards``) may only
use the sample families listed in :data:`EXPORTED_METRICS` and :data:`KSERVE_METRICS` (plus
recording rules defined from them); ``tests/cluster/test_monitoring.py`` enforces that.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

#: Buckets for a probability in [0.5, 1] (binary) or [1/3, 1] (three classes).
CONFIDENCE_BUCKETS = (0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0)

PREDICTIONS = Counter(
    "sentiops_predictions",
    "Predictions served, by predicted label.",
    ["model_name", "model_version", "label"],
)
PREDICTION_CONFIDENCE = Histogram(
    "sentiops_prediction_confidence",
    "Probability of the predicted label.",
    ["model_name", "model_version"],
    buckets=CONFIDENCE_BUCKETS,
)
REQUEST_ERRORS = Counter(
    "sentiops_request_errors",
    "Requests that failed, by reason (invalid_input, inference_error, model_not_ready, ...).",
    ["model_name", "model_version", "reason"],
)
#: Latency buckets (seconds) of one prediction request, from 1 ms to 10 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REQUEST_LATENCY = Histogram(
    "sentiops_request_duration_seconds",
    "Wall time of a prediction request inside the predictor, by model version (the canary "
    "judge compares versions on it; KServe's own histograms carry no version).",
    ["model_name", "model_version"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "sentiops_batch_size",
    "Texts per forward pass of the predictor's adaptive batcher.",
    ["model_name"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
INPUT_LENGTH = Histogram(
    "sentiops_input_length_chars",
    "Length of each text the predictor classified, in characters.",
    ["model_name"],
    buckets=(10, 25, 50, 100, 200, 280, 500, 1000, 2500, 5000),
)
INFERENCE_LOG_EVENTS = Counter(
    "sentiops_inference_log_events",
    "Inference-log CloudEvents the predictor posted, by outcome (sent, dropped, failed).",
    ["outcome"],
)
MIRROR_REQUESTS = Counter(
    "sentiops_mirror_requests",
    "Copies of requests the local traffic split sent to a shadow (a shadow rollout), by "
    "outcome (sent, dropped = queue full, failed = no answer); the client's request never "
    "waits for them.",
    ["outcome"],
)
# ------------------------------------------------------------------ drift sidecar (drift/)
#: One series per model version, so a canary's drift is told apart from the stable model's.
DRIFT_LABELS = ["model_name", "model_version"]
DRIFT_P_VALUE = Gauge(
    "sentiops_drift_p_value",
    "p-value of the last tested window (low = drift): test=combined is the Bonferroni-corrected "
    "window p-value, the others are the raw p-values of embedding (MMD), label_mix, confidence.",
    [*DRIFT_LABELS, "test"],
)
DRIFT_DETECTED = Gauge(
    "sentiops_drift_detected",
    "1 if the last tested window was flagged as drift, else 0.",
    DRIFT_LABELS,
)
DRIFT_CONSECUTIVE = Gauge(
    "sentiops_drift_consecutive_windows",
    "Consecutive drifting windows so far (the labelling queue fills at K).",
    DRIFT_LABELS,
)
DRIFT_WINDOW_SIZE = Gauge(
    "sentiops_drift_window_size",
    "Predictions in the drift detector's current (open) window.",
    DRIFT_LABELS,
)
DRIFT_WINDOWS = Counter(
    "sentiops_drift_windows",
    "Windows closed, by result (drift, no_drift, skipped = tester busy, error).",
    [*DRIFT_LABELS, "result"],
)
DRIFT_TEST_SECONDS = Histogram(
    "sentiops_drift_test_seconds",
    "Wall time of testing one window (embedding + the three tests).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
DRIFT_EVENTS = Counter(
    "sentiops_drift_events",
    "Inference-log CloudEvents the drift sidecar received, by outcome: accepted, dropped (queue "
    "full), bad (see sentiops_drift_bad_events_total), unmatched (no partner within the join "
    "timeout).",
    ["outcome"],
)
DRIFT_BAD_EVENTS = Counter(
    "sentiops_drift_bad_events",
    "Events the drift sidecar rejected, by reason (not_cloudevent, unknown_type, not_json, "
    "protocol, no_text, mismatch).",
    ["reason"],
)
PREDICTION_LOG_ROWS = Counter(
    "sentiops_prediction_log_rows",
    "Predictions in the prediction log, by outcome (written, dropped = buffer full).",
    ["outcome"],
)
PREDICTION_LOG_ERRORS = Counter(
    "sentiops_prediction_log_errors",
    "Failed flushes of the prediction log to the store (retried with back-off).",
)
PREDICTION_LOG_BUFFERED = Gauge(
    "sentiops_prediction_log_buffered_rows",
    "Predictions waiting in memory for the next flush (lost on a crash).",
)
LABELLING_QUEUED = Counter(
    "sentiops_labelling_queued",
    "Texts written to the labelling queue after persistent drift.",
    DRIFT_LABELS,
)
LIVE_ACCURACY = Gauge(
    "sentiops_live_accuracy",
    "Accuracy on the labels of the random evaluation sample of live predictions (labels of "
    "texts chosen for training, e.g. the most uncertain, never count here).",
    ["model_name", "model_version"],
)
LIVE_MACRO_F1 = Gauge(
    "sentiops_live_macro_f1",
    "Macro-F1 on the labels of the random evaluation sample of live predictions.",
    ["model_name", "model_version"],
)
LIVE_LABELS = Gauge(
    "sentiops_live_labels",
    "Labels of the random evaluation sample so far, per model version (all replicas): the "
    "sample size behind sentiops_live_accuracy.",
    ["model_name", "model_version"],
)
FEEDBACK = Counter(
    "sentiops_feedback",
    "Labels accepted by this process for earlier predictions, by whether the prediction was "
    "right and by sample (random: the evaluation sample, which the canary judge reads per "
    "step; targeted: chosen for training).",
    ["model_name", "model_version", "correct", "sample"],
)
PREDICTION_MEMORY_ROWS = Gauge(
    "sentiops_prediction_memory_rows",
    "Recent predictions this predictor keeps in memory for feedback to join (bounded).",
)
PREDICTION_MEMORY_BYTES = Gauge(
    "sentiops_prediction_memory_bytes",
    "Estimated bytes of the recent predictions kept in memory (bounded; older ones are in the "
    "prediction log in the store).",
)
# ------------------------------------------------------- estimated performance (drift/)
#: Performance estimated without labels from the calibrated probabilities of the last tested
#: window (`sentiops.estimation.performance`), one series per model version; the interval
#: bounds say where the window's labels would put it if the calibration holds.
ESTIMATED_ACCURACY = Gauge(
    "sentiops_estimated_accuracy",
    "Accuracy of the last tested window estimated from its calibrated probabilities (the mean "
    "top probability), before any label.",
    DRIFT_LABELS,
)
ESTIMATED_ACCURACY_LOW = Gauge(
    "sentiops_estimated_accuracy_low",
    "Lower bound of the 95 % interval of the last window's estimated accuracy.",
    DRIFT_LABELS,
)
ESTIMATED_ACCURACY_HIGH = Gauge(
    "sentiops_estimated_accuracy_high",
    "Upper bound of the 95 % interval of the last window's estimated accuracy.",
    DRIFT_LABELS,
)
ESTIMATED_MACRO_F1 = Gauge(
    "sentiops_estimated_macro_f1",
    "Macro-F1 of the last tested window estimated from its expected confusion matrix.",
    DRIFT_LABELS,
)
ESTIMATED_MACRO_F1_LOW = Gauge(
    "sentiops_estimated_macro_f1_low",
    "Lower bound of the 95 % interval of the last window's estimated macro-F1.",
    DRIFT_LABELS,
)
ESTIMATED_MACRO_F1_HIGH = Gauge(
    "sentiops_estimated_macro_f1_high",
    "Upper bound of the 95 % interval of the last window's estimated macro-F1.",
    DRIFT_LABELS,
)
ESTIMATED_RECALL = Gauge(
    "sentiops_estimated_recall",
    "Per-class recall of the last tested window estimated from its expected confusion matrix.",
    [*DRIFT_LABELS, "label"],
)
VALIDATION_ACCURACY = Gauge(
    "sentiops_validation_accuracy",
    "A model version's accuracy on the validation rows like its traffic, measured when it was "
    "packaged: the reference its estimated accuracy is compared with.",
    DRIFT_LABELS,
)
ESTIMATE_ERROR = Gauge(
    "sentiops_estimate_error",
    "The estimate's own error where labels exist: on the labelled predictions of the random "
    "evaluation sample, estimated (mean served top probability) minus realized accuracy.",
    DRIFT_LABELS,
)
ESTIMATE_ERROR_LABELS = Gauge(
    "sentiops_estimate_error_labels",
    "Labels of the random evaluation sample behind sentiops_estimate_error.",
    DRIFT_LABELS,
)
RETRAIN_TRIGGERS = Counter(
    "sentiops_retrain_triggers",
    "Retraining decisions of the drift sidecar, by outcome (triggered, cooldown, active_run, "
    "no_labels, held_for_review, failed) and reason (drift_with_labels).",
    ["model_name", "outcome", "reason"],
)
#: Body formats and outcomes of rollout notifications (`sentiops.rollout.notify`).
NOTIFY_FORMATS = ("generic", "slack", "alertmanager")
NOTIFY_OUTCOMES = ("sent", "failed", "dropped")
ROLLOUT_NOTIFICATIONS = Counter(
    "sentiops_rollout_notifications",
    "Rollout notifications (holds, promotions, rollbacks, approval requests) posted to webhooks, "
    "by body format (generic, slack, alertmanager) and outcome (sent, failed = refused, timed "
    "out or not 2xx, dropped = queue full); a failure never holds up the rollout.",
    ["format", "outcome"],
)
for _format in NOTIFY_FORMATS:  # every series at 0 from the start (see `model_series`)
    for _outcome in NOTIFY_OUTCOMES:
        ROLLOUT_NOTIFICATIONS.labels(_format, _outcome)

#: Sample families the SentiOps code exposes (names as they appear on ``/metrics``).
EXPORTED_METRICS: tuple[str, ...] = (
    "sentiops_predictions_total",
    "sentiops_prediction_confidence_bucket",
    "sentiops_prediction_confidence_sum",
    "sentiops_prediction_confidence_count",
    "sentiops_request_errors_total",
    "sentiops_request_duration_seconds_bucket",
    "sentiops_request_duration_seconds_sum",
    "sentiops_request_duration_seconds_count",
    "sentiops_batch_size_bucket",
    "sentiops_batch_size_sum",
    "sentiops_batch_size_count",
    "sentiops_input_length_chars_bucket",
    "sentiops_input_length_chars_sum",
    "sentiops_input_length_chars_count",
    "sentiops_inference_log_events_total",
    "sentiops_mirror_requests_total",
    "sentiops_drift_p_value",
    "sentiops_drift_detected",
    "sentiops_drift_consecutive_windows",
    "sentiops_drift_window_size",
    "sentiops_drift_windows_total",
    "sentiops_drift_test_seconds_bucket",
    "sentiops_drift_test_seconds_sum",
    "sentiops_drift_test_seconds_count",
    "sentiops_drift_events_total",
    "sentiops_drift_bad_events_total",
    "sentiops_prediction_log_rows_total",
    "sentiops_prediction_log_errors_total",
    "sentiops_prediction_log_buffered_rows",
    "sentiops_labelling_queued_total",
    "sentiops_live_accuracy",
    "sentiops_live_macro_f1",
    "sentiops_live_labels",
    "sentiops_feedback_total",
    "sentiops_retrain_triggers_total",
    "sentiops_estimated_accuracy",
    "sentiops_estimated_accuracy_low",
    "sentiops_estimated_accuracy_high",
    "sentiops_estimated_macro_f1",
    "sentiops_estimated_macro_f1_low",
    "sentiops_estimated_macro_f1_high",
    "sentiops_estimated_recall",
    "sentiops_validation_accuracy",
    "sentiops_estimate_error",
    "sentiops_estimate_error_labels",
    "sentiops_prediction_memory_rows",
    "sentiops_prediction_memory_bytes",
    "sentiops_rollout_notifications_total",
)

#: Histograms KServe's ModelServer (0.20) exports on the same ``/metrics`` endpoint, each with
#: the label ``model_name`` (see FACTS.md); their ``_bucket``/``_sum``/``_count`` families.
KSERVE_HISTOGRAMS: tuple[str, ...] = (
    "request_preprocess_seconds",
    "request_predict_seconds",
    "request_postprocess_seconds",
    "request_explain_seconds",
)
KSERVE_METRICS: tuple[str, ...] = tuple(
    f"{name}{suffix}" for name in KSERVE_HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")
)

#: Series every Prometheus scrape adds itself; usable in rules (e.g. model-not-ready alerts).
SCRAPE_METRICS: tuple[str, ...] = ("up", "scrape_duration_seconds", "scrape_samples_scraped")

ALL_METRICS: frozenset[str] = frozenset(EXPORTED_METRICS + KSERVE_METRICS + SCRAPE_METRICS)

#: The reasons the predictor counts a failed request under (`REQUEST_ERRORS`).
ERROR_REASONS = (
    "invalid_input",
    "inference_error",
    "model_not_ready",
    "model_not_found",
    "rate_limited",
)
#: The label samples (`sentiops.feedback.labels`: RANDOM, TARGETED).
SAMPLES = ("random", "targeted")


def model_series(name: str, version: str, labels: list[str]) -> None:
    """Create, at 0, every series a model version's answers will count in, before its first
    request. A counter that appears only with its first increment already holds a value
    when Prometheus first scrapes it, and `increase()` never counts that first value: a
    canary's first requests, errors and (label by label, unevenly) predictions would be
    lost from the judge's window. (Prometheus' own advice: export every labelled series
    you know of at 0.)"""
    for label in labels:
        PREDICTIONS.labels(name, version, label)
    PREDICTION_CONFIDENCE.labels(name, version)
    REQUEST_LATENCY.labels(name, version)
    for reason in ERROR_REASONS:
        REQUEST_ERRORS.labels(name, version, reason)
    for correct in ("true", "false"):
        for sample in SAMPLES:
            FEEDBACK.labels(name, version, correct, sample)
