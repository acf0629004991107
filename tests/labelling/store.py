"""A store with live traffic for the labelling tests: a prediction log (written as the drift
sidecar writes it: `sentiops.store.layout`) of which some predictions are in the random
evaluation sample, and a labelling-queue part of uncertain texts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from sentiops.store import layout

TEXTS = [
    "the support team fixed it in minutes",
    "the update broke my phone again",
    "the store opens at nine",
    "not sure how I feel about the new logo",
    "great camera, awful battery",
    "it arrived on time",
    "worst purchase this year",
    "I love the new colours",
]


def prediction(
    i: int, sample: str, version: str = "1", model_name: str = "sentiment", tag: str = ""
) -> dict[str, Any]:
    return {
        "id": f"pred-{tag}{sample[0]}{i}",
        "text": f"{TEXTS[i % len(TEXTS)]} ({sample} {i})",
        "label": ("positive", "negative", "neutral")[i % 3],
        "confidence": 0.4 + (i % 5) / 10,
        "model_name": model_name,
        "model_version": version,
        "time": datetime.now(UTC).isoformat(),
        "client_id": "",
        "sample": sample,
    }


def write_traffic(
    store: Path, random: int = 4, queued: int = 4, model_name: str = "sentiment", tag: str = ""
) -> dict[str, list[dict]]:
    """`random` predictions in the evaluation sample and `queued` others in the labelling
    queue (most uncertain first: rank 0 has the smallest margin); `tag` makes the ids new."""
    sample = [prediction(i, "random", model_name=model_name, tag=tag) for i in range(random)]
    queue = [prediction(i, "targeted", model_name=model_name, tag=tag) for i in range(queued)]
    layout.put_bytes(
        layout.parquet_bytes(pa.Table.from_pylist(sample + queue)),
        layout.prediction_part(store, "1"),
    )
    ranked = sorted(queue, key=lambda r: r["confidence"])
    rows = [
        r
        | {
            "margin": r["confidence"] - 0.3,
            "rank": n,
            "window_id": "w-1",
            "window_p_value": 0.001,
            "queued_at": datetime.now(UTC).isoformat(),
        }
        for n, r in enumerate(ranked)
    ]
    layout.put_bytes(
        layout.parquet_bytes(pa.Table.from_pylist(rows)), layout.labelling_part(store, "1")
    )
    return {"random": sample, "queue": rows}
