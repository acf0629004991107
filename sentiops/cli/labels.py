"""`sentiops labels push|sync|status|serve|studio`: Label Studio as the labelling workbench
(docs/labelling.md). `push` makes tasks of the texts waiting in the store, `sync` pushes and
stores the annotations as labels (for installations without webhooks: run it from cron),
`serve` is the webhook receiver that does both continuously, `studio` runs Label Studio on
loopback with this installation's admin."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from sentiops.cli.common import handle_errors
from sentiops.config import MODEL_NAME, get_settings
from sentiops.errors import ConfigError
from sentiops.security.auth import TokenFile as Secret
from sentiops.security.auth import token_from_file

labels_app = typer.Typer(no_args_is_help=True, help="Label Studio: tasks out, labels back.")

StudioUrl = Annotated[str, typer.Option(help="Label Studio's URL; env SENTIOPS_LABEL_STUDIO_URL")]
StudioToken = Annotated[
    Path | None,
    typer.Option(
        help="a file holding Label Studio's API token; env SENTIOPS_LABEL_STUDIO_TOKEN_FILE",
    ),
]
Store = Annotated[
    str,
    typer.Option(help="the store the texts wait in (dir or s3://bucket); default: the local store"),
]
FeedbackUrl = Annotated[
    str,
    typer.Option(
        help="a predictor (http://host:port) whose feedback API takes the labels; without it "
        "they are written to --store directly"
    ),
]
TokenFile = Annotated[
    Path | None,
    typer.Option(
        help="the token the labels go to --feedback-url with (`name:token`; name it "
        "`labelstudio`); env SENTIOPS_TOKEN_FILE"
    ),
]
Name = Annotated[str, typer.Option(help="the model name (one pair of projects per name)")]
Overlap = Annotated[
    int,
    typer.Option(help="annotators per task (Label Studio's maximum annotations) for new projects"),
]


def register_commands(app: typer.Typer) -> None:
    for name, fn in (
        ("push", push),
        ("sync", sync),
        ("status", status),
        ("serve", serve),
        ("studio", studio),
    ):
        labels_app.command(name)(handle_errors(fn))
    app.add_typer(labels_app, name="labels")


def _sync(
    studio_url: str,
    studio_token_file: Path | None,
    store: str,
    feedback_url: str,
    token_file: Path | None,
    model_name: str,
    overlap: int,
    webhook: tuple[str, str] | None = None,
) -> Any:
    """The Sync for these options (labels to the feedback API with a token, or the store)."""
    from sentiops.labelling.studio import Studio  # lazy: CLI startup
    from sentiops.labelling.sync import HttpSink, StoreSink, Sync  # lazy: CLI startup

    store = store or str(get_settings().local_store)
    studio = Studio.from_env(studio_url, studio_token_file)
    if feedback_url:
        path = token_file or os.environ.get("SENTIOPS_TOKEN_FILE") or None
        if path is None:
            raise ConfigError(
                "--feedback-url needs --token-file (the receiver's token)",
                "e.g. --token-file labelstudio-token (`labelstudio:<token>`)",
            )
        sink: Any = HttpSink(feedback_url, token_from_file(path), model_name)
    else:
        from sentiops.feedback.intake import Feedback  # lazy: CLI startup

        sink = StoreSink(Feedback(store, model_name=model_name))
    return Sync(studio, store, sink, model_name, overlap=overlap, webhook=webhook)


def push(
    studio_url: StudioUrl = "",
    studio_token_file: StudioToken = None,
    store: Store = "",
    model_name: Name = MODEL_NAME,
    overlap: Overlap = 1,
) -> None:
    """Make Label Studio tasks of the texts waiting in the store: the labelling queue (with
    the model's answer as a pre-annotation) and the random evaluation sample (without)."""
    s = _sync(studio_url, studio_token_file, store, "", None, model_name, overlap)
    made = s.push()
    typer.echo(
        f"tasks made: training queue {made['queue']}, evaluation sample "
        f"{made['evaluation']} (projects {s.projects()})"
    )


def sync(
    studio_url: StudioUrl = "",
    studio_token_file: StudioToken = None,
    store: Store = "",
    feedback_url: FeedbackUrl = "",
    token_file: TokenFile = None,
    model_name: Name = MODEL_NAME,
    overlap: Overlap = 1,
) -> None:
    """Push new tasks, then store every task's label (the majority of its annotations) with
    who made it: new, revised or withdrawn; what is stored already is left alone, so running
    it again (from cron, after Label Studio was down) stores nothing twice."""
    s = _sync(studio_url, studio_token_file, store, feedback_url, token_file, model_name, overlap)
    made = s.push()
    report = s.pull()
    typer.echo(
        json.dumps(
            {
                "tasks_made": made,
                **report,
                "agreement": {k: v.get("alpha") for k, v in s.agreement.items()},
            },
            indent=2,
            default=str,
        )
    )


def status(
    studio_url: StudioUrl = "",
    studio_token_file: StudioToken = None,
    store: Store = "",
    model_name: Name = MODEL_NAME,
) -> None:
    """The model's projects, their tasks, agreement (Krippendorff's alpha per project and per
    annotator) and the tasks held for review (annotations without a majority)."""
    s = _sync(studio_url, studio_token_file, store, "", None, model_name, 1)
    s.review()
    typer.echo(json.dumps(s.status(), indent=2, default=str))


def serve(
    *,
    webhook_secret_file: Annotated[
        Path,
        typer.Option(
            help="the shared secret Label Studio's webhooks send (`name:secret` or the secret)"
        ),
    ],
    studio_url: StudioUrl = "",
    studio_token_file: StudioToken = None,
    store: Store = "",
    feedback_url: FeedbackUrl = "",
    token_file: TokenFile = None,
    model_name: Name = MODEL_NAME,
    overlap: Overlap = 1,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 9082,
    public_url: Annotated[
        str,
        typer.Option(
            help="the URL Label Studio reaches this receiver at (default http://HOST:PORT)"
        ),
    ] = "",
    interval: Annotated[float, typer.Option(help="seconds between full push + pull")] = 30.0,
) -> None:
    """The webhook receiver: Label Studio's annotation webhooks (checked against the shared
    secret) make labels within seconds, and every --interval it pushes new texts and pulls
    every task (nothing waits for a webhook that never came)."""
    import uvicorn

    from sentiops.labelling.receiver import Worker, create_app  # lazy: pulls prometheus_client

    secret = Secret(webhook_secret_file)
    hook = (
        f"{(public_url or f'http://{host}:{port}').rstrip('/')}/webhook",
        token_from_file(webhook_secret_file),
    )
    s = _sync(
        studio_url, studio_token_file, store, feedback_url, token_file, model_name, overlap, hook
    )
    worker = Worker(s, interval)
    worker.start()
    try:
        uvicorn.run(create_app(worker, secret), host=host, port=port, log_level="warning")
    finally:
        worker.stop()


def studio(
    folder: Annotated[
        Path | None,
        typer.Option(help="its data and the admin's files (default $SENTIOPS_HOME/labelstudio)"),
    ] = None,
    port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 8090,
) -> None:
    """Label Studio on loopback with this installation's admin (made once; the password and
    the API token are files of mode 0600, never printed), until Ctrl-C."""
    from sentiops.local.stack import LabelStudio  # lazy: CLI startup

    server = LabelStudio(folder or get_settings().home / "labelstudio", port=port).start()
    try:
        typer.echo(
            f"Label Studio at {server.url}: sign in as {server.admin.email}, the "
            f"password is in {server.admin.password_file}; API token in "
            f"{server.admin.token_file}; Ctrl-C stops it"
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
