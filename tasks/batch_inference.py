"""Prefect tasks of this stage: thin wrappers over `conveyor.services.batch_inference`."""

from __future__ import annotations

import datetime as dt
from contextlib import AbstractContextManager
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from configs.settings import Settings
from conveyor.adapters.prefect_runtime import retry_transient
from conveyor.services.batch_inference import (
    ModelRef,
    feature_store_source,
    load_scoring_model,
    object_store,
    resolve_model,
    rollout_challenger,
    suite_check,
    summary_markdown,
)
from conveyor.services.feature_sources import FeatureSource, PublishedParquetSource
from conveyor.services.scoring import PartitionResult, score_partition


@task(name="resolve-model", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_transient, cache_policy=NO_CACHE)
def resolve_model_task(settings: Settings, name: str, version: int | None) -> ModelRef:
    ref = resolve_model(object_store(settings), settings, name, version)
    get_run_logger().info("scoring with %s version %s (feature service %s)", ref.name, ref.version, ref.feature_service)
    return ref


@task(
    name="resolve-challenger",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def resolve_challenger_task(settings: Settings, name: str, version: int | None) -> ModelRef | None:
    """The version to shadow: the one given, else the registry rollout's challenger (`conveyor rollout`), else none."""
    store = object_store(settings)
    chosen = version if version is not None else rollout_challenger(store, settings, name)
    if chosen is None:
        return None
    ref = resolve_model(store, settings, name, chosen)
    get_run_logger().info("shadow scoring with %s version %s", ref.name, ref.version)
    return ref


@task(name="sweep-staging", retries=1, retry_delay_seconds=5, retry_condition_fn=retry_transient, cache_policy=NO_CACHE)
def sweep_staging_task(settings: Settings) -> None:
    """Housekeeping before writing: failed runs' staging leftovers older than storage.staging_retention_hours."""
    retention = dt.timedelta(hours=settings.storage.staging_retention_hours)
    swept = object_store(settings).sweep_staging(older_than=retention)
    if swept.objects_deleted or swept.uploads_aborted:
        get_run_logger().info(
            "staging older than %s: %d objects deleted, %d multipart uploads aborted",
            retention,
            swept.objects_deleted,
            swept.uploads_aborted,
        )


@task(
    name="score-partition",
    retries=1,
    retry_delay_seconds=10,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    task_run_name="score-{day}",
)
def score_partition_task(
    settings: Settings,
    day: dt.date,
    champion: ModelRef,
    challenger: ModelRef | None,
    features_prefix: str | None,
    run_id: str,
) -> PartitionResult:
    """Population + features -> checks -> score -> write -> publish, for one day."""
    store = object_store(settings)
    if features_prefix:
        prefix = f"{features_prefix.rstrip('/')}/dt={day.isoformat()}"
        ds = settings.dataset
        source: FeatureSource = PublishedParquetSource(
            store, prefix, [*ds.entity_columns, ds.timestamp_column, *ds.feature_names]
        )
    else:
        source = feature_store_source(settings, day)
    result = score_partition(
        store,
        settings,
        source,
        load_scoring_model(store, settings, champion),
        champion.name,
        day,
        run_id,
        challenger=load_scoring_model(store, settings, challenger) if challenger else None,
        sample_check=suite_check(settings, day),
    )
    get_run_logger().info(
        "dt=%s: %d rows scored (%d with defaults), %d quarantined, published at %s in %.1fs",
        day,
        result.rows_scored,
        result.rows_defaulted,
        result.rows_quarantined,
        result.uri,
        result.seconds,
    )
    if result.shadow is not None:
        shift = result.shadow
        create_markdown_artifact(
            key=f"shadow-{champion.name}-{day.isoformat()}".replace("_", "-"),
            description="champion vs challenger on the same rows (shadow scores are never published)",
            markdown=(
                f"### Shadow scoring {champion.name} dt={day}\n\n| | value |\n|---|---|\n"
                + "\n".join(f"| {k} | {v} |" for k, v in shift.items())
                + f"\n\nshadow scores: {result.shadow_uri}"
            ),
        )
    return result


def scoring_task_runner(settings: Settings) -> AbstractContextManager[Any]:
    """The task runner for partition tasks: threads by default, a Dask LocalCluster by configuration."""
    workers = settings.scoring.max_parallel_partitions
    if settings.scoring.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(
            cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None}
        )
    return ThreadPoolTaskRunner(max_workers=workers)


def publish_summary(results: list[PartitionResult]) -> None:
    """A table artifact of the run's partitions (called in the flow: no task run of its own)."""
    create_markdown_artifact(
        key="batch-inference", markdown=summary_markdown(results), description="predictions published by this run"
    )
