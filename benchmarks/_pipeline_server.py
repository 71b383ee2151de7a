"""The peer of bench_serve.py: a plain transformers ``pipeline`` behind FastAPI, as one would write it.

    python benchmarks/_pipeline_server.py MODEL_DIR PORT [--mode threadpool|serial] [--threads N]

``threadpool``: a sync endpoint (FastAPI runs it in its thread pool, so requests run concurrently, each its own
forward pass); ``serial``: an async endpoint that calls the pipeline under a lock (one forward pass at a time).
The pipeline gets the texts of each request as one batch.
"""

from __future__ import annotations

import argparse
import asyncio
import threading

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import pipeline


class Body(BaseModel):
    texts: list[str]


def build(model_dir: str, mode: str) -> FastAPI:
    pipe = pipeline("text-classification", model=model_dir, tokenizer=model_dir, device="cpu", top_k=5)
    pipe(["warm-up"])
    app = FastAPI()
    lock = threading.Lock()

    def run(texts: list[str]) -> list:
        return [
            {"label": top[0]["label"], "score": top[0]["score"], "top_k": top}
            for top in pipe(texts, batch_size=len(texts), truncation=True)
        ]

    if mode == "threadpool":

        @app.post("/predict")
        def predict(body: Body) -> dict:
            return {"predictions": run(body.texts)}

    else:

        @app.post("/predict")
        async def predict_serial(body: Body) -> dict:
            def locked() -> list:
                with lock:
                    return run(body.texts)

            return {"predictions": await asyncio.to_thread(locked)}

    @app.get("/v2/health/ready")
    def ready() -> dict:
        return {"ready": True}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("port", type=int)
    parser.add_argument("--mode", choices=["threadpool", "serial"], default="threadpool")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    uvicorn.run(build(args.model_dir, args.mode), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
