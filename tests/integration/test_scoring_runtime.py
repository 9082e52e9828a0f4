"""`scoring.runtime`: batch scoring with the version's ONNX twin gives the Pipeline's scores (within the parity
tolerance), records the runtime in the manifest, and refuses a version whose twin failed (no fallback)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.onnx_twin import OnnxTwin, TwinUnavailable
from conveyor.adapters.publication import read_manifest, read_published_parquet
from conveyor.adapters.registry import ModelMetadata, ModelRegistry
from conveyor.services.batch_inference import ModelRef, load_scoring_model
from conveyor.services.feature_sources import FrameSource
from conveyor.services.scoring import predict_scores, predictions_prefix, score_partition
from tests.integration.scoring_data import DAY, fit_config, population, with_scoring

pytestmark = pytest.mark.integration
MODEL = "churn"


@pytest.fixture(scope="module")
def fitted(s3_server: Settings) -> tuple[Any, pd.DataFrame]:
    return fit_config(s3_server, "default")


def _registered(settings: Settings, store: ObjectStore, fitted: tuple[Any, pd.DataFrame]) -> ModelRef:
    model, rows = fitted
    metadata = ModelMetadata(
        metrics={},
        gates={"passed": True},
        training_window={},
        feature_service="churn_v1",
        feature_names=settings.dataset.feature_names,
        data_fingerprint="test",
        params={},
    )
    reference = rows.head(100).assign(score=model.predict_proba(rows.head(100))[:, 1])
    version = ModelRegistry(store, settings).register(MODEL, model, metadata, reference, twin_rows=rows)
    return ModelRef(MODEL, version.version, "churn_v1")


def _with_missing_categories(settings: Settings) -> pd.DataFrame:
    frame = population(settings, n=3000)
    # Text nulls as arrow hands them to pandas: None, not NaN.
    frame["region"] = frame["region"].astype(object)
    frame.loc[frame.index[:300], "region"] = None
    return frame


def test_onnx_runtime_scores_like_the_pipeline_and_is_recorded(
    store: ObjectStore, s3_server: Settings, fitted: tuple[Any, pd.DataFrame]
) -> None:
    ref = _registered(s3_server, store, fitted)
    frame = _with_missing_categories(s3_server)
    scores = {}
    for runtime in ("sklearn", "onnx"):
        settings = with_scoring(s3_server, runtime=runtime, chunk_rows=1000)
        model = load_scoring_model(store, settings, ref)
        assert model.runtime == runtime and isinstance(model.model, OnnxTwin) == (runtime == "onnx")
        score_partition(store, settings, FrameSource(frame), model, MODEL, DAY, f"run-{runtime}")
        prefix = predictions_prefix(settings, MODEL, DAY)
        manifest = read_manifest(store, prefix)
        assert manifest is not None and manifest.metadata["runtime"] == runtime
        scores[runtime] = read_published_parquet(store, prefix)["score"].to_numpy()
    assert len(scores["onnx"]) == len(frame)
    assert np.abs(scores["onnx"] - scores["sklearn"]).max() <= s3_server.twin.parity_tolerance
    # A missing category (None) is imputed as in training, not one-hot encoded as "unknown".
    model = fitted[0]
    as_nan = frame[s3_server.dataset.feature_names].assign(
        region=frame["region"].where(frame["region"].notna(), np.nan)
    )
    np.testing.assert_allclose(scores["sklearn"], model.predict_proba(as_nan)[:, 1], rtol=0, atol=1e-12)
    with_none = frame[s3_server.dataset.feature_names]
    assert not np.allclose(model.predict_proba(with_none)[:300, 1], scores["sklearn"][:300])
    np.testing.assert_array_equal(predict_scores(model, with_none), scores["sklearn"])


def test_onnx_runtime_refuses_a_version_whose_twin_failed(
    store: ObjectStore, s3_server: Settings, fitted: tuple[Any, pd.DataFrame]
) -> None:
    strict = s3_server.model_copy(update={"twin": s3_server.twin.model_copy(update={"parity_tolerance": 0.0})})
    ref = _registered(strict, store, fitted)
    with pytest.raises(
        TwinUnavailable, match=r"churn v1: no usable ONNX twin \(status failed.*scoring.runtime=sklearn"
    ):
        load_scoring_model(store, with_scoring(strict, runtime="onnx"), ref)
    assert load_scoring_model(store, strict, ref).runtime == "sklearn"  # the default runtime still scores it
