"""GET /status: the monitor's state per model version as JSON (windows, drift, estimates)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from drift.deps import jsonable, sidecar


async def status(request: Request) -> Response:
    return JSONResponse(jsonable(sidecar(request).monitor.status()))


routes = [Route("/status", status, methods=["GET"])]
