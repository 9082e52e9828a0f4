"""Row checks of the scoring engine: the arrow fast path and the pandas row-level path agree on every fault."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from configs.settings import Settings, load_settings
from conveyor.demo.synthetic import Fault, generate_day, inject_fault
from conveyor.services.scoring import ShadowComparison, _arrow_clean, as_of_time, check_chunk, check_rows


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="module")
def frame(settings: Settings) -> pd.DataFrame:
    ds = settings.dataset
    return generate_day(dt.date(2026, 3, 1), ds, settings.generator, snapshot=True, n_entities=2000)


def test_clean_chunk_takes_the_fast_path_and_scores_every_row(settings: Settings, frame: pd.DataFrame) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    assert _arrow_clean(table, settings.dataset)
    checked = check_chunk(table, settings.dataset, settings.scoring)
    assert checked.counts["scored"] == len(frame) and checked.counts["quarantined"] == 0
    assert checked.features.columns.tolist() == settings.dataset.feature_names
    pd.testing.assert_series_equal(checked.entities, frame["customer_id"])


@pytest.mark.parametrize(
    ("kind", "column", "counted_as"),
    [
        ("out_of_range", "age", "invalid"),
        ("out_of_range", "region", "invalid"),
        ("wrong_type", "tenure_months", "invalid"),
        ("duplicate_keys", None, "invalid"),
        ("nulls", "monthly_charges", "missing_features"),
    ],
)
def test_every_fault_leaves_the_fast_path_and_is_counted(
    settings: Settings, frame: pd.DataFrame, kind: str, column: str | None, counted_as: str
) -> None:
    broken = inject_fault(
        frame,
        settings.dataset,
        Fault(kind=kind, column=column, fraction=0.01),  # type: ignore[arg-type]
        np.random.default_rng(0),
    )
    expected = 20
    if kind != "wrong_type":  # a column of mixed text is not an arrow column: pandas path only
        assert not _arrow_clean(pa.Table.from_pandas(broken, preserve_index=False), settings.dataset)
    checked = check_rows(broken, settings.dataset, settings.scoring)
    assert checked.counts[counted_as] == expected
    assert checked.counts["rows_in"] == len(broken) == checked.counts["scored"] + checked.counts["quarantined"]
    if counted_as == "invalid":
        assert len(checked.quarantined) == expected
        reason = checked.quarantined["reason"].iloc[0]
        assert (column or "customer_id") in reason


def test_as_of_is_the_end_of_the_scoring_day() -> None:
    assert as_of_time(dt.date(2026, 3, 1)) == dt.datetime(2026, 3, 2, tzinfo=dt.UTC)


def test_shadow_comparison_accumulates_over_chunks() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random(1000), rng.random(1000)
    comparison = ShadowComparison("1", "2")
    comparison.update(a[:400], b[:400], 0.5)
    comparison.update(a[400:], b[400:], 0.5)
    assert comparison.rows == 1000
    assert comparison.agreement == pytest.approx(np.mean((a >= 0.5) == (b >= 0.5)))
    assert comparison.mean_score_shift == pytest.approx(np.mean(b - a))
    assert comparison.max_abs_score_shift == pytest.approx(np.abs(b - a).max())
