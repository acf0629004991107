"""Start the predictor: threads sized to the container's CPU limit, the model loaded (and
downloaded from s3:// if needed), request-size limits and error accounting on the REST app,
then `kserve.ModelServer` (REST v1/v2, and gRPC v2 under the same rules: serving.grpc_guard)."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import kserve.protocol.rest.server as rest
from fastapi.responses import JSONResponse
from kserve import model_server as ks

from sentiops import metrics
from sentiops.feedback.intake import Feedback
from sentiops.feedback.predictions import PredictionIndex
from sentiops.feedback.shadow import ShadowLabels
from sentiops.security.auth import TokenFile, token_from_file
from sentiops.security.limits import MAX_DEPTH, json_depth
from sentiops.security.ratelimit import RateLimiter
from sentiops.security.secrets import SampleKey
from serving.feedback import (
    BearerReads,
    RateLimit,
    Refresher,
    RequestId,
    RequestIds,
    add_feedback_route,
)
from serving.grpc_guard import GrpcGuard, GuardedModelServer
from serving.logger import install
from serving.model import Busy, SentimentPredictor

logger = logging.getLogger("sentiops.serving")
MAX_BODY_BYTES = 2_000_000
#: The answer's model version (every predict/infer/explain response).
VERSION_HEADER = b"x-model-version"


def cpu_limit() -> int:
    """CPUs this container may use: cgroup v2 cpu.max quota, else the affinity mask."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            return max(1, int(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return len(os.sched_getaffinity(0)) or 1


