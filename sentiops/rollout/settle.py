"""The registry follows the rollout: run the canary rollout of the candidate and settle the
registry with its outcome (promoted -> `champion`; rolled back -> the candidate is rejected
with the reasons). The pipeline's rollout step calls it."""

from __future__ import annotations

from typing import Any

from sentiops.config import REGISTERED_MODEL, Settings
from sentiops.errors import RolloutError
from sentiops.registry import lifecycle as registry
from sentiops.registry import tracking
from sentiops.rollout.record import PROMOTED
from sentiops.rollout.steps import run


def roll_out(
    plan: Any,
    executor: Any,
    source: Any,
    registry_version: str | None,
    registered_model: str = REGISTERED_MODEL,
    settings: Settings | None = None,
    progress: Any = print,
    **hooks: Any,
) -> Any:
    """Run the canary rollout of the candidate and settle the registry with its outcome:
    promoted -> `champion` (the old one becomes `previous`); rolled back -> the candidate is
    rejected with the reasons and `champion` stays. The store and the registry never disagree
    about what serves. `hooks`: `steps.run`'s keyword arguments (gate, notifier, record_url,
    model). Returns the rollout record (`sentiops.rollout.record.Record`)."""
    try:
        record = run(plan, executor, source, progress=progress, **hooks)
    except RolloutError as exc:
        if registry_version:
            tracking.configure(settings)
            registry.reject(registry_version, [exc.message], registered_model)
        raise
    if registry_version:
        tracking.configure(settings)
        settle(record, registry_version, registered_model)
    return record


def settle(
    record: Any, registry_version: str | None, registered_model: str = REGISTERED_MODEL
) -> str:
    """The registry follows a finished rollout (`record`); returns what it did, in words."""
    if not registry_version:
        return "no registry version"
    if record.decision == PROMOTED:
        registry.promote(registry_version, "; ".join(record.reasons), registered_model)
        return f"v{registry_version} champion"
    registry.reject(registry_version, list(record.reasons), registered_model)
    return f"v{registry_version} rejected"
