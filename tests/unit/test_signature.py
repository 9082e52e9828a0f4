"""The model signature from configs/dataset.yaml (conveyor/domain/signature.py): request rows and store values."""

from __future__ import annotations

import numpy as np
import pandas as pd

from configs.settings import load_settings
from conveyor.domain.signature import frame_violations, key_violations, rows_frame, violations

DATASET = load_settings().dataset


def test_row_violations_name_row_field_and_rule() -> None:
    rows = [{"age": 30, "region": "north"}, {"age": 17.5, "region": None, "x": 1}, {"num_products": True}]
    found = [(v.row, v.field, v.rule) for v in violations(rows, DATASET)]
    assert found == [
        (1, "age", "type: an integer (int64)"),
        (1, "x", "unknown field: not a feature of 'churn'"),
        (2, "num_products", "type: a number (int64)"),
    ]
    frame = rows_frame(rows[:1], DATASET)
    assert list(frame.columns) == DATASET.feature_names and frame["age"].dtype == "float64"
    assert np.isnan(frame.loc[0, "tenure_months"])  # absent: a missing feature, for the policy to decide


def test_frame_violations_check_ranges_and_categories_column_wise() -> None:
    frame = rows_frame([{"age": 30, "region": "north"}, {"age": 130, "region": "mars"}, {"age": None}], DATASET)
    found = [(v.row, v.field, v.rule) for v in frame_violations(frame, DATASET)]
    assert found == [(1, "age", "range: <= 100")]  # the first violation per row; nulls are not violations
    assert frame_violations(pd.DataFrame(frame.iloc[[0, 2]]).reset_index(drop=True), DATASET) == []


def test_entity_ids_must_have_the_keys_type() -> None:
    dataset = load_settings("local").dataset
    assert key_violations([1, 2], dataset) == []
    found = key_violations([1, "C000002", True], dataset)
    assert [(v.row, v.field, v.rule) for v in found] == [
        (1, "customer_id", "type: an integer id (int64)"),
        (2, "customer_id", "type: an integer id (int64)"),
    ]
    text_keys = dataset.model_copy(update={"entity_dtype": "string"})
    assert key_violations(["C000001"], text_keys) == []
    assert [v.row for v in key_violations(["C000001", 2], text_keys)] == [1]
