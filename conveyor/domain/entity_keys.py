"""The entity key as columns: one column, or several for a composite key (`dataset.entity_columns`), each of
integer or string type (`dataset.key_dtypes`). Pure: pandas and numpy only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from configs.settings import DatasetConfig
from conveyor.domain.failures import InvalidInput
from conveyor.domain.signature import column_lists


def key_frame(dataset: DatasetConfig, entities: Iterable[int | str] | pd.DataFrame) -> pd.DataFrame:
    """The key columns of `entities` in key order and their declared types (int64, or text as objects): a frame
    with every key column, or the ids of a one-column key. A frame lacking a key column raises, naming it."""
    if isinstance(entities, pd.DataFrame):
        missing = [c for c in dataset.entity_columns if c not in entities.columns]
        if missing:
            raise InvalidInput(f"entity rows lack key column(s) {missing} (dataset.entity_columns)")
        frame = entities[dataset.entity_columns].reset_index(drop=True)
    else:
        frame = pd.DataFrame({dataset.entity_column: list(entities)})
    return pd.DataFrame(
        {
            column: np.asarray([int(v) for v in frame[column]], dtype=np.int64)
            if dtype == "int64"
            else _text(frame[column])
            for column, dtype in dataset.key_dtypes.items()
        }
    )


def _text(values: pd.Series) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = [str(v) for v in values]
    return out


def key_text(dataset: DatasetConfig, key: int | str | Mapping[str, int | str]) -> str:
    """One entity's key as text: the id of a one-column key, a composite key's values as JSON in key order
    (`{"store_id":3,"sku":"a"}`): the rollout bucket's and the prediction log's key."""
    if isinstance(key, Mapping):
        return json.dumps({c: key[c] for c in dataset.entity_columns}, separators=(",", ":"))
    return str(key)


def key_records(keys: pd.DataFrame) -> list[dict[str, int | str]]:
    """One {key column: value} mapping a row, with Python values (what Feast's `entity_rows` take)."""
    columns = column_lists(keys)
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]
