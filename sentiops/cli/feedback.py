"""`sentiops feedback --file labels.csv`: bulk labels for earlier predictions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from sentiops.cli.common import handle_errors
from sentiops.config import MODEL_NAME
from sentiops.errors import ConfigError, FeedbackError, StorageError
from sentiops.security.auth import token_from_file


def register_commands(app: typer.Typer) -> None:
    app.command("feedback")(handle_errors(feedback))


def feedback(
    file: Annotated[Path, typer.Option(help="CSV / JSONL / Parquet with columns id and label")],
    url: Annotated[
        str, typer.Option(help="a predictor (http://host:port) that takes the labels")
    ] = "",
    store: Annotated[
        str, typer.Option(help="or write straight to this store (dir or s3://bucket)")
    ] = "",
    name: Annotated[str, typer.Option(help="model name in the URL")] = MODEL_NAME,
    batch: Annotated[int, typer.Option(help="labels per request")] = 500,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="your team's token (`name:token` or the token) for a predictor "
            "whose writes need one; env SENTIOPS_TOKEN_FILE"
        ),
    ] = None,
) -> None:
    """Send labels for earlier predictions (`id` = the prediction's request id). Each batch is
    accepted whole or refused whole; a refused batch stops the upload and names every
    refused id (the batches before it are stored)."""
    import pandas as pd

    from sentiops.feedback.intake import Feedback  # lazy: CLI startup
    from sentiops.feedback.labels import MAX_ITEMS, parse_items  # lazy: CLI startup

    if bool(url) == bool(store):
        raise ConfigError(
            "give exactly one of --url and --store", "e.g. --url http://127.0.0.1:8080"
        )
    if not 1 <= batch <= MAX_ITEMS:
        raise ConfigError(f"--batch {batch} is out of range", f"use 1..{MAX_ITEMS}")
    suffix = file.suffix.lower()
    if not file.exists():
        raise ConfigError(f"{file} not found", "check the path")
    if suffix == ".parquet":
        df = pd.read_parquet(file)
    elif suffix in (".jsonl", ".json"):
        df = pd.read_json(file, lines=True, dtype=False)
    else:
        df = pd.read_csv(file, dtype=str, keep_default_na=False)
    missing = [c for c in ("id", "label") if c not in df.columns]
    if missing:
        raise ConfigError(
            f"{file} has no column(s) {missing}", f"columns found: {list(df.columns)}"
        )
    rows = [{"id": str(r["id"]), "label": str(r["label"])} for r in df.to_dict("records")]

    token_path = token_file or os.environ.get("SENTIOPS_TOKEN_FILE") or None
    headers = {"Authorization": f"Bearer {token_from_file(token_path)}"} if token_path else {}
    sink = Feedback(store) if store else None
    done = 0
    for start in range(0, len(rows), batch):
        part = rows[start : start + batch]
        try:
            if sink is not None:
                sink.record(parse_items(part), source="file")
            else:
                _post(url, name, part, headers)
        except FeedbackError as exc:
            raise FeedbackError(
                f"rows {start + 1}-{start + len(part)} refused ({done} labels stored before): "
                f"{exc.message}",
                exc.hint + "".join(f"\n  {p}" for p in exc.problems[:10]),
                exc.status,
                exc.problems,
            ) from None
        done += len(part)
        typer.echo(f"{done}/{len(rows)} labels stored")


def _post(url: str, name: str, items: list[dict[str, str]], headers: dict[str, str]) -> None:
    import httpx

    try:
        r = httpx.post(
            f"{url.rstrip('/')}/v1/models/{name}:feedback", json=items, headers=headers, timeout=60
        )
    except httpx.HTTPError as exc:
        raise StorageError(f"{url} unreachable: {exc}", "check --url (the predictor)") from exc
    if r.status_code != 200:
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        raise FeedbackError(
            str(body.get("error", r.text[:300])), "", r.status_code, body.get("problems", [])
        )
