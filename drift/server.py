"""HTTP: POST / (CloudEvents; with a bearer token when the sidecar has a token file),
GET /metrics, /healthz (alive), /readyz (detector loaded), /status (JSON per model version).
Starlette on uvicorn (no pydantic: runs beside alibi-detect's pydantic<2)."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from drift.events import BadEvent, parse
from drift.monitor import Monitor
from sentiops import metrics

logger = logging.getLogger("sentiops.drift.server")
MAX_BODY = 8 * 1024 * 1024  # a request of 256 texts of 5000 characters fits


def create_app(monitor: Monitor, tokens: Any = None, limiter: Any = None) -> Starlette:
    """`tokens` (`sentiops.security.auth.Tokens`): POST / needs one of them (401/403
    otherwise); `limiter` (`sentiops.security.ratelimit.RateLimiter`): events a second per
    client (429 over it)."""
    bad_seen: Counter[str] = Counter()

    def bad(reason: str, message: str, status: int = 400) -> JSONResponse:
        metrics.DRIFT_BAD_EVENTS.labels(reason).inc()
        metrics.DRIFT_EVENTS.labels("bad").inc()
        bad_seen[reason] += 1
        if bad_seen[reason] <= 10 or bad_seen[reason] % 100 == 0:  # logged, not flooded
            logger.warning("bad event (%s, #%d): %s", reason, bad_seen[reason], message)
        return JSONResponse({"error": message, "reason": reason}, status_code=status)

    async def receive(request: Request) -> Response:
        if limiter is not None:
            from sentiops.security.ratelimit import retry_after

            client = request.client.host if request.client else "unknown"
            wait = limiter.allow(client)
            if wait > 0:
                reply = bad(
                    "rate_limited",
                    f"too many events from {client}: the limit is "
                    f"{limiter.rate:g}/s; retry after {retry_after(wait)} s",
                    429,
                )
                reply.headers["Retry-After"] = retry_after(wait)
                return reply
        if tokens is not None:
            from sentiops.security.auth import AuthError

            try:
                tokens.check(request.headers.get("authorization"))
            except AuthError as exc:
                reply = bad("unauthorized", f"{exc.message}; {exc.hint}", exc.status)
                if exc.status == 401:
                    reply.headers["WWW-Authenticate"] = 'Bearer realm="sentiops"'
                return reply
        body = await read_body(request)
        if isinstance(body, str):
            return bad("too_large", f"{body}; send fewer or shorter texts per request", 413)
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            event = parse(headers, body)
        except BadEvent as exc:
            return bad(exc.reason, str(exc))
        if event.model_version:  # a new version costs a window, series and files: only known ones
            refused = monitor.versions.cached(event.model_version)
            if refused is None:
                refused = await run_in_threadpool(monitor.versions.check, event.model_version)
            if refused:
                return bad("unknown_version", refused)
        if not monitor.offer(event):  # the sender's pace, not a fault here: 429, never a 5xx
            return JSONResponse(
                {
                    "error": f"the drift sidecar's queue ({monitor.events.maxsize} events) is "
                    "full: events arrive faster than it takes them in; this one was not kept, "
                    "send it again after the Retry-After seconds and slow down",
                    "reason": "queue_full",
                },
                status_code=429,
                headers={"Retry-After": "1"},
            )
        return JSONResponse({"status": "accepted", "id": event.id}, status_code=202)

    async def prometheus(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(request: Request) -> Response:
        ok = monitor.ready
        return JSONResponse(
            {"ready": ok, "reason": monitor.ready_reason}, status_code=200 if ok else 503
        )

    async def status(request: Request) -> Response:
        return JSONResponse(_jsonable(monitor.status()))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        monitor.close()  # SIGTERM: flush the prediction log

    return Starlette(
        routes=[
            Route("/", receive, methods=["POST"]),
            Route("/metrics", prometheus, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/status", status, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes | str:
    """The body, or what made it too large: a Content-Length over `limit` is refused before
    anything is read, and a body without one (chunked) is read only up to `limit`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return f"the event body is {declared} bytes (Content-Length), over the limit of {limit}"
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return f"the event body goes on past the limit of {limit} bytes"
        chunks.append(chunk)
    return b"".join(chunks)


def _jsonable(obj: Any) -> Any:
    import json

    return json.loads(json.dumps(obj, default=str))
