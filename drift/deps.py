"""What every route of the sidecar's HTTP server shares (`drift.routes`): its state
(`Sidecar`: the monitor, the tokens and rate limit of POST /, the bad events seen), how a bad
event is answered (counted, logged without flooding, a JSON 4xx naming its reason) and the
bounded read of an event's body. Starlette only (no pydantic: the sidecar runs beside
alibi-detect's pydantic<2)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from drift.monitor import Monitor
from sentiops import metrics

logger = logging.getLogger("sentiops.drift.server")
MAX_BODY = 8 * 1024 * 1024  # a request of 256 texts of 5000 characters fits
#: Bad events of one reason logged one by one; after that every hundredth.
LOGGED_IN_FULL = 10


@dataclass
class Sidecar:
    """One server's state. `tokens` (`sentiops.security.auth.Tokens`): POST / needs one of
    them (401/403 otherwise); `limiter` (`sentiops.security.ratelimit.RateLimiter`): events a
    second per client (429 over it)."""

    monitor: Monitor
    tokens: Any = None
    limiter: Any = None
    bad_seen: Counter[str] = field(default_factory=Counter)

    def bad(self, reason: str, message: str, status: int = 400) -> JSONResponse:
        """A refused event: counted (by reason), logged (not flooded), answered with `status`."""
        metrics.DRIFT_BAD_EVENTS.labels(reason).inc()
        metrics.DRIFT_EVENTS.labels("bad").inc()
        self.bad_seen[reason] += 1
        seen = self.bad_seen[reason]
        if seen <= LOGGED_IN_FULL or seen % 100 == 0:
            logger.warning("bad event (%s, #%d): %s", reason, seen, message)
        return JSONResponse({"error": message, "reason": reason}, status_code=status)


def sidecar(request: Request) -> Sidecar:
    """The server's `Sidecar` (`drift.server.create_app` keeps it in `app.state.sidecar`)."""
    found: Sidecar = request.app.state.sidecar
    return found


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


def jsonable(obj: Any) -> Any:
    """`obj` with every value JSON can not hold as its string (dates, paths)."""
    return json.loads(json.dumps(obj, default=str))
