"""Rollout notifications over real HTTP on loopback: each body format arrives as its receiver
expects it (generic JSON, Slack's {text, blocks}, Alertmanager's /api/v2/alerts list); a dead,
a hung and a failing receiver are counted as failed (in the record and in Prometheus) and never
slow the rollout down."""

from __future__ import annotations

import time

import pytest
from prometheus_client import REGISTRY

from sentiops.errors import ConfigError
from sentiops.rollout import notify, simulate, steps
from sentiops.rollout.judge import JudgeConfig
from sentiops.rollout.record import PROMOTED, ROLLED_BACK

from .webhooks import Receiver, dead_url


def _rollout(targets: list[str], canary: simulate.Behaviour | None = None, timeout: float = 5.0):  # noqa: ANN202
    """A simulated rollout (steps 10/50/100 %, 1,000 requests a minute) notifying `targets`."""
    cfg = JudgeConfig(min_requests=20, max_error_rate_increase=0.005)
    plan = steps.RolloutPlan("2", "1", steps=[10, 50, 100], step_seconds=600, judge=cfg)
    sim = simulate.SimulatedRollout(
        1000, canary or simulate.Behaviour(), simulate.Behaviour(), seed=4
    )
    notifier = notify.Notifier(notify.parse_targets(targets), timeout=timeout)
    started = time.monotonic()
    record = simulate.simulate(
        plan,
        sim,
        notifier=notifier,
        model="sentiment",
        record_url="https://kfp.example/#/runs/details/r1",
    )
    return record, time.monotonic() - started


def _count(fmt: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "sentiops_rollout_notifications_total", {"format": fmt, "outcome": outcome}
    )
    return value or 0.0


def test_each_format_reaches_a_real_receiver() -> None:
    with Receiver() as generic, Receiver() as slack, Receiver() as am:
        sent = _count("alertmanager", "sent")
        targets = [
            f"generic={generic.url}/hook",
            f"slack={slack.url}/services/x",
            f"alertmanager={am.url}",
        ]
        record, _ = _rollout(targets, simulate.faulty("errors +1 pt"))
        assert record.decision == ROLLED_BACK
        ((path, body),) = generic.wait_for(1)
        assert path == "/hook" and body["event"] == "rollback"
        assert body["summary"] == "v2 rolled back at 10%" and body["reasons"][0].startswith(
            "error_rate: error rate: canary"
        )
        assert body["record_url"] == "https://kfp.example/#/runs/details/r1"
        assert (body["model"], body["canary_version"], body["stable_version"]) == (
            "sentiment",
            "2",
            "1",
        )
        assert (body["step"], body["traffic"], body["mode"]) == (1, 10, "canary")
        ((path, body),) = slack.wait_for(1)
        assert path == "/services/x" and body["text"] == "[rollback] v2 rolled back at 10%"
        assert [b["type"] for b in body["blocks"]] == ["section", "section", "context"]
        assert (
            "<https://kfp.example/#/runs/details/r1|decision record>"
            in body["blocks"][-1]["elements"][0]["text"]
        )
        ((path, body),) = am.wait_for(1)
        assert path == "/api/v2/alerts" and isinstance(body, list)
        (alert,) = body
        assert alert["labels"]["alertname"] == "SentiOpsRollout"
        assert alert["labels"]["event"] == "rollback" and alert["labels"]["severity"] == "warning"
        assert alert["generatorURL"] == "https://kfp.example/#/runs/details/r1"
        assert alert["annotations"]["summary"] == "v2 rolled back at 10%"
        assert alert["startsAt"] < alert["endsAt"]
    assert record.notifications == {"sent": 3}
    assert _count("alertmanager", "sent") == sent + 1


def test_holds_and_promotions_are_sent_too() -> None:
    with Receiver() as generic:
        plan = steps.RolloutPlan(
            "2", "1", steps=[10, 100], step_seconds=600, judge=JudgeConfig(min_requests=150)
        )
        sim = simulate.SimulatedRollout(1000, simulate.Behaviour(), simulate.Behaviour(), seed=4)
        notifier = notify.Notifier(notify.parse_targets([generic.url]))
        # 10 % of 1,000 a minute for 10 minutes is ~1,000: no hold; at 100 rpm there would be
        sim.rpm = 100
        record = simulate.simulate(plan, sim, notifier=notifier)
        holds = sum(s.verdict == "hold" for s in record.steps)
        events = [b["event"] for _, b in generic.wait_for(holds + 1)]
    assert record.decision == PROMOTED and holds >= 1
    assert events == ["hold"] * holds + ["promote"]


def test_a_dead_a_hung_and_a_failing_receiver_never_slow_the_rollout() -> None:
    """Refused, never answered, answered 500: each post fails and is counted; the rollout
    takes no longer than the close's bounded wait, and the record says what failed."""
    with Receiver(hang=True) as hung, Receiver(status=500) as failing, Receiver() as fine:
        failed_before = _count("generic", "failed")
        record, took = _rollout(
            [dead_url(), f"generic={hung.url}", f"generic={failing.url}", f"slack={fine.url}"],
            simulate.faulty("errors +1 pt"),
            timeout=1.0,
        )
        assert record.decision == ROLLED_BACK
        assert took < 5.0  # a hung receiver costs at most its timeout, in its own thread
        assert fine.wait_for(1) and failing.wait_for(1) and hung.wait_for(1)
    assert record.notifications == {"sent": 1, "failed": 3}
    assert _count("generic", "failed") == failed_before + 3


def test_a_full_queue_drops_and_counts_instead_of_waiting() -> None:
    with Receiver(hang=True) as hung:
        notifier = notify.Notifier(notify.parse_targets([hung.url]), timeout=2.0, max_queued=2)
        started = time.monotonic()
        for i in range(6):
            notifier.send(notify.Notification("hold", f"held {i}"))
        assert time.monotonic() - started < 0.5
        counts = notifier.close(wait=0.2)
    assert counts.get("dropped", 0) >= 3


def test_targets_are_format_equals_url() -> None:
    assert notify.parse_targets(
        ["https://a/x, slack=https://b/y", "alertmanager=http://am:9093"]
    ) == [
        notify.Target("generic", "https://a/x"),
        notify.Target("slack", "https://b/y"),
        notify.Target("alertmanager", "http://am:9093"),
    ]
    assert (
        notify.Target("alertmanager", "http://am:9093/").endpoint == "http://am:9093/api/v2/alerts"
    )
    for bad in ("teams=https://x", "slack=ftp://x", "slack"):
        with pytest.raises(ConfigError, match="FORMAT=URL"):
            notify.parse_targets([bad])
