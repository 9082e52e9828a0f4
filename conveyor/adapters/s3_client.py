"""Reaching an S3 endpoint: the boto3 client and its credentials, retries of transient failures, and the errors a
person can act on (every failure of the object store surfaces as an ObjectStoreError). Used only by
conveyor/adapters/object_store.py, which re-exports the errors."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from configs.settings import StorageConfig
from conveyor.domain.failures import DeterministicFailure

log = logging.getLogger("conveyor.adapters.object_store")
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
    """Base class: every failure of the object store surfaces as one of these. Those marked DeterministicFailure
    are never retried by a task (a second attempt meets the same bucket, keys and bytes); the others may be."""


class ObjectNotFound(ObjectStoreError):
    """No such key. Not deterministic: a reader can lose a race with a rerun that replaced the partition (and
    deleted the files the older manifest listed); a retry reads the new manifest."""


class BucketNotFound(DeterministicFailure, ObjectStoreError):
    pass


class AccessDenied(DeterministicFailure, ObjectStoreError):
    """Bad or missing credentials, or a policy that forbids the call."""


class StoreUnavailable(ObjectStoreError):
    """The endpoint did not answer (or kept failing) after `storage.max_attempts` attempts: transient."""


class ChecksumMismatch(DeterministicFailure, ObjectStoreError):
    """Stored bytes differ from the SHA-256 recorded for them."""


class PreconditionFailed(ObjectStoreError):
    """A conditional write lost: the object exists (create-if-absent) or changed (if-match). A lost race, so
    retryable."""


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


def s3_client(cfg: StorageConfig) -> Any:
    """The boto3 client for `cfg`'s endpoint: credentials from the config, the environment or a Prefect block."""
    credentials = cfg.resolved_credentials()
    if credentials is None and cfg.credentials_block:
        credentials = credentials_from_block(cfg.credentials_block)
    kwargs: dict[str, Any] = {}
    if credentials:
        kwargs = {"aws_access_key_id": credentials[0], "aws_secret_access_key": credentials[1]}
    return boto3.session.Session().client(
        "s3",
        endpoint_url=cfg.endpoint_url,
        region_name=cfg.region,
        config=BotoConfig(
            # Retries are ours (call_with_retries) so that every attempt is logged and the final error is clear.
            retries={"total_max_attempts": 1},
            connect_timeout=cfg.connect_timeout_seconds,
            read_timeout=cfg.read_timeout_seconds,
            s3={"addressing_style": cfg.addressing_style},
            # Requests are SigV4 anyway; without this botocore *presigns* with SigV2 (AWSAccessKeyId=...,
            # Expires=...), which AWS regions opened since 2014 refuse and which ignores the 7-day cap.
            signature_version="s3v4",
            max_pool_connections=16,
        ),
        **kwargs,
    )


def endpoint_name(cfg: StorageConfig) -> str:
    return cfg.endpoint_url or f"AWS S3 ({cfg.region})"


def call_with_retries(cfg: StorageConfig, what: str, fn: Callable[[], T]) -> T:
    """`fn()` (one S3 call), retried with backoff on transient failures up to `storage.max_attempts`; every other
    failure becomes the ObjectStoreError a person can act on (`translate`)."""
    attempts = cfg.max_attempts
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
                raise translate(cfg, what, code, exc) from None
        if attempt < attempts:
            wait = cfg.backoff_seconds * 2 ** (attempt - 1)
            log.warning("S3 %s: %s (attempt %d/%d), retrying in %.2fs", what, error, attempt, attempts, wait)
            time.sleep(wait)
    raise StoreUnavailable(
        f"S3 {what} failed after {attempts} attempts at {endpoint_name(cfg)}: {error}. "
        "Is the S3 server running and reachable? (locally: `conveyor stack up`)"
    )


def translate(cfg: StorageConfig, what: str, code: str, exc: ClientError) -> ObjectStoreError:
    where = endpoint_name(cfg)
    if code == "NoSuchBucket":
        return BucketNotFound(
            f"S3 {what}: bucket {cfg.bucket!r} does not exist at {where} "
            "(check storage.bucket, or write to it once: buckets are created on first write)"
        )
    if code in _AUTH_CODES:
        return AccessDenied(
            f"S3 {what}: the server rejected the credentials ({code}) at {where}. "
            "Check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, storage.credentials_file or "
            "storage.credentials_block."
        )
    if code in _MISSING_KEY_CODES:
        return ObjectNotFound(f"S3 {what}: no such object")
    if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
        return PreconditionFailed(f"S3 {what}: precondition failed ({code})")
    return ObjectStoreError(f"S3 {what} failed at {where}: {code}: {exc}")
