"""A user's own data files, read incrementally: the parquet/CSV files under `dataset.source.path` (a local file or
folder, or `s3://<bucket>/<prefix>`), each opened on local disk and read in batches of at most `batch_rows` rows
(parquet record batches, CSV blocks), so memory follows the batch size, not the file or the history.

Every problem names the file and what is wrong with it (`SourceFileError`): empty, not parquet, truncated,
a CSV line with the wrong number of fields, a declared column missing, no rows at all.
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from conveyor.adapters.object_store import ObjectStore

SUFFIXES = (".csv", ".parquet")
_SNIFF_BYTES = 1 << 16  # read to size CSV blocks from the file's own line length


@dataclass(frozen=True)
class SourceRef:
    """One source file: `uri` is what messages show (a local path or s3://bucket/key)."""

    uri: str
    name: str  # its path below the source folder: unique among the files of one source
    kind: Literal["csv", "parquet"]
    key: str | None = None  # the bucket key of an s3:// source
    path: Path | None = None  # the local path of a local source


class SourceFileError(ValueError):
    """A source file that cannot be read as a whole: the message names the file, the rule and the problem."""

    def __init__(self, source: SourceRef, rule: str, problem: str, column: str | None = None) -> None:
        super().__init__(f"source file {source.uri}: {problem}")
        self.source, self.rule, self.problem, self.column = source, rule, problem, column


def _kind(name: str) -> Literal["csv", "parquet"]:
    return "csv" if name.endswith(".csv") else "parquet"


def list_sources(path: str, store: ObjectStore | None = None) -> list[SourceRef]:
    """The .parquet and .csv files of a source (a file, or every file below a folder or prefix), sorted by name."""
    if path.startswith("s3://"):
        if store is None:
            raise ValueError("reading s3:// sources needs an object store")
        bucket, _, prefix = path[len("s3://") :].partition("/")
        if bucket != store.bucket:
            raise ValueError(f"source.path {path!r}: bucket {bucket!r} is not storage.bucket {store.bucket!r}")
        keys = [prefix] if Path(prefix).suffix in SUFFIXES and store.exists(prefix) else []
        folder = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
        keys = keys or [k for k in store.list_keys(folder) if Path(k).suffix in SUFFIXES]
        found = [
            SourceRef(store.uri(k), Path(k).name if k == prefix else k.removeprefix(folder), _kind(k), key=k)
            for k in sorted(keys)
        ]
    else:
        root = Path(path)
        files = sorted(root.rglob("*")) if root.is_dir() else [root] if root.exists() else []
        found = [
            SourceRef(str(f), str(f.relative_to(root)) if root.is_dir() else f.name, _kind(f.name), path=f)
            for f in files
            if f.suffix in SUFFIXES and f.is_file()
        ]
    if not found:
        raise FileNotFoundError(f"source.path {path!r}: no .parquet or .csv files found")
    return found


@contextmanager
def local_copy(source: SourceRef, store: ObjectStore | None) -> Iterator[Path]:
    """The file on local disk: a local source as it is; an s3:// one downloaded to a temporary file (one file at a
    time, so the disk needed is that of the largest file, and the memory none of it)."""
    if source.path is not None:
        yield source.path
        return
    assert source.key is not None and store is not None
    with tempfile.TemporaryDirectory(prefix="conveyor-source-") as tmp:
        local = Path(tmp) / Path(source.key).name
        store.download_file(source.key, str(local))
        yield local


def read_batches(
    path: Path, source: SourceRef, columns: list[str], batch_rows: int
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(rows before this batch, batch) for `columns` of the file; CSV columns are read as text (the caller
    converts them). Raises SourceFileError naming the file on any problem, after the batches read before it."""
    if path.stat().st_size == 0:
        raise SourceFileError(source, f"readable {source.kind} file", "empty file (0 bytes)")
    batches = _csv_batches(path, source, columns, batch_rows) if source.kind == "csv" else None
    if batches is None:
        batches = _parquet_batches(path, source, columns, batch_rows)
    rows = 0
    for batch in batches:
        if batch.num_rows:
            yield rows, batch
            rows += batch.num_rows
    if rows == 0:
        what = "no data rows (a header only)" if source.kind == "csv" else "no rows"
        raise SourceFileError(source, "at least one row", what)


def column_names(path: Path, source: SourceRef) -> list[str]:
    """The file's columns (a CSV's header, a parquet file's schema), for reading all of them."""
    if path.stat().st_size == 0:
        raise SourceFileError(source, f"readable {source.kind} file", "empty file (0 bytes)")
    if source.kind == "csv":
        return _csv_header(path, source)[0]
    try:
        return list(pq.ParquetFile(path).schema_arrow.names)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceFileError(
            source, "readable parquet file", f"not a readable parquet file (truncated or corrupt?): {exc}"
        ) from None


def _check_columns(source: SourceRef, found: list[str], columns: list[str]) -> None:
    missing = [c for c in columns if c not in found]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        raise SourceFileError(
            source,
            "column exists",
            f"no column {names} (declared in dataset.yaml); the file has {found}",
            column=missing[0],
        )


def _csv_header(path: Path, source: SourceRef) -> tuple[list[str], int]:
    """(column names, bytes per line measured on the start of the file)."""
    with path.open("rb") as handle:
        start = handle.read(_SNIFF_BYTES)
    try:
        text = start.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < len(start) - 4:  # a multi-byte character cut at the end of the sample is not an error
            raise SourceFileError(source, "readable csv file", f"not UTF-8 text: {exc}") from None
        text = start[: exc.start].decode("utf-8-sig")
    lines = text.splitlines()
    header = next(csv.reader(lines[:1]), [])
    if not header or not any(h.strip() for h in header):
        raise SourceFileError(source, "readable csv file", "no header line (the first line is empty)")
    return header, max(1, len(start) // max(1, len(lines)))


def _csv_blocks(path: Path, block_size: int) -> Iterator[tuple[int, bytes]]:
    """(number of its first line, a block of whole lines) after the header. Blocks are cut here, not by arrow's
    streaming reader: that one reads ahead of its consumer, so its memory grew with the file."""
    with path.open("rb") as handle:
        handle.readline()
        line, rest = 2, b""
        while data := handle.read(block_size):
            chunk = rest + data
            cut = chunk.rfind(b"\n") + 1
            if cut == 0:  # a line longer than the block: read on
                rest = chunk
                continue
            yield line, chunk[:cut]
            line, rest = line + chunk.count(b"\n", 0, cut), chunk[cut:]
        if rest.strip():
            yield line, rest


def _csv_batches(path: Path, source: SourceRef, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    header, line_bytes = _csv_header(path, source)
    _check_columns(source, header, columns)
    read = pacsv.ReadOptions(column_names=header)
    convert = pacsv.ConvertOptions(
        include_columns=columns, column_types={c: pa.string() for c in columns}, strings_can_be_null=True
    )
    for line, block in _csv_blocks(path, max(1 << 16, line_bytes * batch_rows)):
        try:
            table = pacsv.read_csv(pa.BufferReader(block), read_options=read, convert_options=convert)
        except (pa.ArrowInvalid, OSError) as exc:
            at, last = _line_of(block, str(exc)), line + block.count(b"\n")
            where = f"at line {line + at:,}" if at is not None else f"in lines {line:,}-{last:,}"
            raise SourceFileError(source, "readable csv file", f"truncated or malformed CSV {where}: {exc}") from None
        yield from table.combine_chunks().to_batches()  # one batch a block (arrow parses it in 1 MB chunks)


def _line_of(block: bytes, error: str) -> int | None:
    """Which line of `block` (0-based) an arrow CSV parse error quotes (`... got 11: <the line>`)."""
    _, found, quoted = error.partition(": ")
    wanted = (quoted.rpartition(": ")[2] if found else "").strip().encode()
    if not wanted:
        return None
    for number, text in enumerate(block.split(b"\n")):
        if text.strip() == wanted:
            return number
    return None


def _parquet_batches(path: Path, source: SourceRef, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    try:
        # pre_buffer (arrow's default) caches every column chunk read until the file is closed: memory would grow
        # with the file, not the batch.
        parquet = pq.ParquetFile(path, pre_buffer=False)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceFileError(
            source, "readable parquet file", f"not a readable parquet file (truncated or corrupt?): {exc}"
        ) from None
    _check_columns(source, parquet.schema_arrow.names, columns)
    rows = 0
    try:
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
            yield batch
            rows += batch.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceFileError(
            source, "readable parquet file", f"unreadable after row {rows:,} of {parquet.metadata.num_rows:,}: {exc}"
        ) from None
