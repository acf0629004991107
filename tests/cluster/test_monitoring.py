"""Alert/recording rules (promtool), the Grafana dashboard, and metric names vs. the code.

Every metric a rule or a dashboard panel uses must be one that sentiops/metrics.py or KServe
exports (or a recording rule defined from them). A real Prometheus scrapes a loopback exporter
of sentiops.metrics + kserve.metrics and evaluates the rules.
"""

from __future__ import annotations

import json
import sys
import textwrap
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from sentiops import metrics

from .conftest import helm_template
from .harness import REPO, free_port, port_open, run, start, tool, wait_for_server
from .promql import metric_names

RULES = REPO / "monitoring" / "rules" / "sentiops.rules.yaml"
RULE_TESTS = sorted((REPO / "monitoring" / "tests").glob("*.test.yaml"))
DASHBOARD = REPO / "monitoring" / "dashboards" / "sentiops.json"
REQUIRED_ALERTS = {
    "SentimentHighLatencyP95": "p95 latency",
    "SentimentHighErrorRate": "error rate",
    "SentimentModelNotReady": "model not ready",
    "SentimentDriftDetected": "drift detected",
    "SentimentLiveAccuracyDrop": "live accuracy drop",
    "SentimentCanaryWorseThanStable": "canary worse than stable",
    "SentimentLabelsHeldForReview": "labels held by the poisoning guard",
    "SentimentEstimatedAccuracyDrop": "estimated accuracy (no labels) below validation",
}


def canonical_groups() -> list[dict]:
    return yaml.safe_load(RULES.read_text())["groups"]


def recorded_names(groups: list[dict]) -> set[str]:
    return {r["record"] for g in groups for r in g["rules"] if "record" in r}


def normalise(groups: list[dict]) -> list[dict]:
    """Whitespace-insensitive form of rule groups (YAML folding differs between files)."""

    def norm(value):
        if isinstance(value, str):
            return " ".join(value.split())
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items()}
        if isinstance(value, list):
            return [norm(v) for v in value]
        return value

    return norm(groups)


# ---------------------------------------------------------------- promtool


def test_promtool_check_rules() -> None:
    out = run([tool("promtool"), "check", "rules", str(RULES)]).stdout
    assert "SUCCESS" in out


def test_promtool_unit_tests_pass() -> None:
    assert RULE_TESTS
    out = run([tool("promtool"), "test", "rules", *map(str, RULE_TESTS)])
    assert "SUCCESS" in out.stdout + out.stderr


def test_every_alert_is_required_and_unit_tested() -> None:
    alerts = {r["alert"] for g in canonical_groups() for r in g["rules"] if "alert" in r}
    assert set(REQUIRED_ALERTS) <= alerts
    fired, quiet = set(), set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for t in case.get("alert_rule_test", []):
                (fired if t.get("exp_alerts") else quiet).add(t["alertname"])
    assert alerts <= fired, f"alerts never shown firing: {alerts - fired}"
    assert set(REQUIRED_ALERTS) <= quiet | fired


