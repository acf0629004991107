"""What every route of the console shares (`sentiops.console.routes`): its settings
(`ConsoleConfig`), the state built once per app (`Console`: the settings, the predictor's HTTP
client, the warm-up), the error a route raises (`ApiError`, answered as `{"error", "hint"}`) and
the pieces of a request a route takes as FastAPI dependencies (`ConsoleDep`, `JsonBody`,
`PersonToken`).

The guard in front of every route (allowed hosts, same origin, JSON content type, the body's
size while it streams) is the ASGI middleware of `sentiops.console.guard`, added by
`sentiops.console.app.create_app`: what a route reads here has passed it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from sentiops.config import MODEL_NAME, REGISTERED_MODEL
from sentiops.console.guard import AllowedHosts

#: Longest text the console sends (the predictor's own default limit, sentiops.models).
MAX_CHARS = 5000
#: Largest request body the API reads (sentiops.console.guard refuses more while it streams).
MAX_BODY_BYTES = 64 * 1024


@dataclass
class ConsoleConfig:
    predictor_url: str | None = None
    prometheus_url: str | None = None
    mlflow_url: str | None = None
    #: Label Studio, linked from the page (`make up` sets SENTIOPS_LABEL_STUDIO_URL)
    labelstudio_url: str | None = field(
        default_factory=lambda: os.environ.get("SENTIOPS_LABEL_STUDIO_URL") or None
    )
    rollout_dir: Path | None = None
    model_name: str = MODEL_NAME
    registered_model: str = REGISTERED_MODEL
    timeout: float = 10.0
    max_chars: int = MAX_CHARS
    #: The Host values answered (`sentiops console` sets its address and port; this default,
    #: the loopback names on any port, is for an app built without it).
    allowed_hosts: AllowedHosts = field(default_factory=AllowedHosts.default)
    max_body_bytes: int = MAX_BODY_BYTES

    def strip_slashes(self) -> None:
        """The source URLs without a trailing slash (routes append their paths)."""
        self.predictor_url = self.predictor_url.rstrip("/") if self.predictor_url else None
        self.prometheus_url = self.prometheus_url.rstrip("/") if self.prometheus_url else None
        self.mlflow_url = self.mlflow_url.rstrip("/") if self.mlflow_url else None


class ApiError(Exception):
    """A route's refusal or a source's failure: answered as `{"error", "hint"}` with
    `status_code` and `headers` (`sentiops.console.app`'s handler)."""

    def __init__(
        self, status_code: int, error: str, hint: str = "", headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(error)
        self.status_code, self.error, self.hint = status_code, error, hint
        self.headers = headers or {}


def error_response(status_code: int, error: str, hint: str = "", **extra: Any) -> JSONResponse:
    """The console's JSON error: `{"error": ..., "hint": ...}` (no hint when empty)."""
    body = {"error": error, **({"hint": hint} if hint else {}), **extra}
    return JSONResponse(body, status_code=status_code)


@dataclass
class Console:
    """One app's state: its settings, the HTTP client its predictor calls share (closed when
    the app stops) and whether the warm-up (MLflow imported, the registry read once) is done."""

    cfg: ConsoleConfig
    client: httpx.AsyncClient
    warm: bool = False
    warm_up_seconds: float | None = None

    def predictor_url(self) -> str:
        """The predictor's base URL, or a 503 saying how to give one."""
        if not self.cfg.predictor_url:
            raise ApiError(
                503,
                "no predictor configured",
                "start the console with --predictor-url http://HOST:PORT",
            )
        return self.cfg.predictor_url

    def prometheus_url(self) -> str:
        """Prometheus' base URL, or a 503 saying how to give one."""
        if not self.cfg.prometheus_url:
            raise ApiError(
                503,
                "no Prometheus configured",
                "start the console with --prometheus-url http://HOST:9090",
            )
        return self.cfg.prometheus_url


def console(request: Request) -> Console:
    """The app's `Console` (`create_app` keeps it in `app.state.console`)."""
    found: Console = request.app.state.console
    return found


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object. The guard has refused a body over the limit
    (`ConsoleConfig.max_body_bytes`) and a state-changing request that is not JSON: what is
    read here is bounded."""
    raw = await request.body()
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not JSON ({exc})", 'send {"text": "..."}') from exc
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object", 'send {"text": "..."}')
    return body


def person_token(request: Request) -> dict[str, str]:
    """The person's `Authorization` header, passed on to the predictor (which checks it; the
    console stores none)."""
    auth = request.headers.get("authorization")
    return {"Authorization": auth} if auth else {}


ConsoleDep = Annotated[Console, Depends(console)]
JsonBody = Annotated[dict[str, Any], Depends(json_body)]
PersonToken = Annotated[dict[str, str], Depends(person_token)]
