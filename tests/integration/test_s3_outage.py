"""The S3 server stopped mid-write: the run fails fast with a clear error, nothing becomes visible, and once the
server is back (same data, same ports) a rerun publishes the partition.

Runs on a PRIVATE SeaweedFS (its own state folder and ports): stopping the session's shared `s3_server` would
break every other test.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from configs.settings import Settings, load_settings
from conveyor.adapters.object_store import ObjectStore, StagingSweep, StoreUnavailable
from conveyor.adapters.publication import MANIFEST_NAME, published_prefixes, read_manifest, read_published_parquet
from conveyor.ops.local_stack import LocalStack, pid_alive, private_stack_env
from conveyor.services.feature_sources import FrameSource, PublishedParquetSource
from conveyor.services.scoring import ScoringModel, predictions_prefix, score_partition
from tests.integration.scoring_data import DAY, population, train_model, with_scoring

pytestmark = pytest.mark.integration

ROWS = 450_000  # ~6 MiB of predictions parquet: more than one 5 MiB multipart part
CHUNK_ROWS = 25_000
MAX_ATTEMPTS = 3


@pytest.fixture
def private_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LocalStack, Settings]]:
    """A SeaweedFS of this test only, with few, quick retries; stopped by PID at the end whatever happened."""
    env = {
        **private_stack_env(tmp_path / "stack", bucket="conveyor-outage"),
        "CONVEYOR_STORAGE__MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "CONVEYOR_STORAGE__BACKOFF_SECONDS": "0.05",
        "CONVEYOR_STORAGE__CONNECT_TIMEOUT_SECONDS": "2",
        "CONVEYOR_STORAGE__READ_TIMEOUT_SECONDS": "10",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    stack = LocalStack(load_settings())
    stack.up(services=("s3",))
    try:
        yield stack, load_settings()  # now with the generated credentials file in place
    finally:
        stack.down(services=("s3",), timeout=10)


def staged_parts(store: ObjectStore) -> int:
    """Parts uploaded so far to unfinished multipart uploads in the bucket."""
    client = store.client
    uploads = client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
    return sum(
        len(client.list_parts(Bucket=store.bucket, Key=u["Key"], UploadId=u["UploadId"]).get("Parts", []))
        for u in uploads
    )


class StopServerMidWrite(FrameSource):
    """Serves the frame in chunks; as soon as the scoring run has a multipart part staged on the server, stops
    the server (by PID) and keeps serving, so the run's next S3 call hits a dead endpoint."""

    def __init__(self, frame: pd.DataFrame, store: ObjectStore, stack: LocalStack) -> None:
        super().__init__(frame)
        self.store, self.stack = store, stack
        self.pid = stack._recorded_pid("s3")
        self.stopped_at: float | None = None
        self.stopped_after_chunk: int | None = None
        self.parts_at_stop = 0

    def _stop(self, chunk: int) -> None:
        self.parts_at_stop = staged_parts(self.store)
        assert self.stack.down(services=("s3",), timeout=10) == ["s3"]
        self.stopped_at, self.stopped_after_chunk = time.monotonic(), chunk

    def chunks(self, chunk_rows: int) -> Iterator[pd.DataFrame]:
        served = 0
        for chunk in super().chunks(chunk_rows):
            if self.stopped_at is None and served and staged_parts(self.store):
                self._stop(served)
            yield chunk
            served += 1
        if self.stopped_at is None:  # the first part was still uploading at the last chunk: wait for it
            deadline = time.monotonic() + 30
            while not staged_parts(self.store) and time.monotonic() < deadline:
                time.sleep(0.05)
            self._stop(served)


