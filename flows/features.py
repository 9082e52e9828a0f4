"""Refresh the online feature store: apply the declarations, materialize up to `end_date`, check skew."""

from __future__ import annotations

import datetime as dt

from prefect import flow

from configs.settings import load_settings
from conveyor.adapters import prefect_fixes  # noqa: F401  (installs the engine fix before any run)
from conveyor.adapters.feature_store import SkewReport
from tasks.features import apply_feature_definitions, check_feature_skew, materialize_features


@flow(
    name="refresh-features",
    description="Materialize feature values into the online store (incremental) and check training/serving skew.",
)
def refresh_features(start_date: dt.date, end_date: dt.date) -> SkewReport:
    """Each feature view resumes where its last window stopped; a first run covers [start_date, end_date).
    Returns the skew report (online == point-in-time offline for a sample of entities)."""
    settings = load_settings()
    apply_feature_definitions(settings)
    materialize_features(settings, start_date, end_date)
    return check_feature_skew(settings)