def test_chart_and_kustomize_ship_the_canonical_rules(helm_docs, overlay_docs, tmp_path) -> None:
    """The templated PrometheusRule with default values equals monitoring/rules (promtool'd)."""
    for render, docs in {"helm": helm_docs, **overlay_docs}.items():
        (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
        assert normalise(rule["spec"]["groups"]) == normalise(canonical_groups()), render
    # and the chart's rules with other thresholds are still valid rules
    docs = helm_template(
        "alerts.latencyP95Seconds=1.5,alerts.errorRatio=0.1,alerts.latencyFor=2m", namespace=None
    )
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    assert "SUCCESS" in run([tool("promtool"), "check", "rules", str(path)]).stdout


# ---------------------------------------------------------------- metric names


def allowed_names() -> set[str]:
    return set(metrics.ALL_METRICS) | recorded_names(canonical_groups())


def test_promql_name_extraction_handles_suffixes() -> None:
    allowed = allowed_names()
    # the exposed names of a histogram / counter, not their base names
    assert "sentiops_prediction_confidence_bucket" in allowed
    assert "sentiops_prediction_confidence" not in allowed
    assert "sentiops_predictions_total" in allowed
    assert "sentiops_predictions" not in allowed
    assert "request_predict_seconds_count" in allowed
    assert metric_names(
        'histogram_quantile(0.9, sum by (le) (rate(request_predict_seconds_bucket{a="b"}[5m])))'
    ) == {"request_predict_seconds_bucket"}
    assert metric_names("rate(sentiops_predictions[5m])") == {"sentiops_predictions"}


def test_rules_use_only_exported_metrics() -> None:
    allowed = allowed_names()
    used = set()
    for group in canonical_groups():
        for rule in group["rules"]:
            names = metric_names(rule["expr"])
            assert names, rule
            assert names <= allowed, f"{rule.get('alert') or rule.get('record')}: {names - allowed}"
            used |= names
    # the rules really cover the code's metrics
    assert {
        "sentiops_predictions_total",
        "sentiops_request_errors_total",
        "sentiops_drift_detected",
        "sentiops_live_accuracy",
        "sentiops_estimated_accuracy",
        "sentiops_validation_accuracy",
        "request_predict_seconds_bucket",
    } <= used


def dashboard_exprs(dash: dict) -> list[tuple[str, str]]:
    exprs = [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            exprs.append((f"${var['name']}", query))
    return exprs


def test_dashboard_uses_only_exported_metrics() -> None:
    allowed = allowed_names()
    dash = json.loads(DASHBOARD.read_text())
    for title, expr in dashboard_exprs(dash):
        names = metric_names(expr)
        assert names, (title, expr)
        assert names <= allowed, f"panel {title!r}: {names - allowed}"


def test_dashboard_structure() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in dash["panels"]:
        assert p["type"] in {"timeseries", "heatmap", "stat", "gauge", "bargauge", "table"}
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        g = p["gridPos"]
        assert all(isinstance(g[k], int) for k in "hwxy") and g["x"] + g["w"] <= 24
        cell = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cell & cells, f"panel {p['title']!r} overlaps another"
        cells |= cell
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)) and all(t["expr"].strip() for t in p["targets"])
    # the topics the dashboard must show, each backed by the right metric
    topics = {
        "traffic": "sentiops_predictions_total",
        "latency": "request_predict_seconds_bucket",
        "label mix": "sentiops_predictions_total",
        "confidence": "sentiops_prediction_confidence_bucket",
        "drift p-values": "sentiops_drift_p_value",
        "canary vs stable": "sentiops:traffic_share:ratio5m",
        "live accuracy": "sentiops_live_accuracy",
    }
    panels = {p["title"].lower(): p for p in dash["panels"]}
    for topic, metric in topics.items():
        hits = [
            t
            for title, p in panels.items()
            if topic in title
            for t in p["targets"]
            if metric in metric_names(t["expr"])
            or (metric.startswith("request_predict") and "p95_5m" in t["expr"])
        ]
        assert hits, f"no {topic!r} panel using {metric}"


# ---------------------------------------------------------------- a real Prometheus

EXPORTER = textwrap.dedent(
    """
    import sys, time
    import kserve.metrics as km
    from prometheus_client import start_http_server
    from sentiops import metrics as m

    # stable v3 (90% of traffic) and canary v4 (10%), v4 less accurate
    for version, n, acc in (("3", 90, 0.9), ("4", 10, 0.7)):
        m.PREDICTIONS.labels("sentiment", version, "positive").inc(n)
        m.PREDICTION_CONFIDENCE.labels("sentiment", version).observe(0.9)
        m.REQUEST_LATENCY.labels("sentiment", version).observe(0.01)
        m.LIVE_ACCURACY.labels("sentiment", version).set(acc)
        m.LIVE_MACRO_F1.labels("sentiment", version).set(acc - 0.05)
        m.LIVE_LABELS.labels("sentiment", version).set(100)
        m.FEEDBACK.labels("sentiment", version, "true", "random").inc(80)
    m.REQUEST_ERRORS.labels("sentiment", "1", "invalid_input").inc()
    m.BATCH_SIZE.labels("sentiment").observe(8)
    m.INPUT_LENGTH.labels("sentiment").observe(80)
    m.INFERENCE_LOG_EVENTS.labels("sent").inc()
    for test in ("combined", "embedding", "label_mix", "confidence"):
        m.DRIFT_P_VALUE.labels("sentiment", "3", test).set(0.001)
    m.DRIFT_DETECTED.labels("sentiment", "3").set(1)
    m.DRIFT_CONSECUTIVE.labels("sentiment", "3").set(2)
    m.DRIFT_WINDOW_SIZE.labels("sentiment", "3").set(120)
    m.DRIFT_WINDOWS.labels("sentiment", "3", "drift").inc()
    m.DRIFT_TEST_SECONDS.observe(0.4)
    m.DRIFT_EVENTS.labels("accepted").inc(400)
    m.MIRROR_REQUESTS.labels("sent").inc(10)
    m.DRIFT_BAD_EVENTS.labels("not_json").inc()
    m.PREDICTION_LOG_ROWS.labels("written").inc(200)
    m.PREDICTION_LOG_ERRORS.inc()
    m.PREDICTION_LOG_BUFFERED.set(3)
    m.LABELLING_QUEUED.labels("sentiment", "3").inc(100)
    m.RETRAIN_TRIGGERS.labels("sentiment", "triggered", "drift_with_labels").inc()
    m.ESTIMATED_ACCURACY.labels("sentiment", "3").set(0.62)
    m.ESTIMATED_ACCURACY_LOW.labels("sentiment", "3").set(0.55)
    m.ESTIMATED_ACCURACY_HIGH.labels("sentiment", "3").set(0.69)
    m.ESTIMATED_MACRO_F1.labels("sentiment", "3").set(0.5)
    m.ESTIMATED_MACRO_F1_LOW.labels("sentiment", "3").set(0.43)
    m.ESTIMATED_MACRO_F1_HIGH.labels("sentiment", "3").set(0.57)
    m.ESTIMATED_RECALL.labels("sentiment", "3", "neutral").set(0.3)
    m.VALIDATION_ACCURACY.labels("sentiment", "3").set(0.8)
    m.ESTIMATE_ERROR.labels("sentiment", "3").set(0.04)
    m.ESTIMATE_ERROR_LABELS.labels("sentiment", "3").set(120)
    km.PREDICT_HIST_TIME.labels("sentiment").observe(0.2)
    start_http_server(int(sys.argv[1]), addr="127.0.0.1")
    while True:
        m.PREDICTIONS.labels("sentiment", "3", "positive").inc(9)
        m.PREDICTIONS.labels("sentiment", "4", "positive").inc(1)
        km.PREDICT_HIST_TIME.labels("sentiment").observe(0.2)
        time.sleep(0.2)
    """
)