@pytest.mark.timeout(240)
def test_s3_server_stopped_mid_write_leaves_nothing_visible_and_rerun_completes(
    private_s3: tuple[LocalStack, Settings],
) -> None:
    stack, base = private_s3
    settings = with_scoring(base, chunk_rows=CHUNK_ROWS, upload_part_mb=5)
    store = ObjectStore(settings.storage)
    store.ensure_bucket()
    model = ScoringModel(train_model(settings), "3", "churn_v1")
    endpoint = settings.storage.endpoint_url
    assert endpoint is not None

    # A partition published before the outage: proves the restarted server kept its data (same state folder),
    # so "nothing visible" below is not just an empty new server.
    earlier_day = DAY - dt.timedelta(days=1)
    earlier = score_partition(
        store, settings, FrameSource(population(settings, 2000)), model, "churn", earlier_day, "before"
    )
    earlier_prefix = predictions_prefix(settings, "churn", earlier_day)

    frame = population(settings, ROWS)
    prefix = predictions_prefix(settings, "churn", DAY)
    source = StopServerMidWrite(frame, store, stack)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as failure:
        score_partition(store, settings, source, model, "churn", DAY, "doomed")
    failed_at = time.monotonic()

    # Really mid-write: a part was on the server, the stop came while chunks were still being written or before
    # the upload was completed, and the server process is gone.
    assert source.stopped_at is not None and source.parts_at_stop >= 1
    assert source.pid is not None and not pid_alive(source.pid)
    # Fails fast (connection refused, a few short backoffs), not after long timeouts, and says why and where.
    assert failed_at - source.stopped_at < 20, f"took {failed_at - source.stopped_at:.1f}s to fail after the stop"
    message = str(failure.value)
    assert f"failed after {MAX_ATTEMPTS} attempts at {endpoint}" in message
    assert "Is the S3 server running" in message
    assert f"_staging/doomed/{prefix}/" in message  # which write was in flight

    # Same state folder, same ports.
    stack.up(services=("s3",))
    assert read_manifest(store, prefix) is None  # readers trust manifests only: nothing is published
    assert published_prefixes(store, settings.storage.prefixes.predictions + "/") == [earlier_prefix]
    with pytest.raises(LookupError):
        PublishedParquetSource(store, prefix)
    assert store.list_keys(prefix + "/") == []  # not even an unlisted part under the partition
    assert store.list_keys(settings.storage.prefixes.staging + "/") == []  # no completed staging object either
    assert len(read_published_parquet(store, earlier_prefix)) == earlier.rows_scored == 2000
    # ...but the doomed run could not abort its multipart upload (the server was down): invisible garbage that
    # the staging sweep removes once it is older than the retention, and not before.
    orphans = store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
    assert [u["Key"] for u in orphans] == [f"{settings.storage.prefixes.staging}/doomed/{prefix}/part-00000.parquet"]
    assert store.sweep_staging(older_than=dt.timedelta(hours=1)) == StagingSweep(0, 0)
    assert staged_parts(store) == source.parts_at_stop

    rerun_started = time.monotonic()
    result = score_partition(store, settings, FrameSource(frame), model, "churn", DAY, "rerun")
    rerun_seconds = time.monotonic() - rerun_started
    published = read_published_parquet(store, prefix)
    manifest = read_manifest(store, prefix)
    assert manifest is not None and manifest.run_id == "rerun" and manifest.row_count == len(frame)
    assert result.rows_scored == len(published) == len(frame)
    np.testing.assert_array_equal(published["customer_id"].to_numpy(), frame["customer_id"].to_numpy())
    expected = model.model.predict_proba(frame[settings.dataset.feature_names])[:, 1]
    np.testing.assert_allclose(published["score"].to_numpy(), expected, rtol=0, atol=1e-12)
    assert set(published["run_id"]) == {"rerun"}
    assert store.list_keys(prefix + "/") == [f"{prefix}/{MANIFEST_NAME}", f"{prefix}/run-rerun-part-00000.parquet"]
    assert published_prefixes(store, settings.storage.prefixes.predictions + "/") == sorted([earlier_prefix, prefix])
    assert store.sweep_staging(older_than=dt.timedelta(0)) == StagingSweep(0, 1)
    assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []
    assert read_manifest(store, prefix) == manifest  # the sweep never touches published data
    print(
        f"outage run failed {failed_at - source.stopped_at:.2f}s after the stop (run started "
        f"{source.stopped_at - started:.1f}s earlier, {source.parts_at_stop} part(s) staged, stop after chunk "
        f"{source.stopped_after_chunk} of {-(-len(frame) // CHUNK_ROWS)}); rerun {rerun_seconds:.1f}s"
    )
