"""`python -m serving --model_name sentiment --model_dir /mnt/models [--http_port 8080]`.

KServe's own flags (`kserve.model_server.parser`: --http_port, --grpc_port, --workers, ...)
plus ours. The model directory may be a local path (KServe's storage-initializer downloaded it
to /mnt/models) or an s3:// prefix (downloaded here, checksums verified)."""

from __future__ import annotations

import argparse
import logging
import os

from kserve import model_server

from sentiops.security.limits import safe_log
from serving.server import MAX_BODY_BYTES, run


def parser() -> argparse.ArgumentParser:
    """KServe's parser and ours: the model and its batching, the inference log, label
    feedback, who may call and how often."""
    p = argparse.ArgumentParser(parents=[model_server.parser], description=__doc__)
    add_model_options(p)
    add_inference_log_options(p)
    add_feedback_options(p)
    add_access_options(p)
    # a log line per request costs more CPU than a short text's inference: off unless asked;
    # a gRPC message is bounded like a REST body
    p.set_defaults(enable_latency_logging=False, grpc_max_receive_message_length=MAX_BODY_BYTES)
    return p


def flag(value: str) -> bool:
    """A true/false option's value: 1, true or yes (any case) is true."""
    return str(value).lower() in ("1", "true", "yes")


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The model directory, the address, the request limits and the forward passes."""
    p.add_argument("--model_dir", required=True, help="model directory or s3:// prefix")
    p.add_argument(
        "--host",
        default=os.environ.get("SENTIOPS_HOST", "0.0.0.0"),  # noqa: S104 - a pod's port
        help="address REST and gRPC listen on (a pod: 0.0.0.0; one machine: 127.0.0.1; env "
        "SENTIOPS_HOST)",
    )
    p.add_argument("--max_batch_size", type=int, default=256, help="most texts in one request")
    p.add_argument("--max_chars", type=int, default=5000, help="longest text accepted")
    p.add_argument(
        "--batch_window_ms",
        type=float,
        default=5.0,
        help="how long a forward pass waits for concurrent requests to join it",
    )
    p.add_argument("--forward_batch", type=int, default=64, help="most texts in one forward pass")
    p.add_argument(
        "--forward_workers",
        type=int,
        default=0,
        help="forward passes at once, each with CPU limit / workers threads (0: one per CPU)",
    )


def add_inference_log_options(p: argparse.ArgumentParser) -> None:
    """Where requests and responses go as CloudEvents (the drift sidecar), and its token."""
    p.add_argument("--logger_url", default="", help="post requests/responses as CloudEvents here")
    p.add_argument("--logger_mode", default="all", choices=["all", "request", "response"])
    p.add_argument(
        "--logger_token_file",
        default=os.environ.get("SENTIOPS_LOGGER_TOKEN_FILE", ""),
        help="a token the inference log presents to the drift sidecar (`name:token`)",
    )


def add_feedback_options(p: argparse.ArgumentParser) -> None:
    """The store of labels and predictions (live accuracy), and the shadow rollout's role."""
    p.add_argument(
        "--feedback_store",
        default=os.environ.get("SENTIOPS_FEEDBACK_STORE", ""),
        help="store (dir or s3://bucket) of the prediction log and labels: enables "
        "POST /v1/models/<name>:feedback and live accuracy (env SENTIOPS_FEEDBACK_STORE)",
    )
    p.add_argument(
        "--feedback_refresh_seconds",
        type=float,
        default=float(os.environ.get("SENTIOPS_FEEDBACK_REFRESH_SECONDS", "30") or 30),
        help="how often live accuracy is read again from the store's labels (a shadow counts "
        "new labels at this pace) (env SENTIOPS_FEEDBACK_REFRESH_SECONDS)",
    )
    p.add_argument(
        "--shadow",
        default=os.environ.get("SENTIOPS_SHADOW", "false"),
        type=flag,
        help="this predictor gets a copy of live requests (a shadow rollout): it keeps the "
        "mirrored request ids, takes no labels, writes no inference log, and counts the "
        "labels of its own answers from --feedback_store (env SENTIOPS_SHADOW)",
    )


def add_access_options(p: argparse.ArgumentParser) -> None:
    """Tokens, the rate limit per client and the access log."""
    p.add_argument(
        "--auth_token_file",
        default=os.environ.get("SENTIOPS_AUTH_TOKEN_FILE", ""),
        help="tokens (a `name:token` line file or a directory of files, e.g. a mounted "
        "Secret): feedback needs `Authorization: Bearer <token>` (env SENTIOPS_AUTH_TOKEN_FILE)",
    )
    p.add_argument(
        "--auth_reads",
        default=False,
        type=flag,
        help="predict/infer/explain/metadata need a token too (health, /metrics stay open)",
    )
    p.add_argument(
        "--rate_limit",
        type=float,
        default=float(os.environ.get("SENTIOPS_RATE_LIMIT", "0") or 0),
        help="requests a second per client on the model's endpoints (0: no limit); over it 429 "
        "with Retry-After (env SENTIOPS_RATE_LIMIT)",
    )
    p.add_argument(
        "--rate_burst",
        type=float,
        default=0.0,
        help="burst per client (default: one second's worth)",
    )
    p.add_argument(
        "--access_log",
        default=False,
        type=flag,
        help="log a line per request (uvicorn's access log; off: Prometheus has the numbers)",
    )


if __name__ == "__main__":
    safe_log()  # a client's value with a newline cannot forge a log line
    logging.basicConfig(level=logging.INFO)
    run(parser().parse_args())
