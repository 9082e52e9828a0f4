"""Composite entity keys: `entity_columns` in dataset.yaml, checked at load, and the key rules that follow it
(the suites' compound-unique rule, the rule engine on key pairs, key frames for Feast's entity rows)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from configs.settings import CONFIG_DIR, ConfigError, DatasetConfig, load_settings
from conveyor.domain.entity_keys import key_frame, key_records, key_text
from conveyor.domain.expectations import default_suite
from conveyor.domain.failures import InvalidInput
from conveyor.domain.rule_engine import evaluate_fast
from conveyor.domain.signature import Violation, key_violations
from conveyor.domain.source_types import declared_columns, numeric_columns


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in [k for k in os.environ if k.startswith("CONVEYOR_")]:
        monkeypatch.delenv(key)
    shutil.copytree(CONFIG_DIR, tmp_path / "configs", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return tmp_path / "configs"


def _dataset(config_dir: Path, **changes: Any) -> DatasetConfig:
    path = config_dir / "dataset.yaml"
    data = yaml.safe_load(path.read_text())
    data.pop("entity_column")
    data.update(changes)
    path.write_text(yaml.safe_dump(data))
    return load_settings("local", config_dir).dataset


def test_a_composite_key_is_a_list_of_typed_columns(config_dir: Path) -> None:
    ds = _dataset(config_dir, entity_columns=["store_id", "sku"], entity_dtype={"store_id": "int64", "sku": "string"})
    assert ds.entity_columns == ["store_id", "sku"] and ds.composite_key
    assert ds.key_dtypes == {"store_id": "int64", "sku": "string"}
    assert (ds.integer_keys, ds.string_keys) == (["store_id"], ["sku"])
    assert declared_columns(ds)[:3] == ["store_id", "sku", "event_timestamp"]
    assert numeric_columns(ds)[0] == "store_id" and "sku" not in numeric_columns(ds)
    with pytest.raises(ValueError, match=r"composite key \['store_id', 'sku'\]: this path takes a one-column key"):
        _ = ds.entity_column


def test_the_one_column_spelling_is_a_list_of_one() -> None:
    ds = load_settings("local").dataset  # dataset.yaml: entity_column: customer_id
    assert ds.entity_columns == ["customer_id"] and ds.entity_column == "customer_id" and not ds.composite_key
    assert ds.key_dtypes == {"customer_id": "int64"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"entity_columns": ["a", "b"], "entity_column": "a"}, "set entity_column .* or entity_columns .*, not both"),
        ({}, r"entity_column: Field required \(or entity_columns"),
        ({"entity_columns": []}, r"dataset\.entity_columns: List should have at least 1 item"),
        ({"entity_columns": ["store_id", "region"]}, r"\['region'\] cannot be both a key/label column and a feature"),
        ({"entity_columns": ["store_id", "store_id"]}, "must all be different columns"),
        ({"entity_columns": ["store_id", "sku"], "entity_dtype": {"store_id": "int64"}}, r"exactly the key columns"),
        ({"entity_columns": ["store_id", "sku"], "entity_dtype": {"store_id": "int64", "sku": "uuid"}}, "sku"),
    ],
)
def test_a_bad_key_fails_at_load_naming_it(config_dir: Path, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _dataset(config_dir, **changes)


def test_the_suites_key_rule_is_compound_unique_over_every_key_column(config_dir: Path) -> None:
    settings = load_settings("local", config_dir)
    ds = _dataset(config_dir, entity_columns=["store_id", "sku"], entity_dtype={"store_id": "int64", "sku": "string"})
    suite = default_suite(ds, settings.validation, "raw")
    rules = {(e["type"], str(e["kwargs"].get("column", e["kwargs"].get("column_list")))) for e in suite["expectations"]}
    assert ("expect_compound_columns_to_be_unique", "['store_id', 'sku', 'event_timestamp']") in rules
    assert ("expect_column_values_to_not_be_null", "store_id") in rules
    assert ("expect_column_values_to_not_be_null", "sku") in rules
    assert ("expect_column_values_to_be_in_type_list", "store_id") in rules  # the integer column's type rule
    assert ("expect_column_values_to_be_in_type_list", "sku") not in rules


def test_the_rule_engine_refuses_a_repeated_key_pair_only() -> None:
    stamp = pd.Timestamp("2026-02-01", tz="UTC")
    rule = {
        "type": "expect_compound_columns_to_be_unique",
        "kwargs": {"column_list": ["store_id", "sku", "ts"]},
        "meta": {},
    }
    suite = {"name": "keys", "expectations": [rule]}
    distinct = pd.DataFrame({"store_id": [1, 1, 2], "sku": ["a", "b", "a"], "ts": [stamp] * 3})
    (passed,), rows = evaluate_fast(distinct, suite, {}, 5)
    assert passed.success and not rows.any()  # the same store or the same sku: other entities
    repeated = pd.DataFrame({"store_id": [1, 1, 2], "sku": ["a", "a", "a"], "ts": [stamp] * 3})
    (failed,), rows = evaluate_fast(repeated, suite, {}, 5)
    assert not failed.success and failed.column == "store_id,sku,ts" and failed.unexpected_count == 2
    assert rows.tolist() == [True, True, False]


def test_key_frames_are_typed_and_feed_feasts_entity_rows(config_dir: Path) -> None:
    ds = _dataset(config_dir, entity_columns=["store_id", "sku"], entity_dtype={"store_id": "int64", "sku": "string"})
    keys = key_frame(ds, pd.DataFrame({"sku": [7, "b"], "store_id": ["3", 4], "other": [0, 0]}))
    assert list(keys.columns) == ["store_id", "sku"] and keys["store_id"].dtype == "int64"
    assert key_records(keys) == [{"store_id": 3, "sku": "7"}, {"store_id": 4, "sku": "b"}]
    with pytest.raises(InvalidInput, match=r"lack key column\(s\) \['sku'\]"):
        key_frame(ds, pd.DataFrame({"store_id": [1]}))
    single = load_settings("local").dataset
    assert key_records(key_frame(single, [5, "6"])) == [{"customer_id": 5}, {"customer_id": 6}]


def test_a_composite_keys_online_ids_are_objects_of_every_key_column(config_dir: Path) -> None:
    ds = _dataset(config_dir, entity_columns=["store_id", "sku"], entity_dtype={"store_id": "int64", "sku": "string"})
    good = {"sku": "a", "store_id": 3}
    assert key_violations([good], ds) == []
    found = key_violations([good, {"store_id": 3}, 7, {"store_id": "3", "sku": "a"}, {"store_id": True, "sku": 1}], ds)
    assert [(v.row, v.field) for v in found] == [
        (1, "store_id,sku"),
        (2, "store_id,sku"),
        (3, "store_id"),
        (4, "store_id"),
        (4, "sku"),
    ]
    assert key_text(ds, good) == '{"store_id":3,"sku":"a"}'  # key order, whatever the object's order
    single = load_settings("local").dataset
    assert key_violations([1, "2", True], single) == [
        Violation(1, "customer_id", "type: an integer id (int64)", "2"),
        Violation(2, "customer_id", "type: an integer id (int64)", True),
    ]
    assert key_text(single, 17) == "17"
