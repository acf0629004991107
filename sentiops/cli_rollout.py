"""`sentiops rollout status | rollback`: the canary rollout for people.

Registered on the main app in sentiops/cli.py (`register_commands(app)`). The pipeline's
`rollout` step does rollouts on a cluster; these commands show and undo them.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from sentiops.cli_pipeline import console, handled

rollout_app = typer.Typer(no_args_is_help=True, help="Canary rollouts: status and rollback.")

Namespace = Annotated[
    str | None,
    typer.Option(help="namespace of the InferenceService (omit: the registry only)"),
]
Kubeconfig = Annotated[
    str | None, typer.Option(help="kubeconfig (default $KUBECONFIG; in a pod: its account)")
]


def register_commands(app: typer.Typer) -> None:
    app.add_typer(rollout_app, name="rollout")


def _executor(namespace: str, kubeconfig: str | None):  # noqa: ANN202
    from sentiops.rollout_kserve import KServeExecutor, api_client, load_settings

    api = api_client(kubeconfig)
    cfg = load_settings(api, namespace)
    return KServeExecutor(api, namespace, cfg.inference_service, "", "")


@rollout_app.command("status")
@handled
def status(namespace: Namespace = None, kubeconfig: Kubeconfig = None) -> None:
    """What the registry says serves (champion, candidate, previous) and, with --namespace,
    what the InferenceService serves and whether a canary is in progress."""
    from sentiops import registry, tracking

    tracking.configure()
    table = Table(title="model registry (sentiops-sentiment)")
    for col in ("alias", "version", "stage", "storage URI", "last reason"):
        table.add_column(col)
    for e in registry.status():
        reason = e.tags.get(f"lifecycle.{e.stage}_reason", "") if e.stage else ""
        table.add_row(e.alias, e.version, e.stage or "-", e.storage_uri or "-", reason[:60])
    console.print(table)
    if namespace:
        from sentiops.rollout_kserve import PREVIOUS_ANNOTATION, served_version

        isvc = _executor(namespace, kubeconfig).get()
        if isvc is None:
            console.print(f"no InferenceService in {namespace}")
            return
        predictor = isvc["spec"]["predictor"]
        canary = PREVIOUS_ANNOTATION in (isvc["metadata"].get("annotations") or {})
        console.print(
            f"InferenceService {namespace}/{isvc['metadata']['name']}: model version "
            f"{served_version(isvc)}, "
            + (
                f"canary in progress at {predictor.get('canaryTrafficPercent')}%"
                if canary
                else "no canary in progress"
            ),
            highlight=False,
        )


@rollout_app.command("rollback")
@handled
def rollback(
    namespace: Annotated[str, typer.Option(help="namespace of the InferenceService")],
    reason: Annotated[str, typer.Option(help="why (kept on the model version)")] = "by hand",
    to_previous: Annotated[
        bool,
        typer.Option(
            help="no canary in progress: serve the previous champion again (registry: "
            "previous <-> champion)"
        ),
    ] = False,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Stop a canary in progress (traffic back, previous spec restored, candidate rejected), or
    with --to-previous go back to the champion before the current one."""
    from sentiops import registry, tracking
    from sentiops.errors import RolloutError
    from sentiops.rollout_kserve import PREVIOUS_ANNOTATION, served_version

    tracking.configure()
    ex = _executor(namespace, kubeconfig)
    isvc = ex.get()
    if isvc is None:
        raise RolloutError(f"no InferenceService in {namespace}", "check --namespace")
    in_progress = PREVIOUS_ANNOTATION in (isvc["metadata"].get("annotations") or {})
    if in_progress:
        canary = served_version(isvc)
        ex.rollback()
        if canary and registry.version_of(registry.CANDIDATE) == canary:
            registry.reject(canary, [f"rolled back by hand: {reason}"])
        console.print(f"canary v{canary} rolled back; serving v{served_version(ex.get() or isvc)}")
        return
    if not to_previous:
        raise RolloutError(
            "no canary in progress",
            "pass --to-previous to serve the champion before the current one again",
        )
    back = registry.version_of(registry.PREVIOUS)
    uri = registry.tags_of(back).get(registry.STORAGE_URI_TAG) if back else None
    if not back or not uri:
        raise RolloutError("the registry has no previous champion with a storage URI", "")
    ex.storage_uri, ex.version = uri, back
    ex.start(100)
    ex.promote()
    reverted, now = registry.revert(reason)
    console.print(f"v{reverted} reverted; serving v{now} from {uri}", highlight=False)
