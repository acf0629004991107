"""A stand-in for the drift sidecar's gauges (drift, estimated accuracy; and, for versions that
no longer serve, the feedback API's live accuracy) in the console tests: serves
`sentiops.metrics`' own DRIFT_*, ESTIMATED_* and LIVE_ACCURACY objects on /metrics (the names
and labels the real components export) with values that move over time, so the charts have
lines to draw. The serving version's live
accuracy comes from the real predictor's feedback API instead.

    python -m tests.console.exporter --port P --version V [--version V2 ...] [--accuracy V2]
"""

from __future__ import annotations

import argparse
import math
import time

from prometheus_client import start_http_server

from sentiops import metrics
from sentiops.config import MODEL_NAME


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--version", action="append", required=True, help="drift gauges for it")
    p.add_argument("--accuracy", action="append", default=[], help="live accuracy for it")
    args = p.parse_args()
    start_http_server(args.port, addr="127.0.0.1")
    t0 = time.monotonic()
    while True:
        t = time.monotonic() - t0
        for i, version in enumerate(args.version):
            labels = {"model_name": MODEL_NAME, "model_version": version}
            combined = max(0.001, 0.6 * math.exp(-t / 20) + 0.05 * math.sin(t + i))
            for test, scale in (
                ("combined", 1.0),
                ("embedding", 0.8),
                ("label_mix", 1.3),
                ("confidence", 1.1),
            ):
                metrics.DRIFT_P_VALUE.labels(**labels, test=test).set(min(1.0, combined * scale))
            drifting = combined < 0.05
            metrics.DRIFT_DETECTED.labels(**labels).set(1 if drifting else 0)
            metrics.DRIFT_CONSECUTIVE.labels(**labels).set(int(t // 5) if drifting else 0)
            metrics.DRIFT_WINDOW_SIZE.labels(**labels).set(int(t * 10) % 200)
            if version in args.accuracy:
                accuracy = 0.9 - 0.1 * i - 0.2 * (1 - math.exp(-t / 30))
                metrics.LIVE_ACCURACY.labels(**labels).set(accuracy)
            # the sidecar's estimate of each window (calibrated probabilities, no labels)
            estimated = 0.8 - 0.1 * i - 0.15 * (1 - math.exp(-t / 30))
            metrics.ESTIMATED_ACCURACY.labels(**labels).set(estimated)
            metrics.ESTIMATED_ACCURACY_LOW.labels(**labels).set(estimated - 0.06)
            metrics.ESTIMATED_ACCURACY_HIGH.labels(**labels).set(estimated + 0.06)
            metrics.ESTIMATED_MACRO_F1.labels(**labels).set(estimated - 0.08)
            metrics.ESTIMATED_MACRO_F1_LOW.labels(**labels).set(estimated - 0.15)
            metrics.ESTIMATED_MACRO_F1_HIGH.labels(**labels).set(estimated - 0.01)
            for label, recall in (("negative", 0.7), ("neutral", 0.4), ("positive", 0.9)):
                metrics.ESTIMATED_RECALL.labels(**labels, label=label).set(recall)
            metrics.VALIDATION_ACCURACY.labels(**labels).set(0.8 - 0.1 * i)
        time.sleep(0.5)


if __name__ == "__main__":
    main()
