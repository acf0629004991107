"""The console's ASGI app: the page, its static files and the JSON API (see the package doc)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from sentiops.config import MODEL_NAME, REGISTERED_MODEL, get_settings
from sentiops.console import charts, prometheus, status
from sentiops.console.guard import AllowedHosts, RequestGuard

STATIC = Path(__file__).parent / "static"
#: Longest text the console sends (the predictor's own default limit, sentiops.models).
MAX_CHARS = 5000
#: Largest request body the API reads (sentiops.console.guard refuses more while it streams).
MAX_BODY_BYTES = 64 * 1024
#: Longest chart window (7 days) and its default.
MAX_MINUTES, DEFAULT_MINUTES = 7 * 24 * 60, 30
log = logging.getLogger("sentiops.console")


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


class ApiError(Exception):
    def __init__(
        self, status_code: int, error: str, hint: str = "", headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(error)
        self.status_code, self.error, self.hint = status_code, error, hint
        self.headers = headers or {}


def _error(status_code: int, error: str, hint: str = "", **extra: Any) -> JSONResponse:
    body = {"error": error, **({"hint": hint} if hint else {}), **extra}
    return JSONResponse(body, status_code=status_code)


def _warm_up(cfg: ConsoleConfig, warm: dict[str, Any]) -> None:
    """Import MLflow and read the registry once off the request path (seconds on a busy
    machine), so the first page a person opens fills at once."""
    t0 = time.monotonic()
    with contextlib.suppress(Exception):
        status.registry_section(cfg.registered_model, None, cfg.mlflow_url)
    warm.update(done=True, seconds=round(time.monotonic() - t0, 2))


def create_app(cfg: ConsoleConfig) -> FastAPI:
    client = httpx.AsyncClient(timeout=cfg.timeout)
    warm: dict[str, Any] = {"done": False, "seconds": None}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        warming = asyncio.get_running_loop().run_in_executor(None, _warm_up, cfg, warm)
        yield
        await client.aclose()
        await warming

    app = FastAPI(
        title="SentiOps console", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    cfg.predictor_url = cfg.predictor_url.rstrip("/") if cfg.predictor_url else None
    cfg.prometheus_url = cfg.prometheus_url.rstrip("/") if cfg.prometheus_url else None
    cfg.mlflow_url = cfg.mlflow_url.rstrip("/") if cfg.mlflow_url else None

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        reply = _error(exc.status_code, exc.error, exc.hint)
        reply.headers.update(exc.headers)
        return reply

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        what = {
            404: f"no such page or endpoint: {request.url.path}",
            405: f"{request.method} is not allowed on {request.url.path}",
        }
        return _error(exc.status_code, what.get(exc.status_code, str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(400, f"invalid request: {where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def crashed(_: Request, exc: Exception) -> JSONResponse:
        log.exception("console request failed")
        return _error(500, f"the console failed: {type(exc).__name__}", "see the console's log")

    # before any handler: the Host, where a state-changing request comes from, its JSON
    # content type, and its body's size while it streams (sentiops.console.guard)
    app.add_middleware(
        RequestGuard, allowed_hosts=cfg.allowed_hosts, max_body_bytes=cfg.max_body_bytes
    )

    # ------------------------------------------------------------------ page
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Live; `warm` once MLflow is imported and the registry read (the first status is
        then as quick as the others)."""
        return {"ok": True, "warm": warm["done"], "warm_up_seconds": warm["seconds"]}

    @app.get("/api/config")
    async def config() -> dict[str, Any]:
        return {
            "predictor_url": cfg.predictor_url,
            "prometheus_url": cfg.prometheus_url,
            "mlflow_url": cfg.mlflow_url,
            "labelstudio_url": cfg.labelstudio_url,
            "tracking_uri": get_settings().tracking_uri,
            "model_name": cfg.model_name,
            "registered_model": cfg.registered_model,
            "max_chars": cfg.max_chars,
            "series": {k: v["title"] for k, v in charts.SERIES.items()},
        }

    # ------------------------------------------------------------------ predict + explain
    @app.post("/api/predict")
    async def predict(request: Request) -> dict[str, Any]:
        text = _text_of(await _json_body(request), cfg.max_chars)
        if not cfg.predictor_url:
            raise ApiError(
                503,
                "no predictor configured",
                "start the console with --predictor-url http://HOST:PORT",
            )
        base, name = cfg.predictor_url, cfg.model_name
        request_id = uuid.uuid4().hex
        auth = _token_of(request)  # the person's, when the predictor closes reads too
        answered: dict[str, str] = {}  # the predictor's answer headers (its x-request-id)
        results: tuple[Any, ...] = await asyncio.gather(
            _call(
                client,
                "POST",
                f"{base}/v1/models/{name}:predict",
                {"instances": [text]},
                {"x-request-id": request_id, **auth},
                headers_out=answered,
            ),
            _call(client, "POST", f"{base}/v1/models/{name}:explain", {"instances": [text]}, auth),
            _call(client, "GET", f"{base}/v2/models/{name}", None, auth),
            return_exceptions=True,
        )
        pred, expl, meta = results
        if isinstance(pred, BaseException):
            raise pred
        try:
            first = pred["predictions"][0]
            out: dict[str, Any] = {
                "text": text,
                "label": str(first["label"]),
                "score": float(first["score"]),
                "probabilities": {str(k): float(v) for k, v in first["probabilities"].items()},
            }
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise ApiError(
                502,
                f"the predictor at {base} answered an unexpected body "
                f"({type(exc).__name__}: {exc})",
            ) from exc
        # the id a label joins is the one the predictor used and answered (a predictor that
        # issues its own ids keeps ours only for correlation)
        out["request_id"] = answered.get("x-request-id") or request_id
        out["model_version"] = None
        if isinstance(meta, dict):
            out["model_version"] = (meta.get("parameters") or {}).get("model_version") or next(
                iter(meta.get("versions") or []), None
            )
        out["attributions"], out["method"], out["explain_error"] = None, None, None
        if isinstance(expl, BaseException):
            out["explain_error"] = expl.error if isinstance(expl, ApiError) else str(expl)
        else:
            try:
                e = expl["explanations"][0]
                out["method"] = e.get("method")
                out["attributions"] = [
                    {"token": str(a["token"]), "attribution": float(a["attribution"])}
                    for a in e.get("attributions") or []
                    if math.isfinite(float(a["attribution"]))
                ]
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                out["explain_error"] = f"unexpected explanation body ({exc})"
        return out

    # ------------------------------------------------------------------ label feedback
    @app.post("/api/feedback")
    async def feedback(request: Request) -> dict[str, Any]:
        """A person's label for an earlier prediction (its request id), sent to the
        predictor's feedback API (`:feedback`), which stores it and counts it in live accuracy."""
        body = await _json_body(request)
        rid, label = body.get("id"), body.get("label")
        if not isinstance(rid, str) or not rid.strip() or len(rid) > 200:
            raise ApiError(
                400,
                '"id" must be the prediction\'s request id (a non-empty string '
                "of at most 200 characters)",
                "classify a text first",
            )
        if not isinstance(label, str) or not label.strip() or len(label) > 50:
            raise ApiError(400, '"label" must be a label name such as "positive"')
        if not cfg.predictor_url:
            raise ApiError(
                503,
                "no predictor configured",
                "start the console with --predictor-url http://HOST:PORT",
            )
        url = f"{cfg.predictor_url}/v1/models/{cfg.model_name}:feedback"
        # the person's token (the page keeps it in its session only) goes to the predictor,
        # which checks it; the console stores none
        result = await _call(
            client,
            "POST",
            url,
            {"id": rid.strip(), "label": label},
            _token_of(request),
            passthrough=(400, 404, 409),
        )
        accepted = result.get("accepted") if isinstance(result, dict) else None
        return {
            "id": rid.strip(),
            "label": label,
            "accepted": accepted,
            "by_version": result.get("by_version") if isinstance(result, dict) else None,
        }

    # ------------------------------------------------------------------ status + charts
    @app.get("/api/status")
    async def status_all() -> dict[str, Any]:
        sections = await run_in_threadpool(
            status.gather,
            cfg.prometheus_url,
            cfg.rollout_dir,
            None,
            cfg.model_name,
            cfg.registered_model,
            cfg.mlflow_url,
        )
        return status.to_json(sections)

    @app.get("/api/labelling")
    async def labelling() -> dict[str, Any]:
        prom = prometheus.PrometheusClient(cfg.prometheus_url) if cfg.prometheus_url else None
        found = await run_in_threadpool(status.labelling_section, prom, cfg.model_name)
        return found.to_dict()

    @app.get("/api/series")
    async def series(kind: str = "", minutes: str = str(DEFAULT_MINUTES)) -> dict[str, Any]:
        if kind not in charts.SERIES:
            raise ApiError(
                400, f"unknown chart kind {kind!r}", f"use one of: {', '.join(charts.SERIES)}"
            )
        try:
            window = float(minutes)
        except ValueError:
            window = math.nan
        if not (math.isfinite(window) and 1 <= window <= MAX_MINUTES):
            raise ApiError(400, f"minutes={minutes!r} is not a number from 1 to {MAX_MINUTES}")
        if not cfg.prometheus_url:
            raise ApiError(
                503,
                "no Prometheus configured",
                "start the console with --prometheus-url http://HOST:9090",
            )
        prom = prometheus.PrometheusClient(cfg.prometheus_url)
        try:
            return await run_in_threadpool(charts.series, prom, kind, window, cfg.model_name)
        except prometheus.Unavailable as exc:
            raise ApiError(503, str(exc), "check that Prometheus runs (--prometheus-url)") from exc

    return app


