"""The online service as a process of its own (`conveyor serve`): SIGTERM flushes the prediction log completely,
and the prod profile refuses to start without an API key and then enforces it (the key never logged)."""

from __future__ import annotations

import secrets
import signal
import threading
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.publication import published_prefixes, read_manifest, read_published_parquet
from conveyor.adapters.registry import ModelMetadata, ModelRegistry
from tests.integration.scoring_data import population, register, train_model
from tests.integration.serving_helpers import (
    CONVEYOR,
    service_env,
    settings_for,
    start_service,
    stop_service,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODEL = "churn"


def test_sigterm_flushes_every_logged_row(s3_server: Settings, tmp_path: Path) -> None:
    # A flush interval far longer than the test: whatever is in the log got there through the SIGTERM flush.
    env = service_env(s3_server, tmp_path / "feast", CONVEYOR_SERVING__LOG_FLUSH_SECONDS="600")
    settings = settings_for(env)
    version = register(settings, MODEL, seed=1, promote=True)
    rows = population(settings, 90)[settings.dataset.feature_names].to_dict("records")
    url = f"http://127.0.0.1:{env['CONVEYOR_SERVING__PORT']}/v1/models/{MODEL}/predict"
    process = start_service(env, tmp_path / "service.log")
    sent: dict[str, int] = {}
    try:

        def send(worker: int) -> None:
            with httpx.Client() as client:
                for n in range(15):
                    request_id = f"w{worker}-{n}"
                    body = {"rows": rows[(worker * 15 + n) % 80 : (worker * 15 + n) % 80 + 1 + n % 3]}
                    response = client.post(url, json=body, headers={"x-request-id": request_id}, timeout=60)
                    assert response.status_code == 200, response.text
                    assert response.json()["model_version"] == version
                    sent[request_id] = len(body["rows"])

        threads = [threading.Thread(target=send, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        code = stop_service(process)
    # uvicorn re-raises the SIGTERM it caught once shutdown is complete: the process ends "killed by SIGTERM".
    service_log = (tmp_path / "service.log").read_text()
    assert code == -signal.SIGTERM, service_log[-2000:]
    assert "prediction log flushed: 120 rows written in all" in service_log
    store = ObjectStore(settings.storage)
    prefixes = published_prefixes(store, f"{settings.serving.log_prefix}/{MODEL}/")
    assert prefixes and all("/dt=" in p and "/hour=" in p and "/batch=" in p for p in prefixes)
    logged = pd.concat([read_published_parquet(store, p) for p in prefixes], ignore_index=True)
    assert len(sent) == 60
    assert logged.groupby("request_id").size().to_dict() == sent  # requests = logged rows, none twice
    assert set(logged["model_version"]) == {version} and logged["returned"].all()
    assert sum(read_manifest(store, p).row_count or 0 for p in prefixes) == sum(sent.values())  # type: ignore[union-attr]


def test_prod_profile_requires_and_enforces_the_api_key(s3_server: Settings, tmp_path: Path) -> None:
    import subprocess

    env = service_env(
        s3_server,
        tmp_path / "feast",
        CONVEYOR_PROFILE="prod",
        CONVEYOR_STORAGE__ENDPOINT_URL=str(s3_server.storage.endpoint_url),
    )
    refused = subprocess.run(
        [CONVEYOR, "serve"], env={**_environ(), **env}, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2
    assert "serving.require_api_key" in refused.stdout and "CONVEYOR_SERVING__API_KEY" in refused.stdout

    key = secrets.token_hex(16)
    env["CONVEYOR_SERVING__API_KEY"] = key
    settings = settings_for(env)
    assert settings.active_profile == "prod" and settings.serving.require_api_key
    register(settings, MODEL, seed=1, promote=True)
    row = population(settings, 1)[settings.dataset.feature_names].to_dict("records")
    url = f"http://127.0.0.1:{env['CONVEYOR_SERVING__PORT']}/v1/models/{MODEL}/predict"
    log_path = tmp_path / "service.log"
    process = start_service(env, log_path)
    try:
        with httpx.Client(timeout=60) as client:
            missing = client.post(url, json={"rows": row})
            wrong = client.post(url, json={"rows": row}, headers={"x-api-key": "not-" + key})
            right = client.post(url, json={"rows": row}, headers={"x-api-key": key})
    finally:
        assert stop_service(process) == -signal.SIGTERM
    assert missing.status_code == 401 and wrong.status_code == 401
    assert right.status_code == 200 and right.json()["predictions"][0]["status"] == "scored"
    assert key not in log_path.read_text()


def test_onnx_runtime_serves_the_twin_and_refuses_a_version_without_one(s3_server: Settings, tmp_path: Path) -> None:
    env = service_env(s3_server, tmp_path / "feast", CONVEYOR_SCORING__RUNTIME="onnx")
    settings = settings_for(env)
    ds = settings.dataset
    model = train_model(settings, seed=1)
    frame = population(settings, 200)
    registry = ModelRegistry(ObjectStore(settings.storage), settings)
    metadata = ModelMetadata({}, {"passed": True}, {}, settings.features.feature_service, ds.feature_names, "t", {})
    reference = (
        frame[ds.feature_names].head(50).assign(score=model.predict_proba(frame[ds.feature_names].head(50))[:, 1])
    )
    twin = registry.register(MODEL, model, metadata, reference, twin_rows=frame[ds.feature_names])
    registry.promote(MODEL, twin.version, actor="test", reason="onnx champion")
    base = f"http://127.0.0.1:{env['CONVEYOR_SERVING__PORT']}"
    process = start_service(env, tmp_path / "service.log")
    try:
        with httpx.Client(timeout=60) as client:
            rows = frame[ds.feature_names].to_dict("records")
            answer = client.post(f"{base}/v1/models/{MODEL}/predict", json={"rows": rows}).json()
            no_twin = registry.register(MODEL, model, metadata, reference)  # no twin_rows: no twin exported
            registry.promote(MODEL, no_twin.version, actor="test", reason="a version without a twin")
            ready = wait_for(
                lambda: (r := client.get(f"{base}/ready").json())["refused_versions"] and r, what="the refusal"
            )
    finally:
        stop_service(process)
    expected = model.predict_proba(frame[ds.feature_names])[:, 1]
    scores = np.array([p["score"] for p in answer["predictions"]])
    assert np.max(np.abs(scores - expected)) <= settings.twin.parity_tolerance
    assert ready["runtime"] == "onnx" and ready["champion"] == twin.version
    assert "TwinUnavailable" in ready["refused_versions"][str(no_twin.version)]


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)
