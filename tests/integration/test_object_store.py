"""The object-store adapter against a real SeaweedFS server (SigV4 enforced)."""

from __future__ import annotations

import logging
import time
import uuid

import pandas as pd
import pytest

from configs.settings import Settings
from conveyor.adapters.object_store import (
    AccessDenied,
    BucketNotFound,
    ChecksumMismatch,
    ObjectNotFound,
    ObjectStore,
    StoreUnavailable,
    sha256_bytes,
)
from conveyor.adapters.publication import (
    MANIFEST_NAME,
    Publication,
    published_prefixes,
    read_manifest,
    read_published_parquet,
)
from conveyor.ops.local_stack import free_port

pytestmark = pytest.mark.integration


def test_bytes_json_parquet_round_trip(store: ObjectStore) -> None:
    digest = store.put_bytes("a/blob.bin", b"\x00\x01conveyor")
    assert digest == sha256_bytes(b"\x00\x01conveyor")
    assert store.get_bytes("a/blob.bin") == b"\x00\x01conveyor"
    store.put_json("a/doc.json", {"model": "churn", "auc": 0.81})
    assert store.get_json("a/doc.json") == {"auc": 0.81, "model": "churn"}
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "score": [0.1, 0.5, 0.9],
            "segment": ["a", "b", "a"],
            "ts": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03"], utc=True),
        }
    )
    store.put_parquet("a/frame.parquet", frame)
    pd.testing.assert_frame_equal(store.get_parquet("a/frame.parquet"), frame, check_dtype=False)
    assert store.list_keys("a/") == ["a/blob.bin", "a/doc.json", "a/frame.parquet"]
    assert store.exists("a/doc.json") and not store.exists("a/nothing")


def test_bucket_is_created_on_first_write(store: ObjectStore) -> None:
    with pytest.raises(BucketNotFound, match=f"bucket '{store.bucket}' does not exist"):
        store.get_bytes("anything")
    store.put_bytes("first", b"x")
    assert store.get_bytes("first") == b"x"


def test_missing_key_error_names_the_uri(store: ObjectStore) -> None:
    store.put_bytes("present", b"x")
    with pytest.raises(ObjectNotFound, match=f"s3://{store.bucket}/absent"):
        store.get_bytes("absent")


def test_publish_is_invisible_until_the_manifest(store: ObjectStore) -> None:
    prefix = "predictions/churn/dt=2026-03-01"
    with Publication(store, prefix, "run-a") as publication:
        publication.write_parquet("part-00000.parquet", pd.DataFrame({"x": range(10)}))
        publication.write_parquet("part-00001.parquet", pd.DataFrame({"x": range(10, 15)}))
        assert read_manifest(store, prefix) is None
        assert store.list_keys(prefix) == []  # parts are only under staging
        assert published_prefixes(store, "predictions/") == []
        manifest = publication.commit({"model_version": "3"})
    assert manifest.row_count == 15 and manifest.metadata == {"model_version": "3"}
    assert published_prefixes(store, "predictions/") == [prefix]
    assert read_published_parquet(store, prefix)["x"].tolist() == list(range(15))
    assert store.list_keys(store.config.prefixes.staging + "/") == []


def test_failed_publication_leaves_nothing(store: ObjectStore) -> None:
    prefix = "predictions/churn/dt=2026-03-02"
    with pytest.raises(RuntimeError, match="scoring crashed"):
        with Publication(store, prefix, "run-b") as publication:
            publication.write_parquet("part-00000.parquet", pd.DataFrame({"x": [1]}))
            raise RuntimeError("scoring crashed")
    assert store.list_keys("") == []


def test_republish_replaces_without_duplicates(store: ObjectStore) -> None:
    prefix = "raw/churn/dt=2026-01-05"
    for run, values in (("run-1", [1, 2, 3]), ("run-2", [7, 8])):
        with Publication(store, prefix, run) as publication:
            publication.write_parquet("part-00000.parquet", pd.DataFrame({"v": values}))
            publication.commit()
    assert read_published_parquet(store, prefix)["v"].tolist() == [7, 8]
    assert store.list_keys(prefix + "/") == [f"{prefix}/{MANIFEST_NAME}", f"{prefix}/run-run-2-part-00000.parquet"]


