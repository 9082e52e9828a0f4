"""The prediction log: every answered row (and every shadow answer) buffered in memory and flushed to the object
store as Hive-style parquet partitions, each published atomically with its manifest:

    <serving.log_prefix>/<model>/dt=2026-12-01/hour=16/batch=<utc time>-<id>/_manifest.json + part parquet

The buffer is bounded (`serving.log_buffer_rows`): when it is full a request waits up to
`serving.log_wait_seconds` for room (back-pressure), then is refused with LogFull, never silently dropped.
A background thread flushes every `serving.log_flush_seconds` (or at `serving.log_flush_rows`); `close()` flushes
what is left, so a clean stop (SIGTERM) loses nothing and a kill -9 at most one flush interval."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import pandas as pd

from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.publication import Publication
from conveyor.domain.prediction_log_schema import INPUT_PREFIX, LOG_COLUMNS

log = logging.getLogger(__name__)


class LogFull(RuntimeError):
    """The prediction log's buffer stayed full for `serving.log_wait_seconds`: the request is refused (503)."""


class PredictionLog:
    def __init__(
        self,
        store: ObjectStore,
        prefix: str,
        model_name: str,
        capacity: int,
        wait_seconds: float,
        flush_seconds: float,
        flush_rows: int,
        input_columns: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.columns = [*LOG_COLUMNS, *(INPUT_PREFIX + c for c in input_columns)]
        self.root = f"{prefix.rstrip('/')}/{model_name}"
        self.capacity = capacity
        self.wait_seconds = wait_seconds
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self._rows: list[dict[str, Any]] = []
        self._room = threading.Condition()
        self._flush_lock = threading.Lock()  # one flush at a time (thread vs close)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rows_written = 0
        self.flush_failures = 0

    @property
    def buffered(self) -> int:
        return len(self._rows)

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Buffer `rows`; waits for room when the buffer is full, raises LogFull after `wait_seconds`."""
        with self._room:
            if not self._room.wait_for(lambda: len(self._rows) + len(rows) <= self.capacity, self.wait_seconds):
                raise LogFull(
                    f"prediction log buffer full ({len(self._rows)} of {self.capacity} rows, serving.log_buffer_rows) "
                    f"for {self.wait_seconds:g}s: is the object store reachable?"
                )
            self._rows.extend(rows)
            if len(self._rows) >= self.flush_rows:
                self._room.notify_all()

    def flush(self) -> int:
        """Publish what is buffered, one partition per (day, hour); returns rows written. On failure the rows go
        back to the front of the buffer (kept for the next flush) and the error is logged."""
        with self._flush_lock:
            with self._room:
                rows, self._rows = self._rows, []
            if not rows:
                return 0
            try:
                self._publish(pd.DataFrame.from_records(rows, columns=self.columns))
            except Exception as exc:
                self.flush_failures += 1
                with self._room:
                    self._rows[:0] = rows
                log.error(
                    "prediction log: flush of %d rows to %s failed, kept in memory: %s", len(rows), self.root, exc
                )
                return 0
            with self._room:
                self._room.notify_all()  # room again for requests waiting on a full buffer
            self.rows_written += len(rows)
            return len(rows)

    def _publish(self, frame: pd.DataFrame) -> None:
        # Seconds since the epoch (time.time()): without the unit pandas reads them as nanoseconds, 1970-01-01.
        hours = (frame["logged_at"].to_numpy(dtype="float64") // 3600).astype("int64")  # the partition: UTC hour
        frame = frame.assign(logged_at=pd.to_datetime(frame["logged_at"], unit="s", utc=True))
        now = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        # By integer hour: formatting every row's timestamp (strftime) was the largest pandas cost of a flush.
        for hour_number, part in frame.groupby(hours, sort=True):
            start = dt.datetime.fromtimestamp(int(hour_number) * 3600, dt.UTC)
            batch = f"{now}-{uuid.uuid4().hex[:8]}"
            prefix = f"{self.root}/dt={start:%Y-%m-%d}/hour={start:%H}/batch={batch}"
            with Publication(self.store, prefix, batch) as publication:
                publication.write_parquet("part-00000.parquet", part.reset_index(drop=True))
                publication.commit({"model": self.root.rsplit("/", 1)[1], "rows": len(part), "columns": self.columns})

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._room:
                self._room.wait_for(
                    lambda: self._stop.is_set() or len(self._rows) >= self.flush_rows, self.flush_seconds
                )
            self.flush()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def close(self) -> int:
        """Stop the flush thread and flush what is left; returns the rows written in all."""
        self._stop.set()
        with self._room:
            self._room.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.flush()
        if self._rows:
            log.error("prediction log: %d rows could not be written to %s at shutdown", len(self._rows), self.root)
        return self.rows_written
