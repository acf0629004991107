"""sentiops/metrics.py declares exactly what its objects expose (and KServe's real names)."""

from __future__ import annotations

import importlib

from prometheus_client import metrics as prom_metrics

from sentiops import metrics


def exposed_names(module_name: str) -> set[str]:
    """Sample names the module's collectors expose (without prometheus_client's _created)."""
    module = importlib.import_module(module_name)
    names: set[str] = set()
    for obj in vars(module).values():
        if isinstance(obj, prom_metrics.MetricWrapperBase):
            for family in obj.collect():
                names.update(s.name for s in family.samples)
                if obj._type == "histogram":  # a labelled histogram has no samples yet
                    names.update(f"{family.name}{x}" for x in ("_bucket", "_sum", "_count"))
                elif obj._type == "counter":
                    names.add(f"{family.name}_total")
                else:
                    names.add(family.name)
    return {n for n in names if not n.endswith("_created")}


def test_exported_metrics_match_the_objects() -> None:
    assert exposed_names("sentiops.metrics") == set(metrics.EXPORTED_METRICS)
    assert len(set(metrics.EXPORTED_METRICS)) == len(metrics.EXPORTED_METRICS)


def test_kserve_metrics_are_kserves_real_names() -> None:
    assert exposed_names("kserve.metrics") == set(metrics.KSERVE_METRICS)


def test_required_metrics_and_labels() -> None:
    expected = {
        metrics.PREDICTIONS: ("counter", ("model_name", "model_version", "label")),
        metrics.PREDICTION_CONFIDENCE: ("histogram", ("model_name", "model_version")),
        metrics.REQUEST_ERRORS: ("counter", ("model_name", "model_version", "reason")),
        metrics.REQUEST_LATENCY: ("histogram", ("model_name", "model_version")),
        metrics.DRIFT_P_VALUE: ("gauge", ("model_name", "model_version", "test")),
        metrics.DRIFT_DETECTED: ("gauge", ("model_name", "model_version")),
        metrics.DRIFT_WINDOW_SIZE: ("gauge", ("model_name", "model_version")),
        metrics.LIVE_ACCURACY: ("gauge", ("model_name", "model_version")),
        metrics.LIVE_MACRO_F1: ("gauge", ("model_name", "model_version")),
        metrics.FEEDBACK: ("counter", ("model_name", "model_version", "correct", "sample")),
        metrics.RETRAIN_TRIGGERS: ("counter", ("model_name", "outcome", "reason")),
    }
    for obj, (kind, labels) in expected.items():
        assert obj._type == kind, obj
        assert tuple(obj._labelnames) == labels, obj
