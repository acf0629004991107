"""Prediction ids and label feedback on the predictor.

- `RequestId` (ASGI): every predict/infer/explain request gets a **prediction id issued by
  this server** (`RequestIds`: 128 random bits, so ids never collide across replicas,
  revisions or restarts, and no client can choose one), returned as `x-request-id` (a v2
  answer's `id` too, a v1 answer's `"id"`). The inference log's `ce-id`, the prediction log's
  `id` and feedback all use it. An id the client sends (`x-request-id`, a v2 body's `id`, 1-128
  characters of `A-Z a-z 0-9 . _ -`) is kept only for correlation: answered as
  `x-client-request-id` and stored with the prediction as `client_id`; a label never joins
  by it. A request carrying a `ce-id` header is refused (400): the inference log's event id
  is assigned by the server side (KServe's agent), never by a client.
- Writes need a token when `--auth_token_file` is set (`sentiops.security.auth`): feedback without
  a valid `Authorization: Bearer` is 401/403 and stores nothing; each stored label records
  the token's name (`labelled_by`). `--auth_reads` closes predict/infer/explain/metadata too
  (health and /metrics stay open for probes and Prometheus).
- `POST /v1/models/<name>:feedback` with `{"id": ..., "label": ...}` (one or a list): the
  labels are joined with the predictions they are about and stored (`sentiops.feedback`);
  4xx with `{"error", "problems"}` names every refused item, nothing of a refused request is
  stored. Live accuracy per model version is re-exported every `refresh_seconds` from the
  store (labels given to any replica count).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import Request  # at module level: FastAPI resolves the route's annotations here
from fastapi.responses import JSONResponse

from sentiops.errors import FeedbackError, InvalidInput, SentiOpsError
from sentiops.feedback.labels import RANDOM, TARGETED, parse_items
from sentiops.security.auth import AuthError
from sentiops.security.limits import json_body
from sentiops.security.ratelimit import retry_after

logger = logging.getLogger("sentiops.serving.feedback")
PATHS = (":predict", ":explain", "/infer")
#: What a client's own request id may be to be kept for correlation (no ':' : `<id>:<i>`
#: names the i-th text of a batch).
CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
#: The header a client's own id comes back in (and the model sees it in).
CLIENT_ID_HEADER = "x-client-request-id"
CE_ID_REFUSED = (
    "a ce-id header names the inference log's event and is assigned by the server (KServe's "
    "agent), never by a client; send the request without ce-* headers (your own id may go in "
    "x-request-id, kept as x-client-request-id)"
)


class RequestIds:
    """The ids of predict/infer/explain requests, over REST and gRPC alike: a new prediction
    id per request, issued here (never the client's), and the client's own id when it is well
    formed (kept for correlation only)."""

    def __init__(self, new: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        self.new = new

    def assign(self, asked: str) -> tuple[str, str]:
        """(the prediction id, the client's id to keep or '')."""
        asked = asked.strip()
        return self.new(), asked if CLIENT_ID.fullmatch(asked) else ""


class RequestId:
    def __init__(self, app: Any, ids: RequestIds) -> None:
        self.app, self.ids = app, ids

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope.get("path", "").endswith(PATHS):
            await self.app(scope, receive, send)
            return
        headers = list(scope.get("headers") or [])
        given = dict(headers)
        if b"ce-id" in given:
            body = json.dumps({"error": CE_ID_REFUSED}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 400,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        asked = given.get(b"x-request-id", b"").decode(errors="replace").strip()
        replay: list[dict] = []
        if not asked and scope.get("path", "").endswith("/infer"):
            # a v2 body's id is the client's id (bounded, and its nesting checked: the Guard
            # outside limits the body)
            more = True
            while more:
                message = await receive()
                replay.append(message)
                more = message.get("more_body", False) and message["type"] == "http.request"
            body = b"".join(m.get("body", b"") for m in replay)
            try:
                value = json.loads(body).get("id") if body[:1] == b"{" else None
                asked = value if isinstance(value, str) else ""
            except (ValueError, RecursionError):
                asked = ""
        rid, client = self.ids.assign(asked)
        drop = (b"x-request-id", CLIENT_ID_HEADER.encode())
        headers = [(k, v) for k, v in headers if k not in drop]
        headers.append((b"x-request-id", rid.encode()))
        if client:
            headers.append((CLIENT_ID_HEADER.encode(), client.encode()))
        scope = {**scope, "headers": headers}

        async def replaying() -> dict:
            return replay.pop(0) if replay else await receive()

        async def with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"x-request-id", rid.encode())]
                if client:
                    extra.append((CLIENT_ID_HEADER.encode(), client.encode()))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, replaying, with_id)


def prediction_rows(
    request_id: str,
    texts: list[str],
    labels: list[str],
    confidences: list[float],
    model_name: str,
    model_version: str,
    *,
    client_id: str = "",
    sample_key: Any = None,
) -> list[dict[str, Any]]:
    """What the predictor remembers of a request for feedback: the prediction log's ids
    (`<request id>` for one text, `<request id>:<i>` for the i-th of several), the client's
    own id, and whether each prediction is in the random evaluation sample (decided here, by
    `sample_key`: `sentiops.security.secrets.SampleKey`)."""
    now = datetime.now(UTC).isoformat()
    one = len(texts) == 1
    rows = []
    for i, (t, lab, c) in enumerate(zip(texts, labels, confidences, strict=True)):
        pid = request_id if one else f"{request_id}:{i}"
        sample = "" if sample_key is None else RANDOM if sample_key.in_sample(pid) else TARGETED
        rows.append(
            {
                "id": pid,
                "text": t,
                "label": lab,
                "confidence": c,
                "model_name": model_name,
                "model_version": model_version,
                "time": now,
                "client_id": client_id,
                "sample": sample,
            }
        )
    return rows


