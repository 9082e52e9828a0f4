"""The online bench's baseline: a bare FastAPI + joblib endpoint, features in the request. No feature store, no
checks, no registry, no logging, no metrics: the floor the online service is compared with.

    .venv/bin/python bench/bare_fastapi.py <port> <model.joblib>
"""

from __future__ import annotations

import sys
from typing import Any

import joblib
import pandas as pd
import uvicorn
from fastapi import FastAPI
from threadpoolctl import threadpool_limits


def build(model_path: str) -> FastAPI:
    model = joblib.load(model_path)  # the bench wrote this file itself a moment ago
    app = FastAPI()

    @app.post("/predict")
    def predict(body: dict[str, Any]) -> dict[str, Any]:
        scores = model.predict_proba(pd.DataFrame.from_records(body["rows"]))[:, 1]
        return {"scores": [float(s) for s in scores]}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


if __name__ == "__main__":
    app = build(sys.argv[2])
    threadpool_limits(limits=1)  # as the service does; after the model's load, which loads the OpenMP runtime
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
