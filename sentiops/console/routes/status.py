"""GET /api/status: `sentiops.console.status.gather()` as JSON (registry, rollout, traffic,
drift, live accuracy; each may be unavailable); GET /api/labelling: the labelling section
alone (what annotators have to do). Both read their sources in a thread."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from sentiops.console import prometheus, status
from sentiops.console.deps import ConsoleDep

router = APIRouter()


@router.get("/api/status")
async def status_all(console: ConsoleDep) -> dict[str, Any]:
    cfg = console.cfg
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


@router.get("/api/labelling")
async def labelling(console: ConsoleDep) -> dict[str, Any]:
    cfg = console.cfg
    prom = prometheus.PrometheusClient(cfg.prometheus_url) if cfg.prometheus_url else None
    found = await run_in_threadpool(status.labelling_section, prom, cfg.model_name)
    return found.to_dict()
