"""The validation gate's pure parts: suites, the vectorized evaluator, GX parity, messages, row-level split."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pandas as pd
import pytest

from configs.settings import Settings, load_settings
from conveyor.adapters.gx_validation import gx_validate
from conveyor.adapters.object_store import dataframe_to_parquet_bytes
from conveyor.demo.synthetic import Fault, Scenario, generate_day
from conveyor.domain.column_facts import ColumnFacts
from conveyor.domain.duplicates import duplicated_rows
from conveyor.domain.expectations import default_suite, load_suite, suite_parameters
from conveyor.domain.parquet_batch import read_parquet_batch
from conveyor.domain.rule_engine import evaluate_fast
from conveyor.services.validation import failure_message, resolve_as_of, split_rows, validate_frame

DAY = dt.date(2026, 2, 1)
AS_OF = dt.datetime(2026, 2, 2, tzinfo=dt.UTC)

FAULTS = {
    "nulls": (Fault(kind="nulls", column="age", fraction=0.05), "age", "expect_column_values_to_not_be_null"),
    "out_of_range": (
        Fault(kind="out_of_range", column="monthly_charges", fraction=0.05),
        "monthly_charges",
        "expect_column_values_to_be_between",
    ),
    "out_of_set": (
        Fault(kind="out_of_range", column="region", fraction=0.05),
        "region",
        "expect_column_values_to_be_in_set",
    ),
    "wrong_type": (
        Fault(kind="wrong_type", column="tenure_months", fraction=0.05),
        "tenure_months",
        "expect_column_values_to_be_in_type_list",
    ),
    "missing_column": (
        Fault(kind="missing_column", column="payment_method"),
        "payment_method",
        "expect_column_to_exist",
    ),
    "duplicate_keys": (
        Fault(kind="duplicate_keys", fraction=0.05),
        "customer_id,event_timestamp",
        "expect_compound_columns_to_be_unique",
    ),
}


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings("local")


def _day(settings: Settings, fault: Fault | None = None) -> pd.DataFrame:
    return generate_day(DAY, settings.dataset, settings.generator, Scenario(faults=[fault] if fault else []))


def test_suites_on_disk_are_what_dataset_yaml_generates(settings: Settings) -> None:
    for name in ("raw", "scoring"):
        assert load_suite(settings, name) == default_suite(settings.dataset, settings.validation, name), name
    raw = load_suite(settings, "raw")
    columns = {e["kwargs"].get("column") for e in raw["expectations"] if e["type"] == "expect_column_to_exist"}
    ds = settings.dataset
    assert columns == {ds.entity_column, ds.timestamp_column, ds.label_column, *ds.feature_names}
    scoring = load_suite(settings, "scoring")
    assert ds.label_column not in json.dumps(scoring)


def test_suites_load_into_a_gx_context(settings: Settings) -> None:
    import great_expectations as gx

    gx.get_context(mode="ephemeral")
    for name in ("raw", "scoring"):
        suite = gx.ExpectationSuite(**load_suite(settings, name))
        assert len(suite.expectations) == len(load_suite(settings, name)["expectations"])


def test_clean_batch_passes_with_both_engines(settings: Settings) -> None:
    frame = _day(settings)
    for engine in ("fast", "gx"):
        result = validate_frame(frame, "raw", settings, as_of=AS_OF, engine=engine)
        assert result.passed, [o.describe() for o in result.failed]
        assert result.engine == engine and result.row_count == len(frame)
    scoring = frame.drop(columns=[settings.dataset.label_column])
    assert validate_frame(scoring, "scoring", settings, as_of=AS_OF).passed


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_every_fault_is_rejected_naming_column_and_count(settings: Settings, name: str) -> None:
    fault, column, expectation = FAULTS[name]
    frame = _day(settings, fault)
    result = validate_frame(frame, "raw", settings, as_of=AS_OF)
    assert not result.passed
    hit = [o for o in result.failed if o.column == column and o.expectation == expectation]
    assert hit, [o.describe() for o in result.failed]
    message = failure_message(result, "2026-02-01", "s3://b/quarantine/churn/2026-02-01/r1/")
    assert f"column {column!r}" in message and "s3://b/quarantine/churn/2026-02-01/r1/" in message
    if name == "missing_column":
        assert "column exists" in message
    else:
        clean = len(_day(settings))
        expected = {"duplicate_keys": 2 * round(0.05 * clean)}.get(name, round(0.05 * clean))
        if name == "wrong_type":  # every value is text; the ones that are not numbers at all are named
            assert f"{expected:,} values are not numbers" in message
        else:
            assert hit[0].unexpected_count == expected
            assert f"{expected:,} of" in message


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fast_engine_agrees_with_great_expectations(settings: Settings, name: str) -> None:
    frame = _day(settings, FAULTS[name][0])
    suite = load_suite(settings, "raw")
    params = suite_parameters(suite, AS_OF)
    fast, _ = evaluate_fast(frame, suite, params, 5)
    by_gx = {(o.expectation, o.column): o for o in gx_validate(frame, suite, params, 5).outcomes}
    assert len(by_gx) == len(fast)
    for outcome in fast:
        other = by_gx[(outcome.expectation, outcome.column)]
        assert outcome.success == other.success, (outcome.describe(), other.describe())
        if other.unexpected_count is not None and outcome.expectation != "expect_column_values_to_be_in_type_list":
            assert outcome.unexpected_count == other.unexpected_count, outcome.describe()


def test_user_dtypes_category_and_string_pass_both_engines(settings: Settings) -> None:
    frame = _day(settings)
    frame["region"] = frame["region"].astype("category")
    frame["payment_method"] = frame["payment_method"].astype("string")
    for engine in ("fast", "gx"):
        result = validate_frame(frame, "raw", settings, as_of=AS_OF, engine=engine)
        assert result.passed, (engine, [o.describe() for o in result.failed])


def test_stale_and_empty_batches_fail(settings: Settings) -> None:
    frame = _day(settings)
    stale = validate_frame(frame, "raw", settings, as_of=AS_OF + dt.timedelta(days=5))
    assert [o.expectation for o in stale.failed] == ["expect_column_max_to_be_between"]
    assert "event_timestamp" in failure_message(stale, "k", "s3://q/")
    assert validate_frame(frame, "raw", settings, batch_key="dt=2026-02-01").passed  # as_of from the key
    empty = validate_frame(frame.iloc[:0], "raw", settings, as_of=AS_OF)
    assert {o.expectation for o in empty.failed} == {
        "expect_table_row_count_to_be_between",
        "expect_column_max_to_be_between",
    }


def test_as_of_resolution() -> None:
    assert resolve_as_of(dt.date(2026, 3, 1)) == dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    assert resolve_as_of(None, "2026-01-01_2026-01-31") == dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    naive = dt.datetime(2026, 3, 1, 12)
    assert resolve_as_of(naive, "2020-01-01") == naive.replace(tzinfo=dt.UTC)
    assert abs(resolve_as_of(None, "scoring").timestamp() - dt.datetime.now(dt.UTC).timestamp()) < 60


def test_row_split_accounts_for_every_row_and_repairs_text_numbers(settings: Settings) -> None:
    scenario = Scenario(
        faults=[
            Fault(kind="out_of_range", column="age", fraction=0.03),
            Fault(kind="wrong_type", column="tenure_months", fraction=0.02),
            Fault(kind="duplicate_keys", fraction=0.01),
        ]
    )
    frame = generate_day(DAY, settings.dataset, settings.generator, scenario)
    suite = load_suite(settings, "raw")
    _, bad = evaluate_fast(frame, suite, suite_parameters(suite, AS_OF), 0)
    passing, rejected = split_rows(frame, bad, suite)
    assert len(passing) + len(rejected) == len(frame) and 0 < len(rejected) < len(frame)
    assert passing["tenure_months"].dtype == "int64"
    assert validate_frame(passing, "raw", settings, as_of=AS_OF).passed
    assert (rejected["tenure_months"] == "n/a").sum() == (frame["tenure_months"] == "n/a").sum() > 0
    assert (rejected["age"] > 100).sum() == (pd.to_numeric(frame["age"]) > 100).sum() > 0


def test_null_and_set_masks_match_pandas_on_parquet_read_text(settings: Settings) -> None:
    faults = [
        Fault(kind="nulls", column="region", fraction=0.1),
        Fault(kind="out_of_range", column="region", fraction=0.05),
    ]
    frame = generate_day(
        DAY, settings.dataset, settings.generator, Scenario(faults=faults), snapshot=True, n_entities=20_000
    )
    allowed = list(settings.dataset.feature("region").categories or [])
    read_back, table = read_parquet_batch(dataframe_to_parquet_bytes(frame))
    for values, arrow in ((frame, None), (read_back, None), (read_back, table)):
        facts = ColumnFacts(values, arrow)
        present = facts.present("region")
        assert (present == values["region"].notna().to_numpy()).all() and (~present).sum() > 1000
        assert (facts.in_set("region", allowed) == values["region"].isin(allowed).to_numpy()).all()


def test_duplicated_rows_matches_pandas() -> None:
    stamps = pd.to_datetime(["2026-01-01T00:00Z", "2026-01-01T01:00Z", "2026-01-01T00:00Z", None, None], utc=True)
    keys = pd.DataFrame({"id": [1, 1, 1, 2, 2], "ts": stamps})
    expected = keys.duplicated(keep=False).to_numpy()
    assert list(duplicated_rows(keys)) == list(expected) == [True, False, True, True, True]
    unique_ids = keys.assign(id=[1, 2, 3, 4, 5])
    assert not duplicated_rows(unique_ids).any()
    floats = keys.assign(id=[1.5, 1.5, 2.5, 3.0, 3.0])
    assert list(duplicated_rows(floats)) == list(floats.duplicated(keep=False))


@pytest.mark.parametrize(
    ("order", "n"),
    [("sorted", 5000), ("shuffled", 5000), ("shuffled", 80_000)],  # 80,000: past the bucket-count prefilter's size
)
def test_duplicated_rows_matches_pandas_on_event_data(settings: Settings, order: str, n: int) -> None:
    frame = generate_day(
        DAY,
        settings.dataset,
        settings.generator,
        Scenario(faults=[Fault(kind="duplicate_keys", fraction=0.1)]),
        snapshot=True,
        n_entities=n,
    )
    frame = (
        frame.sort_values(settings.dataset.timestamp_column)
        if order == "sorted"
        else frame.sample(frac=1.0, random_state=1)
    )
    keys = frame[[settings.dataset.entity_column, settings.dataset.timestamp_column]].reset_index(drop=True)
    expected = keys.duplicated(keep=False).to_numpy()
    assert expected.sum() == 2 * round(0.1 * n)
    assert (duplicated_rows(keys) == expected).all()


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_text_read_from_parquet_is_judged_as_text_built_in_memory(settings: Settings, name: str) -> None:
    """Read back from parquet with its arrow table (text dictionary-encoded), the engine decides text rules
    through arrow; in memory it hashes Python strings (the path checked against GX above). Both give the same
    outcomes and flag the same rows, and so does the frame without its table."""
    frame = _day(settings, FAULTS[name][0])
    read_back, table = read_parquet_batch(dataframe_to_parquet_bytes(frame))
    facts = ColumnFacts(read_back, table)
    for column in ("region", "contract_type"):  # the switch took effect: arrow decides read-back text
        assert facts.text(column) is not None and ColumnFacts(frame).text(column) is None, column
    suite = load_suite(settings, "raw")
    params = suite_parameters(suite, AS_OF)
    in_memory, memory_rows = evaluate_fast(frame, suite, params, 5)
    stamp = settings.dataset.timestamp_column  # its dtype's unit (ns in memory, us in parquet) is "observed"
    for arrow in (table, None):
        from_parquet, parquet_rows = evaluate_fast(read_back, suite, params, 5, arrow)
        for a, b in zip(in_memory, from_parquet, strict=True):
            a_fields, b_fields = dataclasses.asdict(a), dataclasses.asdict(b)
            if a.column == stamp:
                a_fields.pop("observed"), b_fields.pop("observed")
            assert a_fields == b_fields
        assert (memory_rows == parquet_rows).all()
    assert memory_rows.any() == (name not in ("nulls", "missing_column"))  # feature nulls: a tolerated share


def test_a_feature_may_tolerate_its_own_share_of_missing_values(settings: Settings) -> None:
    """One global validation.max_null_share (1%) rejected every batch of a feature that is legitimately ~10% empty;
    the feature's own `max_null_share` in dataset.yaml lets it through, and only it."""
    frame = _day(settings, Fault(kind="nulls", column="age", fraction=0.1))
    ds = settings.dataset

    def failing(dataset: Any) -> set[str]:
        suite = default_suite(dataset, settings.validation, "raw")
        outcomes, _ = evaluate_fast(frame, suite, suite_parameters(suite, AS_OF), 5)
        return {f"{o.expectation}:{o.column}" for o in outcomes if not o.success}

    assert failing(ds) == {"expect_column_values_to_not_be_null:age"}
    tolerant = [f.model_copy(update={"max_null_share": 0.15}) if f.name == "age" else f for f in ds.features]
    assert failing(ds.model_copy(update={"features": tolerant})) == set()
    too_strict = [f.model_copy(update={"max_null_share": 0.05}) if f.name == "age" else f for f in ds.features]
    assert failing(ds.model_copy(update={"features": too_strict})) == {"expect_column_values_to_not_be_null:age"}
