"""Scoring inputs: entity + feature columns, served in bounded chunks, with a fingerprint of what was read.

`FrameSource` (an in-memory frame), `PublishedParquetSource` (a published parquet prefix on the object store,
streamed from verified local copies) and, for the daily path, conveyor/adapters/offline_features.LatestFeatures
(the population's latest feature rows, read from the raw table). Memory is bounded by `scoring.chunk_rows`, never
by the input size.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.publication import Manifest, read_manifest
from conveyor.domain.failures import MissingInput


class FeatureSource(Protocol):
    """Scoring input: entity + feature columns, served in chunks of at most `chunk_rows` rows."""

    description: str

    def columns(self) -> list[str]: ...

    def chunks(self, chunk_rows: int) -> Iterator[pd.DataFrame | pa.Table]:
        """Chunks of at most `chunk_rows` rows; arrow tables get the fast (arrow compute) checks."""
        ...

    def fingerprint(self) -> str:
        """A digest of the input rows (valid once `chunks` is exhausted)."""
        ...


class _FrameHasher:
    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def update(self, frame: pd.DataFrame) -> None:
        self._digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class FrameSource:
    """An in-memory frame (tests, small inputs, one feature-store fetch)."""

    def __init__(self, frame: pd.DataFrame, description: str = "in-memory frame") -> None:
        self.frame = frame
        self.description = description
        self._hasher = _FrameHasher()

    def columns(self) -> list[str]:
        return list(self.frame.columns)

    def chunks(self, chunk_rows: int) -> Iterator[pd.DataFrame]:
        for start in range(0, len(self.frame), chunk_rows):
            chunk = self.frame.iloc[start : start + chunk_rows].reset_index(drop=True)
            self._hasher.update(chunk)
            yield chunk

    def fingerprint(self) -> str:
        return self._hasher.hexdigest()


class PublishedParquetSource:
    """A published (manifest-carrying) prefix of parquet files on the object store, e.g. a feature snapshot.

    Each file is downloaded to a temporary file (disk, not memory), verified against the manifest's SHA-256,
    then read in record batches of `chunk_rows`. The next file downloads in the background while the current one
    is scored (the first as soon as the source exists, e.g. while the model loads). The fingerprint is the
    manifest's file checksums.
    """

    def __init__(self, store: ObjectStore, prefix: str, columns: list[str] | None = None) -> None:
        manifest = read_manifest(store, prefix)
        if manifest is None:
            raise MissingInput(f"no scoring input at {store.uri(prefix)}: nothing published there (no manifest)")
        self.store = store
        self.manifest: Manifest = manifest
        self.wanted = columns
        self.description = store.uri(prefix)
        self._schema: list[str] | None = None
        self._tmpdir = tempfile.TemporaryDirectory(prefix="conveyor-scoring-")
        self._downloader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-input")
        self._downloads: dict[int, Future[str]] = {}
        self._prefetch(0)

    def _prefetch(self, index: int) -> None:
        if index < len(self.manifest.files) and index not in self._downloads:
            entry = self.manifest.files[index]
            path = os.path.join(self._tmpdir.name, f"input-{index}.parquet")
            self._downloads[index] = self._downloader.submit(
                self.store.download_verified, entry.key, path, entry.sha256
            )

    def _local(self, index: int) -> str:
        self._prefetch(index)
        self._downloads[index].result()
        return os.path.join(self._tmpdir.name, f"input-{index}.parquet")

    def columns(self) -> list[str]:
        if self._schema is None:
            self._schema = pq.read_schema(self._local(0)).names if self.manifest.files else []
        return list(self._schema)

    def chunks(self, chunk_rows: int) -> Iterator[pd.DataFrame | pa.Table]:
        present = set(self.columns())
        columns = [c for c in self.wanted if c in present] if self.wanted else None
        try:
            for index in range(len(self.manifest.files)):
                path = self._local(index)
                self._prefetch(index + 1)
                parquet = pq.ParquetFile(path)
                for batch in parquet.iter_batches(batch_size=chunk_rows, columns=columns):
                    yield pa.Table.from_batches([batch])
                parquet.close()
                os.remove(path)
        finally:
            self.close()

    def close(self) -> None:
        self._downloader.shutdown(wait=True, cancel_futures=True)
        self._tmpdir.cleanup()

    def fingerprint(self) -> str:
        files = [(f.sha256, f.rows) for f in self.manifest.files]
        return hashlib.sha256(json.dumps(files).encode()).hexdigest()
