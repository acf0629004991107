"""Request ids and label feedback on the predictor.

- `RequestId` (ASGI): every predict/infer/explain request carries `x-request-id` — the
  client's, else the v2 body's `id`, else a new one — and every answer returns it (a v2
  answer's `id` too). The inference log's `ce-id`, the prediction log's `id` and feedback all
  use this one id. A client's id must be 1-128 characters of `A-Z a-z 0-9 . _ -` and new to
  this predictor (`RequestIds`, shared with gRPC: serving.grpc_guard): otherwise it is
  replaced by a new one and the answer says so (`x-request-id-replaced`), so a label can only
  ever join the prediction it was given for.
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
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from fastapi import Request  # at module level: FastAPI resolves the route's annotations here
from fastapi.responses import JSONResponse

logger = logging.getLogger("sentiops.serving.feedback")
PATHS = (":predict", ":explain", "/infer")
#: What a client-chosen request id may be (no ':' : `<id>:<i>` names the i-th text of a batch).
CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


class RequestIds:
    """Which id a predict/infer/explain request gets, over REST and gRPC alike: the client's
    when it is 1-128 characters of `A-Z a-z 0-9 . _ -` and new to this predictor — neither a
    prediction it remembers or finds in the prediction log (`known`) nor the id of a request
    still in flight (the last `recent` ids handed out) — else a new one, with the reason.
    Without feedback (`known` None) an id names nothing a label could join, so it is only
    checked for its form."""

    def __init__(self, known: Callable[[str], bool] | None = None, recent: int = 20_000) -> None:
        self.known, self.recent = known, recent
        self.claimed: OrderedDict[str, None] = OrderedDict()
        self.lock = threading.Lock()

    def assign(self, asked: str) -> tuple[str, str]:
        """(the id to use, why the client's `asked` was replaced or '')."""
        asked = asked.strip()
        with self.lock:  # checked and claimed at once: two requests never get one id
            problem = self._problem(asked) if asked else ""
            rid = asked if asked and not problem else uuid.uuid4().hex
            if self.known is not None:
                self.claimed[rid] = None
                while len(self.claimed) > self.recent:
                    self.claimed.popitem(last=False)
        if problem:
            logger.info("request id replaced: %s", problem)  # the reason, never the id
        return rid, problem

    def _problem(self, rid: str) -> str:
        if not CLIENT_ID.fullmatch(rid):
            return "not 1-128 characters of A-Z a-z 0-9 . _ -"
        if self.known is not None and (rid in self.claimed or self.known(rid)):
            return "already used by an earlier prediction"
        return ""


def replaced_note(problem: str) -> str:
    """What the answer says when the client's id was replaced (`x-request-id-replaced`)."""
    return f"your x-request-id was {problem}; use this one"


class RequestId:
    def __init__(self, app: Any, ids: RequestIds) -> None:
        self.app, self.ids = app, ids

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope.get("path", "").endswith(PATHS):
            await self.app(scope, receive, send)
            return
        headers = list(scope.get("headers") or [])
        rid = dict(headers).get(b"x-request-id", b"").decode(errors="replace").strip()
        replay: list[dict] = []
        if not rid and scope.get("path", "").endswith("/infer"):
            # a v2 body's id names the request (bounded: the Guard outside limits the body)
            more = True
            while more:
                message = await receive()
                replay.append(message)
                more = message.get("more_body", False) and message["type"] == "http.request"
            body = b"".join(m.get("body", b"") for m in replay)
            try:
                value = json.loads(body).get("id") if body[:1] == b"{" else None
                rid = value if isinstance(value, str) else ""
            except ValueError:
                rid = ""
        rid, replaced = self.ids.assign(rid)
        headers = [(k, v) for k, v in headers if k != b"x-request-id"]
        scope = {**scope, "headers": [*headers, (b"x-request-id", rid.encode())]}

        async def replaying() -> dict:
            return replay.pop(0) if replay else await receive()

        async def with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"x-request-id", rid.encode())]
                if replaced:
                    extra.append((b"x-request-id-replaced", replaced_note(replaced).encode()))
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
) -> list[dict[str, Any]]:
    """What the predictor remembers of a request for feedback: the prediction log's ids
    (`<request id>` for one text, `<request id>:<i>` for the i-th of several)."""
    from datetime import UTC, datetime

    now = datetime.now(UTC).isoformat()
    one = len(texts) == 1
    return [
        {
            "id": request_id if one else f"{request_id}:{i}",
            "text": t,
            "label": lab,
            "confidence": c,
            "model_name": model_name,
            "model_version": model_version,
            "time": now,
        }
        for i, (t, lab, c) in enumerate(zip(texts, labels, confidences, strict=True))
    ]


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
    return JSONResponse({"error": f"{exc.message}; {exc.hint}"}, status_code=exc.status,
                        headers=headers)  # fmt: skip


def over_limit(limiter: Any, model: Any, client: str) -> tuple[str, str] | None:
    """(the error, Retry-After in seconds) when `client` is over its rate (counted as
    `sentiops_request_errors_total{reason="rate_limited"}`), else None; REST and gRPC alike."""
    from sentiops import metrics
    from sentiops.security.ratelimit import retry_after

    wait = limiter.allow(client)
    if wait <= 0:
        return None
    metrics.REQUEST_ERRORS.labels(model.name, model.version, "rate_limited").inc()
    after = retry_after(wait)
    return (f"too many requests from {client}: the limit is {limiter.rate:g}/s (bursts of "
            f"{limiter.burst:g}); retry after {after} s", after)  # fmt: skip


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
                reply = JSONResponse({"error": error}, status_code=429,
                                     headers={"Retry-After": after})  # fmt: skip
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
            from sentiops.security.auth import AuthError

            auth = dict(scope.get("headers") or []).get(b"authorization", b"").decode(
                errors="replace")  # fmt: skip
            try:
                self.tokens.check(auth)
            except AuthError as exc:
                await refused(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def add_feedback_route(app: Any, model: Any, feedback: Any | None, tokens: Any = None) -> None:
    from sentiops.errors import FeedbackError, SentiOpsError
    from sentiops.feedback.labels import parse_items
    from sentiops.security.auth import AuthError

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
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse(
                {
                    "error": 'the body is not JSON; send {"id": "<request id>", '
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
