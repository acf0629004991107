"""`sentiops rollout status | rollback | approve | reject`: the canary rollout for people;
`sentiops rollout --local` runs one (a canary, or with `--mode shadow` a shadow) on loopback.

`approve` / `reject` answer a rollout that waits for a person (the plan's approval step, or an
inconclusive outcome under the policy `hold`): with --namespace the InferenceService's annotation
`sentiops.io/rollout-approval` (`sentiops.rollout.kserve.AnnotationGate`), else the local
rollout's `approval.json` in --workdir (`sentiops.rollout.approval.FileGate`).

Registered on the main app in sentiops/cli/main.py (`register_commands(app)`). The pipeline's
`rollout` step does rollouts on a cluster; these commands show and undo them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sentiops.cli.common import console, handled
from sentiops.config import get_settings
from sentiops.errors import RolloutError
from sentiops.rollout.approval import APPROVAL_FILE, PENDING, Approval, answer_file, read_request

rollout_app = typer.Typer(
    invoke_without_command=True,
    help="Canary (and shadow) rollouts: run one locally (--local), show the status, roll back.",
)

Namespace = Annotated[
    str | None,
    typer.Option(help="namespace of the InferenceService (omit: the registry only)"),
]
Kubeconfig = Annotated[
    str | None, typer.Option(help="kubeconfig (default $KUBECONFIG; in a pod: its account)")
]
Workdir = Annotated[
    Path | None,
    typer.Option(help="the local rollout's folder (default $SENTIOPS_HOME/rollout)"),
]


def register_commands(app: typer.Typer) -> None:
    app.add_typer(rollout_app, name="rollout")


# the options of `sentiops rollout --local`
LocalFlag = Annotated[
    bool, typer.Option("--local", help="two predictors on loopback + Prometheus (no cluster)")
]
Stable = Annotated[Path | None, typer.Option(help="the serving model directory")]
Canary = Annotated[Path | None, typer.Option(help="the candidate model directory")]
Traffic = Annotated[
    list[str] | None,
    typer.Option(
        help="texts replayed as live traffic (file with a text column, s3:// or built-in name; "
        "repeatable)"
    ),
]
Mode = Annotated[
    str,
    typer.Option(
        help="canary: the candidate answers a share of the requests; shadow: it gets a copy of "
        "them and every client gets the stable model's answer"
    ),
]
Steps = Annotated[str, typer.Option(help="traffic percentages, e.g. 10,50,100")]
StepSeconds = Annotated[float, typer.Option(help="seconds per step")]
Rate = Annotated[float, typer.Option(help="replayed requests per second")]
MinRequests = Annotated[int, typer.Option(help="per version per step, else hold")]
MaxHolds = Annotated[int, typer.Option(help="holds a step may take, then the policy")]
AccuracyEvidence = Annotated[
    bool,
    typer.Option(
        help="promote only once live accuracy is shown no worse than stable by more than the "
        "margin (labels of the random evaluation sample)"
    ),
]
InconclusivePolicy = Annotated[
    str,
    typer.Option(
        help="undecided by a step's deadline: rollback, promote (flagged) or hold (a person "
        "decides with sentiops rollout approve|reject)"
    ),
]
ApproveBefore = Annotated[
    str,
    typer.Option(
        help="wait for a person before traffic moves to this step (e.g. 100), or before "
        "'promote'; answer with sentiops rollout approve|reject"
    ),
]
ApprovalTimeout = Annotated[float, typer.Option(help="seconds to wait for a person")]
TimeoutPolicy = Annotated[
    str, typer.Option(help="nobody answered in time: reject, approve or hold (ask again)")
]
Notify = Annotated[
    list[str] | None,
    typer.Option(
        help="webhook for holds, promotions, rollbacks and approval requests: FORMAT=URL with "
        "FORMAT generic, slack or alertmanager (repeatable)"
    ),
]
RecordJson = Annotated[Path | None, typer.Option(help="the decision record")]
LocalWorkdir = Annotated[
    Path | None, typer.Option(help="logs and Prometheus data (default $SENTIOPS_HOME/rollout)")
]


@rollout_app.callback()
@handled
def local(
    *,
    ctx: typer.Context,
    local: LocalFlag = False,
    stable: Stable = None,
    canary: Canary = None,
    traffic: Traffic = None,
    mode: Mode = "canary",
    steps: Steps = "10,50,100",
    step_seconds: StepSeconds = 30.0,
    rate: Rate = 50.0,
    min_requests: MinRequests = 50,
    max_holds: MaxHolds = 2,
    require_accuracy_evidence: AccuracyEvidence = False,
    inconclusive_policy: InconclusivePolicy = "rollback",
    approve_before: ApproveBefore = "",
    approval_timeout: ApprovalTimeout = 3600,
    approval_timeout_policy: TimeoutPolicy = "reject",
    notify: Notify = None,
    output_json: RecordJson = None,
    workdir: LocalWorkdir = None,
) -> None:
    """`sentiops rollout --local --stable DIR --canary DIR --traffic PATH [--mode shadow]`:
    replay the texts through a traffic split while the canary is rolled out (or shadowed) and
    judged from Prometheus."""
    if ctx.invoked_subcommand is not None:
        return
    if not local:
        console.print(ctx.get_help())
        raise typer.Exit(2)
    missing = [
        n for n, v in (("--stable", stable), ("--canary", canary), ("--traffic", traffic)) if not v
    ]
    if missing:
        raise typer.BadParameter(f"--local needs {', '.join(missing)}")
    assert stable is not None and canary is not None and traffic
    from sentiops.data.datasets import TEXT, load  # lazy: pulls pandas
    from sentiops.local.rollout import local_rollout  # lazy: pulls scipy
    from sentiops.rollout.judge import JudgeConfig  # lazy: pulls scipy
    from sentiops.rollout.notify import parse_targets  # lazy: pulls prometheus_client

    plan_steps = _percentages(steps, mode)
    try:
        judge = JudgeConfig(
            min_requests=min_requests,
            inconclusive_policy=inconclusive_policy,
            require_accuracy_evidence=require_accuracy_evidence,
        )
        approval = Approval(approve_before, approval_timeout, approval_timeout_policy)
        approval.check(plan_steps)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    parse_targets(notify or [])  # refuse a bad target before anything starts
    texts = [t for t in load(list(traffic), TEXT, None)[TEXT].tolist() if t.strip()]
    record = local_rollout(
        stable,
        canary,
        texts,
        workdir or get_settings().home / "rollout",
        plan_steps,
        step_seconds,
        rate,
        judge,
        max_holds=max_holds,
        progress=console.print,
        mode=mode,
        approval=approval,
        notify=list(notify or []),
    )
    console.print(record.to_markdown(), highlight=False)
    if output_json:
        record.write_json(output_json)
        console.print(f"decision record: {output_json}", highlight=False)


def _percentages(steps: str, mode: str) -> list[int]:
    """The plan's steps of --steps; a bad --steps or --mode is a usage error."""
    from sentiops.rollout.steps import MODES  # lazy: pulls scipy

    try:
        plan_steps = [int(s) for s in steps.split(",") if s.strip()]
    except ValueError:
        raise typer.BadParameter(f"--steps {steps!r}: use percentages like 10,50,100") from None
    if mode not in MODES:
        raise typer.BadParameter(f"--mode {mode!r}: use one of {', '.join(MODES)}")
    return plan_steps


