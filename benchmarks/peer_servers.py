"""The simple servers benchmarks/bench_peers.py compares ours with, as uvicorn app factories.

Both answer ``POST /classify`` with ``{"texts": [...]}`` (the body our API takes, so one
load generator drives every server) and ``GET /readyz``; they take their model from the
environment:

- ``one_at_a_time_app``: FastAPI + onnxruntime (its default session options: every core,
  threads spinning) + tokenizers, inference inside the async handler, so one request runs
  at a time and the others wait on the event loop: the server most tutorials show.
  ``PEER_ONNX`` (the .onnx file), ``PEER_TOKENIZER`` (tokenizer.json), ``PEER_MAX_LENGTH``.
- ``pipeline_app``: a transformers ``pipeline("text-classification")`` on the student's
  PyTorch weights (fp32), called from a plain ``def`` handler (FastAPI's thread pool,
  so requests overlap in torch). ``PEER_STUDENT`` (a save_pretrained directory).

Benchmark code: torch is imported only by the pipeline server's process.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel


class Texts(BaseModel):
    texts: list[str]


def _readyz(app: FastAPI) -> None:
    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}


def one_at_a_time_app() -> FastAPI:
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(os.environ["PEER_TOKENIZER"])
    tokenizer.no_padding()
    tokenizer.enable_truncation(int(os.environ["PEER_MAX_LENGTH"]))
    session = ort.InferenceSession(os.environ["PEER_ONNX"], providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    output = session.get_outputs()[0].name
    app = FastAPI()
    _readyz(app)

    @app.post("/classify")
    async def classify(body: Texts) -> dict[str, Any]:
        encodings = tokenizer.encode_batch(body.texts)
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        probs = session.run([output], {k: v for k, v in feed.items() if k in names})[0]
        return {"predictions": [{"label": int(np.argmax(p)), "scores": p.tolist()} for p in probs]}

    return app


def pipeline_app() -> FastAPI:
    from transformers import pipeline

    classifier = pipeline("text-classification", model=os.environ["PEER_STUDENT"], device="cpu")
    app = FastAPI()
    _readyz(app)

    @app.post("/classify")
    def classify(body: Texts) -> dict[str, Any]:
        return {"predictions": classifier(body.texts, truncation=True)}

    return app
