"""Chunked scoring against the real test S3 server: correctness, atomic replace, crash safety, quarantine,
policies for unknown entities / missing features, shadow isolation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.publication import (
    MANIFEST_NAME,
    Publication,
    read_manifest,
    read_published_bytes,
    read_published_parquet,
)
from conveyor.services.feature_sources import FrameSource, PublishedParquetSource
from conveyor.services.scoring import (
    ScoringBatchRejected,
    ScoringModel,
    as_of_time,
    predictions_prefix,
    quarantine_prefix,
    score_partition,
    shadow_prefix,
)
from tests.integration.scoring_data import DAY, population, train_model, with_scoring

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def champion(s3_server: Settings) -> ScoringModel:
    return ScoringModel(train_model(s3_server), "3", "churn_v1")


def publish_input(store: ObjectStore, frame: pd.DataFrame, prefix: str = "features/churn") -> str:
    with Publication(store, f"{prefix}/dt={DAY.isoformat()}", "input") as pub:
        half = len(frame) // 2
        pub.write_parquet("part-0.parquet", frame.iloc[:half])
        pub.write_parquet("part-1.parquet", frame.iloc[half:])
        pub.commit()
    return f"{prefix}/dt={DAY.isoformat()}"


def test_scored_partition_matches_predict_proba(
    store: ObjectStore, s3_server: Settings, champion: ScoringModel
) -> None:
    settings = with_scoring(s3_server, chunk_rows=1000, threshold=0.4)
    frame = population(settings)
    source = PublishedParquetSource(store, publish_input(store, frame))
    result = score_partition(store, settings, source, champion, "churn", DAY, "run-a")

    published = read_published_parquet(store, predictions_prefix(settings, "churn", DAY))
    expected = champion.model.predict_proba(frame[settings.dataset.feature_names])[:, 1]
    assert result.rows_in == result.rows_scored == len(published) == len(frame)
    assert published.columns.tolist() == [
        "customer_id",
        "score",
        "decision",
        "model_version",
        "feature_service",
        "run_id",
        "scored_at",
    ]
    np.testing.assert_array_equal(published["customer_id"].to_numpy(), frame["customer_id"].to_numpy())
    np.testing.assert_allclose(published["score"].to_numpy(), expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(published["decision"].to_numpy(), expected >= 0.4)
    assert set(published["model_version"]) == {"3"} and set(published["feature_service"]) == {"churn_v1"}
    assert set(published["run_id"]) == {"run-a"} and published["run_id"].dtype == object  # text, not categorical
    assert set(published["scored_at"]) == {pd.Timestamp(as_of_time(DAY))}
    manifest = read_manifest(store, predictions_prefix(settings, "churn", DAY))
    assert manifest is not None and manifest.row_count == len(frame)
    assert manifest.metadata["model_version"] == "3"
    assert manifest.metadata["input_fingerprint"] == result.input_fingerprint == source.fingerprint()


def test_rerun_replaces_atomically_without_duplicates_and_is_deterministic(
    store: ObjectStore, s3_server: Settings, champion: ScoringModel
) -> None:
    settings = with_scoring(s3_server, chunk_rows=1000)
    frame = population(settings, 3000)
    prefix = predictions_prefix(settings, "churn", DAY)
    first = score_partition(store, settings, FrameSource(frame), champion, "churn", DAY, "run-1")
    before = read_published_parquet(store, prefix)
    second = score_partition(store, settings, FrameSource(frame), champion, "churn", DAY, "run-2")
    after = read_published_parquet(store, prefix)

    assert len(after) == len(frame)  # replaced, not appended
    assert after["customer_id"].is_unique
    assert store.list_keys(prefix + "/") == [f"{prefix}/{MANIFEST_NAME}", f"{prefix}/run-run-2-part-00000.parquet"]
    assert set(after["run_id"]) == {"run-2"}
    # Identical inputs -> identical output; only the run_id audit column differs.
    pd.testing.assert_frame_equal(before.drop(columns="run_id"), after.drop(columns="run_id"))
    assert first.input_fingerprint == second.input_fingerprint
    assert store.list_keys(settings.storage.prefixes.staging + "/") == []


KILL_SCRIPT = textwrap.dedent("""
    import datetime as dt, sys, time, pickle
    import pandas as pd
    from configs.settings import load_settings
    from conveyor.adapters.object_store import ObjectStore
    from conveyor.services.feature_sources import FrameSource
    from conveyor.services.scoring import ScoringModel, score_partition

    settings = load_settings()
    settings = settings.model_copy(update={
        "storage": settings.storage.model_copy(update={"bucket": sys.argv[1]}),
        "scoring": settings.scoring.model_copy(update={"chunk_rows": 1000, "upload_part_mb": 5})})
    frame = pd.read_parquet(sys.argv[2])
    with open(sys.argv[3], "rb") as fh:
        model = pickle.load(fh)

    class Slow(FrameSource):
        def chunks(self, chunk_rows):
            for i, chunk in enumerate(super().chunks(chunk_rows)):
                if i == 3 and sys.argv[4] == "stream":
                    print("WRITING", flush=True)
                    time.sleep(60)  # killed here, mid-stream: 3 chunks written, nothing committed
                yield chunk

    if sys.argv[4] == "commit":  # killed after the part was copied into the partition, before the manifest
        copy = ObjectStore.copy
        def copy_then_hang(self, source, dest):
            copy(self, source, dest)
            print("WRITING", flush=True)
            time.sleep(60)
        ObjectStore.copy = copy_then_hang

    score_partition(ObjectStore(settings.storage), settings, Slow(frame), ScoringModel(model, "3", "churn_v1"),
                    "churn", dt.date(2026, 3, 1), "doomed")
