"""The page (`static/index.html`, no cache: a new console's page is read at once), whether the
console is up and warm, and the settings the page starts from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse

from sentiops.config import get_settings
from sentiops.console import charts
from sentiops.console.deps import ConsoleDep

#: The page and its static files (served under /static by `create_app`).
STATIC = Path(__file__).resolve().parents[1] / "static"

router = APIRouter()


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/healthz")
async def healthz(console: ConsoleDep) -> dict[str, Any]:
    """Live; `warm` once MLflow is imported and the registry read (the first status is then as
    quick as the others)."""
    return {"ok": True, "warm": console.warm, "warm_up_seconds": console.warm_up_seconds}


@router.get("/api/config")
async def config(console: ConsoleDep) -> dict[str, Any]:
    """The URLs the console was started with (links to MLflow, Label Studio), the model's
    names, the longest text and the charts the page can draw."""
    cfg = console.cfg
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