def set_threads(workers: int) -> int:
    """Threads per forward pass: the CPU limit shared by `workers` concurrent passes."""
    n = max(1, cpu_limit() // max(1, workers))
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    try:
        import torch

        torch.set_num_threads(n)
        torch.set_num_interop_threads(1)
    except (ImportError, RuntimeError):
        pass
    return n


class Guard:
    """ASGI middleware: refuses bodies over `limit` bytes with 413 (before they are read) and
    JSON bodies of the model's endpoints that nest too deep with 400 (before anything parses
    them: `sentiops.security.limits`), closes KServe's model repository API (load/unload),
    counts errors KServe answers before the model runs (unknown model 404, not ready 503), and
    says on every predict/infer/explain answer which model version gave it (`x-model-version`:
    a v1 body has no version)."""

    def __init__(self, app: Any, model: SentimentPredictor, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.model, self.limit = app, model, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope, refused = self._admitted(scope)
        if refused is not None:
            await self._reply(send, *refused)
            return
        inner_receive: Any = _Limited(receive, self.limit)
        if scope.get("method") == "POST" and scope.get("path", "").endswith(CHECKED_BODIES):
            inner_receive = await self._checked_body(scope, inner_receive, receive, send)
            if inner_receive is None:
                return
        try:
            await self.app(scope, inner_receive, self._versioned(scope, send))
        except _TooLarge:
            await self._reply(send, 413, f"request body exceeds the limit of {self.limit} bytes")

    def _admitted(self, scope: dict) -> tuple[dict, tuple[int, str] | None]:
        """The scope the app gets (the version named in it taken out, a JSON content type on a
        v2 infer that sent none), or what refuses it before any body is read: the model
        repository API (404), another model version (404), a model not ready (503), a declared
        body over the limit (413)."""
        if scope.get("path", "").startswith("/v2/repository/"):
            # KServe's model repository API would let any client unload the model
            return scope, (404, "the model repository API is disabled on this server")
        scope = self._without_version(scope)
        if scope.get("status"):
            return scope, (scope["status"], scope["error"])
        if not self.model.ready and self._about_the_model(scope.get("path", "")):
            # answered here with the reason (KServe would log a traceback on every probe)
            if scope.get("path", "").endswith(PREDICT_PATHS):
                self._count("model_not_ready")
            return scope, (
                503,
                f"model {self.model.name} is not ready: {self.model.not_ready_reason}",
            )
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            error = (
                f"request body of {int(length)} bytes exceeds the limit of {self.limit} bytes; "
                "send fewer or shorter texts"
            )
            return scope, (413, error)
        return _with_json_content_type(scope, headers), None

    async def _checked_body(self, scope: dict, limited: Any, receive: Any, send: Any) -> Any:
        """A model endpoint's body, read up to the limit (413 over it) and its JSON nesting
        checked before anything parses it (400 too deep): a `receive` that replays it, or
        None when it was refused (answered here)."""
        try:
            body = await _read_all(limited)
        except _TooLarge:
            await self._reply(send, 413, f"request body exceeds the limit of {self.limit} bytes")
            return None
        size = dict(scope.get("headers") or []).get(b"inference-header-content-length", b"")
        head = body[: int(size)] if size.isdigit() else body  # binary tensors follow
        depth = json_depth(head)
        if depth > MAX_DEPTH:
            if scope["path"].endswith(PREDICT_PATHS):
                self._count("invalid_input")
            await self._reply(
                send,
                400,
                f"the JSON body nests {depth} levels deep; the "
                f"limit is {MAX_DEPTH}: send texts as a flat list of strings",
            )
            return None
        replay = [{"type": "http.request", "body": body, "more_body": False}]

        async def replaying() -> dict:
            return replay.pop() if replay else await receive()

        return replaying

    def _versioned(self, scope: dict, send: Any) -> Any:
        """`send` that counts the errors KServe answers on a model endpoint (unknown model
        404, not ready 503) and adds the model version to that endpoint's answer."""
        predicting = scope.get("path", "").endswith(PREDICT_PATHS)

        async def versioned_send(message: dict) -> None:
            if predicting and message["type"] == "http.response.start":
                reason = {503: "model_not_ready", 404: "model_not_found"}.get(message["status"])
                if reason:
                    self._count(reason)
                version = (VERSION_HEADER, str(self.model.version).encode())
                message = {**message, "headers": [*message.get("headers", []), version]}
            await send(message)

        return versioned_send

    def _count(self, reason: str) -> None:
        metrics.REQUEST_ERRORS.labels(self.model.name, self.model.version, reason).inc()

    def _about_the_model(self, path: str) -> bool:
        name = self.model.name
        return path in (
            "/v2/health/ready",
            f"/v1/models/{name}",
            f"/v2/models/{name}",
        ) or path.startswith((f"/v1/models/{name}:", f"/v2/models/{name}/"))

    def _without_version(self, scope: dict) -> dict:
        """`/v2/models/<name>/versions/<v>/...` and `?model_version=<v>` name a version: the one
        this server serves is answered as if unversioned, any other is a 404 (KServe itself
        answers 501 to every versioned request)."""
        path = scope.get("path", "")
        query = dict(parse_qsl(scope.get("query_string", b"").decode(errors="replace")))
        asked = query.pop("model_version", None)
        parts = path.split("/")
        if len(parts) >= 6 and parts[1:3] == ["v2", "models"] and parts[4] == "versions":
            asked, path = parts[5], "/".join(parts[:4] + parts[6:])
        if asked is None:
            return scope
        if asked != self.model.version:
            error = (
                f"model version {asked!r} is not served here; this server serves "
                f"{self.model.name} version {self.model.version!r}"
            )
            return {**scope, "status": 404, "error": error}
        return {
            **scope,
            "path": path,
            "raw_path": path.encode(),
            "query_string": urlencode(query).encode(),
        }

    @staticmethod
    async def _reply(send: Any, status: int, error: str) -> None:
        body = json.dumps({"error": error}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class _Limited:
    """`receive` that raises _TooLarge once the body it has passed on is over `limit` bytes."""

    def __init__(self, receive: Any, limit: int) -> None:
        self.receive, self.limit, self.received = receive, limit, 0

    async def __call__(self) -> dict:
        message = await self.receive()
        self.received += len(message.get("body", b""))
        if self.received > self.limit:
            raise _TooLarge()
        return dict(message)


def _with_json_content_type(scope: dict, headers: dict) -> dict:
    """A v2 infer without a content type gets `application/json`: Triton's HTTP client sends
    its JSON without one, and KServe would read it as binary tensor data and refuse it."""
    if (
        scope.get("path", "").endswith("/infer")
        and b"content-type" not in headers
        and b"inference-header-content-length" not in headers
    ):
        return {**scope, "headers": [*scope["headers"], (b"content-type", b"application/json")]}
    return scope


#: Endpoints whose JSON bodies are checked for nesting before anything parses them.
PREDICT_PATHS = (":predict", ":explain", "/infer")
CHECKED_BODIES = (*PREDICT_PATHS, ":feedback")


async def _read_all(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def add_metadata_route(app: Any, model: SentimentPredictor) -> None:
    """GET /v2/models/{name} with the label order and version (KServe's own route drops
    fields its schema does not know); registered before KServe's, so it answers first."""

    @app.get("/v2/models/{model_name}", response_model=None)
    async def metadata(model_name: str) -> JSONResponse:
        if model_name != model.name:
            return JSONResponse(
                {"error": f"model {model_name!r} not found; this server serves {model.name!r}"},
                status_code=404,
            )
        if not model.ready:
            return JSONResponse(
                {"error": f"model {model.name} is not ready: {model.not_ready_reason}"},
                status_code=503,
            )
        return JSONResponse(model.metadata())


def add_error_handlers(app: Any) -> None:
    """A client's mistake is one log line (escaped, no traceback: KServe's own handler logs a
    traceback for every 400) and a 400 naming it; a busy server is a 429/503 with
    Retry-After. KServe registers its handlers when its REST server starts, from the names in
    `kserve.protocol.rest.server`: the 400's is replaced there, the busy one added here."""

    async def invalid_input(request: Any, exc: Exception) -> JSONResponse:
        logger.info("400 %s %s: %s", request.method, request.url.path, str(exc)[:300])
        return JSONResponse({"error": str(exc)}, status_code=400)

    async def busy(request: Any, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Busy)
        logger.warning("%d %s: %s", exc.status, request.url.path, exc)
        return JSONResponse(
            {"error": str(exc)},
            status_code=exc.status,
            headers={"Retry-After": str(exc.retry_after)},
        )

    rest.invalid_input_handler = invalid_input
    app.add_exception_handler(Busy, busy)


def feedback_for(
    model: SentimentPredictor, store: str, *, shadow: bool = False, refresh_seconds: float = 30.0
) -> Any:
    """Label feedback over `store` (the prediction log the drift sidecar writes, and where
    labels go), or None when no store is configured. A shadow takes no labels: it counts the
    stored labels of its own answers (`sentiops.feedback.shadow`)."""
    if not store:
        return None
    # which predictions are in the random evaluation sample: decided here, by a keyed hash of
    # the id this server issues (the drift sidecar decides the same with the same secret)
    model.sample_key = SampleKey.from_env()
    if shadow:
        labels = ShadowLabels(store, model_name=model.name)
        model.on_predicted = labels.remember
        Refresher(labels, refresh_seconds).start()
        logger.info("shadow: counting the labels of its answers from %s", store)
        return labels
    index = PredictionIndex(store)
    model.on_predicted = index.remember
    feedback = Feedback(store, index=index, model_name=model.name)
    Refresher(feedback, refresh_seconds).start()
    logger.info("feedback: labels to %s", store)
    return feedback


def run(args: argparse.Namespace) -> None:
    """The predictor, step by step: the model loaded, KServe's REST app given our routes and
    middleware, the gRPC guard, then the server (which runs until it is stopped)."""
    model = load(args)
    add_metadata_route(ks.app, model)
    add_error_handlers(ks.app)
    tokens = tokens_for(args)
    feedback = feedback_for(
        model,
        args.feedback_store,
        shadow=args.shadow,
        refresh_seconds=args.feedback_refresh_seconds,
    )
    add_feedback_route(ks.app, model, feedback, tokens)
    add_inference_log(ks.app, model, args)
    ids = RequestIds()  # one for REST and gRPC: every prediction gets an id issued here
    limiter = add_middleware(ks.app, model, args, ids=ids, tokens=tokens)
    guard = GrpcGuard(model, ids, limiter, tokens, auth_reads=args.auth_reads)
    server = GuardedModelServer(
        (guard,),
        args,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        workers=1,
        enable_grpc=args.enable_grpc,
        enable_latency_logging=args.enable_latency_logging,
    )
    if not args.access_log:  # after KServe configured logging
        for name in ("uvicorn.access", "kserve.trace"):
            logging.getLogger(name).setLevel(logging.WARNING)
    # registered even when not ready: the server stays up, readiness answers 503 and the log
    # above says why (KServe would exit with NoModelReady instead)
    server.register_model(model)
    model.start()
    server.start([])


def load(args: argparse.Namespace) -> SentimentPredictor:
    """The model, its forward passes sized to the CPU limit, loaded (not ready: it says why)."""
    workers = args.forward_workers or cpu_limit()
    threads = set_threads(workers)
    model = SentimentPredictor(
        args.model_name,
        args.model_dir,
        max_batch_size=args.max_batch_size,
        max_chars=args.max_chars,
        batch_window_ms=args.batch_window_ms,
        forward_batch=args.forward_batch,
        workers=workers,
    )
    model.load()
    logger.info(
        "%d forward worker(s) x %d thread(s); model ready: %s", workers, threads, model.ready
    )
    return model


def tokens_for(args: argparse.Namespace) -> TokenFile | None:
    """The tokens writes (and with --auth_reads, reads) need, or None: no token asked."""
    tokens = TokenFile(args.auth_token_file) if args.auth_token_file else None
    if tokens is not None:
        logger.info(
            "writes need a token (%d: %s)%s",
            len(tokens.names),
            ", ".join(tokens.names),
            "; reads too" if args.auth_reads else "",
        )
    elif args.auth_reads:
        raise SystemExit("error: --auth_reads needs --auth_token_file")
    return tokens


def add_inference_log(app: Any, model: SentimentPredictor, args: argparse.Namespace) -> None:
    """Requests and responses posted as CloudEvents to --logger_url (the drift sidecar)."""
    if args.shadow and args.logger_url:
        # the shadow's answers carry the ids of stable's: in the prediction log a label could
        # join the wrong version (sentiops.feedback.shadow)
        logger.warning("shadow: no inference log (--logger_url ignored)")
    elif args.logger_url:
        token = token_from_file(args.logger_token_file) if args.logger_token_file else ""
        install(app, model, args.logger_url, args.logger_mode, token=token)


def add_middleware(
    app: Any,
    model: SentimentPredictor,
    args: argparse.Namespace,
    *,
    ids: RequestIds,
    tokens: TokenFile | None,
) -> RateLimiter | None:
    """The REST app's middleware, innermost first; the rate limiter when there is one.
    The logger and the model see the id RequestId chose; a token is checked before any body
    is read; the Guard's body limit holds before RequestId reads a v2 body."""
    app.add_middleware(RequestId, ids=ids)
    if tokens is not None and args.auth_reads:
        app.add_middleware(BearerReads, tokens=tokens)
    app.add_middleware(Guard, model=model)
    if args.rate_limit <= 0:
        return None
    # outermost: a flood costs as little as possible
    limiter = RateLimiter(args.rate_limit, args.rate_burst or None)
    app.add_middleware(RateLimit, limiter=limiter, model=model)
    return limiter
