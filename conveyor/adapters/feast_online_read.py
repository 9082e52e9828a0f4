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


class OnlineFeatureReader:
    """`read(ids)`: entity column + the service's features, one row per id in order, null where none."""

    def __init__(self, settings: Settings, feature_service: str | None = None) -> None:
        store = feature_store(settings)
        self.entity_column = settings.dataset.entity_column
        self.integer_keys = settings.dataset.key_dtypes[self.entity_column] == "int64"
        self.numeric = set(settings.dataset.numeric_features)
        projections = service(store, service_name(settings, feature_service)).feature_view_projections
        self.views = [(store.get_feature_view(p.name), [f.name for f in p.features]) for p in projections]
        self.features = [name for _, names in self.views for name in names]
        # The provider is the one entry to the online store Feast exposes without its request-context rebuild.
        self._provider = store._get_provider()
        self._config = store.config

    def read(self, entity_ids: Sequence[int | str]) -> pd.DataFrame:
        if self.integer_keys:
            ids: list[Any] = [int(i) for i in entity_ids]
            values = [ValueProto(int64_val=i) for i in ids]
        else:
            ids = [str(i) for i in entity_ids]
            values = [ValueProto(string_val=i) for i in ids]
        keys = [EntityKeyProto(join_keys=[self.entity_column], entity_values=[v]) for v in values]
        columns: dict[str, Any] = {self.entity_column: np.asarray(ids, dtype=np.int64 if self.integer_keys else object)}
        for view, names in self.views:
            found = self._provider.online_read(self._config, view, keys, names)
            for name in names:
                values = [_value(row[1], name) for row in found]
                columns[name] = np.asarray(values, dtype="float64") if name in self.numeric else _text(values)
        return pd.DataFrame(columns)[[self.entity_column, *self.features]]


def _value(values: dict[str, ValueProto] | None, name: str) -> Any:
    if not values or name not in values:
        return None
    value = feast_value_type_to_python_type(values[name])
    return np.nan if value is None else value


def _text(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = [np.nan if v is None else v for v in values]
    return out