class Refresher(threading.Thread):
    """Re-exports live accuracy from the store every `seconds` (labels from any replica)."""

    def __init__(self, feedback: Any, seconds: float = 30.0) -> None:
        super().__init__(daemon=True, name="sentiops-live-accuracy")
        self.feedback, self.seconds = feedback, seconds

    def run(self) -> None:
        while True:
            try:
                self.feedback.export_live_metrics()
            except Exception as exc:  # noqa: BLE001 - the store may be down for a while
                logger.warning("live accuracy: store unreadable: %s", exc)
            threading.Event().wait(self.seconds)


def refused(exc: Any) -> JSONResponse:
    """401/403 for a request without a valid token (nothing was done)."""
    headers = {"WWW-Authenticate": 'Bearer realm="sentiops"'} if exc.status == 401 else {}
    return JSONResponse(
        {"error": f"{exc.message}; {exc.hint}"}, status_code=exc.status, headers=headers
    )


def over_limit(limiter: Any, model: Any, client: str) -> tuple[str, str] | None:
    """(the error, Retry-After in seconds) when `client` is over its rate (counted as
    `sentiops_request_errors_total{reason="rate_limited"}`), else None; REST and gRPC alike."""
    from sentiops import metrics  # lazy: pulls prometheus_client

    wait = limiter.allow(client)
    if wait <= 0:
        return None
    metrics.REQUEST_ERRORS.labels(model.name, model.version, "rate_limited").inc()
    after = retry_after(wait)
    return (
        f"too many requests from {client}: the limit is {limiter.rate:g}/s (bursts of "
        f"{limiter.burst:g}); retry after {after} s",
        after,
    )


class RateLimit:
    """ASGI: at most `--rate_limit` requests a second per client (bursts of `--rate_burst`) on
    the model's endpoints and feedback; over it, 429 with `Retry-After` (never a 5xx). The
    client is its peer address (a proxy in front should set `--rate_limit` per its own
    clients). Health, readiness and /metrics are never limited."""

    def __init__(self, app: Any, limiter: Any, model: Any) -> None:
        self.app, self.limiter, self.model = app, limiter, model

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith(("/v1/models/", "/v2/models/")) and not path.endswith("/ready"):
            client = (scope.get("client") or ("unknown", 0))[0]
            over = over_limit(self.limiter, self.model, str(client))
            if over is not None:
                error, after = over
                reply = JSONResponse(
                    {"error": error}, status_code=429, headers={"Retry-After": after}
                )
                await reply(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BearerReads:
    """`--auth_reads`: predict/infer/explain/metadata need a token too (ASGI). Readiness
    (`/v2/models/<name>/ready`, `GET /v1/models/<name>`: the probes), `/v2/health/*` and
    `/metrics` stay open."""

    def __init__(self, app: Any, tokens: Any) -> None:
        self.app, self.tokens = app, tokens

    @staticmethod
    def _closed(method: str, path: str) -> bool:
        if not path.startswith(("/v1/models/", "/v2/models/")) or path.endswith(
            (":feedback", "/ready")
        ):
            return False
        probe = method == "GET" and path.startswith("/v1/models/") and path.count("/") == 3
        return not probe

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path and self._closed(scope.get("method", "GET"), path):
            auth = (
                dict(scope.get("headers") or []).get(b"authorization", b"").decode(errors="replace")
            )
            try:
                self.tokens.check(auth)
            except AuthError as exc:
                await refused(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def add_feedback_route(app: Any, model: Any, feedback: Any | None, tokens: Any = None) -> None:
    @app.post(f"/v1/models/{model.name}:feedback", response_model=None)
    async def post_feedback(request: Request) -> JSONResponse:
        labelled_by = ""
        if tokens is not None:
            try:
                labelled_by = tokens.check(request.headers.get("authorization"))
            except AuthError as exc:
                return refused(exc)
        if feedback is None:
            return JSONResponse(
                {
                    "error": "feedback is not enabled on this predictor; start it "
                    "with --feedback_store DIR|s3://bucket"
                },
                status_code=404,
            )
        try:
            body = json_body(await request.body())
        except InvalidInput as exc:
            return JSONResponse(
                {
                    "error": f'{exc.message}; send {{"id": "<request id>", '
                    '"label": "positive"} or a list of them'
                },
                status_code=400,
            )
        try:
            items = parse_items(body)
            result = await asyncio.get_running_loop().run_in_executor(
                None, lambda: feedback.record(items, labelled_by=labelled_by)
            )
        except FeedbackError as exc:
            return JSONResponse(
                {"error": f"{exc.message}; {exc.hint}", "problems": exc.problems},
                status_code=exc.status,
            )
        except SentiOpsError as exc:  # the store is unreachable: nothing was stored
            return JSONResponse(
                {"error": f"{exc.message}; nothing was stored, retry later"}, status_code=503
            )
        return JSONResponse(result)