def test_orphans_of_a_crashed_commit_are_cleaned_by_the_next(store: ObjectStore) -> None:
    prefix = "raw/churn/dt=2026-01-06"
    store.put_bytes(f"{prefix}/run-dead-part-00000.parquet", b"half-copied")  # a commit that died mid-copy
    with Publication(store, prefix, "run-ok") as publication:
        publication.write_parquet("part-00000.parquet", pd.DataFrame({"v": [1]}))
        publication.commit()
    assert f"{prefix}/run-dead-part-00000.parquet" not in store.list_keys(prefix + "/")


def test_tampered_part_is_refused(store: ObjectStore) -> None:
    prefix = "raw/churn/dt=2026-01-07"
    with Publication(store, prefix, "run-t") as publication:
        entry = publication.write_parquet("part-00000.parquet", pd.DataFrame({"v": [1, 2]}))
        publication.commit()
    store.put_parquet(entry.key, pd.DataFrame({"v": [666, 2]}))
    with pytest.raises(ChecksumMismatch, match="SHA-256 does not match"):
        read_published_parquet(store, prefix)


def test_bad_credentials_give_a_clear_error(s3_server: Settings) -> None:
    config = s3_server.storage.model_copy(
        update={"access_key_id": None, "secret_access_key": None, "credentials_file": None}
    )
    wrong = ObjectStore(
        config.model_validate(
            {**config.model_dump(), "access_key_id": "intruder", "secret_access_key": "not-the-secret"}
        )
    )
    with pytest.raises(AccessDenied, match="rejected the credentials") as info:
        wrong.put_bytes("x", b"y")
    assert "not-the-secret" not in str(info.value)


def test_server_down_is_retried_then_reported(s3_server: Settings, caplog: pytest.LogCaptureFixture) -> None:
    dead = s3_server.storage.model_copy(
        update={
            "endpoint_url": f"http://127.0.0.1:{free_port()}",
            "max_attempts": 4,
            "backoff_seconds": 0.05,
        }
    )
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="conveyor.adapters.object_store"):
        with pytest.raises(StoreUnavailable, match="failed after 4 attempts .* Is the S3 server running"):
            ObjectStore(dead).get_bytes("x")
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == 3
    assert time.monotonic() - started >= 0.05 + 0.1 + 0.2  # exponential backoff was honoured


def test_credentials_from_a_prefect_block(
    s3_server: Settings, prefect_harness: None, caplog: pytest.LogCaptureFixture
) -> None:
    """storage.credentials_block: the keys come from an AwsCredentials block on the Prefect server; neither the
    environment nor a file holds them. A wrong or missing block is refused with a message naming it."""
    from prefect_aws import AwsCredentials

    key, secret = s3_server.storage.resolved_credentials() or ("", "")
    assert key and secret
    block_name = f"conveyor-s3-{uuid.uuid4().hex[:8]}"
    AwsCredentials(aws_access_key_id=key, aws_secret_access_key=secret).save(block_name)
    AwsCredentials(aws_access_key_id=key, aws_secret_access_key="not-the-secret").save(block_name + "-wrong")
    no_keys = s3_server.storage.model_copy(
        update={"access_key_id": None, "secret_access_key": None, "bucket": f"t-{uuid.uuid4().hex[:12]}"}
    )

    with caplog.at_level(logging.DEBUG):
        store = ObjectStore(no_keys.model_copy(update={"credentials_block": block_name}))
        store.put_bytes("from-block.bin", b"conveyor")
        assert store.get_bytes("from-block.bin") == b"conveyor"
    assert secret not in caplog.text

    with pytest.raises(AccessDenied, match="rejected the credentials .*storage.credentials_block"):
        ObjectStore(no_keys.model_copy(update={"credentials_block": block_name + "-wrong"})).get_bytes("x")
    with pytest.raises(AccessDenied, match=f"no AwsCredentials block named '{block_name}-missing'"):
        ObjectStore(no_keys.model_copy(update={"credentials_block": block_name + "-missing"})).get_bytes("x")
