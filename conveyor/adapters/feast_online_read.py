"""Online reads for request serving: a feature service's values for a few entity ids, in microseconds of Feast's
own work rather than milliseconds.

`FeatureStore.get_online_features` rebuilds its request context from the registry on every call (feature service
and view protos -> objects, each typeguard-checked): most of a one-entity read. Here the service's views are
resolved once per reader, and each read goes straight to the provider's `online_read`, the online-store interface
Feast's own reads end in (SQLite locally, Redis in prod): same tables, same values, same order.
One reader per feature service: a service's features are fixed once a model is trained on it (a changed feature
set is a new service, feature_repo/definitions.py), so the cached views cannot go stale under a served model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import feast_value_type_to_python_type

from configs.settings import Settings
from conveyor.adapters.feast_repo import feature_store, service, service_name
from conveyor.domain.entity_keys import key_frame


class OnlineFeatureReader:
    """`read(ids)`: entity column + the service's features, one row per id in order, null where none."""

    def __init__(self, settings: Settings, feature_service: str | None = None) -> None:
        store = feature_store(settings)
        self.dataset = settings.dataset
        self.key_columns = settings.dataset.entity_columns
        self.integer_keys = settings.dataset.key_dtypes[self.key_columns[0]] == "int64"
        self.numeric = set(settings.dataset.numeric_features)
        projections = service(store, service_name(settings, feature_service)).feature_view_projections
        self.views = [(store.get_feature_view(p.name), [f.name for f in p.features]) for p in projections]
        self.features = [name for _, names in self.views for name in names]
        # The provider is the one entry to the online store Feast exposes without its request-context rebuild.
        self._provider = store._get_provider()
        self._config = store.config

    def read(self, entity_ids: Sequence[Any]) -> pd.DataFrame:
        """Ids of a one-column key, or {key column: value} objects of a composite key."""
        if self.dataset.composite_key:
            keys, columns = self._composite_keys(entity_ids)
        else:
            keys, columns = self._keys(entity_ids)
        for view, names in self.views:
            found = self._provider.online_read(self._config, view, keys, names)
            for name in names:
                values = [_value(row[1], name) for row in found]
                columns[name] = np.asarray(values, dtype="float64") if name in self.numeric else _text(values)
        # Columns in the service's order; selecting them afterwards (a take) cost more than the store's read.
        return pd.DataFrame({name: columns[name] for name in [*self.key_columns, *self.features]}, copy=False)

    def _composite_keys(self, entity_ids: Sequence[Any]) -> tuple[list[EntityKeyProto], dict[str, Any]]:
        frame = key_frame(self.dataset, pd.DataFrame(list(entity_ids), columns=self.key_columns))
        kinds = [(c, "int64_val" if t == "int64" else "string_val") for c, t in self.dataset.key_dtypes.items()]
        per_column = [[ValueProto(**{kind: v}) for v in frame[c].tolist()] for c, kind in kinds]
        keys = [
            EntityKeyProto(join_keys=self.key_columns, entity_values=list(values))
            for values in zip(*per_column, strict=True)
        ]
        return keys, {c: frame[c].to_numpy() for c in self.key_columns}

    def _keys(self, entity_ids: Sequence[Any]) -> tuple[list[EntityKeyProto], dict[str, Any]]:
        column = self.key_columns[0]
        if self.integer_keys:
            ids: list[Any] = [int(i) for i in entity_ids]
            values = [ValueProto(int64_val=i) for i in ids]
        else:
            ids = [str(i) for i in entity_ids]
            values = [ValueProto(string_val=i) for i in ids]
        keys = [EntityKeyProto(join_keys=[column], entity_values=[v]) for v in values]
        return keys, {column: np.asarray(ids, dtype=np.int64 if self.integer_keys else object)}


def _value(values: dict[str, ValueProto] | None, name: str) -> Any:
    if not values or name not in values:
        return None
    value = feast_value_type_to_python_type(values[name])
    return np.nan if value is None else value


def _text(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = [np.nan if v is None else v for v in values]
    return out
