"""The usual sentiment API, as a baseline for `make bench-serving`: a transformers
`pipeline("text-classification")` behind FastAPI, the async endpoint calling the pipeline
directly (one request at a time, no batching across requests), fp32 PyTorch.

    python benchmarks/naive_server.py --model DIR --port 8090

Answers `POST /v1/models/sentiment:predict` with `{"instances": [...]}` like our predictor,
so the same load generator drives both; `GET /ready` says when the model is loaded.
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI
from transformers import pipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--port", type=int, default=8090)
    args = ap.parse_args()
    clf = pipeline(
        "text-classification",
        model=args.model,
        tokenizer=args.model,
        top_k=None,
        # the whole text up to the encoder's 512 positions, as ours reads it (in windows):
        # a tweet is read as before, a 300-word post is not cut to its first 64 tokens
        truncation=True,
        max_length=512,
        device="cpu",
    )
    app = FastAPI()

    @app.get("/ready")
    async def ready() -> dict:
        return {"ready": True}

    @app.post("/v1/models/sentiment:predict")
    async def predict(body: dict) -> dict:
        out = clf(body["instances"])
        return {
            "predictions": [
                {
                    "label": max(row, key=lambda r: r["score"])["label"],
                    "probabilities": {r["label"]: r["score"] for r in row},
                }
                for row in out
            ]
        }

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