""")


@pytest.mark.parametrize("moment", ["stream", "commit"])
def test_run_killed_mid_write_leaves_nothing_visible_and_rerun_completes(
    store: ObjectStore, s3_server: Settings, champion: ScoringModel, tmp_path: Path, moment: str
) -> None:
    import pickle

    frame = population(s3_server, 8000)
    data, model_file = tmp_path / "input.parquet", tmp_path / "model.pkl"
    frame.to_parquet(data)
    model_file.write_bytes(pickle.dumps(champion.model))
    store.ensure_bucket()
    child = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, store.bucket, str(data), str(model_file), moment],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().decode()
        assert "WRITING" in line, child.stderr.read().decode() if child.stderr else line
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    prefix = predictions_prefix(s3_server, "churn", DAY)
    assert read_manifest(store, prefix) is None  # readers trust manifests only: nothing is published
    with pytest.raises(LookupError):
        PublishedParquetSource(store, prefix)
    orphans = store.list_keys(prefix + "/")
    if moment == "stream":
        assert orphans == []  # parts stream to staging: nothing under the partition at all
    else:
        assert orphans == [f"{prefix}/run-doomed-part-00000.parquet"]  # copied in, listed by no manifest

    settings = with_scoring(s3_server, chunk_rows=1000)
    result = score_partition(store, settings, FrameSource(frame), champion, "churn", DAY, "rerun")
    assert result.rows_scored == len(read_published_parquet(store, prefix)) == len(frame)
    assert store.list_keys(prefix + "/") == [f"{prefix}/{MANIFEST_NAME}", f"{prefix}/run-rerun-part-00000.parquet"]


def test_streamed_part_uses_multipart_and_checksums_while_writing(store: ObjectStore) -> None:
    payload = np.random.default_rng(0).bytes(12 * 2**20)
    with Publication(store, "blobs/x", "mp") as pub:
        part = pub.open_part("big.bin", part_size=5 * 2**20)
        for start in range(0, len(payload), 2**20):
            part.write(payload[start : start + 2**20])
        part.close()
        manifest = pub.commit()
    assert part._upload_id is not None and len(part._parts) == 3  # 5 + 5 + 2 MiB
    ((entry, data),) = list(read_published_bytes(store, "blobs/x"))
    assert data == payload and entry.size_bytes == len(payload) == manifest.files[0].size_bytes


def _bad_rows(frame: pd.DataFrame, share: float) -> pd.DataFrame:
    bad = frame.copy()
    n = int(len(bad) * share)
    bad["age"] = bad["age"].astype("float64")
    bad.loc[: n - 1, "age"] = 999.0
    return bad


@pytest.mark.parametrize("kind", ["frame", "published parquet"])
def test_bad_batch_is_quarantined_and_nothing_is_published(
    store: ObjectStore, s3_server: Settings, champion: ScoringModel, kind: str
) -> None:
    settings = with_scoring(s3_server, chunk_rows=1000, max_quarantined_share=0.05)
    prefix = predictions_prefix(settings, "churn", DAY)
    score_partition(store, settings, FrameSource(population(settings, 2000)), champion, "churn", DAY, "good")
    good = read_manifest(store, prefix)

    bad = _bad_rows(population(settings, 3000), 0.10)  # 300 out-of-range ages in chunk 1
    source = FrameSource(bad) if kind == "frame" else PublishedParquetSource(store, publish_input(store, bad, "in"))
    with pytest.raises(ScoringBatchRejected) as failure:
        score_partition(store, settings, source, champion, "churn", DAY, "bad")
    message = str(failure.value)
    assert "300 of 3000 rows" in message and "max_quarantined_share=0.05" in message
    q = quarantine_prefix(settings, "churn", DAY, "bad")
    assert store.uri(q) in message
    report = store.get_json(f"{q}/report.json")
    assert report["rejected"] and report["counts"]["invalid"] == 300
    rows = store.get_parquet(f"{q}/rows.parquet")
    assert len(rows) == 300 and rows["reason"].str.startswith("age: breaks 'between 18.0 and 100.0'").all()
    # The earlier good partition is untouched; nothing staged is left behind.
    assert read_manifest(store, prefix) == good
    assert store.list_keys(settings.storage.prefixes.staging + "/") == []

    # A batch missing a feature column is rejected before anything is scored.
    with pytest.raises(ScoringBatchRejected, match=r"lacks column\(s\) \['region'\]"):
        score_partition(
            store,
            settings,
            FrameSource(population(settings, 100).drop(columns="region")),
            champion,
            "churn",
            DAY,
            "nocol",
        )
    assert store.exists(f"{quarantine_prefix(settings, 'churn', DAY, 'nocol')}/report.json")
    assert read_manifest(store, prefix) == good


def _with_gaps(frame: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    gappy = frame.copy()
    for name in features:
        gappy[name] = gappy[name].astype("float64" if gappy[name].dtype != object else object)
    gappy.loc[0:9, features] = None  # 10 unknown entities: no feature values at all
    gappy.loc[10:29, ["tenure_months", "region"]] = None  # 20 rows with some features missing
    return gappy


@pytest.mark.parametrize(
    ("unknown", "missing", "scored", "quarantined", "defaulted"),
    [
        ("quarantine", "default", 490, 10, 20),
        ("default", "quarantine", 480, 20, 10),
        ("default", "default", 500, 0, 30),
    ],
)
def test_unknown_entities_and_missing_features_follow_policy(
    store: ObjectStore,
    s3_server: Settings,
    champion: ScoringModel,
    unknown: str,
    missing: str,
    scored: int,
    quarantined: int,
    defaulted: int,
) -> None:
    settings = with_scoring(
        s3_server,
        chunk_rows=1000,
        unknown_entities=unknown,
        missing_features=missing,
        max_quarantined_share=0.5,
        feature_defaults={"tenure_months": 12},
    )
    frame = _with_gaps(population(settings, 500), settings.dataset.feature_names)
    result = score_partition(store, settings, FrameSource(frame), champion, "churn", DAY, f"p-{unknown}-{missing}")
    assert (result.unknown_entities, result.missing_features) == (10, 20)
    assert (result.rows_scored, result.rows_quarantined, result.rows_defaulted) == (scored, quarantined, defaulted)
    assert result.rows_in == result.rows_scored + result.rows_quarantined == 500
    published = read_published_parquet(store, predictions_prefix(settings, "churn", DAY))
    assert len(published) == scored and published["score"].notna().all()
    manifest = read_manifest(store, predictions_prefix(settings, "churn", DAY))
    assert manifest is not None and manifest.metadata["counts"]["quarantined"] == quarantined
    if quarantined:
        rows = store.get_parquet(result.quarantine_uri.split(store.bucket + "/", 1)[1])  # type: ignore[union-attr]
        assert len(rows) == quarantined
    if missing == "default":  # defaulted tenure is the configured 12, not NaN
        expected = frame.iloc[10:30].assign(tenure_months=12.0)[settings.dataset.feature_names]
        row_scores = published.set_index("customer_id").loc[frame["customer_id"].iloc[10:30], "score"]
        np.testing.assert_allclose(row_scores.to_numpy(), champion.model.predict_proba(expected)[:, 1])


def test_shadow_scores_never_touch_the_published_prefix(
    store: ObjectStore, s3_server: Settings, champion: ScoringModel
) -> None:
    settings = with_scoring(s3_server, chunk_rows=1000)
    challenger = ScoringModel(train_model(settings, seed=1, max_iter=10), "4", "churn_v1")
    frame = population(settings, 2500)
    result = score_partition(
        store, settings, FrameSource(frame), champion, "churn", DAY, "shadow", challenger=challenger
    )
    published_prefix = predictions_prefix(settings, "churn", DAY)
    published = read_published_parquet(store, published_prefix)
    assert set(published["model_version"]) == {"3"}
    assert all(k.startswith(published_prefix + "/") for k in store.list_keys(settings.storage.prefixes.predictions))
    assert all("version=4" not in k for k in store.list_keys(settings.storage.prefixes.predictions))
    shadow = read_published_parquet(store, shadow_prefix(settings, "churn", "4", DAY))
    assert set(shadow["model_version"]) == {"4"} and len(shadow) == len(frame)
    assert not shadow_prefix(settings, "churn", "4", DAY).startswith(settings.storage.prefixes.predictions + "/")

    a, b = published["score"].to_numpy(), shadow["score"].to_numpy()
    assert result.shadow is not None
    assert result.shadow["agreement"] == pytest.approx(np.mean((a >= 0.5) == (b >= 0.5)))
    assert result.shadow["mean_score_shift"] == pytest.approx(np.mean(b - a))
    assert result.shadow["rows"] == len(frame)


def test_batch_inference_is_scheduled_daily_in_prefect_yaml() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployment = next(d for d in config["deployments"] if d["name"] == "batch-inference")
    assert deployment["entrypoint"] == "flows/batch_inference.py:batch_inference"
    crons = [s["cron"] for s in deployment["schedules"] if "cron" in s]
    assert len(crons) == 1 and len(crons[0].split()) == 5 and crons[0].split()[2:] == ["*", "*", "*"]