def _executor(namespace: str, kubeconfig: str | None):  # noqa: ANN202
    from sentiops.rollout.kserve import (  # lazy: pulls scipy
        KServeExecutor,
        api_client,
        load_settings,
    )

    api = api_client(kubeconfig)
    cfg = load_settings(api, namespace)
    return KServeExecutor(api, namespace, cfg.inference_service, "", "")


def _shadow(ex):  # noqa: ANN001, ANN202
    """The shadow rollout next to `ex`'s InferenceService (sentiops.rollout.shadow)."""
    from sentiops.rollout.shadow import ShadowExecutor  # lazy: pulls scipy

    return ShadowExecutor(ex.custom.api_client, ex.namespace, ex.name, "", "")


@rollout_app.command("status")
@handled
def status(
    namespace: Namespace = None, kubeconfig: Kubeconfig = None, workdir: Workdir = None
) -> None:
    """What the registry says serves (champion, candidate, previous) and, with --namespace,
    what the InferenceService serves and whether a canary or a shadow is in progress (or
    waits for approval); without, whether the local rollout in --workdir waits for approval."""
    from sentiops.registry import lifecycle as registry  # lazy: CLI startup
    from sentiops.registry import tracking  # lazy: CLI startup

    local = (workdir or get_settings().home / "rollout") / APPROVAL_FILE
    waiting = read_request(local) if not namespace and local.exists() else {}
    if waiting.get("state") == PENDING:
        console.print(
            f"local rollout of v{waiting.get('canary_version', '?')} waiting for "
            f"approval {waiting.get('waiting', '')} since {waiting.get('since', '?')}: "
            f"{waiting.get('how', '')}",
            highlight=False,
        )

    tracking.configure()
    table = Table(title="model registry (sentiops-sentiment)")
    for col in ("alias", "version", "stage", "storage URI", "last reason"):
        table.add_column(col)
    for e in registry.status():
        reason = e.tags.get(f"lifecycle.{e.stage}_reason", "") if e.stage else ""
        table.add_row(e.alias, e.version, e.stage or "-", e.storage_uri or "-", reason[:60])
    console.print(table)
    if namespace:
        from sentiops.rollout.kserve import PREVIOUS_ANNOTATION, served_version  # lazy: pulls scipy

        ex = _executor(namespace, kubeconfig)
        isvc = ex.get()
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
        from sentiops.rollout.kserve import waiting_request  # lazy: pulls scipy

        request = waiting_request(isvc)
        if request is not None:
            console.print(
                f"waiting for approval {request.get('waiting', '')} since "
                f"{request.get('since', '?')}: {request.get('how', '')}",
                highlight=False,
            )
        shadow = _shadow(ex).in_progress()
        if shadow is not None:
            version, percent = shadow
            share = f"{percent}% of the predictions" if percent is not None else "no mirror yet"
            console.print(
                f"shadow v{version} in progress: {share} copied to it; clients get "
                f"v{served_version(isvc)}'s answers",
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
    """Stop a canary in progress (traffic back, previous spec restored, candidate rejected) or a
    shadow (mirror and shadow removed, candidate rejected), or with --to-previous go back to
    the champion before the current one."""
    from sentiops.registry import lifecycle as registry  # lazy: CLI startup
    from sentiops.registry import tracking  # lazy: CLI startup
    from sentiops.rollout.kserve import PREVIOUS_ANNOTATION, served_version  # lazy: pulls scipy

    tracking.configure()
    ex = _executor(namespace, kubeconfig)
    isvc = ex.get()
    if isvc is None:
        raise RolloutError(f"no InferenceService in {namespace}", "check --namespace")
    shadow = _shadow(ex)
    found = shadow.in_progress()
    if found is not None:
        version = found[0]
        shadow.version = shadow.main.version = version
        shadow.rollback()
        if version and registry.version_of(registry.CANDIDATE) == version:
            registry.reject(version, [f"shadow removed by hand: {reason}"])
        console.print(
            f"shadow v{version} removed; serving v{served_version(ex.get() or isvc)}",
            highlight=False,
        )
        return
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


def _answer(
    answer: str, namespace: str | None, kubeconfig: str | None, workdir: Path | None
) -> None:
    """Answer the rollout waiting on the cluster (`namespace`) or in the local `workdir`."""
    if namespace:
        from sentiops.rollout.kserve import answer_annotation  # lazy: pulls scipy

        request = answer_annotation(_executor(namespace, kubeconfig), answer)
        where = f"InferenceService in {namespace}"
    else:
        folder = workdir or get_settings().home / "rollout"
        request = answer_file(folder, answer, by="sentiops rollout " + answer)
        where = str(folder)
    console.print(
        f"{answer}: v{request.get('canary_version', '?')} {request.get('waiting', '')} ({where})",
        highlight=False,
    )


@rollout_app.command("approve")
@handled
def approve(
    namespace: Namespace = None, kubeconfig: Kubeconfig = None, workdir: Workdir = None
) -> None:
    """Let a waiting rollout go on (its next step, or promotion): on a cluster with --namespace,
    else the local rollout in --workdir."""
    _answer("approve", namespace, kubeconfig, workdir)


@rollout_app.command("reject")
@handled
def reject(
    namespace: Namespace = None, kubeconfig: Kubeconfig = None, workdir: Workdir = None
) -> None:
    """Stop a waiting rollout: it rolls the candidate back (and the registry rejects it)."""
    _answer("reject", namespace, kubeconfig, workdir)
