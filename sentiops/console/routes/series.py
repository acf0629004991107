"""GET /api/series?kind=K&minutes=M: one chart (K one of `charts.SERIES`) over the last M
minutes (1 to 7 days' worth), from Prometheus' query_range."""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from sentiops.console import charts, prometheus
from sentiops.console.deps import ApiError, ConsoleDep

#: Longest chart window (7 days) and its default.
MAX_MINUTES, DEFAULT_MINUTES = 7 * 24 * 60, 30

router = APIRouter()


@router.get("/api/series")
async def series(
    console: ConsoleDep, kind: str = "", minutes: str = str(DEFAULT_MINUTES)
) -> dict[str, Any]:
    if kind not in charts.SERIES:
        raise ApiError(
            400, f"unknown chart kind {kind!r}", f"use one of: {', '.join(charts.SERIES)}"
        )
    window = _window(minutes)
    prom = prometheus.PrometheusClient(console.prometheus_url())
    try:
        return await run_in_threadpool(charts.series, prom, kind, window, console.cfg.model_name)
    except prometheus.Unavailable as exc:
        raise ApiError(503, str(exc), "check that Prometheus runs (--prometheus-url)") from exc


def _window(minutes: str) -> float:
    """`minutes` as a number from 1 to MAX_MINUTES, or a 400."""
    try:
        window = float(minutes)
    except ValueError:
        window = math.nan
    if not (math.isfinite(window) and 1 <= window <= MAX_MINUTES):
        raise ApiError(400, f"minutes={minutes!r} is not a number from 1 to {MAX_MINUTES}")
    return window
