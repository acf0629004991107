"""The model lifecycle, owned in one place, over MLflow registry aliases.

    challenger  trained and registered (every training run)
    candidate   approved by the gate and pushed to the store (`<store>/models/<name>/<version>`)
    champion    serving 100 % of traffic
    previous    the champion before the current one (what a rollback goes back to)

Transitions, each recorded as tags on the model version (`lifecycle.stage`,
`lifecycle.<stage>_at`, `lifecycle.<stage>_reason`):

    mark_challenger(v)              after training
    record_gate(decision, v)        the gate's record (`gate.*` tags) on v and its run
    mark_candidate(v, uri, ...)     only if the gate approved v; remembers the storage URI
    promote(v, reason)              v must be the candidate: champion -> previous, v -> champion
    reject(v, reasons)              v must be the candidate: champion stays where it was
    revert(reason)                  champion <-> previous (a person's rollback after promotion)

Only the rollout (or, where there is none, the local pipeline's explicit promote step) calls
`promote`/`reject`, so the registry's champion is always the model that serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentiops.config import REGISTERED_MODEL
from sentiops.errors import GateRejected, ModelError, RegistryError, TrackingError
from sentiops.registry import tracking

if TYPE_CHECKING:
    from sentiops.gate.decision import Decision

CHALLENGER, CANDIDATE, CHAMPION, PREVIOUS = "challenger", "candidate", "champion", "previous"
ALIASES = (CHALLENGER, CANDIDATE, CHAMPION, PREVIOUS)
STORAGE_URI_TAG = "storage_uri"
REJECTED = "rejected"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _tag(version: str, tags: dict[str, str], name: str, with_run: bool = False) -> None:
    client = tracking.client()
    try:
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
        if with_run:
            run_id = client.get_model_version(name, version).run_id
            for key, value in tags.items():
                if run_id:
                    client.set_tag(run_id, key, value)
    except Exception as exc:  # noqa: BLE001 - any MLflow failure is a tracking failure
        raise TrackingError(
            f"MLflow refused tags on {name} v{version}: {exc}",
            "check MLFLOW_TRACKING_URI and that the version exists",
        ) from exc


def _transition(version: str, stage: str, reason: str, name: str) -> None:
    _tag(
        version,
        {
            "lifecycle.stage": stage,
            f"lifecycle.{stage}_at": _now(),
            f"lifecycle.{stage}_reason": reason[:4900],
        },
        name,
    )


def version_of(alias: str, name: str = REGISTERED_MODEL) -> str | None:
    """The registry version behind `alias` (None if there is none; an outage raises)."""
    return tracking.get_alias_version(name, alias)


def latest_version(name: str = REGISTERED_MODEL) -> str | None:
    """The newest registered version (None before the first)."""
    try:
        versions = tracking.client().search_model_versions(f"name='{name}'")
    except Exception as exc:  # noqa: BLE001
        raise TrackingError(f"cannot list the versions of {name}: {exc}", "check MLflow") from exc
    newest = max((int(v.version) for v in versions), default=None)
    return None if newest is None else str(newest)


def tags_of(version: str, name: str = REGISTERED_MODEL) -> dict[str, str]:
    try:
        return dict(tracking.client().get_model_version(name, version).tags)
    except Exception as exc:  # noqa: BLE001
        raise TrackingError(f"MLflow has no {name} v{version}: {exc}", "check the version") from exc


def log_training(
    model_dir: Any,
    run_name: str,
    params: dict[str, Any],
    tags: dict[str, str],
    metrics: dict[str, dict[str, Any]],
    register_as: str | None = REGISTERED_MODEL,
) -> dict[str, Any]:
    """`tracking.log_training` (the run, the registered version), then the version becomes
    the `challenger`: the lifecycle's first move."""
    out = tracking.log_training(model_dir, run_name, params, tags, metrics, register_as)
    if register_as and out.get("registered_version"):
        mark_challenger(out["registered_version"], register_as)
    return out


def mark_challenger(version: str, name: str = REGISTERED_MODEL, reason: str = "trained") -> None:
    tracking.set_alias(name, CHALLENGER, version)
    _transition(version, CHALLENGER, reason, name)


def record_gate(decision: Decision, version: str, name: str = REGISTERED_MODEL) -> None:
    """The gate's decision as `gate.*` tags on the version and its training run."""
    _tag(version, gate_tags(decision), name, with_run=True)


