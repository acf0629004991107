"""Warm start (`--base-model champion`): a transformer fine-tunes the registry's champion when
the champion is a transformer (its model directory is a Hugging Face checkpoint: the PyTorch
weights, config and tokenizer are kept beside the serving form), else the offline base model.

Training resolves the spec here, where it meets the registry, before the model type sees it
(`sentiops.models` knows no registry)."""

from __future__ import annotations

from pathlib import Path

from sentiops.registry import lifecycle as registry

#: Warm start: fine-tune the serving champion's weights (when it is a transformer) instead of
#: the base model; otherwise `offline`.
CHAMPION = "champion"


def base_model(spec: str) -> str:
    """`spec`, with `champion` turned into the champion's checkpoint (else the offline base
    model's path); any other spec is the model type's to resolve."""
    if spec != CHAMPION:
        return spec
    from sentiops.models.transformer import offline_model_path  # lazy: pulls torch

    found = champion_checkpoint()
    return str(found) if found is not None else str(offline_model_path())


def champion_checkpoint() -> Path | None:
    """The registry's champion as a Hugging Face checkpoint (its model directory: the PyTorch
    weights, config and tokenizer are kept beside the serving form), or None when there is no
    champion or it is not a transformer. The champion is verified like any model that is
    loaded (signature, checksums: `modeldir.read_manifest`) before its weights are trained on:
    a forged champion fails the run with a ModelError instead of seeding the next model."""
    from sentiops.models import modeldir  # lazy: pulls cryptography
    from sentiops.models.transformer import MODEL_TYPE  # lazy: pulls torch

    try:
        from sentiops.store.storage import local_model  # lazy: pulls minio

        version = registry.version_of(registry.CHAMPION)
        uri = registry.tags_of(version).get(registry.STORAGE_URI_TAG) if version else None
        if not uri:
            return None
        folder = local_model(uri)
    except Exception:  # noqa: BLE001 - no registry, no champion: start from the base model
        return None
    manifest = modeldir.read_manifest(folder)
    if manifest.get("model_type") != MODEL_TYPE or not (folder / "config.json").exists():
        return None
    return folder