async def _json_body(request: Request) -> dict[str, Any]:
    # the guard has refused a body over the limit (cfg.max_body_bytes) and a state-changing
    # request that is not JSON: what is read here is bounded
    raw = await request.body()
    import json

    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not JSON ({exc})", 'send {"text": "..."}') from exc
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object", 'send {"text": "..."}')
    return body


def _text_of(body: dict[str, Any], max_chars: int) -> str:
    text = body.get("text")
    if text is None:
        raise ApiError(400, 'no "text" in the body', 'send {"text": "..."}')
    if not isinstance(text, str):
        raise ApiError(400, f'"text" must be a string, not {type(text).__name__}')
    if not text.strip():
        raise ApiError(400, "the text is empty", "type a sentence to classify")
    if len(text) > max_chars:
        raise ApiError(
            413, f"the text has {len(text)} characters; at most {max_chars}", "shorten it"
        )
    return text


def _token_of(request: Request) -> dict[str, str]:
    """The person's `Authorization` header, passed on to the predictor (which checks it)."""
    auth = request.headers.get("authorization")
    return {"Authorization": auth} if auth else {}


#: Predictor answers about the person's own request (its token, its pace): passed on as they
#: are, with the header that tells what to do and a hint.
ABOUT_THE_CLIENT = {
    401: ("WWW-Authenticate", "type your token in the token field"),
    403: ("", "check the token in the token field"),
    429: ("Retry-After", "wait that many seconds before trying again"),
}


