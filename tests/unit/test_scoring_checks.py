"""Row checks of scoring: decided by the rule engine over the scoring suite; the arrow shortcut and the pandas
row-level pass agree on every fault."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from configs.settings import Settings, load_settings
from conveyor.demo.synthetic import Fault, generate_day, inject_fault
from conveyor.domain.arrow_rules import arrow_rows_pass
from conveyor.domain.expectations import load_suite
from conveyor.domain.task_types import ModelTask
from conveyor.services.row_checks import check_chunk, check_rows
from conveyor.services.scoring import ShadowComparison, as_of_time


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="module")
def suite(settings: Settings) -> dict[str, Any]:
    return load_suite(settings, "scoring")


@pytest.fixture(scope="module")
def frame(settings: Settings) -> pd.DataFrame:
    ds = settings.dataset
    return generate_day(dt.date(2026, 3, 1), ds, settings.generator, snapshot=True, n_entities=2000)


def test_clean_chunk_takes_the_fast_path_and_scores_every_row(
    settings: Settings, suite: dict[str, Any], frame: pd.DataFrame
) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    assert arrow_rows_pass(table, suite)
    checked = check_chunk(table, suite, settings.dataset, settings.scoring)
    assert checked.counts["scored"] == len(frame) and checked.counts["quarantined"] == 0
    assert checked.features.columns.tolist() == settings.dataset.feature_names
    pd.testing.assert_frame_equal(checked.entities, frame[["customer_id"]])  # the key column(s)


@pytest.mark.parametrize(
    ("kind", "column", "counted_as", "expected", "expectation"),
    [
        ("out_of_range", "age", "invalid", 20, "ExpectColumnValuesToBeBetween"),
        ("out_of_range", "region", "invalid", 20, "ExpectColumnValuesToBeInSet"),
        ("wrong_type", "tenure_months", "invalid", 20, "ExpectColumnValuesToBeInTypeList"),
        # Every occurrence of a duplicated key breaks the uniqueness rule (GX counts them so): 20 copies, 40 rows.
        ("duplicate_keys", None, "invalid", 40, "ExpectCompoundColumnsToBeUnique"),
        ("nulls", "monthly_charges", "missing_features", 20, None),
    ],
)
def test_every_fault_leaves_the_fast_path_and_is_counted(
    settings: Settings,
    suite: dict[str, Any],
    frame: pd.DataFrame,
    kind: str,
    column: str | None,
    counted_as: str,
    expected: int,
    expectation: str | None,
) -> None:
    broken = inject_fault(
        frame,
        settings.dataset,
        Fault(kind=kind, column=column, fraction=0.01),  # type: ignore[arg-type]
        np.random.default_rng(0),
    )
    table = pa.Table.from_pandas(broken, preserve_index=False)
    assert not arrow_rows_pass(table, suite)
    for checked in (
        check_rows(broken, suite, settings.dataset, settings.scoring),
        check_chunk(table, suite, settings.dataset, settings.scoring),
    ):
        assert checked.counts[counted_as] == expected
        assert checked.counts["rows_in"] == len(broken) == checked.counts["scored"] + checked.counts["quarantined"]
        if counted_as == "invalid":
            assert len(checked.quarantined) == expected
            reasons = set(checked.quarantined["reason"])
            assert len(reasons) == 1 and (column or "customer_id") in reasons.pop()
            assert expectation in checked.quarantined["reason"].iloc[0]


def test_rows_are_judged_by_the_suite_not_a_second_rule_list(
    settings: Settings, suite: dict[str, Any], frame: pd.DataFrame
) -> None:
    broken = inject_fault(
        frame, settings.dataset, Fault(kind="out_of_range", column="region", fraction=0.01), np.random.default_rng(0)
    )
    table = pa.Table.from_pandas(broken, preserve_index=False)
    ds, cfg = settings.dataset, settings.scoring
    assert check_chunk(table, suite, ds, cfg).counts["invalid"] == 20
    # The same rows, with the suite's category rule removed: nothing left to break, every row is scored.
    rules = [e for e in suite["expectations"] if not (e["kwargs"].get("column") == "region" and "in_set" in e["type"])]
    relaxed = {**suite, "expectations": rules}
    assert arrow_rows_pass(table, relaxed)
    assert check_chunk(table, relaxed, ds, cfg).counts["scored"] == len(broken)
    # A tighter range in the suite quarantines the rows outside it, named by that rule.
    tight = [
        {**e, "kwargs": {**e["kwargs"], "max_value": 30}}
        if e["type"] == "expect_column_values_to_be_between" and e["kwargs"]["column"] == "age"
        else e
        for e in rules
    ]
    checked = check_chunk(table, {**suite, "expectations": tight}, ds, cfg)
    assert checked.counts["invalid"] == int((frame["age"] > 30).sum()) > 0
    assert set(checked.quarantined["reason"]) == {"age: breaks 'between 18.0 and 30' (ExpectColumnValuesToBeBetween)"}


def test_null_entities_and_float_nans_are_caught_on_both_paths(
    settings: Settings, suite: dict[str, Any], frame: pd.DataFrame
) -> None:
    ds, cfg = settings.dataset, settings.scoring
    gappy = frame.assign(**{ds.entity_column: frame[ds.entity_column].astype("float64")})
    gappy.loc[:4, ds.entity_column] = np.nan
    nan_feature = frame.assign(monthly_charges=frame["monthly_charges"].astype("float64"))
    nan_feature.loc[:2, "monthly_charges"] = np.nan
    for broken, counted_as, expected in ((gappy, "invalid", 5), (nan_feature, "missing_features", 3)):
        table = pa.Table.from_pandas(broken, preserve_index=False)
        if counted_as == "missing_features":  # a NaN, not an arrow null: pandas counts it as null, so must we
            table = table.set_column(
                table.schema.get_field_index("monthly_charges"),
                "monthly_charges",
                pa.array(broken["monthly_charges"].to_numpy(), from_pandas=False),
            )
            assert table.column("monthly_charges").null_count == 0
        assert not arrow_rows_pass(table, suite)
        checked = check_chunk(table, suite, ds, cfg)
        assert checked.counts[counted_as] == expected, checked.counts
    reasons = set(check_rows(gappy, suite, ds, cfg).quarantined["reason"])
    assert reasons == {"customer_id: breaks 'not null' (ExpectColumnValuesToNotBeNull)"}


def test_as_of_is_the_end_of_the_scoring_day() -> None:
    assert as_of_time(dt.date(2026, 3, 1)) == dt.datetime(2026, 3, 2, tzinfo=dt.UTC)


def test_shadow_comparison_accumulates_over_chunks() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random(1000), rng.random(1000)
    binary = ModelTask("binary", ("0", "1"))
    comparison = ShadowComparison.of("1", "2", binary, binary)
    outputs_a = binary.outputs_from_proba(np.column_stack([1 - a, a]), 0.5)
    outputs_b = binary.outputs_from_proba(np.column_stack([1 - b, b]), 0.5)
    comparison.update(outputs_a.iloc[:400], outputs_b.iloc[:400], binary)
    comparison.update(outputs_a.iloc[400:], outputs_b.iloc[400:], binary)
    assert comparison.rows == 1000
    assert comparison.agreement == pytest.approx(np.mean((a >= 0.5) == (b >= 0.5)))
    assert comparison.mean_score_shift == pytest.approx(np.mean(b - a))
    assert comparison.max_abs_score_shift == pytest.approx(np.abs(b - a).max())
    assert comparison.champion_positive_rate == pytest.approx(np.mean(a >= 0.5))


def test_shadow_comparison_of_multiclass_outputs() -> None:
    task = ModelTask("multiclass", ("a", "b", "c"))
    rng = np.random.default_rng(2)
    pa_, pb = rng.dirichlet([1, 1, 1], 500), rng.dirichlet([1, 1, 1], 500)
    comparison = ShadowComparison.of("1", "2", task, task)
    out_a, out_b = task.outputs_from_proba(pa_), task.outputs_from_proba(pb)
    comparison.update(out_a.iloc[:200], out_b.iloc[:200], task)
    comparison.update(out_a.iloc[200:], out_b.iloc[200:], task)
    assert comparison.agreement == pytest.approx(np.mean(pa_.argmax(1) == pb.argmax(1)))
    picked = pa_.argmax(1)
    shift = pb[np.arange(500), picked] - pa_[np.arange(500), picked]
    assert comparison.mean_score_shift == pytest.approx(shift.mean())
    assert comparison.max_abs_score_shift == pytest.approx(np.abs(pb - pa_).max())
    assert comparison.champion_class_shares == {c: pytest.approx(np.mean(picked == i)) for i, c in enumerate("abc")}
    assert sum(comparison.challenger_class_shares.values()) == pytest.approx(1.0)  # type: ignore[union-attr]


def test_shadow_comparison_of_a_challenger_with_another_task_counts_rows_only() -> None:
    binary, regression = ModelTask("binary", ("0", "1")), ModelTask("regression")
    comparison = ShadowComparison.of("1", "2", binary, regression)
    outputs = binary.outputs_from_proba(np.full((10, 2), 0.5), 0.5)
    comparison.update(outputs, pd.DataFrame({"prediction": np.arange(10.0)}), binary)
    assert not comparison.comparable and comparison.rows == 10 and comparison.agreement is None
    assert "differs from the champion's" in comparison.note
