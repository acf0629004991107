"""The console's charts: one time series per model version from Prometheus' range queries
(drift p-values, live accuracy, estimated accuracy beside the realized one, predictions per
second), on a common time axis."""

from __future__ import annotations

import math
import time
from typing import Any

from sentiops.config import MODEL_NAME
from sentiops.console.prometheus import PrometheusClient, selector

#: Charted series: (title, PromQL with {SEL} for the model selector, legend label, unit).
SERIES: dict[str, dict[str, str]] = {
    "drift": {
        "title": "drift p-value per model version (low = drift)",
        "promql": "min by (model_version, test) (sentiops_drift_p_value{SEL})",
        "legend": "v{model_version} {test}",
    },
    "accuracy": {
        "title": "live accuracy per model version",
        "promql": "avg by (model_version) (sentiops_live_accuracy{SEL})",
        "legend": "v{model_version}",
    },
    "estimate": {
        "title": "estimated accuracy (calibrated, no labels; dotted: 95 % interval) and realized "
        "live accuracy per model version",
        "promql": "label_replace(avg by (model_version) (sentiops_estimated_accuracy{SEL}), "
        '"kind", "estimated", "", "") or label_replace(avg by (model_version) '
        '(sentiops_estimated_accuracy_low{SEL}), "kind", "low", "", "") or label_replace(avg '
        'by (model_version) (sentiops_estimated_accuracy_high{SEL}), "kind", "high", "", "") '
        'or label_replace(avg by (model_version) (sentiops_live_accuracy{SEL}), "kind", '
        '"realized", "", "")',
        "legend": "v{model_version} {kind}",
    },
    "traffic": {
        "title": "predictions per second per model version",
        "promql": "sum by (model_version) (rate(sentiops_predictions_total{SEL}[1m]))",
        "legend": "v{model_version}",
    },
}
MAX_POINTS = 240


def series(
    prom: PrometheusClient,
    kind: str,
    minutes: float,
    model_name: str = MODEL_NAME,
    end: float | None = None,
) -> dict[str, Any]:
    """One chart's data on a common time axis: {"title", "t": [unix s], "series": [{"label",
    "values": [float | None]}]}, at most MAX_POINTS points. Raises Unavailable / KeyError."""
    spec = SERIES[kind]
    end = time.time() if end is None else end
    start = end - minutes * 60
    step = max(1.0, math.ceil(minutes * 60 / MAX_POINTS))
    promql = spec["promql"].replace("{SEL}", selector(model_name))
    result = prom.query_range(promql, start, end, step)
    stamps = sorted({float(t) for s in result for t, _ in s["values"]})
    index = {t: i for i, t in enumerate(stamps)}
    out = []
    for s in sorted(result, key=lambda s: _legend(spec["legend"], s["metric"])):
        values: list[float | None] = [None] * len(stamps)
        for t, v in s["values"]:
            x = float(v)
            values[index[float(t)]] = x if math.isfinite(x) else None
        out.append({"label": _legend(spec["legend"], s["metric"]), "values": values})
    return {
        "kind": kind,
        "title": spec["title"],
        "promql": promql,
        "t": stamps,
        "series": out,
        "start": start,
        "end": end,
        "step": step,
    }


def _legend(template: str, labels: dict[str, str]) -> str:
    class Missing(dict[str, str]):
        def __missing__(self, key: str) -> str:
            return "?"

    return template.format_map(Missing(labels))
