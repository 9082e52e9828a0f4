"""Training/serving skew: the online values must equal the point-in-time offline values training would read."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from configs.settings import Settings
from conveyor.adapters.feast_materialize import ONE_US, materialized_until, online_features
from conveyor.adapters.feast_offline import build_training_set, latest_entities
from conveyor.adapters.feast_repo import (
    FeatureStoreError,
    default_view,
    feature_store,
    service_features,
    service_name,
    utc,
)
from conveyor.domain.entity_keys import key_records


@dataclass(frozen=True)
class SkewReport:
    """Online values vs the offline (training) values for a sample of entities, as of `as_of`."""

    passed: bool
    as_of: dt.datetime
    feature_service: str
    entities_checked: int
    mismatched_values: int
    mismatches: list[dict[str, Any]]  # first few: entity, feature, online, offline
    reasons: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _same(online: Any, offline: Any, tolerance: float) -> bool:
    online_missing, offline_missing = pd.isna(online), pd.isna(offline)
    if online_missing or offline_missing:
        return bool(online_missing and offline_missing)
    if isinstance(online, int | float | np.number) and isinstance(offline, int | float | np.number):
        return bool(abs(float(online) - float(offline)) <= tolerance)
    return bool(online == offline)


def check_skew(
    settings: Settings,
    sample_size: int | None = None,
    as_of: dt.datetime | None = None,
    feature_service: str | None = None,
    seed: int = 0,
) -> SkewReport:
    """For a sample of entities with data within TTL of `as_of` (default: the end of the last materialized
    window), the online features must equal the point-in-time offline features the training path would read."""
    ds = settings.dataset
    name = service_name(settings, feature_service)
    store = feature_store(settings)
    view = store.get_feature_view(default_view(store, settings))
    if as_of is None:
        until = materialized_until(settings).get(view.name)
        if until is None:
            raise FeatureStoreError(f"feature view {view.name!r} was never materialized: nothing to compare")
        as_of = until
    cutoff = utc(as_of) - ONE_US  # materialized windows are [start, end)
    keys = latest_entities(settings, cutoff, dt.timedelta(days=settings.features.ttl_days))
    rng = np.random.default_rng(seed)
    n = min(sample_size or settings.features.skew_sample_size, len(keys))
    picked = rng.choice(len(keys), size=n, replace=False) if n else np.arange(0)
    sample = keys.iloc[picked].sort_values(ds.entity_columns, kind="stable").reset_index(drop=True)
    entity_df = sample.assign(**{ds.timestamp_column: pd.Timestamp(cutoff)})
    offline_values = build_training_set(settings, entity_df, name)
    online_values = online_features(settings, sample, name)
    named = key_records(sample)
    features = service_features(store, name)
    mismatches: list[dict[str, Any]] = []
    count = 0
    for i in range(n):
        for feature in features:
            on, off = online_values.at[i, feature], offline_values.at[i, feature]
            if not _same(on, off, settings.features.skew_tolerance):
                count += 1
                if len(mismatches) < 20:
                    mismatches.append(
                        {
                            "entity": named[i] if ds.composite_key else named[i][ds.entity_column],
                            "feature": feature,
                            "online": None if pd.isna(on) else str(on),
                            "offline": None if pd.isna(off) else str(off),
                        }
                    )
    reasons = []
    if count:
        bad_features = sorted({m["feature"] for m in mismatches})
        reasons.append(
            f"{count} of {n * len(features)} feature values differ between online and offline "
            f"for {n} sampled entities as of {cutoff:%Y-%m-%d %H:%M:%S} (e.g. {bad_features}); "
            "re-materialize the window or look for writes outside materialization"
        )
    if n == 0:
        reasons.append(f"no entity has offline data within the TTL ({settings.features.ttl_days} days) of {cutoff}")
    return SkewReport(count == 0 and n > 0, utc(as_of), name, n, count, mismatches, reasons)
