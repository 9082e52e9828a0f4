"""The batch-inference flow, run by Prefect against the real test S3 server: registry champion (checksum
verified), a backfill range (one task per partition), shadow scoring, the feature-store path, the Dask switch."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from configs.settings import Settings, load_settings
from conveyor.adapters.feature_store import apply_definitions, feast_training_set  # module level: see the note
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.publication import read_manifest, read_published_parquet
from conveyor.adapters.raw_data import read_raw_window
from conveyor.adapters.registry import ModelRegistry
from conveyor.adapters.registry_records import TamperedArtifact
from conveyor.demo.synthetic import Scenario
from conveyor.services.ingest import land_synthetic
from conveyor.services.scoring import predictions_prefix, shadow_prefix
from flows.batch_inference import batch_inference
from tests.integration.scoring_data import DAYS, fit_task, publish_snapshots, register, register_task_model

pytestmark = pytest.mark.integration

# Feast is imported at module level (collection, one thread), never inside a test: Feast's @typechecked modules
# run ast.parse when imported, and a parse while a flow's threads parse too can hit CPython 3.11.7's shared
# AST-constructor state (gh-106905, fixed in 3.11.8): `SystemError: AST constructor recursion depth mismatch`.


@pytest.fixture(scope="module")
def models(s3_server: Settings) -> Iterator[tuple[str, int, int]]:
    name = f"churn_{uuid.uuid4().hex[:8]}"
    champion = register(s3_server, name, seed=0, promote=True)
    challenger = register(s3_server, name, seed=1, promote=False)
    yield name, champion, challenger


def test_flow_scores_a_backfill_with_the_champion_and_shadows_the_challenger(
    s3_server: Settings, prefect_harness: None, models: tuple[str, int, int]
) -> None:
    name, champion, challenger = models
    store = ObjectStore(s3_server.storage)
    root = f"features-{uuid.uuid4().hex[:8]}/churn"
    frames = publish_snapshots(store, s3_server, root)

    result = batch_inference(
        scoring_date=DAYS[0], end_date=DAYS[1], model_name=name, challenger_version=challenger, features_prefix=root
    )

    assert [p.day for p in result.partitions] == DAYS and result.model_version == champion
    loaded = ModelRegistry(store, s3_server).load(name, champion).model
    for day, part in zip(DAYS, result.partitions, strict=True):
        prefix = predictions_prefix(s3_server, name, day)
        assert part.uri == store.uri(prefix + "/")
        published = read_published_parquet(store, prefix)
        expected = loaded.predict_proba(frames[day][s3_server.dataset.feature_names])[:, 1]
        np.testing.assert_allclose(published["score"].to_numpy(), expected, rtol=0, atol=1e-12)
        assert set(published["model_version"]) == {str(champion)}
        shadow = read_published_parquet(store, shadow_prefix(s3_server, name, str(challenger), day))
        assert set(shadow["model_version"]) == {str(challenger)} and len(shadow) == len(published)
        assert part.shadow is not None and 0 < part.shadow["agreement"] <= 1
    # Shadow output lives outside the predictions prefix: no key there names the challenger's version.
    assert all(
        f"version={challenger}" not in k for k in store.list_keys(f"{s3_server.storage.prefixes.predictions}/{name}/")
    )


def test_flow_follows_each_versions_task_a_multiclass_champion_shadowed_by_a_regression(
    s3_server: Settings, prefect_harness: None
) -> None:
    name = f"tiers_{uuid.uuid4().hex[:8]}"
    registry = ModelRegistry(ObjectStore(s3_server.storage), s3_server)
    multiclass = fit_task(s3_server, "multiclass", days=8, max_iter=20)
    champion = register_task_model(registry, name, multiclass, twin=False)
    registry.promote(name, champion.version, actor="test", reason="multiclass champion")
    challenger = register_task_model(registry, name, fit_task(s3_server, "regression", days=8, max_iter=20), twin=False)
    store = registry.store
    root = f"features-{uuid.uuid4().hex[:8]}/churn"
    frames = publish_snapshots(store, s3_server, root, n=800)

    result = batch_inference(
        scoring_date=DAYS[0], model_name=name, challenger_version=challenger.version, features_prefix=root
    )

    (part,) = result.partitions
    task = champion.model_task
    published = read_published_parquet(store, predictions_prefix(s3_server, name, DAYS[0]))
    expected = task.outputs(multiclass[0], frames[DAYS[0]][s3_server.dataset.feature_names])
    assert list(published.columns[1:5]) == task.output_columns
    np.testing.assert_allclose(
        published[task.output_columns[:3]].to_numpy(), expected.iloc[:, :3].to_numpy(), atol=1e-12
    )
    assert published["predicted_class"].tolist() == expected["predicted_class"].tolist()
    shadow = read_published_parquet(store, shadow_prefix(s3_server, name, str(challenger.version), DAYS[0]))
    assert "prediction" in shadow.columns and "predicted_class" not in shadow.columns and len(shadow) == len(published)
    assert part.shadow is not None and part.shadow["comparable"] is False and part.shadow["rows"] == len(published)
    assert "differs from the champion's" in part.shadow["note"]


def test_flow_refuses_a_tampered_champion(s3_server: Settings, prefect_harness: None) -> None:
    name = f"churn_{uuid.uuid4().hex[:8]}"
    version = register(s3_server, name, seed=0, promote=True)
    store = ObjectStore(s3_server.storage)
    meta = ModelRegistry(store, s3_server).get_version(name, version)
    store.put_bytes(meta.artifact_key, store.get_bytes(meta.artifact_key) + b"tampered")
    root = f"features-{uuid.uuid4().hex[:8]}/churn"
    publish_snapshots(store, s3_server, root, n=200)
    with pytest.raises(TamperedArtifact):
        batch_inference(scoring_date=DAYS[0], model_name=name, features_prefix=root)
    assert read_manifest(store, predictions_prefix(s3_server, name, DAYS[0])) is None


def test_flow_fetches_features_through_the_feature_service(
    s3_server: Settings, prefect_harness: None, models: tuple[str, int, int]
) -> None:
    """No snapshot given: the entities seen in the look-back window of raw data, with the same point-in-time
    features as Feast's own join as of the end of the day."""
    name, champion, _ = models
    settings = load_settings()
    store = ObjectStore(settings.storage)
    day = dt.date(2026, 1, 10)
    land_synthetic(settings, store, dt.date(2026, 1, 1), 10, Scenario(), run_id="fs-test")
    apply_definitions(settings)

    result = batch_inference(scoring_date=day, model_name=name)

    part = result.partitions[0]
    published = read_published_parquet(store, predictions_prefix(settings, name, day))
    ds = settings.dataset
    assert part.rows_in == part.rows_scored + part.rows_quarantined > 1000
    entity_df = pd.DataFrame(
        {
            ds.entity_column: published[ds.entity_column],
            ds.timestamp_column: pd.Timestamp("2026-01-10 23:59:59.999999", tz="UTC"),
        }
    )
    features = feast_training_set(settings, entity_df)
    loaded = ModelRegistry(store, settings).load(name, champion).model
    np.testing.assert_allclose(
        published["score"].to_numpy(), loaded.predict_proba(features[ds.feature_names])[:, 1], rtol=0, atol=1e-12
    )
    assert published[ds.entity_column].is_unique
    first = day - dt.timedelta(days=settings.scoring.population_lookback_days - 1)
    population = read_raw_window(store, settings, first, day, columns=[ds.entity_column])[ds.entity_column]
    assert set(published[ds.entity_column]) == set(population)


