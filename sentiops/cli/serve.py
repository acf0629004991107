"""`sentiops serve`: the KServe predictor on this machine (the image's `python -m serving`),
with the image's protections: tokens for writes (and reads), a per-client rate limit, the
inference log's token, the feedback store and the evaluation-sample secret. Every flag is
checked here, before the model is read or the server starts, and passed on under the name
`python -m serving` takes (serving/__main__.py)."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from sentiops.cli.common import err, handle_errors
from sentiops.config import MODEL_NAME
from sentiops.errors import ConfigError
from sentiops.security.auth import AuthError, Tokens, token_from_file
from sentiops.security.secrets import SAMPLE_SECRET_ENV, read_secret_file

MAKE_TOKENS = "printf 'annotators:%s\\n' \"$(openssl rand -hex 24)\" > tokens; chmod 600 tokens"

ModelUri = Annotated[str, typer.Option(help="model directory or s3:// prefix")]
HttpPort = Annotated[int, typer.Option(help="REST (v1 + v2) and /metrics")]
GrpcPort = Annotated[int, typer.Option(help="v2 gRPC")]
Host = Annotated[str, typer.Option(help="address to listen on (0.0.0.0 for other machines too)")]
Name = Annotated[str, typer.Option(help="model name in the URLs")]
LoggerUrl = Annotated[
    str, typer.Option(help="post requests/responses as CloudEvents here (drift sidecar)")
]
LoggerMode = Annotated[str, typer.Option(help="all | request | response")]
MaxBatch = Annotated[int, typer.Option(help="most texts in one request")]
BatchWindow = Annotated[
    float, typer.Option(help="how long a forward pass waits for concurrent requests")
]
FeedbackStore = Annotated[
    str | None,
    typer.Option(
        envvar="SENTIOPS_FEEDBACK_STORE",
        show_default=False,
        help="store (directory or s3://bucket) of the prediction log and labels: enables "
        "POST /v1/models/<name>:feedback and live accuracy",
    ),
]
AuthTokenFile = Annotated[
    Path | None,
    typer.Option(
        envvar="SENTIOPS_AUTH_TOKEN_FILE",
        show_default=False,
        help="tokens (`name:token` lines, or a directory with a file per token): :feedback "
        "then needs `Authorization: Bearer <token>`",
    ),
]
AuthReads = Annotated[
    bool,
    typer.Option(
        "--auth-reads",
        help="predict, explain, infer and metadata need a token too (health and /metrics stay "
        "open); needs --auth-token-file",
    ),
]
RateLimit = Annotated[
    float,
    typer.Option(
        envvar="SENTIOPS_RATE_LIMIT",
        help="requests a second per client on the model's endpoints and feedback (0: no "
        "limit); over it 429 with Retry-After",
    ),
]
RateBurst = Annotated[
    float, typer.Option(help="requests a client may make at once (0: one second's worth)")
]
LoggerTokenFile = Annotated[
    Path | None,
    typer.Option(
        envvar="SENTIOPS_LOGGER_TOKEN_FILE",
        show_default=False,
        help="the token (`name:token`) the inference log presents to the drift sidecar "
        "(--logger-url)",
    ),
]
SampleSecretFile = Annotated[
    Path | None,
    typer.Option(
        envvar=SAMPLE_SECRET_ENV,
        show_default=False,
        help="the evaluation-sample secret (at least 16 bytes, e.g. `openssl rand -hex 32`), "
        "passed to the predictor as $SENTIOPS_SAMPLE_SECRET_FILE (without it: "
        "$SENTIOPS_HOME/secrets/eval-sample.key)",
    ),
]


def register_commands(app: typer.Typer) -> None:
    app.command("serve")(handle_errors(serve))


def serve(
    *,
    model: ModelUri,
    http_port: HttpPort = 8080,
    grpc_port: GrpcPort = 8081,
    host: Host = "127.0.0.1",
    name: Name = MODEL_NAME,
    logger_url: LoggerUrl = "",
    logger_mode: LoggerMode = "all",
    max_batch_size: MaxBatch = 256,
    batch_window_ms: BatchWindow = 5.0,
    feedback_store: FeedbackStore = None,
    auth_token_file: AuthTokenFile = None,
    auth_reads: AuthReads = False,
    rate_limit: RateLimit = 0.0,
    rate_burst: RateBurst = 0.0,
    logger_token_file: LoggerTokenFile = None,
    sample_secret_file: SampleSecretFile = None,
) -> None:
    """Serve a model with KServe's ModelServer: v1 + v2 REST, v2 gRPC, /metrics.

    The model is checked (and an s3:// model downloaded, checksums verified) before the
    server starts, so a broken model is an error here, not a server that never gets ready.

    Labels posted to :feedback (with --feedback-store) become training data: give the
    annotators tokens with --auth-token-file, or anyone who can reach the port can write them.
    The flags are the image's (python -m serving), see docs/security.md."""
    # every flag is checked, then the model; then this process becomes `python -m serving`
    if logger_mode not in ("all", "request", "response"):
        raise ConfigError(f"--logger-mode {logger_mode!r}", "use all, request or response")
    _check_rates(rate_limit, rate_burst)
    tokens = _token_file(auth_token_file) if auth_token_file else None
    if auth_reads and tokens is None:
        raise ConfigError(
            "--auth-reads needs --auth-token-file (the tokens that may read)",
            f"make a token file ({MAKE_TOKENS}) and pass --auth-token-file tokens",
        )
    logger_token = _logger_token_file(logger_token_file) if logger_token_file else None
    secret = _sample_secret(sample_secret_file) if sample_secret_file else None

    from sentiops.models.modeldir import read_manifest  # lazy: pulls cryptography
    from sentiops.store.storage import local_model  # lazy: pulls minio

    model = str(local_model(model))
    manifest = read_manifest(Path(model))
    _say_what_is_open(feedback_store, tokens, auth_token_file, auth_reads, http_port)
    print(
        f"serving {manifest['model_type']} {manifest['version']} from {model} as {name!r}: "
        f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{http_port}/v2/models/"
        f"{name}, gRPC :{grpc_port} (listening on {host})",
        flush=True,
    )
    flags: dict[str, object] = {
        "model_name": name,
        "model_dir": model,
        "http_port": http_port,
        "host": host,
        "grpc_port": grpc_port,
        "max_batch_size": max_batch_size,
        "batch_window_ms": batch_window_ms,
        "logger_url": logger_url or None,
        "logger_mode": logger_mode if logger_url else None,
        "logger_token_file": logger_token,
        "feedback_store": feedback_store or None,
        "auth_token_file": auth_token_file.expanduser().resolve() if auth_token_file else None,
        "auth_reads": "true" if auth_reads else None,
        # always given: the child would otherwise take $SENTIOPS_RATE_LIMIT over an explicit 0
        "rate_limit": rate_limit,
        "rate_burst": rate_burst,
    }
    args = [f"--{flag}={value}" for flag, value in flags.items() if value is not None]
    env = dict(os.environ) | ({SAMPLE_SECRET_ENV: str(secret)} if secret else {})
    # the same process as the image runs; Ctrl-C stops it
    os.execve(sys.executable, [sys.executable, "-m", "serving", *args], env)


def _check_rates(rate_limit: float, rate_burst: float) -> None:
    if not math.isfinite(rate_limit) or rate_limit < 0:
        raise ConfigError(
            f"--rate-limit {rate_limit} is not a rate (requests a second, 0 or more)",
            "give requests a second per client, e.g. --rate-limit 5 (0: no limit)",
        )
    if not math.isfinite(rate_burst) or rate_burst < 0 or 0 < rate_burst < 1:
        raise ConfigError(
            f"--rate-burst {rate_burst} is not a burst (0, or 1 request or more)",
            "give the requests a client may make at once, at least 1 (0: one "
            "second's worth of --rate-limit)",
        )
    if rate_burst > 0 and rate_limit == 0:
        raise ConfigError(
            "--rate-burst needs --rate-limit (there is no limit to burst over)",
            "add --rate-limit R (requests a second per client)",
        )


def _token_file(path: Path) -> Tokens:
    """The tokens at `path` (sentiops.security.auth.Tokens), or an error saying what is wrong
    with the file: the predictor would refuse to start with it."""
    try:
        return Tokens.load(path.expanduser())
    except AuthError as exc:
        raise AuthError(
            f"--auth-token-file: {exc.message}", f"{exc.hint}; a new file: {MAKE_TOKENS}"
        ) from None
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise ConfigError(
            f"--auth-token-file: cannot read {path} ({why})", "make it readable by this user"
        ) from None


def _logger_token_file(path: Path) -> Path:
    path = path.expanduser().resolve()
    try:
        token_from_file(path)
    except AuthError as exc:
        raise AuthError(f"--logger-token-file: {exc.message}", exc.hint) from None
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise ConfigError(
            f"--logger-token-file: cannot read {path} ({why})",
            "give the file holding the predictors' token (`name:token`), the "
            "one the drift sidecar's token file also has",
        ) from None
    return path


def _sample_secret(path: Path) -> Path:
    """The evaluation-sample secret's file, checked as the predictor checks it."""
    path = path.expanduser().resolve()
    read_secret_file(path, f"--sample-secret-file {path}")
    return path


def _say_what_is_open(
    feedback_store: str | None,
    tokens: Tokens | None,
    token_file: Path | None,
    auth_reads: bool,
    port: int,
) -> None:
    """One line on who may write labels (stderr): a warning when anyone may."""
    if not feedback_store:
        return
    if tokens is None:
        err.print(
            "[bold yellow]warning:[/] "
            + escape(
                f"labels are open: with --feedback-store and no --auth-token-file, anyone "
                f"who can reach port {port} can write labels, which become training data "
                "and part of the gate's test set; give the annotators tokens with "
                f"--auth-token-file FILE (e.g. {MAKE_TOKENS})"
            ),
            highlight=False,
            soft_wrap=True,
        )
        return
    names = ", ".join(tokens.names)
    err.print(
        escape(
            f"labels need a token from {token_file} ({names})"
            + ("; reads too" if auth_reads else "")
        ),
        highlight=False,
        soft_wrap=True,
    )
