"""Reading a user's files (no servers): every broken file gets an error naming it and the problem; rows are
spilled by day with the file and row they came from; text is brought to the declared types so the suite's type
rule flags exactly the values that are not numbers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from configs.settings import Settings, load_settings
from conveyor.adapters.day_staging import DayStaging
from conveyor.adapters.source_files import SourceFileError, list_sources, read_batches
from conveyor.demo.synthetic import generate_day
from conveyor.domain.expectations import load_suite
from conveyor.domain.rule_engine import evaluate_fast
from conveyor.domain.source_types import (
    RowOrigins,
    as_declared,
    conform,
    declared_columns,
    numeric_columns,
    parse_timestamps,
)

DAY = dt.date(2026, 2, 1)
FRESH = {"freshness_min_timestamp": "2026-01-01T00:00:00+00:00"}


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings("local")


def _frame(settings: Settings, days: int = 1, start: dt.date = DAY) -> pd.DataFrame:
    frames = [generate_day(start + dt.timedelta(days=i), settings.dataset, settings.generator) for i in range(days)]
    return pd.concat(frames, ignore_index=True)


def _read_all(path: Path, settings: Settings, batch_rows: int = 1000) -> list[pa.RecordBatch]:
    (source,) = list_sources(str(path))
    return [b for _, b in read_batches(path, source, declared_columns(settings.dataset), batch_rows)]


def _broken(tmp_path: Path, settings: Settings, case: str) -> Path:
    good = _frame(settings)
    if case.endswith("parquet"):
        path = tmp_path / f"{case}.parquet"
        good.to_parquet(path)
        data = path.read_bytes()
        path.write_bytes({"empty_parquet": b"", "truncated_parquet": data[: len(data) // 2]}.get(case, data))
        if case == "zero_rows_parquet":
            good.iloc[:0].to_parquet(path)
        if case == "missing_column_parquet":
            good.drop(columns=["region"]).to_parquet(path)
        return path
    path = tmp_path / f"{case}.csv"
    text = good.to_csv(index=False)
    variants = {
        "empty_csv": "",
        "header_only_csv": text.splitlines()[0] + "\n",
        "truncated_csv": text[: len(text) // 2 - 7],  # cut inside a line: that line has too few fields
        "blank_first_line_csv": "\n" + text,
    }
    path.write_text(variants[case])
    return path


# case -> (rule, what the message says)
BROKEN = {
    "empty_csv": ("readable csv file", "empty file (0 bytes)"),
    "header_only_csv": ("at least one row", "no data rows (a header only)"),
    "truncated_csv": (
        "readable csv file",
        "truncated or malformed CSV at line {lines}: CSV parse error: Expected 14 columns",
    ),
    "blank_first_line_csv": ("readable csv file", "no header line"),
    "empty_parquet": ("readable parquet file", "empty file (0 bytes)"),
    "truncated_parquet": ("readable parquet file", "not a readable parquet file (truncated or corrupt?)"),
    "zero_rows_parquet": ("at least one row", "no rows"),
    "missing_column_parquet": ("column exists", "no column 'region' (declared in dataset.yaml)"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_file_is_named_with_its_problem(tmp_path: Path, settings: Settings, case: str) -> None:
    path = _broken(tmp_path, settings, case)
    rule, problem = BROKEN[case]
    if case == "truncated_csv":
        problem = problem.format(lines=len(path.read_text().splitlines()))
    with pytest.raises(SourceFileError) as failure:
        _read_all(path, settings)
    assert str(failure.value).startswith(f"source file {path}: "), failure.value
    assert problem in str(failure.value) and failure.value.rule == rule
    assert failure.value.column == ("region" if "missing_column" in case else None)


def test_no_source_files_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not data")
    with pytest.raises(FileNotFoundError, match=f"source.path '{tmp_path}': no .parquet or .csv files found"):
        list_sources(str(tmp_path))


def test_parquet_is_read_in_batches_of_at_most_batch_rows(tmp_path: Path, settings: Settings) -> None:
    frame = _frame(settings, days=3)
    path = tmp_path / "days.parquet"
    frame.to_parquet(path, row_group_size=700)
    batches = _read_all(path, settings, batch_rows=250)
    assert max(b.num_rows for b in batches) <= 250 and sum(b.num_rows for b in batches) == len(frame)


def test_csv_blocks_follow_the_batch_size(tmp_path: Path, settings: Settings) -> None:
    frame = pd.concat([_frame(settings, days=30)] * 4, ignore_index=True)  # about 40,000 rows, 5 MB
    path = tmp_path / "many.csv"
    frame.to_csv(path, index=False)
    batches = _read_all(path, settings, batch_rows=10_000)
    assert sum(b.num_rows for b in batches) == len(frame) and len(batches) >= 3
    assert all(pa.types.is_string(t) for t in batches[0].schema.types)  # converted later, value by value


def test_rows_are_spilled_by_day_with_their_file_and_row(tmp_path: Path, settings: Settings) -> None:
    ds = settings.dataset
    first = _frame(settings, days=2)
    second = generate_day(DAY + dt.timedelta(days=1), ds, settings.generator, snapshot=True, n_entities=300)
    first.to_csv(tmp_path / "a.csv", index=False)
    second.assign(**{ds.timestamp_column: second[ds.timestamp_column].astype(object)}).to_parquet(
        tmp_path / "b.parquet"
    )
    (tmp_path / "c.csv").write_text(
        ",".join(declared_columns(ds))
        + "\n"
        + "1,yesterday,"
        + ",".join(["1"] * (len(declared_columns(ds)) - 2))
        + "\n"
    )
    sources = list_sources(str(tmp_path))
    staging = DayStaging(tmp_path / "staging", ds.timestamp_column, [s.name for s in sources], max_open=1)
    for index, source in enumerate(sources):
        for first_row, batch in read_batches(source.path, source, declared_columns(ds), 100):  # type: ignore[arg-type]
            staging.add(index, first_row, batch)
        staging.close_file(index)
    assert staging.days() == [DAY, DAY + dt.timedelta(days=1)] and staging.has_unplaced()

    frame, file_index, row = staging.read(DAY + dt.timedelta(days=1), numeric_columns(ds))
    origins = RowOrigins(tuple(staging.files), file_index, row)
    in_a = (first[ds.timestamp_column].dt.date == DAY + dt.timedelta(days=1)).to_numpy()
    assert origins.counts() == [("a.csv", int(in_a.sum())), ("b.parquet", len(second))]
    assert sorted(row[file_index == 0]) == sorted(np.flatnonzero(in_a) + 1)  # 1-based data rows of a.csv
    day = conform(frame, ds)
    assert list(day.columns) == declared_columns(ds) and str(day[ds.timestamp_column].dtype) == "datetime64[us, UTC]"
    outcomes, bad = evaluate_fast(day, load_suite(settings, "raw"), FRESH, 3)
    assert all(o.success for o in outcomes) and not bad.any()

    unplaced, file_index, row = staging.read(None, [])
    assert list(unplaced[ds.timestamp_column]) == ["yesterday"] and staging.files[file_index[0]] == "c.csv"
    assert list(row) == [1]
    staging.discard_file(0)
    assert RowOrigins(tuple(staging.files), *staging.read(DAY + dt.timedelta(days=1), [])[1:]).counts() == [
        ("b.parquet", len(second))
    ]
    staging.cleanup()
    assert not (tmp_path / "staging").exists()


def test_a_value_that_is_not_a_number_is_flagged_alone_and_named(settings: Settings) -> None:
    """The poisoned-file case: 'abc' in one row of a float column read as text. Only that row breaks the type
    rule (not the whole column), and the origins name its file and row."""
    ds = settings.dataset
    text = _frame(settings).astype(str).replace({"nan": None})
    text.loc[16, "monthly_charges"] = "abc"
    frame = conform(text, ds)
    assert frame["age"].dtype == "int64" and frame["total_charges"].dtype == "float64"
    assert frame["monthly_charges"].map(type).value_counts().to_dict() == {float: len(frame) - 1, str: 1}
    outcomes, bad = evaluate_fast(frame, load_suite(settings, "raw"), FRESH, 3)
    failed = {o.expectation: o for o in outcomes if not o.success}
    assert set(failed) == {"expect_column_values_to_be_in_type_list", "expect_column_values_to_be_between"}
    typed = failed["expect_column_values_to_be_in_type_list"]
    assert (typed.column, typed.unexpected_count, typed.sample) == ("monthly_charges", 1, ["abc"])
    assert np.flatnonzero(bad).tolist() == [16]
    origins = RowOrigins(("later.csv",), np.zeros(len(frame), dtype=np.int64), np.arange(1, len(frame) + 1))
    assert origins.describe(bad) == "later.csv row 17"
    assert origins.describe(np.arange(len(frame)) < 5) == "later.csv rows 1, 2, 3 (+2 more)"


def test_integer_columns_with_missing_values_keep_one_schema(settings: Settings) -> None:
    frame = conform(_frame(settings), settings.dataset)
    frame.loc[3, "age"] = None  # pandas makes the column float
    stored = pa.Table.from_pandas(as_declared(frame, settings.dataset), preserve_index=False)
    assert stored.schema.field("age").type == pa.int64() and stored.column("age").null_count == 1
    pq.write_table(stored, pa.BufferOutputStream())  # and parquet takes it


def test_staging_keeps_a_bounded_number_of_parts_open(tmp_path: Path, settings: Settings) -> None:
    """Memory must not grow with the days a file spans: at most `max_open` parts are open, whatever the days."""
    ds = settings.dataset
    frame = _frame(settings, days=12).sample(frac=1.0, random_state=1)  # out of time order: the worst case
    path = tmp_path / "shuffled.parquet"
    frame.to_parquet(path)
    (source,) = list_sources(str(path))
    staging = DayStaging(tmp_path / "staging", ds.timestamp_column, [source.name], max_open=3)
    for first_row, batch in read_batches(path, source, declared_columns(ds), 1000):
        staging.add(0, first_row, batch)
        assert staging.open_parts <= 3
    staging.close_file(0)
    assert len(staging.days()) == 12
    assert sum(len(staging.read(day, [])[0]) for day in staging.days()) == len(frame)
    staging.cleanup()


def test_timestamps_without_an_offset_are_times_in_the_datasets_time_zone() -> None:
    text = pd.Series(
        [
            "2026-01-31 10:00:00",  # Paris winter time: 09:00 UTC
            "2026-01-31",  # a date alone: local midnight
            "2026-01-31T10:00:00+02:00",  # an offset wins over the dataset's zone
            "2026-01-31T10:00:00Z",
            "2026-03-29 02:30:00",  # does not exist in Paris (clocks go 02:00 -> 03:00): NaT, not a guess
            "2026-10-25 02:30:00",  # happens twice in Paris: NaT
            "not a time",
            None,
        ]
    )
    utc = pd.Timestamp
    paris = parse_timestamps(text, "Europe/Paris")
    assert paris[:4].tolist() == [
        utc("2026-01-31 09:00", tz="UTC"),
        utc("2026-01-30 23:00", tz="UTC"),
        utc("2026-01-31 08:00", tz="UTC"),
        utc("2026-01-31 10:00", tz="UTC"),
    ]
    assert paris[4:].isna().all()
    assert parse_timestamps(text)[0] == utc("2026-01-31 10:00", tz="UTC")  # the default zone is UTC
    naive = pd.Series(pd.to_datetime(["2026-06-01 12:00"]))  # a parquet timestamp without a zone
    assert parse_timestamps(naive, "America/New_York")[0] == utc("2026-06-01 16:00", tz="UTC")


def test_an_unknown_time_zone_is_refused_naming_the_field(settings: Settings) -> None:
    with pytest.raises(ValueError, match="timezone 'Mars/Olympus' is not a time zone name"):
        settings.dataset.model_validate({**settings.dataset.model_dump(), "timezone": "Mars/Olympus"})


def test_the_label_is_conformed_for_the_task(settings: Settings) -> None:
    """Read as text (a CSV): a 0/1 label becomes integers, a regression target floats, class names stay text
    (integral floats of a parquet class column lose their '.0')."""
    ds = settings.dataset
    text = _frame(settings).astype(str).replace({"nan": None})
    assert conform(text, ds)[ds.label_column].dtype == "int64"
    regression = ds.model_copy(update={"task": "regression"})
    spend = text.assign(**{ds.label_column: ["12.5", "7"] * (len(text) // 2) + ["1"] * (len(text) % 2)})
    assert conform(spend, regression)[ds.label_column].dtype == "float64"
    assert ds.label_column in numeric_columns(regression)
    multiclass = ds.model_copy(update={"task": "multiclass"})
    assert ds.label_column not in numeric_columns(multiclass)
    tiers = conform(text.assign(**{ds.label_column: "premium"}), multiclass)[ds.label_column]
    assert tiers.eq("premium").all()
    codes = conform(text.assign(**{ds.label_column: 3.0}), multiclass)[ds.label_column]
    assert codes.eq("3").all()