async def _call(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    passthrough: tuple[int, ...] = (),
    headers_out: dict[str, str] | None = None,
) -> Any:
    """One predictor call; its failures become ApiErrors that say what happened (401, 403,
    429 and statuses in `passthrough` reach the client as they are, with the predictor's
    reason). `headers_out` gets the answer's headers (lower-case names)."""
    try:
        resp = await client.request(method, url, json=body, headers=headers)
    except httpx.TimeoutException as exc:
        raise ApiError(
            504,
            f"the predictor did not answer {url} in time ({type(exc).__name__})",
            "it may be overloaded; try again",
        ) from exc
    except httpx.HTTPError as exc:
        raise ApiError(
            502,
            f"the predictor is unreachable at {url} ({exc or type(exc).__name__})",
            "start it or pass the right --predictor-url",
        ) from exc
    if headers_out is not None:
        headers_out.update((k.lower(), v) for k, v in resp.headers.items())
    if resp.status_code == 200:
        try:
            return resp.json()
        except ValueError as exc:
            raise ApiError(502, f"the predictor answered no JSON on {url}") from exc
    detail = _detail(resp)
    if resp.status_code in ABOUT_THE_CLIENT:
        name, hint = ABOUT_THE_CLIENT[resp.status_code]
        kept = {name: resp.headers[name]} if name in resp.headers else {}
        raise ApiError(resp.status_code, f"the predictor refused it: {detail}", hint, kept)
    if resp.status_code in passthrough:
        raise ApiError(resp.status_code, f"the predictor refused it: {detail}")
    if resp.status_code in (400, 413, 422):
        raise ApiError(resp.status_code, f"the predictor refused the text: {detail}")
    if resp.status_code == 503:
        raise ApiError(503, f"the predictor is not ready: {detail}", "wait for it to load")
    if resp.status_code == 404:
        raise ApiError(
            502,
            f"the predictor has no {url.rsplit('/', 1)[-1]}: {detail}",
            "check --predictor-url and the model name",
        )
    raise ApiError(502, f"the predictor failed ({resp.status_code}): {detail}")


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
        if isinstance(body, dict):
            return str(body.get("error") or body.get("detail") or body)[:500]
    except ValueError:
        pass
    return resp.text[:500] or resp.reason_phrase
