"""POST /: one CloudEvent of the inference log (a request's texts or a response's
predictions). Before it is parsed: the client's rate (429 with Retry-After), its token
(401/403) and the body's size (413, read only up to the limit). Then: a malformed event is a
400 naming its reason, an event of a model version the store does not know a 400, a full
queue a 429 (the sender's pace, not a fault here: never a 5xx); a kept event is a 202."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from drift.deps import Sidecar, read_body, sidecar
from drift.events import BadEvent, InferenceEvent, parse
from sentiops.security.auth import AuthError
from sentiops.security.ratelimit import retry_after


async def receive(request: Request) -> Response:
    side = sidecar(request)
    refused = rate_limited(side, request) or unauthorized(side, request)
    if refused is not None:
        return refused
    body = await read_body(request)
    if isinstance(body, str):
        return side.bad("too_large", f"{body}; send fewer or shorter texts per request", 413)
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        event = parse(headers, body)
    except BadEvent as exc:
        return side.bad(exc.reason, str(exc))
    refused = await unknown_version(side, event)
    if refused is not None:
        return refused
    if not side.monitor.offer(event):
        return queue_full(side)
    return JSONResponse({"status": "accepted", "id": event.id}, status_code=202)


def rate_limited(side: Sidecar, request: Request) -> Response | None:
    """A 429 with Retry-After when the client sends events faster than the rate limit."""
    if side.limiter is None:
        return None
    client = request.client.host if request.client else "unknown"
    wait = side.limiter.allow(client)
    if wait <= 0:
        return None
    reply = side.bad(
        "rate_limited",
        f"too many events from {client}: the limit is "
        f"{side.limiter.rate:g}/s; retry after {retry_after(wait)} s",
        429,
    )
    reply.headers["Retry-After"] = retry_after(wait)
    return reply


def unauthorized(side: Sidecar, request: Request) -> Response | None:
    """A 401 (no token; with WWW-Authenticate) or 403 (a wrong one) when POST / needs one."""
    if side.tokens is None:
        return None
    try:
        side.tokens.check(request.headers.get("authorization"))
    except AuthError as exc:
        reply = side.bad("unauthorized", f"{exc.message}; {exc.hint}", exc.status)
        if exc.status == 401:
            reply.headers["WWW-Authenticate"] = 'Bearer realm="sentiops"'
        return reply
    return None


async def unknown_version(side: Sidecar, event: InferenceEvent) -> Response | None:
    """A 400 for an event of a model version the store does not know: a new version costs a
    window, series and files, so only known ones are taken."""
    if not event.model_version:
        return None
    versions = side.monitor.versions
    refused = versions.cached(event.model_version)
    if refused is None:
        refused = await run_in_threadpool(versions.check, event.model_version)
    return side.bad("unknown_version", refused) if refused else None


def queue_full(side: Sidecar) -> Response:
    """A 429: the event was not kept, the sender sends it again after Retry-After, slower."""
    return JSONResponse(
        {
            "error": f"the drift sidecar's queue ({side.monitor.events.maxsize} events) is "
            "full: events arrive faster than it takes them in; this one was not kept, "
            "send it again after the Retry-After seconds and slow down",
            "reason": "queue_full",
        },
        status_code=429,
        headers={"Retry-After": "1"},
    )


routes = [Route("/", receive, methods=["POST"])]
