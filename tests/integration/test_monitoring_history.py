"""The drift monitor's history on the real test S3 server and Prefect harness: a backfill over published
predictions appends one judgement per day to the monitoring table, rebuilds the dashboard, and every link it puts
in a Prefect artifact opens over plain HTTP (presigned), checked against the generator's labels."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from configs.settings import Settings, load_settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.publication import Publication, published_prefixes
from conveyor.adapters.raw_data import read_raw_window
from conveyor.adapters.registry import ModelRegistry
from conveyor.demo.synthetic import Scenario
from conveyor.domain import performance_estimation as pe
from conveyor.domain.monitoring_profile import PROFILE_FILE
from conveyor.services.ingest import land_synthetic
from conveyor.services.monitoring import MONITORING_REFERENCE, monitoring_reference_files
from conveyor.services.monitoring_history import dashboard_key, read_history, table_prefix
from conveyor.services.scoring import predictions_prefix
from conveyor.services.training import evaluate_gates, fit_and_evaluate, training_metadata

pytestmark = pytest.mark.integration

DATA_START = dt.date(2026, 1, 1)
TRAIN_END = dt.date(2026, 1, 31)
SCORED = [dt.date(2026, 3, 3), dt.date(2026, 3, 4), dt.date(2026, 3, 5)]


@pytest.fixture(scope="module")
def monitored(s3_server: Settings) -> Iterator[tuple[Settings, str]]:
    """Own bucket (the flow's load_settings() reads it from the environment), raw data from DATA_START, a
    champion trained on January with its monitoring reference, and three days of published predictions."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONVEYOR_STORAGE__BUCKET", f"mon-{uuid.uuid4().hex[:10]}")
        settings = load_settings()
        store = ObjectStore(settings.storage)
        land_synthetic(settings, store, DATA_START, (SCORED[-1] - DATA_START).days + 1, Scenario(), "mon-test")
        name = f"churn_{uuid.uuid4().hex[:6]}"
        candidate = fit_and_evaluate(read_raw_window(store, settings, DATA_START, TRAIN_END), settings, "quick")
        decision = evaluate_gates(candidate, None, settings)
        registry = ModelRegistry(store, settings)
        version = registry.register(
            name,
            candidate.model,
            training_metadata(candidate, decision, settings, DATA_START, TRAIN_END, None),
            candidate.reference,
            files=monitoring_reference_files(candidate.test, settings, candidate.reference),
            actor="monitoring-test",
        )
        registry.promote(name, version.version, actor="monitoring-test", reason="champion for the monitoring test")
        loaded = registry.load(name)
        for day in SCORED:
            rows = read_raw_window(store, settings, day, day)
            frame = rows[[settings.dataset.entity_column]].assign(score=loaded.score(rows))
            with Publication(store, predictions_prefix(settings, name, day), "scoring-test") as publication:
                publication.write_parquet("part-0.parquet", frame)
                publication.commit({"counts": {"scored": len(frame), "quarantined": 3}})
        yield settings, name


def _artifact_link(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    data = str(sorted(found, key=lambda a: a.created)[-1].data)
    match = re.search(r"\((https?://[^)]+)\)", data) or re.search(r"(https?://\S+)", data)
    assert match, data
    return match.group(1)


def test_backfill_appends_one_judgement_per_day_and_links_open_over_http(
    monitored: tuple[Settings, str], prefect_harness: None
) -> None:
    from flows.drift_monitor import drift_monitor

    settings, name = monitored
    store = ObjectStore(settings.storage)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONVEYOR_STORAGE__BUCKET", settings.storage.bucket)
        latest = drift_monitor(model_name=name, start_day=SCORED[0], end_day=SCORED[-1])

    assert latest.window_end == SCORED[-1].isoformat()
    partitions = published_prefixes(store, table_prefix(settings, name, "").rsplit("dt=", 1)[0])
    assert [p.rsplit("dt=", 1)[1] for p in partitions] == [d.isoformat() for d in SCORED]
    history = read_history(store, settings, name)
    assert sorted(history["day"].unique()) == [d.isoformat() for d in SCORED]
    assert set(history["model_name"]) == {name}

    # Ground truth: the estimate of each day vs the realized ROC AUC on the generator's labels of the same rows.
    model = ModelRegistry(store, settings).load(name)
    for day in SCORED:
        rows = read_raw_window(store, settings, day, day)
        realized = pe.realized_metrics(rows[settings.dataset.label_column].to_numpy(), model.score(rows), 0.5)
        picked = history[(history["day"] == day.isoformat()) & (history["subject"] == "model")]
        value = picked.set_index("metric")["value"]
        assert abs(value["estimated_roc_auc"] - realized["roc_auc"]) < 3 * value["estimated_roc_auc_se"] + 0.01
        volume = history[(history["day"] == day.isoformat()) & (history["subject"] == "data")].set_index("metric")
        assert volume.loc["rows_scored", "value"] == len(rows) and volume.loc["rows_quarantined", "value"] == 3
    # The labels of the window 30 days earlier have arrived: realized and estimated side by side.
    realized_rows = history[history["metric"] == "realized_roc_auc"]
    assert len(realized_rows) == len(SCORED) and realized_rows["value"].between(0.6, 0.95).all()
    assert not np.isnan(history[history["metric"] == "estimated_roc_auc_on_labelled"]["value"]).any()

    key = f"drift-{name}".replace("_", "-").lower()
    dashboard = _artifact_link(f"{key}-dashboard")
    report = _artifact_link(f"{key}-report")
    assert dashboard.startswith("http://127.0.0.1") and "X-Amz-Signature=" in dashboard
    page = httpx.get(dashboard, timeout=30)
    assert page.status_code == 200 and page.text.startswith("<!doctype html>") and "data:image/png;base64," in page.text
    assert f"Monitoring: {name} (3 judged days)" in page.text
    drift_page = httpx.get(report, timeout=30)
    assert drift_page.status_code == 200 and "Estimated performance without labels" in drift_page.text
    # The same object without the signature is refused: the link works because it is presigned.
    assert httpx.get(dashboard.split("?", 1)[0], timeout=30).status_code == 403
    assert store.get_bytes(dashboard_key(settings, name)) == page.content
    assert {MONITORING_REFERENCE, PROFILE_FILE} <= set(ModelRegistry(store, settings).get_version(name, 1).files)
