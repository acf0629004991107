"""The canary judge's metric source: what one model version served, read from Prometheus.

Every series the predictor exports carries `model_name` and `model_version` (see
`sentiops.metrics`), so canary and stable are told apart whether they run as two Knative
revisions of one InferenceService or as two local predictors. One instant query per quantity,
`increase(...[<step>s])` at the end of the step, over the Prometheus HTTP API.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from sentiops.errors import RolloutError
from sentiops.rollout.judge import Observed

QUERIES = {
    "requests": "sum(increase(sentiops_request_duration_seconds_count{SEL}[W]))",
    "errors": "sum(increase(sentiops_request_errors_total{SEL}[W]))",
    "latency": "sum by (le) (increase(sentiops_request_duration_seconds_bucket{SEL}[W]))",
    "confidence": "sum by (le) (increase(sentiops_prediction_confidence_bucket{SEL}[W]))",
    "confidence_sum": "sum(increase(sentiops_prediction_confidence_sum{SEL}[W]))",
    "confidence_count": "sum(increase(sentiops_prediction_confidence_count{SEL}[W]))",
    "labels": "sum by (label) (increase(sentiops_predictions_total{SEL}[W]))",
    # only the random evaluation sample estimates accuracy (labels chosen for training do not)
    "feedback": "sum by (correct) (increase(sentiops_feedback_total{SEL_RANDOM}[W]))",
}


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class PrometheusSource:
    """`observe(version, seconds)` from a Prometheus server (`url` = http://host:9090)."""

    def __init__(self, url: str, model_name: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.model_name = model_name
        self.timeout = timeout

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as resp:  # noqa: S310
                body = json.load(resp)
        except (urllib.error.URLError, OSError, json.JSONDecodeError) as exc:
            raise RolloutError(
                f"Prometheus at {self.url} did not answer {promql!r}: {exc}",
                "check the Prometheus URL (the rollout ConfigMap's prometheusUrl) and that it "
                "scrapes the predictors",
            ) from exc
        if body.get("status") != "success":
            raise RolloutError(f"Prometheus refused {promql!r}: {body.get('error')}", "")
        return list(body["data"]["result"])

    def _scalar(self, promql: str) -> float:
        result = self.query(promql)
        value = float(result[0]["value"][1]) if result else 0.0
        return value if math.isfinite(value) else 0.0

    def _by(self, promql: str, label: str) -> dict[str, float]:
        out = {}
        for series in self.query(promql):
            value = float(series["value"][1])
            if math.isfinite(value):
                out[series["metric"].get(label, "")] = value
        return out

    def observe(self, version: str, seconds: float) -> Observed:
        labels = f"model_name={_quote(self.model_name)},model_version={_quote(version)}"
        window = f"{max(1, round(seconds))}s"
        q = {
            k: v.replace("{SEL}", f"{{{labels}}}")
            .replace("{SEL_RANDOM}", f'{{{labels},sample="random"}}')
            .replace("[W]", f"[{window}]")
            for k, v in QUERIES.items()
        }
        feedback = self._by(q["feedback"], "correct")
        return Observed(
            requests=self._scalar(q["requests"]),
            errors=self._scalar(q["errors"]),
            latency_buckets={float(k): v for k, v in self._by(q["latency"], "le").items()},
            confidence_buckets={float(k): v for k, v in self._by(q["confidence"], "le").items()},
            confidence_sum=self._scalar(q["confidence_sum"]),
            confidence_count=self._scalar(q["confidence_count"]),
            labels=self._by(q["labels"], "label"),
            feedback_correct=feedback.get("true", 0.0),
            feedback_total=sum(feedback.values()),
        )
