"""`sentiops status` and `sentiops console`: what the platform is doing, for people.

Registered on the main app in sentiops/cli/main.py (`register_commands(app)`). Both read the same
sources (sentiops.console.status): the MLflow registry, the local rollout's records under
$SENTIOPS_HOME/rollout and Prometheus; each source that is down is shown as
"unavailable: <why>" and the rest still prints.

Contract (options may be added, these stay):
  sentiops status [--prometheus-url URL] [--json]      exit 0 (with --strict: 1 if a source
                                                       is unavailable)
  sentiops console [--port 8501] [--predictor-url URL] [--prometheus-url URL] [--mlflow-url URL]
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sentiops.cli.common import console, handled
from sentiops.config import MODEL_NAME, REGISTERED_MODEL
from sentiops.errors import StackError

PrometheusUrl = Annotated[
    str | None,
    typer.Option(help="Prometheus, e.g. http://127.0.0.1:9090 (default $SENTIOPS_PROMETHEUS_URL)"),
]
RolloutDir = Annotated[
    Path | None,
    typer.Option(
        help="the local rollout's progress.json / decision.json (default $SENTIOPS_HOME/rollout)"
    ),
]
MlflowUrl = Annotated[
    str | None,
    typer.Option(
        help="MLflow's web UI, for links (default $SENTIOPS_MLFLOW_URL, or the "
        "tracking URI when it is http)"
    ),
]


def register_commands(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("console")(console_cmd)


@handled
def status(
    prometheus_url: PrometheusUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
    rollout_dir: RolloutDir = None,
    mlflow_url: MlflowUrl = None,
    model_name: Annotated[str, typer.Option(help="the served model's name")] = MODEL_NAME,
    registered_model: Annotated[str, typer.Option(help="MLflow model")] = REGISTERED_MODEL,
    strict: Annotated[bool, typer.Option(help="exit 1 if any source is unavailable")] = False,
) -> None:
    """What serves (registry aliases + gate decisions), what is in canary, drift state,
    accuracy estimated without labels and live accuracy per model version."""
    from sentiops.console import status as st  # lazy: CLI startup

    sections = st.gather(
        st.env_url(prometheus_url, st.PROMETHEUS_URL_ENV),
        rollout_dir,
        None,
        model_name,
        registered_model,
        st.env_url(mlflow_url, st.MLFLOW_URL_ENV),
    )
    if as_json:
        typer.echo(json.dumps(st.to_json(sections), indent=2, default=str))
    else:
        print_status(sections)
    if strict and not all(s.ok for s in sections.values()):
        raise typer.Exit(1)


def _f(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _when(iso: str | None) -> str:
    return iso.replace("T", " ")[:16] + " UTC" if iso else "-"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def print_status(sections: dict[str, Any]) -> None:
    for name, section in sections.items():
        if not section.ok:
            console.print(f"[bold]{name}[/]: [yellow]{section.error}[/]", highlight=False)
            continue
        {
            "registry": _registry,
            "rollout": _rollout,
            "traffic": _traffic,
            "drift": _drift,
            "estimate": _estimate,
            "live_accuracy": _accuracy,
        }[name](section)
        for note in section.notes:
            console.print(f"[bold]{name}[/]: {note}", highlight=False)


def _registry(section: Any) -> None:
    d = section.data
    if not d["aliases"]:
        return
    table = Table(title=f"serving: registry {d['model']} ({section.source})")
    for col in ("alias", "version", "stage", "gate", "Δ macro-F1", "since", "reason"):
        table.add_column(col)
    for a in d["aliases"]:
        table.add_row(
            a["alias"],
            f"v{a['version']}",
            a["stage"] or "-",
            a["gate"] or "-",
            _f(a["gate_delta_macro_f1"], 4),
            _when(a["since"]),
            (a["reason"] or "")[:70],
        )
    console.print(table)


def _steps(title: str, steps: list[dict[str, Any]]) -> None:
    table = Table(title=title)
    for col in ("step", "traffic", "verdict", "score", "failed checks"):
        table.add_column(col)
    for i, s in enumerate(steps, 1):
        table.add_row(
            str(i),
            f"{s['traffic']}%",
            str(s["verdict"]),
            _f(s["score"], 0),
            ", ".join(s["failed"]) or "-",
        )
    console.print(table)


def _rollout(section: Any) -> None:
    p, d = section.data["in_progress"], section.data["last"]
    if p:
        last = p["steps"][-1] if p["steps"] else None
        where = (
            f"step {len(p['steps'])} at {last['traffic']}%: {last['verdict']}"
            if last
            else "first step running"
        )
        console.print(
            f"[bold]canary in progress[/]: v{p.get('canary_version')} vs stable "
            f"v{p.get('stable_version')}, plan {p.get('plan')}, {where} (updated "
            f"{p['updated_seconds_ago']:.0f}s ago)",
            highlight=False,
        )
        if p["steps"]:
            _steps("canary steps so far", p["steps"])
    if d:
        verdict = {"promoted": "[green]PROMOTED[/]", "rolled_back": "[red]ROLLED BACK[/]"}.get(
            d.get("decision"), str(d.get("decision"))
        )
        console.print(
            f"[bold]last rollout[/]: {verdict} canary v{d.get('canary_version')} vs stable "
            f"v{d.get('stable_version')}, ended {_when(d.get('ended_at'))}",
            highlight=False,
        )
        for reason in d.get("reasons") or []:
            console.print(f"  - {reason}", highlight=False)
        if d["steps"]:
            _steps("last rollout's steps", d["steps"])


def _traffic(section: Any) -> None:
    rows, targets = section.data["versions"], section.data["targets"]
    if rows:
        table = Table(title=f"traffic, last minute ({section.source})")
        for col in ("model version", "predictions/s", "share", "errors/s"):
            table.add_column(col, justify="right")
        for r in rows:
            table.add_row(
                f"v{r['model_version']}",
                _f(r["predictions_per_s"], 2),
                _pct(r["share"]),
                _f(r["errors_per_s"], 2),
            )
        console.print(table)
    up = sum(1 for t in targets if t["up"])
    console.print(f"[bold]traffic[/]: scrape targets up {up}/{len(targets)}", highlight=False)


def _drift(section: Any) -> None:
    if not section.data:
        return
    table = Table(title="drift, last tested window (p-values; low = drift)", min_width=60)
    for col in (
        "model version",
        "combined",
        "embedding",
        "label mix",
        "confidence",
        "drift",
        "drifting windows",
    ):
        table.add_column(col, justify="right")
    for r in section.data:
        flag = "-" if r["drift"] is None else ("[red]DRIFT[/]" if r["drift"] else "no")
        table.add_row(
            f"v{r['model_version']}",
            _f(r["combined"]),
            _f(r["embedding"]),
            _f(r["label_mix"]),
            _f(r["confidence"]),
            flag,
            _f(r["consecutive_windows"]),
        )
    console.print(table)


def _estimate(section: Any) -> None:
    if not section.data:
        return
    table = Table(
        title="estimated accuracy, last tested window (calibrated probabilities, no "
        "labels; 95 % interval)",
        min_width=60,
    )
    for col in (
        "model version",
        "estimated accuracy",
        "macro-F1",
        "recall",
        "validation",
        "realized (live)",
        "estimate - realized (labels)",
    ):
        table.add_column(col, justify="right")
    for r in section.data:
        acc = (
            f"{_f(r['estimated_accuracy'])} ({_f(r['estimated_accuracy_low'])}-"
            f"{_f(r['estimated_accuracy_high'])})"
        )
        f1 = (
            f"{_f(r['estimated_macro_f1'])} ({_f(r['estimated_macro_f1_low'])}-"
            f"{_f(r['estimated_macro_f1_high'])})"
        )
        recall = " ".join(f"{k[:3]} {v:.2f}" for k, v in sorted((r.get("recall") or {}).items()))
        err = (
            "-"
            if r["estimate_error"] is None
            else f"{r['estimate_error']:+.3f} (n={_f(r['estimate_error_labels'], 0)})"
        )
        table.add_row(
            f"v{r['model_version']}",
            acc,
            f1,
            recall or "-",
            _f(r["validation_accuracy"]),
            _f(r["live_accuracy"]),
            err,
        )
    console.print(table)


def _accuracy(section: Any) -> None:
    if not section.data:
        return
    order = ["accuracy", "macro_f1", "labels"]
    metrics = sorted(
        {k for r in section.data for k in r if k != "model_version"},
        key=lambda m: (order.index(m) if m in order else len(order), m),
    )
    table = Table(title="live accuracy (labelled feedback)", min_width=40)
    table.add_column("model version", justify="right")
    for m in metrics:
        table.add_column(m.replace("_", " "), justify="right")
    for r in section.data:
        table.add_row(
            f"v{r['model_version']}", *(_f(r.get(m), 0 if m == "labels" else 3) for m in metrics)
        )
    console.print(table)


@handled
def console_cmd(
    *,
    port: Annotated[int, typer.Option(help="port of the page")] = 8501,
    host: Annotated[str, typer.Option(help="address to bind (0.0.0.0 for others)")] = "127.0.0.1",
    predictor_url: Annotated[
        str | None,
        typer.Option(
            help="the predictor (KServe), e.g. http://127.0.0.1:8080 (default "
            "$SENTIOPS_PREDICTOR_URL)"
        ),
    ] = None,
    prometheus_url: PrometheusUrl = None,
    mlflow_url: MlflowUrl = None,
    rollout_dir: RolloutDir = None,
    model_name: Annotated[str, typer.Option(help="the served model's name")] = MODEL_NAME,
    registered_model: Annotated[str, typer.Option(help="MLflow model")] = REGISTERED_MODEL,
    allowed_hosts: Annotated[
        str | None,
        typer.Option(
            envvar="SENTIOPS_CONSOLE_ALLOWED_HOSTS",
            help="Host header values answered, comma-separated (name, name:port, or * "
            "for any); others get 400 [default: --host, localhost, 127.0.0.1 and "
            "[::1], with --port]",
        ),
    ] = None,
) -> None:
    """The web console: try a text (label, probabilities, token attributions), the registry
    with gate decisions, the rollout, drift and live accuracy over time. Runs until Ctrl-C."""
    try:
        import uvicorn

        from sentiops.console.app import ConsoleConfig, create_app  # lazy: pulls fastapi
    except ImportError as exc:
        raise StackError(
            f"the console needs FastAPI and uvicorn ({exc})", "pip install 'sentiops[console]'"
        ) from exc

    from sentiops.console import status as st  # lazy: CLI startup
    from sentiops.console.guard import AllowedHosts  # lazy: CLI startup

    hosts = (
        AllowedHosts.parse(allowed_hosts)
        if allowed_hosts is not None
        else AllowedHosts.default(host, port)
    )
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StackError(
                f"cannot listen on {host}:{port} ({exc.strerror})",
                "another console may be running; pass --port",
            ) from exc
    cfg = ConsoleConfig(
        predictor_url=st.env_url(predictor_url, st.PREDICTOR_URL_ENV),
        prometheus_url=st.env_url(prometheus_url, st.PROMETHEUS_URL_ENV),
        mlflow_url=st.env_url(mlflow_url, st.MLFLOW_URL_ENV),
        rollout_dir=rollout_dir,
        model_name=model_name,
        registered_model=registered_model,
        allowed_hosts=hosts,
    )
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host  # noqa: S104
    console.print(
        f"SentiOps console on http://{shown}:{port}/ (predictor {cfg.predictor_url or '-'}, "
        f"Prometheus {cfg.prometheus_url or '-'}, MLflow UI {cfg.mlflow_url or '-'}); Ctrl-C "
        "stops it",
        highlight=False,
    )
    console.print(
        f"answers to Host: {hosts} (others: --allowed-hosts)", markup=False, highlight=False
    )
    uvicorn.run(create_app(cfg), host=host, port=port, log_level="warning")
