"""Atomic publish of a dataset prefix on the object store: parts staged under `_staging/<run_id>/`, copied into
the prefix under run-unique names, and `_manifest.json` written last. Readers trust only the files a manifest
lists (with their SHA-256), so a run that dies before the manifest leaves nothing visible, and a rerun swaps the
whole partition in one PUT. `StreamingPart` streams one large part as an S3 multipart upload.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from conveyor.adapters.object_store import (
    ChecksumMismatch,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    dataframe_to_parquet_bytes,
    sha256_bytes,
)

log = logging.getLogger(__name__)

MANIFEST_NAME = "_manifest.json"


@dataclass(frozen=True)
class PublishedFile:
    key: str
    sha256: str
    size_bytes: int
    rows: int | None = None


@dataclass(frozen=True)
class Manifest:
    prefix: str
    run_id: str
    created_at: str
    files: list[PublishedFile]
    row_count: int | None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        files = [PublishedFile(**f) for f in data["files"]]
        return cls(**{**data, "files": files})


class Publication:
    """Parts staged under `_staging/<run_id>/`, made visible together by `commit()`."""

    def __init__(self, store: ObjectStore, prefix: str, run_id: str) -> None:
        self.store = store
        self.prefix = prefix.rstrip("/")
        self.run_id = run_id
        self.staging_root = f"{store.config.prefixes.staging}/{run_id}/{self.prefix}"
        self._staged: list[tuple[str, PublishedFile]] = []  # (staging key, final entry)
        self.committed: Manifest | None = None

    def __enter__(self) -> Publication:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None or self.committed is None:
            self.abort()

    def write_bytes(self, name: str, data: bytes, rows: int | None = None) -> PublishedFile:
        staging_key = f"{self.staging_root}/{name}"
        digest = self.store.put_bytes(staging_key, data)
        entry = PublishedFile(f"{self.prefix}/run-{self.run_id}-{name}", digest, len(data), rows)
        self._staged.append((staging_key, entry))
        return entry

    def write_parquet(self, name: str, frame: pd.DataFrame) -> PublishedFile:
        return self.write_bytes(name, dataframe_to_parquet_bytes(frame), rows=len(frame))

    def open_part(self, name: str, part_size: int = 16 * 2**20) -> StreamingPart:
        """A write-only file object that streams one part to staging by multipart upload (memory: about two
        `part_size` buffers, whatever the part's total size), hashing as it goes. Set `.rows`, then `close()`."""
        return StreamingPart(self, name, part_size)

    def _add_staged(self, staging_key: str, entry: PublishedFile) -> None:
        self._staged.append((staging_key, entry))

    def commit(self, metadata: dict[str, Any] | None = None) -> Manifest:
        """Copy staged parts into the prefix, write the manifest last, then drop what it replaced."""
        for staging_key, entry in self._staged:
            self.store.copy(staging_key, entry.key)
        rows = [e.rows for _, e in self._staged]
        manifest = Manifest(
            prefix=self.prefix,
            run_id=self.run_id,
            created_at=dt.datetime.now(dt.UTC).isoformat(),
            files=[e for _, e in self._staged],
            row_count=None if any(r is None for r in rows) else sum(r for r in rows if r is not None),
            metadata=metadata or {},
        )
        self.store.put_json(f"{self.prefix}/{MANIFEST_NAME}", manifest.to_json())
        self.committed = manifest
        # Drop what the new manifest replaced: the previous run's parts, and parts a crashed commit copied
        # in but never listed. Only direct children: a prefix may hold other published prefixes below it.
        keep = {e.key for e in manifest.files} | {f"{self.prefix}/{MANIFEST_NAME}"}
        stale = [
            k for k in self.store.list_keys(self.prefix + "/") if k not in keep and "/" not in k[len(self.prefix) + 1 :]
        ]
        self.store.delete_keys(stale)
        self.store.delete_keys([k for k, _ in self._staged])
        return manifest

    def abort(self) -> None:
        """Drop staged parts; nothing under the prefix changed."""
        try:
            self.store.delete_keys([k for k, _ in self._staged])
        except ObjectStoreError as exc:  # the store may be what failed; staging is garbage either way
            log.warning("could not clean staging %s: %s", self.staging_root, exc)
        self._staged.clear()


class StreamingPart:
    """File-like sink (for `pyarrow.parquet.ParquetWriter`) uploading to `<staging>/<name>` in S3 multipart parts.

    The previous part uploads in a background thread while the caller produces the next one; at most one upload
    is in flight, so memory stays at about two parts. The SHA-256 is computed over the bytes as they are written.
    A part smaller than `part_size` in total is sent with one PUT. On any error the multipart upload is aborted.
    """

    def __init__(self, publication: Publication, name: str, part_size: int) -> None:
        if part_size < 5 * 2**20:
            raise ValueError(f"part_size {part_size} is below the S3 minimum of 5 MiB")
        self.publication = publication
        self.store = publication.store
        self.name = name
        self.key = f"{publication.staging_root}/{name}"
        self.part_size = part_size
        self.rows: int | None = None
        self.entry: PublishedFile | None = None
        self._buffer = bytearray()
        self._digest = hashlib.sha256()
        self._size = 0
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._pending: Future[dict[str, Any]] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        self._aborted = False

    # -- file protocol (what pyarrow needs) --
    @property
    def closed(self) -> bool:
        return self._closed

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        pass

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data)
        if self._aborted:  # late writes after abort (a parquet writer flushing its footer) go nowhere
            return view.nbytes
        if self._closed:
            raise ValueError(f"write to closed part {self.key}")
        self._digest.update(view)
        self._buffer += view
        self._size += len(view)
        if len(self._buffer) >= self.part_size:
            self._ship(bytes(self._buffer))
            self._buffer = bytearray()
        return len(view)

    def _ship(self, chunk: bytes) -> None:
        store, bucket, key = self.store, self.store.bucket, self.key
        if self._upload_id is None:
            store.ensure_bucket()
            response = store._call(
                f"create multipart {store.uri(key)}",
                lambda: store.client.create_multipart_upload(Bucket=bucket, Key=key),
            )
            self._upload_id = response["UploadId"]
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-part")
        self._wait_pending()
        number, upload_id = len(self._parts) + 1, self._upload_id

        def upload() -> dict[str, Any]:
            result = store._call(
                f"upload part {number} of {store.uri(key)}",
                lambda: store.client.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
                ),
            )
            return {"PartNumber": number, "ETag": result["ETag"]}

        assert self._executor is not None
        self._pending = self._executor.submit(upload)

    def _wait_pending(self) -> None:
        if self._pending is not None:
            self._parts.append(self._pending.result())
            self._pending = None

    def close(self) -> None:
        """Finish the upload and register the part with its publication (no-op when already closed)."""
        if self._closed:
            return
        self._closed = True
        store, bucket, key = self.store, self.store.bucket, self.key
        try:
            if self._upload_id is None:
                store.put_bytes(key, bytes(self._buffer))
            else:
                if self._buffer:
                    self._ship(bytes(self._buffer))
                self._wait_pending()
                upload_id, parts = self._upload_id, list(self._parts)
                store._call(
                    f"complete multipart {store.uri(key)}",
                    lambda: store.client.complete_multipart_upload(
                        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                    ),
                )
        except BaseException:
            self.abort()
            raise
        finally:
            self._buffer = bytearray()
            if self._executor is not None:
                self._executor.shutdown(wait=True)
        pub = self.publication
        self.entry = PublishedFile(
            f"{pub.prefix}/run-{pub.run_id}-{self.name}", self._digest.hexdigest(), self._size, self.rows
        )
        pub._add_staged(key, self.entry)

    def abort(self) -> None:
        """Drop the unfinished upload (best effort: the store may be what failed). Idempotent."""
        if self._aborted:
            return
        self._aborted = self._closed = True
        if self._pending is not None:
            self._pending.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        if self._upload_id is not None:
            store, upload_id = self.store, self._upload_id
            try:
                store.client.abort_multipart_upload(Bucket=store.bucket, Key=self.key, UploadId=upload_id)
            except Exception as exc:  # staging is garbage either way
                log.warning("could not abort multipart upload of %s: %s", store.uri(self.key), exc)


