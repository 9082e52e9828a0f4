"""Feast declarations for Conveyor: the entity, the raw Delta table on S3 as the source, the feature view and one
feature service per model version, built from `configs/dataset.yaml` when Feast imports this file.

So `feast -c feature_repo plan`, `feast -c feature_repo feature-views list` and `feast apply` see the same
objects the flows apply (`conveyor data feast-env` prints what to export first). The flows call `build(settings)`
with their own settings; the module-level objects are `build(load_settings())`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.data_format import DeltaFormat  # not feast.table_format.DeltaFormat: that one is for Spark sources
from feast.types import Bool, Float64, Int64, String

from configs.settings import Settings, load_settings
from conveyor.adapters.raw_data import raw_table

# dataset.yaml dtype -> Feast type. Categories travel as strings; the model pipeline encodes them.
FEAST_TYPES = {"int64": Int64, "float64": Float64, "category": String, "bool": Bool}


def feature_services(dataset_name: str) -> dict[str, list[str] | None]:
    """One FeatureService per model version: name -> feature names (None: every feature of the dataset).

    To give a new model version a different feature set, add e.g. `f"{dataset_name}_v2": ["age", ...]` and
    point `features.feature_service` at it; earlier versions keep serving with the service they trained on.
    """
    return {f"{dataset_name}_v1": None}


@dataclass(frozen=True)
class Declarations:
    entities: list[Entity]  # one per key column: Feast's Entity takes a single join key
    source: FileSource
    view: FeatureView
    services: list[FeatureService]

    def objects(self) -> list[Any]:
        return [*self.entities, self.source, self.view, *self.services]


def build(settings: Settings, table_uri: str | None = None) -> Declarations:
    """Every Feast object of the repo for these settings (`table_uri`: another copy of the raw table)."""
    dataset = settings.dataset
    tags = {"owner": settings.features.owner, "dataset": dataset.name, "managed_by": "conveyor"}
    # Feast 0.67's Entity refuses more than one join key ("Multiple join keys will be supported in the future"):
    # a composite key is one Entity per column, all on the view, and Feast's entity key holds every join key.
    composite = f" (one column of the composite key {dataset.entity_columns})" if dataset.composite_key else ""
    entities = [
        Entity(
            name=column,
            join_keys=[column],
            value_type=ValueType.INT64 if dtype == "int64" else ValueType.STRING,
            description=f"the {dataset.name} entity key{composite}",
            tags=tags,
        )
        for column, dtype in dataset.key_dtypes.items()
    ]
    # No s3_endpoint_override and no credentials here: either makes Feast pass storage_options to duckdb's
    # delta_scan, which rejects them. The endpoint and keys are a duckdb secret (conveyor/adapters/duckdb_s3.py).
    source = FileSource(
        name=f"{dataset.name}_raw",
        path=table_uri or raw_table(settings.storage, settings).uri,
        file_format=DeltaFormat(),
        timestamp_field=dataset.timestamp_column,
        description="the raw Delta table on the object store, partitioned by day (committed data only)",
        tags=tags,
    )
    view = FeatureView(
        name=f"{dataset.name}_features",
        entities=entities,
        ttl=timedelta(days=settings.features.ttl_days),
        # Explicit schema: apply never opens the table to infer one.
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
    return Declarations(entities, source, view, services)


_declared = build(load_settings())
raw_source = _declared.source
features_view = _declared.view
# Module-level names, one per entity and per service, so Feast's repo scan finds each of them.
globals().update({f"{entity.name}_entity": entity for entity in _declared.entities})
globals().update({service.name: service for service in _declared.services})
