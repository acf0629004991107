"""Gate and register: the one orchestration that `sentiops gate`, the pipeline's gate/register
stages and the tests all call.

    gate_challenger   resolve the champion (registry alias, a directory, an s3:// prefix or
                      none), decide on one labelled test set, record the decision in the registry
    register          push an approved model to `<store>/models/<name>/<version>/` and make it
                      the registry's `candidate`
    promote_local     the embedded default's explicit step candidate -> champion, for as long as
                      no canary rollout decides it

(The canary rollout settles the registry itself: `sentiops.rollout.settle`.)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentiops.config import MODEL_NAME, REGISTERED_MODEL, Settings, model_uri
from sentiops.data.datasets import LABEL, SAMPLE, SOURCE, TEXT
from sentiops.errors import GateRejected
from sentiops.gate.decision import Decision, decide
from sentiops.models import LoadedModel, load_model, modeldir
from sentiops.params import GateConfig
from sentiops.registry import lifecycle as registry
from sentiops.registry import tracking
from sentiops.store import storage

if TYPE_CHECKING:
    import pandas as pd

NO_CHAMPION = "none"
FROM_REGISTRY = ""


def resolve_champion(
    source: str,
    dest: Path,
    registered_model: str = REGISTERED_MODEL,
    settings: Settings | None = None,
) -> tuple[LoadedModel | None, str | None]:
    """The champion to beat and its registry version.

    `source`: "" = the registry's `champion` alias (none on the first run), "none" = no
    champion, anything else = a model directory or an s3:// prefix.
    """
    if source == NO_CHAMPION:
        return None, None
    if source != FROM_REGISTRY:
        return load_model(storage.get_dir(source, dest, settings)), None
    tracking.configure(
        settings
    )  # raises when MLflow is unreachable: never mistake that for "no alias"
    version = registry.version_of(registry.CHAMPION, registered_model)
    if version is None:
        return None, None
    return load_model(registry.download(version, dest, registered_model)), version


def gate_challenger(
    challenger: Path,
    test: pd.DataFrame,
    cfg: GateConfig,
    champion_source: str,
    work: Path,
    dataset_version: str | None = None,
    *,
    registered_model: str = REGISTERED_MODEL,
    challenger_registry_version: str | None = None,
    settings: Settings | None = None,
) -> Decision:
    """Decide challenger vs champion on the labelled `test` table (text, label, and the data
    source of each row when there is one); with a registry version, record the decision on it
    (`gate.*` tags). The record lists the test rows per source (`dataset.test_sources`); with
    more than one source, the original and the added rows weigh the same (`split.groups`)."""
    from sentiops.data.split import groups  # lazy: pulls sklearn

    test_sources = (
        {str(k): int(v) for k, v in test[SOURCE].value_counts().items()}
        if SOURCE in test.columns
        else None
    )
    champion, champion_version = resolve_champion(
        champion_source, work / "champion", registered_model, settings
    )
    decision = decide(
        load_model(challenger),
        test[TEXT].tolist(),
        test[LABEL].tolist(),
        champion,
        cfg,
        dataset_version,
        challenger_registry_version=challenger_registry_version or None,
        champion_registry_version=champion_version,
        groups=groups(test),
    )
    if test_sources:
        decision.dataset["test_sources"] = dict(test_sources)
    if SAMPLE in test.columns:  # live labels: which sample the test rows came from
        samples = test[SAMPLE].fillna("").replace("", "not live labels")
        counts = samples.value_counts().items()
        decision.dataset["test_samples"] = {str(k): int(v) for k, v in counts}
        decision.dataset["test_samples_note"] = (
            "live labels test only when they are of the random evaluation sample (an unbiased "
            "sample of the traffic); labels chosen for training (targeted) never test"
        )
    if challenger_registry_version:
        tracking.configure(settings)
        registry.record_gate(decision, challenger_registry_version, registered_model)
    return decision


def register(
    model_dir: Path,
    decision: Decision | dict[str, Any],
    store: str,
    model_name: str = MODEL_NAME,
    registered_model: str = REGISTERED_MODEL,
    registry_version: str | None = None,
    settings: Settings | None = None,
) -> dict[str, str]:
    """Push an approved model to `<store>/models/<name>/<version>/`; with a registry version,
    make it the `candidate` (with its storage URI).

    `store` is `s3://bucket` (MinIO on the cluster) or a local directory. The model directory's
    checksums are verified before upload and every object carries its sha256. The version is
    the MLflow registry version when there is one, else the model directory's content version.
    """
    approved = decision.approved if isinstance(decision, Decision) else decision.get("approved")
    if approved is not True:
        raise GateRejected(
            "refusing to register a model the gate did not approve",
            "register runs only when the gate approves",
        )
    manifest = modeldir.read_manifest(model_dir)
    version = registry_version or str(manifest["version"])
    uri = storage.put_dir(model_dir, model_uri(store, version, model_name), settings)
    if registry_version:
        tracking.configure(settings)
        registry.mark_candidate(registry_version, uri, decision, registered_model)
    return {"uri": uri, "version": version, "model_version": str(manifest["version"])}


def promote_local(
    registry_version: str,
    registered_model: str = REGISTERED_MODEL,
    settings: Settings | None = None,
) -> str | None:
    """candidate -> champion without a canary (the embedded default until a rollout decides).
    Returns the previous champion's version."""
    tracking.configure(settings)
    return registry.promote(
        registry_version,
        "local pipeline: promoted after the gate (no canary rollout in this run)",
        registered_model,
    )