def prom_query(port: int, path: str, **params: str) -> dict:
    url = f"http://127.0.0.1:{port}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (loopback only)
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]


@pytest.mark.integration
def test_real_prometheus_scrapes_the_code_and_evaluates_the_rules(tmp_path: Path) -> None:
    prometheus = tool("prometheus")
    exporter_port, prom_port = free_port(), free_port()
    (tmp_path / "exporter.py").write_text(EXPORTER)
    rules = tmp_path / "rules.yaml"
    # evaluate every group each second (the shipped file evaluates recordings every 30s)
    groups = canonical_groups()
    for g in groups:
        g["interval"] = "1s"
    rules.write_text(yaml.safe_dump({"groups": groups}))
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "scrape_configs": [
                    {
                        "job_name": "sentiops-predictor",
                        "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
                    }
                ],
            }
        )
    )
    exporter = start(
        "exporter", [sys.executable, str(tmp_path / "exporter.py"), str(exporter_port)], tmp_path
    )
    prom = None
    try:
        wait_for_server(lambda: port_open(exporter_port), exporter, 30, "exporter listening")
        prom = start(
            "prometheus",
            [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--log.level=warn",
            ],
            tmp_path,
        )
        wait_for_server(lambda: port_open(prom_port), prom, 30, "prometheus listening")

        def has(query: str) -> bool:
            try:
                return bool(prom_query(prom_port, "/api/v1/query", query=query)["result"])
            except OSError:
                return False

        # every name the code declares is really scraped
        wait_for_server(lambda: has('up{job="sentiops-predictor"} == 1'), prom, 30, "target up")
        for name in metrics.EXPORTED_METRICS + ("request_predict_seconds_bucket",):
            wait_for_server(lambda n=name: has(n), prom, 15, f"series {name}")
        # recording rules produce data from the scraped series (rates need a few scrapes)
        wait_for_server(
            lambda: has("sentiops:traffic_share:ratio5m < 0.5"), prom, 40, "traffic share"
        )
        groups = prom_query(prom_port, "/api/v1/rules")["groups"]
        bad = [
            (r["name"], r.get("lastError"))
            for g in groups
            for r in g["rules"]
            if r["health"] == "err"
        ]
        assert not bad

        # drift and canary alerts are pending (their `for:` has not elapsed)
        def pending() -> set[str]:
            alerts = prom_query(prom_port, "/api/v1/alerts")["alerts"]
            return {a["labels"]["alertname"] for a in alerts if a["state"] == "pending"}

        wait_for_server(
            lambda: (
                {
                    "SentimentDriftDetected",
                    "SentimentCanaryWorseThanStable",
                    "SentimentEstimatedAccuracyDrop",
                }
                <= pending()
            ),
            prom,
            30,
            "drift + canary + estimated-accuracy alerts pending",
        )
        assert "SentimentModelNotReady" not in pending()
    finally:
        if prom is not None:
            prom.stop()
        exporter.stop()
