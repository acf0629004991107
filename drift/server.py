"""The sidecar's HTTP server: POST / (CloudEvents; with a bearer token when the sidecar has a
token file), GET /metrics, /healthz (alive), /readyz (detector loaded), /status (JSON per model
version). `create_app` serves the routes of `drift.routes` over the state of `drift.deps`.
Starlette on uvicorn (no pydantic: runs beside alibi-detect's pydantic<2)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette

from drift.deps import MAX_BODY, Sidecar, read_body
from drift.monitor import Monitor
from drift.routes import ROUTES

__all__ = ["MAX_BODY", "create_app", "read_body"]


def create_app(monitor: Monitor, tokens: Any = None, limiter: Any = None) -> Starlette:
    """`tokens` (`sentiops.security.auth.Tokens`): POST / needs one of them (401/403
    otherwise); `limiter` (`sentiops.security.ratelimit.RateLimiter`): events a second per
    client (429 over it)."""
    app = Starlette(routes=ROUTES, lifespan=lifespan)
    app.state.sidecar = Sidecar(monitor, tokens, limiter)
    return app


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    app.state.sidecar.monitor.close()  # SIGTERM: flush the prediction log
