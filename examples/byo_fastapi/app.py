"""A data scientist's own inference server: FastAPI, its own tiny model, nothing from mlops_lb.

The model is a logistic regression stored as plain numbers in ``model.json`` (next to this file, or the file
named by $BYO_MODEL). The server listens on $PORT (the fleet gives each target its own) and answers:

* ``GET /health`` -> 200 once the model is loaded: the load balancer's readiness check;
* ``POST /predict`` with ``{"rows": [[x1, x2, x3, x4], ...]}`` -> ``{"probabilities": [...], "labels": [...]}``.

Run it alone with ``python app.py --port 8000``; behind a local fleet with ``fleet.yaml`` in this folder.
uvicorn stops accepting on SIGTERM and lets requests in flight finish: the fleet's drain relies on that.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

MODEL_FILE = Path(os.environ.get("BYO_MODEL", Path(__file__).with_name("model.json")))
_model = json.loads(MODEL_FILE.read_text())
COEF = np.asarray(_model["coef"], dtype=float)
INTERCEPT = float(_model["intercept"])

app = FastAPI(title="byo-fastapi")


class Rows(BaseModel):
    rows: list[list[float]]


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok", "model": _model["name"]}


@app.post("/predict")
def predict(body: Rows) -> dict[str, list[float] | list[int]]:
    x = np.asarray(body.rows, dtype=float)
    if x.ndim != 2 or x.shape[1] != COEF.shape[0]:
        raise HTTPException(422, f"each row needs {COEF.shape[0]} numbers")
    p = 1.0 / (1.0 + np.exp(-(x @ COEF + INTERCEPT)))
    return {"probabilities": p.round(6).tolist(), "labels": (p >= 0.5).astype(int).tolist()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=20)
