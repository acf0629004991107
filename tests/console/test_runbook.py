"""docs/operations.md has a runbook section for every alert in monitoring/rules, headed
`### <alert> (<severity>)`, each saying what it means, where to look and what to do."""

from __future__ import annotations

import re

import yaml

from tests.console.conftest import REPO


def test_every_alert_has_a_runbook() -> None:
    alerts = {
        rule["alert"]: rule["labels"]["severity"]
        for path in sorted((REPO / "monitoring" / "rules").glob("*.yaml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    doc = (REPO / "docs" / "operations.md").read_text()
    sections = {}
    for block in re.split(r"^(?=##)", doc, flags=re.M):
        m = re.match(r"### (\w+) \((\w+)\)\n", block)
        if m:
            sections[m[1]] = (m[2], block)
    assert alerts and set(alerts) <= set(sections), set(alerts) - set(sections)
    for name, severity in alerts.items():
        documented, body = sections[name]
        assert documented == severity, name
        for part in ("**Means.**", "**Look at.**", "**Do.**"):
            assert part in body, (name, part)
