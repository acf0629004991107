"""Start the predictor: threads sized to the container's CPU limit, the model loaded (and
downloaded from s3:// if needed), request-size limits and error accounting on the REST app,
then `kserve.ModelServer` (REST v1/v2, and gRPC v2 under the same rules: serving.grpc_guard)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from fastapi.responses import JSONResponse

from sentiops import metrics
from sentiops.security.limits import MAX_DEPTH, json_depth
from serving.model import SentimentModel

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

    def __init__(self, app: Any, model: SentimentModel, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.model, self.limit = app, model, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("path", "").startswith("/v2/repository/"):
            # KServe's model repository API would let any client unload the model
            await self._reply(send, 404, "the model repository API is disabled on this server")
            return
        scope = self._without_version(scope)
        if scope.get("status"):
            await self._reply(send, scope["status"], scope["error"])
            return
        if not self.model.ready and self._about_the_model(scope.get("path", "")):
            # answered here with the reason (KServe would log a traceback on every probe)
            path = scope.get("path", "")
            if path.endswith((":predict", ":explain", "/infer")):
                metrics.REQUEST_ERRORS.labels(
                    self.model.name, self.model.version, "model_not_ready"
                ).inc()
            await self._reply(
                send, 503, f"model {self.model.name} is not ready: {self.model.not_ready_reason}"
            )
            return
        headers = dict(scope.get("headers") or [])
        if (
            scope.get("path", "").endswith("/infer")
            and b"content-type" not in headers
            and b"inference-header-content-length" not in headers
        ):
            # Triton's HTTP client sends its JSON without a content type; KServe would read it
            # as binary tensor data and refuse it
            scope = {
                **scope,
                "headers": [*scope["headers"], (b"content-type", b"application/json")],
            }
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            error = (
                f"request body of {int(length)} bytes exceeds the limit of {self.limit} bytes; "
                "send fewer or shorter texts"
            )
            await self._reply(send, 413, error)
            return
        received = 0

        async def limited() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise _TooLarge()
            return dict(message)

        async def counting_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                reason = {503: "model_not_ready", 404: "model_not_found"}.get(message["status"])
                path = scope.get("path", "")
                if path.endswith((":predict", ":explain", "/infer")):
                    if reason:
                        metrics.REQUEST_ERRORS.labels(
                            self.model.name, self.model.version, reason
                        ).inc()
                    version = (VERSION_HEADER, str(self.model.version).encode())
                    message = {**message, "headers": [*message.get("headers", []), version]}
            await send(message)

        inner_receive = limited
        if scope.get("method") == "POST" and scope.get("path", "").endswith(CHECKED_BODIES):
            try:
                body = await _read_all(limited)
            except _TooLarge:
                await self._reply(
                    send, 413, f"request body exceeds the limit of {self.limit} bytes"
                )
                return
            size = headers.get(b"inference-header-content-length", b"")
            head = body[: int(size)] if size.isdigit() else body  # binary tensors follow
            depth = json_depth(head)
            if depth > MAX_DEPTH:
                if scope["path"].endswith(PREDICT_PATHS):
                    metrics.REQUEST_ERRORS.labels(
                        self.model.name, self.model.version, "invalid_input"
                    ).inc()
                await self._reply(
                    send,
                    400,
                    f"the JSON body nests {depth} levels deep; the "
                    f"limit is {MAX_DEPTH}: send texts as a flat list of strings",
                )
                return
            replay = [{"type": "http.request", "body": body, "more_body": False}]

            async def replaying() -> dict:
                return replay.pop() if replay else await receive()

            inner_receive = replaying
        try:
            await self.app(scope, inner_receive, counting_send)
        except _TooLarge:
            await self._reply(send, 413, f"request body exceeds the limit of {self.limit} bytes")

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
        from urllib.parse import parse_qsl, urlencode

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
        import json

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


def add_metadata_route(app: Any, model: SentimentModel) -> None:
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
    import kserve.protocol.rest.server as rest

    from serving.model import Busy

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
    model: SentimentModel, store: str, shadow: bool = False, refresh_seconds: float = 30.0
) -> Any:
    """Label feedback over `store` (the prediction log the drift sidecar writes, and where
    labels go), or None when no store is configured. A shadow takes no labels: it counts the
    stored labels of its own answers (`sentiops.feedback.shadow`)."""
    if not store:
        return None
    from sentiops.security.secrets import SampleKey
    from serving.feedback import Refresher

    # which predictions are in the random evaluation sample: decided here, by a keyed hash of
    # the id this server issues (the drift sidecar decides the same with the same secret)
    model.sample_key = SampleKey.from_env()

    if shadow:
        from sentiops.feedback.shadow import ShadowLabels

        labels = ShadowLabels(store, model_name=model.name)
        model.on_predicted = labels.remember
        Refresher(labels, refresh_seconds).start()
        logger.info("shadow: counting the labels of its answers from %s", store)
        return labels
    from sentiops.feedback.intake import Feedback
    from sentiops.feedback.predictions import PredictionIndex

    index = PredictionIndex(store)
    model.on_predicted = index.remember
    feedback = Feedback(store, index=index, model_name=model.name)
    Refresher(feedback, refresh_seconds).start()
    logger.info("feedback: labels to %s", store)
    return feedback


def run(args: argparse.Namespace) -> None:
    from kserve import model_server as ks

    workers = args.forward_workers or cpu_limit()
    threads = set_threads(workers)
    model = SentimentModel(
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
    add_metadata_route(ks.app, model)
    add_error_handlers(ks.app)
    from sentiops.security.auth import TokenFile
    from serving.feedback import BearerReads, RequestId, RequestIds, add_feedback_route

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
    feedback = feedback_for(model, args.feedback_store, args.shadow, args.feedback_refresh_seconds)
    add_feedback_route(ks.app, model, feedback, tokens)
    if args.shadow and args.logger_url:
        # the shadow's answers carry the ids of stable's: in the prediction log a label could
        # join the wrong version (sentiops.feedback.shadow)
        logger.warning("shadow: no inference log (--logger_url ignored)")
    elif args.logger_url:
        from sentiops.security.auth import token_from_file
        from serving.logger import install

        token = token_from_file(args.logger_token_file) if args.logger_token_file else ""
        install(ks.app, model, args.logger_url, args.logger_mode, token=token)
    ids = RequestIds()  # one for REST and gRPC: every prediction gets an id issued here
    # the logger and the model see the id RequestId chose; a token is checked before any
    # body is read; the Guard's body limit holds before RequestId reads a v2 body
    ks.app.add_middleware(RequestId, ids=ids)
    if tokens is not None and args.auth_reads:
        ks.app.add_middleware(BearerReads, tokens=tokens)
    ks.app.add_middleware(Guard, model=model)
    limiter = None
    if args.rate_limit > 0:  # outermost: a flood costs as little as possible
        from sentiops.security.ratelimit import RateLimiter
        from serving.feedback import RateLimit

        limiter = RateLimiter(args.rate_limit, args.rate_burst or None)
        ks.app.add_middleware(RateLimit, limiter=limiter, model=model)
    from serving.grpc_guard import GrpcGuard, GuardedModelServer

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
