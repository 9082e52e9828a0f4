"""A dataset whose entity is a composite key (store_id, sku: an integer and a text column) end to end on the real
servers (S3, Prefect test server, Feast on temp paths): the synthetic source spreads each customer id over the two
columns; ingest validates the compound key rule (a repeated key pair quarantines its day); training joins
features point in time on both columns; the features flow materializes one Feast entity per column and the skew
check reads the online store by key pairs; batch inference publishes both key columns, one row per pair; the
drift monitor judges the day; the online service answers key objects with the batch path's scores and logs
each answer under its key."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from configs.settings import CONFIG_DIR, Settings, load_settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.publication import read_published_parquet
from conveyor.adapters.raw_data import published_days
from conveyor.demo.synthetic import Fault, Scenario
from conveyor.domain.expectations import write_default_suites
from conveyor.ops.local_stack import free_port
from conveyor.services.ingest import IngestRejected
from conveyor.services.online_traffic import read_prediction_log
from conveyor.services.scoring import predictions_prefix
from flows.batch_inference import batch_inference
from flows.drift_monitor import drift_monitor
from flows.features import refresh_features
from flows.ingest import ingest
from flows.training import training
from tests.integration.serving_helpers import running_service, settings_for, wait_for

pytestmark = pytest.mark.integration
START, END = dt.date(2026, 1, 1), dt.date(2026, 2, 9)  # 40 days
KEYS = ["store_id", "sku"]


@pytest.fixture
def composite_env(
    s3_server: Settings, prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """A configs folder of this test's own (dataset.yaml with the composite key), a bucket, Feast state and
    suites of its own, a small population."""
    configs = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, configs, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    dataset = yaml.safe_load((configs / "dataset.yaml").read_text())
    dataset.pop("entity_column")
    dataset.update({"name": "stock", "entity_columns": KEYS, "entity_dtype": {"store_id": "int64", "sku": "string"}})
    (configs / "dataset.yaml").write_text(yaml.safe_dump(dataset, sort_keys=False))
    monkeypatch.setenv("CONVEYOR_CONFIG_DIR", str(configs))
    monkeypatch.setenv("CONVEYOR_PROJECT_ROOT", str(CONFIG_DIR.parent))  # feature_repo/ and the rest: the repo's
    monkeypatch.setenv("CONVEYOR_STORAGE__BUCKET", f"keys-{uuid.uuid4().hex[:10]}")
    monkeypatch.setenv("CONVEYOR_FEATURES__STATE_DIR", str(tmp_path / "feast"))
    monkeypatch.setenv("CONVEYOR_GENERATOR__N_ENTITIES", "3000")
    monkeypatch.setenv("CONVEYOR_VALIDATION__SUITES_DIR", str(tmp_path / "suites"))
    settings = load_settings()
    assert settings.dataset.entity_columns == KEYS
    write_default_suites(settings)
    yield settings


def test_a_composite_key_runs_from_ingest_to_published_predictions(composite_env: Settings) -> None:
    settings = composite_env
    landed = ingest(start_date=START, days=(END - START).days + 1)
    assert landed is not None
    store = ObjectStore(settings.storage)

    # A day with a repeated (store_id, sku, event_timestamp) is refused by the compound key rule.
    bad = END + dt.timedelta(days=1)
    state = ingest(start_date=bad, days=1, scenario=Scenario(faults=[Fault(kind="duplicate_keys")]), return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, IngestRejected) and "store_id,sku,event_timestamp" in str(error), str(error)
    assert bad not in published_days(store, settings)

    trained = training(start_date=START, end_date=END)
    assert trained.promoted and trained.gates_passed, trained.reasons

    skew = refresh_features(start_date=START, end_date=END + dt.timedelta(days=1))
    assert skew.passed and skew.entities_checked > 0, skew
    assert all(set(m["entity"]) == set(KEYS) for m in skew.mismatches)

    name = settings.scoring.model_name
    result = batch_inference(scoring_date=END, model_name=name)
    part = result.partitions[0]
    assert part.rows_in == part.rows_scored + part.rows_quarantined and part.rows_scored > 1000
    published = read_published_parquet(store, predictions_prefix(settings, name, END))
    assert list(published.columns[:2]) == KEYS and "score" in published.columns
    assert len(published) == part.rows_scored
    assert not published.duplicated(KEYS).any()  # one row per key pair
    assert published["store_id"].dtype == "int64" and published["sku"].map(type).eq(str).all()
    assert published["store_id"].nunique() > 1 and published["sku"].nunique() > 1  # both columns vary

    report = drift_monitor(model_name=name, scored_day=END)
    assert report.verdict in {"no_drift", "drift", "estimated_decay"} and report.prediction is not None

    # The online service takes key objects, reads the online store by key tuples, and answers each with its key.
    env = {
        "CONVEYOR_SERVING__PORT": str(free_port()),
        "CONVEYOR_SERVING__POLL_SECONDS": "0.3",
        "CONVEYOR_STORAGE__CREDENTIALS_FILE": str(settings.storage.credentials_file),
    }
    some = published.head(5)
    ids = [{"store_id": int(r.store_id), "sku": str(r.sku)} for r in some.itertuples()]
    with running_service(env, settings_for(env)) as url:
        answer = httpx.post(f"{url}/v1/models/{name}/predict", json={"entity_ids": [*ids, {"store_id": 1}]}, timeout=30)
        assert answer.status_code == 422 and "store_id,sku" in answer.text, answer.text  # not every key column
        answer = httpx.post(f"{url}/v1/models/{name}/predict", json={"entity_ids": ids}, timeout=30)
        assert answer.status_code == 200, answer.text
        predictions, request_id = answer.json()["predictions"], answer.json()["request_id"]
    assert [p["entity_id"] for p in predictions] == ids and all(p["status"] == "scored" for p in predictions)
    assert [p["score"] for p in predictions] == pytest.approx(some["score"].tolist(), abs=1e-6)  # batch's score

    # The prediction log keys each answer by the key's JSON in key order (one text column, whatever the key).
    def logged() -> list[str] | None:
        log = read_prediction_log(store, f"{settings.serving.log_prefix}/{name}/")
        mine = log[log["request_id"] == request_id] if len(log) else log
        return sorted(mine["entity_id"]) if len(mine) == len(ids) else None

    assert wait_for(logged, timeout=30, what="the answers in the prediction log") == sorted(
        json.dumps(key, separators=(",", ":")) for key in ids
    )
