"""Feast declarations for Conveyor: the entity, the offline source, the feature view and the feature services.

Declarations only: `conveyor/adapters/feature_store.py` calls `definitions(...)` and applies the result from Python. The
schema is derived from `configs/dataset.yaml` (entity, timestamp and feature columns with their types), so a
new dataset needs no edit here unless it needs a different feature set per model version.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Bool, Float64, Int64, String

# dataset.yaml dtype -> Feast type. Categories travel as strings; the model pipeline encodes them.
FEAST_TYPES = {"int64": Int64, "float64": Float64, "category": String, "bool": Bool}


def feature_services(dataset_name: str) -> dict[str, list[str] | None]:
    """One FeatureService per model version: name -> feature names (None: every feature of the dataset).

    To give a new model version a different feature set, add e.g. `f"{dataset_name}_v2": ["age", ...]` and
    point `features.feature_service` at it; earlier versions keep serving with the service they trained on.
    """
    return {f"{dataset_name}_v1": None}


def definitions(dataset: Any, *, offline_path: str, ttl_days: int, owner: str) -> list[Any]:
    """Every Feast object of the repo. `dataset` is configs.settings.DatasetConfig; `offline_path` is the
    parquet location (a glob over the daily partitions) the duckdb offline store reads."""
    tags = {"owner": owner, "dataset": dataset.name, "managed_by": "conveyor"}
    entity = Entity(
        name=dataset.entity_column,
        join_keys=[dataset.entity_column],
        value_type=ValueType.INT64,
        description=f"the {dataset.name} entity key",
        tags=tags,
    )
    source = FileSource(
        name=f"{dataset.name}_raw",
        path=offline_path,
        timestamp_field=dataset.timestamp_column,
        description="raw daily partitions, copied from the object store into the offline parquet location",
        tags=tags,
    )
    view = FeatureView(
        name=f"{dataset.name}_features",
        entities=[entity],
        ttl=timedelta(days=ttl_days),
        schema=[Field(name=f.name, dtype=FEAST_TYPES[f.dtype], description=f.description) for f in dataset.features],
        source=source,
        online=True,
        description=f"every feature of {dataset.name}, as of each event",
        tags=tags,
    )
    services = [
        FeatureService(
            name=name,
            features=[view if names is None else view[names]],
            description=f"features of model {name}",
            tags=tags,
        )
        for name, names in feature_services(dataset.name).items()
    ]
    return [entity, source, view, *services]
