"""The console's ASGI app (see the package doc): `create_app` assembles the routers of
`sentiops.console.routes` over the shared state of `sentiops.console.deps`, behind the guard of
`sentiops.console.guard`, with the handlers that make every failure a JSON error."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from sentiops.console import status
from sentiops.console.deps import (
    MAX_BODY_BYTES,
    MAX_CHARS,
    ApiError,
    Console,
    ConsoleConfig,
    error_response,
)
from sentiops.console.guard import RequestGuard
from sentiops.console.routes import ROUTERS
from sentiops.console.routes.page import STATIC
from sentiops.console.routes.series import DEFAULT_MINUTES, MAX_MINUTES

__all__ = [
    "DEFAULT_MINUTES",
    "MAX_BODY_BYTES",
    "MAX_CHARS",
    "MAX_MINUTES",
    "STATIC",
    "ApiError",
    "ConsoleConfig",
    "create_app",
]
log = logging.getLogger("sentiops.console")


def create_app(cfg: ConsoleConfig) -> FastAPI:
    """The console over `cfg` (its source URLs lose a trailing slash)."""
    cfg.strip_slashes()
    app = FastAPI(
        title="SentiOps console", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.console = Console(cfg, httpx.AsyncClient(timeout=cfg.timeout))
    app.add_exception_handler(ApiError, api_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, invalid)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, crashed)
    # before any handler: the Host, where a state-changing request comes from, its JSON
    # content type, and its body's size while it streams (sentiops.console.guard)
    app.add_middleware(
        RequestGuard, allowed_hosts=cfg.allowed_hosts, max_body_bytes=cfg.max_body_bytes
    )
    page, *api = ROUTERS
    app.include_router(page)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for router in api:
        app.include_router(router)
    return app


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Warms up in a thread while the console serves; closes the predictor's client."""
    console: Console = app.state.console
    warming = asyncio.get_running_loop().run_in_executor(None, _warm_up, console)
    yield
    await console.client.aclose()
    await warming


def _warm_up(console: Console) -> None:
    """Import MLflow and read the registry once off the request path (seconds on a busy
    machine), so the first page a person opens fills at once."""
    t0 = time.monotonic()
    with contextlib.suppress(Exception):
        status.registry_section(console.cfg.registered_model, None, console.cfg.mlflow_url)
    console.warm_up_seconds = round(time.monotonic() - t0, 2)
    console.warm = True


async def api_error(_: Request, exc: ApiError) -> JSONResponse:
    reply = error_response(exc.status_code, exc.error, exc.hint)
    reply.headers.update(exc.headers)
    return reply


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    what = {
        404: f"no such page or endpoint: {request.url.path}",
        405: f"{request.method} is not allowed on {request.url.path}",
    }
    return error_response(exc.status_code, what.get(exc.status_code, str(exc.detail)))


async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return error_response(400, f"invalid request: {where}: {first.get('msg', 'invalid')}")


async def crashed(_: Request, exc: Exception) -> JSONResponse:
    log.exception("console request failed")
    return error_response(500, f"the console failed: {type(exc).__name__}", "see the console's log")
