"""The rule engine's column facts: every source (arrow string or dictionary arrays, pandas text of only strings,
factorized text, plain numbers) gives the masks pandas gives; the fast sources are taken when they apply."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor.domain.column_facts import ColumnFacts, arrow_in_set, arrow_text
from conveyor.domain.parquet_batch import concat_batches, read_parquet_batch

VALUE_SETS: list[list[Any]] = [
    ["north", "south"],
    ["north", None, 1, 2.5, True],  # only strings can equal text
    [],
    ["nörth", "", "Ωmega"],
    ["north", "\ud800"],  # a lone surrogate is valid Python but no UTF-8 text equals it
    [np.str_("west")],
]


def _text(n: int, nulls: bool, seed: int = 0) -> pd.Series:
    rng = np.random.default_rng(seed)
    pool = np.array(["north", "south", "east", "west", "nörth", "", "Ωmega"], dtype=object)
    values = pool[rng.integers(0, len(pool), n)]
    if nulls:
        values[rng.random(n) < 0.1] = None
    return pd.Series(values, dtype=object, name="region")


def _assert_like_pandas(facts: ColumnFacts, values: pd.Series) -> None:
    present = values.notna().to_numpy()
    assert (facts.present("region") == present).all()
    for value_set in VALUE_SETS:
        assert (facts.in_set("region", value_set) == (present & values.isin(value_set).to_numpy())).all(), value_set
    assert facts.inferred("region") == pd.api.types.infer_dtype(values, skipna=True)


@pytest.mark.parametrize("nulls", [False, True])
@pytest.mark.parametrize("layout", ["string", "large_string", "dictionary", "chunked_dictionaries"])
def test_arrow_text_gives_the_masks_pandas_gives(nulls: bool, layout: str) -> None:
    values = _text(3000, nulls)
    array = pa.array(values, type=pa.large_string() if layout == "large_string" else pa.string())
    if layout == "dictionary":
        column = pa.chunked_array([array.dictionary_encode()])
    elif layout == "chunked_dictionaries":  # each chunk its own dictionary, in its own order
        column = pa.chunked_array([array[:1000].dictionary_encode(), array[1000:].dictionary_encode()])
    else:
        column = pa.chunked_array([array[:1500], array[1500:]])
    table = pa.table({"region": column})
    frame = table.to_pandas() if layout in ("string", "large_string") else values.to_frame()
    facts = ColumnFacts(frame, table)
    assert facts.text("region") is not None  # the switch took effect: arrow decides
    _assert_like_pandas(facts, frame["region"])


@pytest.mark.parametrize("nulls", [False, True])
def test_pandas_text_gives_the_same_masks_without_arrow(nulls: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    values = _text(3000, nulls)
    if not nulls:  # only strings: known without a null mask or a factorize pass
        monkeypatch.setattr(pd, "factorize", lambda *a, **k: pytest.fail("factorized a column of strings"))
    facts = ColumnFacts(values.to_frame())
    assert facts.text("region") is None
    _assert_like_pandas(facts, values)
    assert (facts.inferred("region", skipna=False) == "string") is not nulls


def test_arrow_is_only_used_where_it_holds_what_the_frame_holds() -> None:
    values = _text(10, nulls=True)
    frame = pd.DataFrame({"region": values, "n": np.arange(10)})
    table = pa.table({"region": pa.array(values), "n": np.arange(10)})
    assert ColumnFacts(frame, table).text("region") is not None
    assert ColumnFacts(frame, table).text("n") is None  # not text
    assert ColumnFacts(frame, table.slice(0, 5)).arrow is None  # another length: ignored
    assert ColumnFacts(frame.assign(region=pd.Categorical(values)), table).text("region") is None  # frame not object
    assert ColumnFacts(frame, pa.table({"n": np.arange(10)})).text("region") is None  # column not in the table
    twice = pa.Table.from_arrays([pa.array(values), pa.array(values)], names=["region", "region"])
    assert ColumnFacts(frame, twice).text("region") is None
    view = pa.chunked_array([pa.array(values, type=pa.string_view())])
    assert not arrow_text(view)  # no `is_in` kernel for string views: pandas decides
    null_in_dictionary = pa.DictionaryArray.from_arrays(pa.array([0, 1, 0]), pa.array(["a", None]))
    assert not arrow_text(pa.chunked_array([null_in_dictionary]))  # converts to None with a valid index


def test_arrow_in_set_on_dictionary_chunks_with_unused_and_missing_values() -> None:
    chunk = pa.DictionaryArray.from_arrays(pa.array([0, 2, None, 2, 0]), pa.array(["north", "unused", "south"]))
    column = pa.chunked_array([chunk])
    assert arrow_in_set(column, ["north", "south"]).tolist() == [True, True, False, True, True]
    assert arrow_in_set(column, ["south"]).tolist() == [False, True, False, True, False]
    assert arrow_in_set(column, ["unused"]).tolist() == [False] * 5
    assert arrow_in_set(pa.chunked_array([], type=pa.string()), ["north"]).tolist() == []


def test_integer_set_and_range_shortcuts_agree_with_pandas() -> None:
    big = 2**53
    frame = pd.DataFrame(
        {
            "i": np.array([0, 1, 2, -5, big, big + 1, 2**62], dtype=np.int64),
            "i32": np.array([0, 1, 2, -5, 7, 8, 9], dtype=np.int32),
            "u": np.array([0, 1, 2, 5, big, big + 1, 2**63 + 10], dtype=np.uint64),
        }
    )
    facts = ColumnFacts(frame)
    for column in frame.columns:
        for value_set in ([0, 1], [big + 1, 2**62], [2**63 + 10], [1, True], [1.0], [2**40]):
            expected = frame[column].isin(value_set).to_numpy()
            assert (facts.in_set(column, value_set) == expected).all(), (column, value_set)
    assert facts.numbers("i") is not None and facts.numbers("u") is not None
    assert facts.present("i").all() and facts.present("u").all()


def _round_trip_frame() -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "region": _text(500, nulls=True),
            "clean": _text(500, nulls=False, seed=1),
            "typed": _text(500, nulls=True, seed=2).astype("string"),
            "category": pd.Categorical(_text(500, nulls=False, seed=3)),
            "n": np.arange(500),
            "empty": pd.Series([None] * 500, dtype=object),
        }
    )
    return frame.set_index(pd.Index([f"r{i}" for i in range(500)], name="key"))


def test_parquet_batch_reads_the_frame_a_plain_read_gives() -> None:
    buffer = io.BytesIO()
    _round_trip_frame().to_parquet(buffer)
    data = buffer.getvalue()
    frame, table = read_parquet_batch(data)
    plain = pq.read_table(io.BytesIO(data)).to_pandas()
    pd.testing.assert_frame_equal(frame, plain)
    for column in ("region", "clean"):  # nulls are None, as in a plain read, not NaN
        assert [v is None for v in frame[column]] == [v is None for v in plain[column]]
        assert pa.types.is_dictionary(table.schema.field(column).type)  # the switch took effect
    assert pa.types.is_string(table.schema.field("typed").type)  # a pandas string dtype stays as it was
    assert pa.types.is_string(table.schema.field("key").type)  # the index too
    assert isinstance(frame.index, pd.Index) and not isinstance(frame.index, pd.CategoricalIndex)


def test_concatenated_batches_keep_arrow_only_when_the_schemas_agree() -> None:
    frame = _round_trip_frame().reset_index(drop=True)
    halves = [frame.iloc[:200], frame.iloc[200:]]
    parts = []
    for half in halves:
        buffer = io.BytesIO()
        half.to_parquet(buffer)
        parts.append(read_parquet_batch(buffer.getvalue()))
    joined, table = concat_batches(parts)
    assert table is not None and table.num_rows == len(joined) == len(frame)
    assert ColumnFacts(joined, table).text("region") is not None
    pd.testing.assert_frame_equal(joined, pd.concat([p[0] for p in parts], ignore_index=True))
    other = io.BytesIO()
    halves[1].assign(n=halves[1]["n"].astype("float64")).to_parquet(other)
    mixed, none = concat_batches([parts[0], read_parquet_batch(other.getvalue())])
    assert none is None and len(mixed) == len(frame)
    nothing, no_table = concat_batches([])
    assert nothing.empty and no_table is None
