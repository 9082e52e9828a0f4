"""Rows of a source spilled to local parquet by event day, so that each day is validated and published whole while
memory holds one batch (while reading) or one day (while landing), never the history.

Layout under `root`: `dt=<YYYY-MM-DD>/<file index>-<n>.parquet` (one part per source file and day; a part is
closed and a new one started when too many are open at once), and `dt=none/` for rows whose event time is missing
or not a timestamp. Each row keeps where it came from: `_source_file` (its file's name) and `_source_row` (its
1-based data row in that file), in the parts and so in quarantine.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from conveyor.domain.source_types import parse_timestamps

ORIGIN_FILE, ORIGIN_ROW = "_source_file", "_source_row"
UNPLACED = "none"
_DAY_US = 86_400_000_000
_NO_DAY = np.iinfo(np.int64).min
# Parts open for writing at once. Each open parquet writer holds its column buffers: with one per day of a long
# file, memory grew with the days a file spans. Rows arrive roughly in time order (a batch spans a day or two), so
# a few suffice; out-of-order rows only mean more, smaller parts.
MAX_OPEN_PARTS = 8


class DayStaging:
    """Spill batches by day (`add`), then read one day back (`read`)."""

    def __init__(
        self, root: Path, timestamp_column: str, files: list[str], timezone: str = "UTC", max_open: int = MAX_OPEN_PARTS
    ) -> None:
        self.root = root
        self.timestamp_column = timestamp_column
        self.timezone = timezone  # of timestamps that carry none (the dataset's)
        self.files = files  # source file names: `_source_file` holds one of them
        self.max_open = max_open
        self._writers: OrderedDict[tuple[int, str], pq.ParquetWriter] = OrderedDict()
        self._parts: dict[str, list[tuple[int, Path]]] = {}

    def add(self, file_index: int, first_row: int, batch: pa.RecordBatch, keep: set[dt.date] | None = None) -> None:
        """Spill one batch of file `file_index` whose first row is data row `first_row + 1` of that file.
        `keep`: only rows of these days (and no rows without a day)."""
        table = pa.Table.from_batches([batch])
        names = pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(table.num_rows, dtype=np.int32)), pa.array([self.files[file_index]])
        )
        table = table.append_column(ORIGIN_FILE, names)
        table = table.append_column(ORIGIN_ROW, pa.array(np.arange(first_row + 1, first_row + 1 + table.num_rows)))
        stamps = parse_timestamps(table.column(self.timestamp_column).to_pandas(), self.timezone)
        codes = np.where(stamps.isna().to_numpy(), _NO_DAY, stamps.array.asi8 // _DAY_US)  # type: ignore[attr-defined]
        placed = table.set_column(
            table.schema.get_field_index(self.timestamp_column),
            self.timestamp_column,
            pa.array(stamps, type=pa.timestamp("us", tz="UTC")),
        )
        order = np.argsort(codes, kind="stable")
        sorted_codes = codes[order]
        starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
        for start, end in zip(starts, [*starts[1:], len(order)], strict=True):
            code = int(sorted_codes[start])
            day = None if code == _NO_DAY else dt.date(1970, 1, 1) + dt.timedelta(days=code)
            if keep is not None and day not in keep:
                continue
            rows = pa.array(order[start:end])
            part = table.take(rows) if day is None else placed.take(rows)  # no day: the time as it was read
            self._writer(file_index, UNPLACED if day is None else day.isoformat(), part.schema).write_table(part)

    def _writer(self, file_index: int, day: str, schema: pa.Schema) -> pq.ParquetWriter:
        key = (file_index, day)
        if key in self._writers:
            self._writers.move_to_end(key)
            return self._writers[key]
        if len(self._writers) >= self.max_open:
            self._writers.popitem(last=False)[1].close()
        parts = self._parts.setdefault(day, [])
        path = self.root / f"dt={day}" / f"{file_index}-{sum(1 for i, _ in parts if i == file_index)}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        parts.append((file_index, path))
        self._writers[key] = writer = pq.ParquetWriter(path, schema)
        return writer

    @property
    def open_parts(self) -> int:
        return len(self._writers)

    def close_file(self, file_index: int) -> None:
        """Close the parts of a file that was read to its end."""
        for key in [k for k in self._writers if k[0] == file_index]:
            self._writers.pop(key).close()

    def discard_file(self, file_index: int) -> None:
        """Forget every row of a file that failed part-way: its days are landed without it."""
        self.close_file(file_index)
        for day, parts in list(self._parts.items()):
            for _, path in (p for p in parts if p[0] == file_index):
                path.unlink(missing_ok=True)
            self._parts[day] = [p for p in parts if p[0] != file_index]
            if not self._parts[day]:
                del self._parts[day]

    def days(self) -> list[dt.date]:
        return sorted(dt.date.fromisoformat(d) for d in self._parts if d != UNPLACED)

    def has_unplaced(self) -> bool:
        return UNPLACED in self._parts

    def part_files(self, day: dt.date | None) -> list[Path]:
        return [path for _, path in self._parts.get(UNPLACED if day is None else day.isoformat(), [])]

    def read(self, day: dt.date | None, numeric: list[str]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """(rows of `day` (None: the rows without one), their files (indexes into `files`), their data rows).
        Text in `numeric` columns is converted to numbers here when every value of a part converts (arrow is
        fast at it)."""
        for key in [k for k in self._writers if k[1] == (UNPLACED if day is None else day.isoformat())]:
            self._writers.pop(key).close()
        tables = [_numbers_where_possible(pq.read_table(path), numeric) for path in self.part_files(day)]
        if len({t.schema for t in tables}) > 1:
            tables = _as_common_schema(tables)
        frame = pa.concat_tables(tables).to_pandas()
        names = pd.Categorical(frame.pop(ORIGIN_FILE).astype(object), categories=self.files)
        return frame, np.asarray(names.codes, dtype=np.int64), frame.pop(ORIGIN_ROW).to_numpy()

    def cleanup(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        shutil.rmtree(self.root, ignore_errors=True)


def _numbers_where_possible(table: pa.Table, numeric: list[str]) -> pa.Table:
    for name in numeric:
        index = table.schema.get_field_index(name)
        if index < 0 or not pa.types.is_string(table.schema.field(index).type):
            continue
        for target in (pa.int64(), pa.float64()):  # integers first: ids beyond 2**53 stay exact
            try:
                table = table.set_column(index, name, pc.cast(table.column(index), target))
                break
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue  # not all values are numbers: conform() keeps those as text for the type rule to name
    return table


def _as_common_schema(tables: list[pa.Table]) -> list[pa.Table]:
    """Parts of different files that disagree on a column's type: that column as text in every part (conform()
    converts it back; numbers and booleans survive the round trip exactly)."""
    names = tables[0].schema.names
    differing = [n for n in names if len({t.schema.field(n).type for t in tables}) > 1]
    unified = []
    for table in tables:
        for name in differing:
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, pc.cast(table.column(index), pa.string()))
        unified.append(table.select(names))
    return unified
