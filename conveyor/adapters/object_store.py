"""The object-store adapter: the only module that talks to S3 (boto3).

Works against any S3 endpoint (SeaweedFS locally, MinIO, AWS) by configuration alone.

Atomic publish: a dataset prefix (e.g. ``predictions/churn/dt=2026-03-01``) is written by staging its parts under
``_staging/<run_id>/``, copying them into the prefix under run-unique names, and writing ``_manifest.json``
last. The manifest is the contract: readers trust only the files a manifest lists (with their SHA-256), so a
run that dies before the manifest leaves nothing visible, and a rerun swaps the whole partition in one PUT.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, TypeVar, cast

import boto3
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from configs.settings import StorageConfig

log = logging.getLogger(__name__)

MANIFEST_NAME = "_manifest.json"
T = TypeVar("T")

_TRANSIENT_EXCEPTIONS = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)
_TRANSIENT_CODES = {
    "500",
    "502",
    "503",
    "504",
    "InternalError",
    "SlowDown",
    "ServiceUnavailable",
    "RequestTimeout",
    "Throttling",
    "ThrottlingException",
}
_AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "InvalidToken", "ExpiredToken"}
_MISSING_KEY_CODES = {"NoSuchKey", "404", "NotFound"}


class ObjectStoreError(RuntimeError):
    """Base class: every failure of the object store surfaces as one of these."""


class ObjectNotFound(ObjectStoreError):
    pass


class BucketNotFound(ObjectStoreError):
    pass


class AccessDenied(ObjectStoreError):
    pass


class StoreUnavailable(ObjectStoreError):
    pass


class ChecksumMismatch(ObjectStoreError):
    pass


class PreconditionFailed(ObjectStoreError):
    """A conditional write lost: the object exists (create-if-absent) or changed (if-match)."""


@dataclass(frozen=True)
class StagingSweep:
    objects_deleted: int
    uploads_aborted: int


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


def credentials_from_block(block_name: str) -> tuple[str, str]:
    """S3 keys from a prefect-aws `AwsCredentials` block on the configured Prefect server."""
    from prefect.exceptions import ObjectNotFound as BlockNotFound
    from prefect_aws import AwsCredentials

    try:
        # `_sync=True`: async_dispatch's blocking path even when called under a running event loop.
        block = cast(AwsCredentials, AwsCredentials.load(block_name, _sync=True))  # type: ignore[call-arg]
    except (BlockNotFound, ValueError) as exc:
        raise AccessDenied(
            f"storage.credentials_block: no AwsCredentials block named {block_name!r} on the Prefect server "
            f"({type(exc).__name__}); create it in the UI (Blocks -> AWS Credentials) or with "
            "`AwsCredentials(aws_access_key_id=..., aws_secret_access_key=...).save(name)`"
        ) from None
    secret = block.aws_secret_access_key.get_secret_value() if block.aws_secret_access_key else None
    if not block.aws_access_key_id or not secret:
        raise AccessDenied(
            f"storage.credentials_block {block_name!r}: the block has no access key id and secret "
            "access key (profiles and assumed roles are not supported here)"
        )
    return block.aws_access_key_id, secret


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dataframe_to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    # Microsecond timestamps: what every engine reads (duckdb 2 / Feast break on nanoseconds).
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False),
        buffer,
        compression="zstd",
        coerce_timestamps="us",
        allow_truncated_timestamps=True,
    )
    return buffer.getvalue()


class ObjectStore:
    """A bucket on an S3-compatible endpoint, with retries and errors a person can act on."""

    def __init__(self, config: StorageConfig, client: Any | None = None) -> None:
        self.config = config
        self.bucket = config.bucket
        self._client = client
        self._bucket_checked = False

    # ---- plumbing -------------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            cfg = self.config
            credentials = cfg.resolved_credentials()
            if credentials is None and cfg.credentials_block:
                credentials = credentials_from_block(cfg.credentials_block)
            kwargs: dict[str, Any] = {}
            if credentials:
                kwargs = {"aws_access_key_id": credentials[0], "aws_secret_access_key": credentials[1]}
            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=cfg.endpoint_url,
                region_name=cfg.region,
                config=BotoConfig(
                    # Retries are ours (below) so that every attempt is logged and the final error is clear.
                    retries={"total_max_attempts": 1},
                    connect_timeout=cfg.connect_timeout_seconds,
                    read_timeout=cfg.read_timeout_seconds,
                    s3={"addressing_style": cfg.addressing_style},
                    max_pool_connections=16,
                ),
                **kwargs,
            )
        return self._client

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _where(self) -> str:
        return self.config.endpoint_url or f"AWS S3 ({self.config.region})"

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        attempts = self.config.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                return fn()
            except _TRANSIENT_EXCEPTIONS as exc:
                error: Exception = exc
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code in _TRANSIENT_CODES:
                    error = exc
                else:
                    raise self._translate(what, code, exc) from None
            if attempt < attempts:
                wait = self.config.backoff_seconds * 2 ** (attempt - 1)
                log.warning("S3 %s: %s (attempt %d/%d), retrying in %.2fs", what, error, attempt, attempts, wait)
                time.sleep(wait)
        raise StoreUnavailable(
            f"S3 {what} failed after {attempts} attempts at {self._where()}: {error}. "
            "Is the S3 server running and reachable? (locally: `conveyor stack up`)"
        )

    def _translate(self, what: str, code: str, exc: ClientError) -> ObjectStoreError:
        if code == "NoSuchBucket":
            return BucketNotFound(
                f"S3 {what}: bucket {self.bucket!r} does not exist at {self._where()} "
                "(check storage.bucket, or write to it once: buckets are created on first write)"
            )
        if code in _AUTH_CODES:
            return AccessDenied(
                f"S3 {what}: the server rejected the credentials ({code}) at {self._where()}. "
                "Check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, storage.credentials_file or "
                "storage.credentials_block."
            )
        if code in _MISSING_KEY_CODES:
            return ObjectNotFound(f"S3 {what}: no such object")
        if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
            return PreconditionFailed(f"S3 {what}: precondition failed ({code})")
        return ObjectStoreError(f"S3 {what} failed at {self._where()}: {code}: {exc}")

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist yet (idempotent)."""
        if self._bucket_checked:
            return
        try:
            self._call(f"head_bucket {self.bucket}", lambda: self.client.head_bucket(Bucket=self.bucket))
        except (BucketNotFound, ObjectNotFound):
            log.info("creating bucket %s at %s", self.bucket, self._where())
            try:
                self._call(f"create_bucket {self.bucket}", lambda: self.client.create_bucket(Bucket=self.bucket))
            except ObjectStoreError as exc:
                # Another writer may have created it between our HEAD and CREATE.
                if "BucketAlreadyOwnedByYou" not in str(exc) and "BucketAlreadyExists" not in str(exc):
                    raise
        self._bucket_checked = True

    # ---- bytes, JSON, parquet -------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Write one object; returns its SHA-256."""
        self.ensure_bucket()
        self._call(
            f"put {self.uri(key)}",
            lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type),
        )
        return sha256_bytes(data)

    def put_bytes_conditional(
        self,
        key: str,
        data: bytes,
        *,
        if_absent: bool = False,
        if_match: str | None = None,
        content_type: str = "application/json",
    ) -> str:
        """Write one object only if it does not exist yet (`if_absent`) or still has ETag `if_match`.

        Raises PreconditionFailed when another writer got there first; returns the new ETag. Needs an S3 server
        with conditional writes (AWS since 2024, MinIO, SeaweedFS 4.x; see `supports_conditional_writes`)."""
        if if_absent == (if_match is not None):
            raise ValueError("give exactly one of if_absent=True or if_match=<etag>")
        self.ensure_bucket()
        condition = {"IfNoneMatch": "*"} if if_absent else {"IfMatch": if_match}
        response = self._call(
            f"conditional put {self.uri(key)}",
            lambda: self.client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type, **condition
            ),
        )
        return str(response["ETag"])

    def get_bytes_and_etag(self, key: str) -> tuple[bytes, str]:
        """The object's bytes and ETag (for a later `put_bytes_conditional(if_match=...)`)."""
        try:
            response = self._call(f"get {self.uri(key)}", lambda: self.client.get_object(Bucket=self.bucket, Key=key))
        except ObjectNotFound:
            raise ObjectNotFound(f"no object at {self.uri(key)} ({self._where()})") from None
        body: bytes = response["Body"].read()
        return body, str(response["ETag"])

    def supports_conditional_writes(self, probe_prefix: str) -> bool:
        """Probe once: a second create-if-absent of the same key must be refused (servers that ignore the
        header would silently overwrite, and every "atomic" pointer built on it would be a lie)."""
        key = f"{probe_prefix.rstrip('/')}/_conditional-write-probe-{time.time_ns()}"
        try:
            self.put_bytes_conditional(key, b"1", if_absent=True)
            try:
                self.put_bytes_conditional(key, b"2", if_absent=True)
                return False
            except PreconditionFailed:
                return True
        finally:
            self.delete_keys([key])

    def get_bytes(self, key: str) -> bytes:
        return self.get_bytes_and_etag(key)[0]

    def put_json(self, key: str, payload: Any) -> str:
        data = json.dumps(payload, indent=2, sort_keys=True, default=str).encode()
        return self.put_bytes(key, data, content_type="application/json")

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def put_parquet(self, key: str, frame: pd.DataFrame) -> str:
        return self.put_bytes(key, dataframe_to_parquet_bytes(frame))

    def get_parquet(self, key: str, columns: list[str] | None = None) -> pd.DataFrame:
        table = pq.read_table(io.BytesIO(self.get_bytes(key)), columns=columns)
        return table.to_pandas()

    def put_file(self, key: str, path: str) -> None:
        """Upload a local file (multipart for large ones)."""
        self.ensure_bucket()
        self._call(f"upload {self.uri(key)}", lambda: self.client.upload_file(path, self.bucket, key))

    def download_file(self, key: str, path: str) -> None:
        self._call(f"download {self.uri(key)}", lambda: self.client.download_file(self.bucket, key, path))

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def size(self, key: str) -> int | None:
        """The object's size in bytes; None when there is no such object."""
        try:
            head = self._call(f"head {self.uri(key)}", lambda: self.client.head_object(Bucket=self.bucket, Key=key))
        except ObjectNotFound:
            return None
        return int(head["ContentLength"])

    def list_keys(self, prefix: str) -> list[str]:
        """All keys under `prefix`, sorted."""
        keys: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call(f"list {self.uri(prefix)}", partial(self.client.list_objects_v2, **kwargs))
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
            if not page.get("IsTruncated"):
                return sorted(keys)
            token = page["NextContinuationToken"]

    def list_prefixes(self, prefix: str) -> list[str]:
        """The immediate 'sub-folders' of `prefix` (which should end with '/')."""
        found: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call(
            f"list {self.uri(prefix)}",
            lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/")),
        )
        for page in pages:
            found.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
        return sorted(found)

    def delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self._call(
                f"delete {len(batch)} objects",
                partial(self.client.delete_objects, Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}),
            )

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list_keys(prefix)
        self.delete_keys(keys)
        return len(keys)

    def download_verified(self, key: str, path: str, sha256: str | None = None) -> str:
        """Download `key` to a local file (multipart, threaded) and return its SHA-256; with `sha256` given,
        raise ChecksumMismatch when the bytes differ (a file changed after its manifest was written)."""
        self.download_file(key, path)
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while block := fh.read(8 * 2**20):
                digest.update(block)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise ChecksumMismatch(
                f"{self.uri(key)}: SHA-256 {digest.hexdigest()[:12]}... does not match the "
                f"expected {sha256[:12]}... (changed after publication?)"
            )
        return digest.hexdigest()

    def copy(self, source_key: str, dest_key: str) -> None:
        self._call(
            f"copy {self.uri(source_key)} -> {dest_key}",
            lambda: self.client.copy_object(
                Bucket=self.bucket, Key=dest_key, CopySource={"Bucket": self.bucket, "Key": source_key}
            ),
        )

    # ---- atomic publish -------------------------------------------------------------------------------
    def sweep_staging(self, older_than: dt.timedelta) -> StagingSweep:
        """Remove what failed runs left in staging: objects, and multipart uploads the run could not abort
        (the store itself was down). Only what is older than `older_than`, so runs in flight keep theirs.
        Garbage, never data: nothing under `_staging/` is visible to readers."""
        staging = self.config.prefixes.staging + "/"
        cutoff = dt.datetime.now(dt.UTC) - older_than
        old_objects: list[str] = []
        for page in self._call(
            f"list {self.uri(staging)}",
            lambda: list(self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=staging)),
        ):
            old_objects.extend(o["Key"] for o in page.get("Contents", []) if o["LastModified"] <= cutoff)
        self.delete_keys(old_objects)
        uploads = self._call(
            f"list multipart uploads {self.uri(staging)}",
            lambda: [
                u
                for page in self.client.get_paginator("list_multipart_uploads").paginate(
                    Bucket=self.bucket, Prefix=staging
                )
                for u in page.get("Uploads", [])
            ],
        )
        old_uploads = [u for u in uploads if u["Initiated"] <= cutoff]
        for upload in old_uploads:
            self._call(
                f"abort multipart {self.uri(upload['Key'])}",
                partial(
                    self.client.abort_multipart_upload,
                    Bucket=self.bucket,
                    Key=upload["Key"],
                    UploadId=upload["UploadId"],
                ),
            )
        if old_objects or old_uploads:
            log.debug(
                "swept staging %s: %d objects deleted, %d multipart uploads aborted (older than %s)",
                self.uri(staging),
                len(old_objects),
                len(old_uploads),
                older_than,
            )
        return StagingSweep(len(old_objects), len(old_uploads))

    def publication(self, prefix: str, run_id: str) -> Publication:
        """Start an atomic write of `prefix`; use as a context manager (aborts on exception)."""
        return Publication(self, prefix.rstrip("/"), run_id)

    def read_manifest(self, prefix: str) -> Manifest | None:
        """The manifest of a published prefix, or None if nothing was ever published there."""
        try:
            return Manifest.from_json(self.get_json(f"{prefix.rstrip('/')}/{MANIFEST_NAME}"))
        except ObjectNotFound:
            return None

    def read_published_bytes(self, prefix: str) -> Iterator[tuple[PublishedFile, bytes]]:
        """Yield each file a manifest lists, verified against its checksum."""
        manifest = self.read_manifest(prefix)
        if manifest is None:
            raise ObjectNotFound(f"nothing published at {self.uri(prefix)}: no {MANIFEST_NAME}")
        for entry in manifest.files:
            data = self.get_bytes(entry.key)
            if sha256_bytes(data) != entry.sha256:
                raise ChecksumMismatch(
                    f"{self.uri(entry.key)}: SHA-256 does not match the manifest of {self.uri(prefix)}; "
                    "the object was changed after publication"
                )
            yield entry, data

    def read_published_parquet(self, prefix: str, columns: list[str] | None = None) -> pd.DataFrame:
        tables = [pq.read_table(io.BytesIO(data), columns=columns) for _, data in self.read_published_bytes(prefix)]
        if not tables:
            return pd.DataFrame(columns=columns)
        return pa.concat_tables(tables).to_pandas()

    def published_prefixes(self, root: str) -> list[str]:
        """Prefixes under `root` that carry a manifest (the ones readers may trust)."""
        suffix = "/" + MANIFEST_NAME
        return sorted(k[: -len(suffix)] for k in self.list_keys(root) if k.endswith(suffix))


class Publication:
    """Parts staged under `_staging/<run_id>/`, made visible together by `commit()`."""

    def __init__(self, store: ObjectStore, prefix: str, run_id: str) -> None:
        self.store = store
        self.prefix = prefix
        self.run_id = run_id
        self.staging_root = f"{store.config.prefixes.staging}/{run_id}/{prefix}"
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