def test_dask_task_runner_is_a_config_switch(
    s3_server: Settings, prefect_harness: None, models: tuple[str, int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, champion, _ = models
    store = ObjectStore(s3_server.storage)
    root = f"features-{uuid.uuid4().hex[:8]}/churn"
    publish_snapshots(store, s3_server, root, n=500)
    import distributed
    from prefect_dask import DaskTaskRunner

    # Each partition task must go to the Dask cluster and finish there: a switch that is ignored (threads) leaves
    # `ran_on_dask` empty, and the same rows would be scored either way.
    ran_on_dask: list[str] = []
    submit = DaskTaskRunner.submit

    def recording_submit(self: DaskTaskRunner, *args: Any, **kwargs: Any) -> Any:
        future = submit(self, *args, **kwargs)
        assert isinstance(future.wrapped_future, distributed.Future)
        future.wrapped_future.add_done_callback(lambda done: ran_on_dask.append(done.status))
        return future

    monkeypatch.setattr(DaskTaskRunner, "submit", recording_submit)
    monkeypatch.setenv("CONVEYOR_SCORING__TASK_RUNNER", "dask")
    result = batch_inference(scoring_date=DAYS[0], end_date=DAYS[1], model_name=name, features_prefix=root)
    assert [p.rows_scored for p in result.partitions] == [500, 500]
    assert ran_on_dask == ["finished", "finished"], ran_on_dask
    assert read_manifest(store, predictions_prefix(s3_server, name, DAYS[1])) is not None
