"""The registry exports each version's ONNX twin at registration, records its parity, and serves only a twin
that passed, checksum verified, on the real S3 server."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.onnx_twin import TwinUnavailable
from conveyor.adapters.registry import ModelMetadata, ModelRegistry
from conveyor.adapters.registry_records import TamperedArtifact
from conveyor.domain.failures import DeterministicFailure
from tests.integration.scoring_data import fit_config

pytestmark = pytest.mark.integration
MODEL = "churn"


@pytest.fixture(scope="module")
def fitted(s3_server: Settings) -> tuple[Any, pd.DataFrame]:
    return fit_config(s3_server, "quick")


def _metadata(settings: Settings) -> ModelMetadata:
    return ModelMetadata(
        metrics={"test": {"roc_auc": 0.8}},
        gates={"passed": True, "reasons": []},
        training_window={"start": "2026-01-01", "end": "2026-01-10"},
        feature_service="churn_v1",
        feature_names=settings.dataset.feature_names,
        data_fingerprint="abc",
        params={},
    )


def _register(registry: ModelRegistry, fitted: tuple[Any, pd.DataFrame], twin: bool = True) -> Any:
    model, rows = fitted
    reference = rows.head(100).assign(score=model.predict_proba(rows.head(100))[:, 1])
    return registry.register(
        MODEL, model, _metadata(registry.settings), reference, twin_rows=rows.tail(500) if twin else None
    )


def test_registered_version_carries_a_parity_checked_twin(
    store: ObjectStore, s3_server: Settings, fitted: tuple[Any, pd.DataFrame]
) -> None:
    registry = ModelRegistry(store, s3_server)
    version = _register(registry, fitted)
    twin = version.twin
    assert twin["status"] == "passed" and twin["rows_checked"] == 500
    assert 0 <= twin["max_abs_diff"] <= s3_server.twin.parity_tolerance
    assert twin["key"].endswith("/versions/000001/model.onnx") and store.exists(twin["key"])
    assert registry.get_version(MODEL, version.version).twin == twin  # recorded in metadata.json
    model, rows = fitted
    proba = registry.load_twin(version).predict_proba(rows)
    assert np.abs(proba[:, 1] - model.predict_proba(rows)[:, 1]).max() <= s3_server.twin.parity_tolerance


def test_failed_parity_is_recorded_and_the_twin_refused(
    store: ObjectStore, s3_server: Settings, fitted: tuple[Any, pd.DataFrame]
) -> None:
    strict = s3_server.model_copy(update={"twin": s3_server.twin.model_copy(update={"parity_tolerance": 0.0})})
    registry = ModelRegistry(store, strict)
    version = _register(registry, fitted)
    assert version.twin["status"] == "failed" and version.twin["key"] is None
    assert version.twin["max_abs_diff"] > 0 and "ABOVE tolerance 0" in version.twin["reason"]
    assert not store.exists(f"{strict.storage.prefixes.models}/{MODEL}/versions/000001/model.onnx")
    with pytest.raises(TwinUnavailable, match=r"churn v1: no usable ONNX twin \(status failed: max \|P") as caught:
        registry.load_twin(registry.get_version(MODEL, version.version))
    assert isinstance(caught.value, DeterministicFailure)
    registry.load_version(version)  # the Pipeline itself is still registered and loadable


def test_version_without_twin_rows_has_none_and_a_swapped_twin_is_refused(
    store: ObjectStore, s3_server: Settings, fitted: tuple[Any, pd.DataFrame]
) -> None:
    registry = ModelRegistry(store, s3_server)
    plain = _register(registry, fitted, twin=False)
    assert plain.twin["status"] == "not_exported"
    with pytest.raises(TwinUnavailable, match="status not_exported: no parity rows given"):
        registry.load_twin(plain)
    version = _register(registry, fitted)
    other = _register(registry, fitted)
    store.put_bytes(version.twin["key"], store.get_bytes(other.twin["key"]) + b"\x00")
    with pytest.raises(TamperedArtifact, match=r"churn v2 ONNX twin: SHA-256 of s3://.*model.onnx"):
        registry.load_twin(version)


def test_prune_deletes_the_twin_with_the_other_artifacts(
    store: ObjectStore, s3_server: Settings, fitted: tuple[Any, pd.DataFrame]
) -> None:
    registry = ModelRegistry(store, s3_server)
    model, rows = fitted
    refused = ModelMetadata(**{**_metadata(s3_server).__dict__, "gates": {"passed": False, "reasons": ["test"]}})
    reference = rows.head(100).assign(score=model.predict_proba(rows.head(100))[:, 1])
    version = registry.register(MODEL, model, refused, reference, twin_rows=rows.tail(200))
    assert store.exists(version.twin["key"])
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    [(pruned, freed)] = registry.prune(MODEL, dt.timedelta(hours=1), actor="test", reason="test", now=later)
    assert pruned.version == version.version and freed > 0
    assert not store.exists(version.twin["key"]) and not store.exists(version.artifact_key)
