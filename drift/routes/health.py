"""GET /healthz: alive; GET /readyz: the detector is loaded (503 with the reason until then)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from drift.deps import sidecar


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "alive"})


async def readyz(request: Request) -> Response:
    monitor = sidecar(request).monitor
    ok = monitor.ready
    return JSONResponse(
        {"ready": ok, "reason": monitor.ready_reason}, status_code=200 if ok else 503
    )


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
