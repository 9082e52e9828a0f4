"""Prefect tasks of this stage: thin wrappers over `conveyor.adapters.feature_store`."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from configs.settings import Settings
from conveyor.adapters.feature_store import (
    AppliedDefinitions,
    MaterializationResult,
    SkewReport,
    apply_definitions,
    build_training_set,
    check_skew,
    materialize_incremental,
    service_name,
)
from conveyor.adapters.prefect_runtime import retry_transient


# ---- Prefect tasks (thin) -----------------------------------------------------------------------------
@task(name="apply-feature-definitions")
def apply_feature_definitions(settings: Settings) -> AppliedDefinitions:
    applied = apply_definitions(settings)
    get_run_logger().info(
        "feature store %s: views %s, services %s (registry %s)",
        applied.project,
        applied.feature_views,
        applied.feature_services,
        applied.registry,
    )
    return applied


@task(name="materialize-features", retries=2, retry_delay_seconds=10, retry_condition_fn=retry_transient)
def materialize_features(
    settings: Settings, start: dt.datetime | dt.date, end: dt.datetime | dt.date
) -> MaterializationResult:
    """Incremental: each view from where it stopped (a first run covers [start, end))."""
    result = materialize_incremental(settings, start, end)
    get_run_logger().info(result.summary())
    return result


@task(
    name="build-training-set",
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def build_training_set_task(
    settings: Settings, entity_df: pd.DataFrame, feature_service: str | None = None, data_version: int | None = None
) -> pd.DataFrame:
    """Point-in-time features for the entity rows, read from raw table version `data_version` (default: latest)."""
    frame = build_training_set(settings, entity_df, feature_service, data_version=data_version)
    get_run_logger().info(
        "training set: %d rows x %d features (%s, raw table version %s)",
        len(frame),
        len(frame.columns) - len(entity_df.columns),
        service_name(settings, feature_service),
        "latest" if data_version is None else data_version,
    )
    return frame


@task(name="check-feature-skew")
def check_feature_skew(settings: Settings) -> SkewReport:
    report = check_skew(settings)
    logger = get_run_logger()
    if report.passed:
        logger.info("skew check passed: %d entities, online == offline", report.entities_checked)
    else:
        logger.warning("skew check failed: %s", "; ".join(report.reasons))
    return report