def gate_tags(decision: Decision) -> dict[str, str]:
    """Flat `gate.*` tags for the challenger's model version and run."""
    tags = {
        "gate.approved": str(decision.approved).lower(),
        "gate.delta_macro_f1": f"{decision.delta_macro_f1:.6f}",
        "gate.challenger_macro_f1": f"{decision.challenger.macro_f1:.6f}",
        "gate.champion_version": str(decision.champion.version if decision.champion else "none"),
        "gate.champion_registry_version": str(
            (decision.champion.registry_version if decision.champion else None) or "none"
        ),
        "gate.challenger_version": str(decision.challenger.version),
        "gate.dataset_version": str(decision.dataset.get("version")),
        "gate.decided_at": decision.decided_at,
        "gate.reasons": "; ".join(decision.reasons)[:4900],
    }
    if decision.bootstrap:
        tags["gate.confidence"] = f"{decision.bootstrap.confidence:.4f}"
        tags["gate.ci_low"] = f"{decision.bootstrap.ci_low:.6f}"
        tags["gate.ci_high"] = f"{decision.bootstrap.ci_high:.6f}"
    for c in decision.checks:
        tags[f"gate.check.{c.name}"] = "pass" if c.passed else "fail"
    tags |= {f"gate.threshold.{k}": str(v) for k, v in decision.thresholds.items()}
    return tags


def _approved(decision: Decision | dict[str, Any]) -> bool:
    value = decision.approved if hasattr(decision, "approved") else decision.get("approved")
    return value is True


def mark_candidate(
    version: str,
    storage_uri: str,
    decision: Decision | dict[str, Any],
    name: str = REGISTERED_MODEL,
    reason: str = "gate approved; pushed to the store",
) -> None:
    """The gate approved `version` and it is in the store at `storage_uri`."""
    if not _approved(decision):
        raise GateRejected(
            f"{name} v{version} was not approved by the gate",
            "a model becomes the candidate only on the gate's approval",
        )
    _tag(version, {STORAGE_URI_TAG: storage_uri}, name)
    tracking.set_alias(name, CANDIDATE, version)
    _transition(version, CANDIDATE, reason, name)


def _require_candidate(version: str, name: str, action: str) -> None:
    current = version_of(CANDIDATE, name)
    if current != version:
        raise RegistryError(
            f"cannot {action} {name} v{version}: the candidate is "
            + (f"v{current}" if current else "not set"),
            "only the gate-approved candidate can be promoted or rejected; "
            "run the pipeline (gate + register) first",
        )


def promote(version: str, reason: str, name: str = REGISTERED_MODEL) -> str | None:
    """The candidate `version` now serves 100 %: it becomes champion, the champion before
    becomes `previous`. Returns the previous champion's version (None on the first)."""
    _require_candidate(version, name, "promote")
    before = version_of(CHAMPION, name)
    if before and before != version:
        tracking.set_alias(name, PREVIOUS, before)
        _transition(before, PREVIOUS, f"replaced by v{version}: {reason}", name)
    tracking.set_alias(name, CHAMPION, version)
    _delete_alias(CANDIDATE, name)
    _transition(version, CHAMPION, reason, name)
    return before


def reject(version: str, reasons: list[str], name: str = REGISTERED_MODEL) -> None:
    """The candidate `version` was rolled back: the champion stays; the reasons are kept."""
    _require_candidate(version, name, "reject")
    _delete_alias(CANDIDATE, name)
    _transition(version, REJECTED, "; ".join(reasons) or "rolled back", name)


def revert(reason: str, name: str = REGISTERED_MODEL) -> tuple[str, str]:
    """Serve the previous champion again: `previous` becomes `champion` and the reverted
    champion becomes `previous`. Returns (reverted version, version now serving)."""
    back, current = version_of(PREVIOUS, name), version_of(CHAMPION, name)
    if back is None or current is None:
        raise RegistryError(
            "nothing to revert to: " + ("no champion" if current is None else "no previous"),
            "a revert needs a champion that replaced an earlier one",
        )
    tracking.set_alias(name, CHAMPION, back)
    tracking.set_alias(name, PREVIOUS, current)
    _transition(back, CHAMPION, f"reverted to: {reason}", name)
    _transition(current, "reverted", reason, name)
    return current, back


def _delete_alias(alias: str, name: str) -> None:
    try:
        tracking.client().delete_registered_model_alias(name, alias)
    except Exception as exc:  # noqa: BLE001
        raise TrackingError(f"MLflow refused to delete {name}@{alias}: {exc}", "") from exc


@dataclass
class Entry:
    alias: str
    version: str
    stage: str | None
    storage_uri: str | None
    tags: dict[str, str] = field(default_factory=dict)


def status(name: str = REGISTERED_MODEL) -> list[Entry]:
    """Every alias that is set, with its version, lifecycle stage and storage URI."""
    out = []
    for alias in ALIASES:
        version = version_of(alias, name)
        if version is not None:
            tags = tags_of(version, name)
            out.append(
                Entry(alias, version, tags.get("lifecycle.stage"), tags.get(STORAGE_URI_TAG), tags)
            )
    return out


def download(version: str, dest: Path, name: str = REGISTERED_MODEL) -> Path:
    """The SentiOps model directory of a registered version, downloaded under `dest`."""
    from sentiops.models import modeldir  # lazy: pulls cryptography

    local = tracking.download_artifacts(f"models:/{name}/{version}", dest)
    for manifest in sorted(local.rglob(modeldir.MANIFEST)):
        if (manifest.parent / "label_map.json").exists():
            return manifest.parent
    raise ModelError(
        f"no SentiOps model directory inside {name} v{version}",
        "the registered MLflow model was not logged by SentiOps",
    )