def read_manifest(store: ObjectStore, prefix: str) -> Manifest | None:
    """The manifest of a published prefix, or None if nothing was ever published there."""
    try:
        return Manifest.from_json(store.get_json(f"{prefix.rstrip('/')}/{MANIFEST_NAME}"))
    except ObjectNotFound:
        return None


def read_published_bytes(store: ObjectStore, prefix: str) -> Iterator[tuple[PublishedFile, bytes]]:
    """Yield each file a manifest lists, verified against its checksum."""
    manifest = read_manifest(store, prefix)
    if manifest is None:
        raise ObjectNotFound(f"nothing published at {store.uri(prefix)}: no {MANIFEST_NAME}")
    for entry in manifest.files:
        data = store.get_bytes(entry.key)
        if sha256_bytes(data) != entry.sha256:
            raise ChecksumMismatch(
                f"{store.uri(entry.key)}: SHA-256 does not match the manifest of {store.uri(prefix)}; "
                "the object was changed after publication"
            )
        yield entry, data


def read_published_parquet(store: ObjectStore, prefix: str, columns: list[str] | None = None) -> pd.DataFrame:
    tables = [pq.read_table(io.BytesIO(data), columns=columns) for _, data in read_published_bytes(store, prefix)]
    if not tables:
        return pd.DataFrame(columns=columns)
    return pa.concat_tables(tables).to_pandas()


def published_prefixes(store: ObjectStore, root: str) -> list[str]:
    """Prefixes under `root` that carry a manifest (the ones readers may trust)."""
    suffix = "/" + MANIFEST_NAME
    return sorted(k[: -len(suffix)] for k in store.list_keys(root) if k.endswith(suffix))
