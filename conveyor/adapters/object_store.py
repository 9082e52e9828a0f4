"""The object-store adapter: the only module that talks to S3 (boto3, through its plumbing in s3_client.py).

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
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from configs.settings import StorageConfig
from conveyor.adapters.s3_client import (
    AccessDenied,
    BucketNotFound,
    ChecksumMismatch,
    ObjectNotFound,
    ObjectStoreError,
    PreconditionFailed,
    StoreUnavailable,
    call_with_retries,
    credentials_from_block,
    endpoint_name,
    s3_client,
)

# The errors are part of this adapter's interface: callers import them from here (s3_client is its plumbing).
__all__ = [
    "AccessDenied",
    "BucketNotFound",
    "ChecksumMismatch",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreError",
    "PreconditionFailed",
    "StagingSweep",
    "StoreUnavailable",
    "credentials_from_block",
    "dataframe_to_parquet_bytes",
    "sha256_bytes",
]
log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class StagingSweep:
    objects_deleted: int
    uploads_aborted: int


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
            self._client = s3_client(self.config)
        return self._client

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _where(self) -> str:
        return endpoint_name(self.config)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return call_with_retries(self.config, what, fn)

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

    def presigned_url(self, key: str, expires_seconds: int | None = None) -> str:
        """An HTTP GET link to `key` that needs no credentials until it expires: what a browser opens from a
        Prefect artifact. Signed locally (no request); `storage.presigned_url_expiry_seconds` by default."""
        expiry = self.config.presigned_url_expiry_seconds if expires_seconds is None else expires_seconds
        return str(
            self._call(
                "presign",
                lambda: self.client.generate_presigned_url(
                    "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expiry
                ),
            )
        )

    def key_of(self, uri: str) -> str:
        """The key of an `s3://<this bucket>/<key>` URI."""
        prefix = f"s3://{self.bucket}/"
        if not uri.startswith(prefix):
            raise ValueError(f"{uri!r} is not in bucket {self.bucket!r}")
        return uri[len(prefix) :]

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
