"""A rerun of the same training window must not register a copy of the champion."""

from __future__ import annotations

from typing import Any

from conveyor.adapters.registry import ModelVersion
from conveyor.services.training import unchanged_champion


def _version(**changes: Any) -> ModelVersion:
    fields: dict[str, Any] = dict(
        model_name="churn",
        version=3,
        created_at="2026-05-01T00:00:00+00:00",
        artifact_key="k",
        sha256="s",
        reference_key="r",
        reference_sha256="rs",
        files={},
        metrics={},
        gates={"passed": True},
        training_window={},
        feature_service="churn_v1",
        feature_names=["age"],
        data_fingerprint="f" * 64,
        params={},
        model_config_name="default",
        code_version="abc123",
        library_versions={},
        registered_by="t",
    )
    fields.update(changes)
    return ModelVersion(**fields)


def test_same_rows_config_and_code_is_unchanged() -> None:
    assert unchanged_champion(_version(), "f" * 64, "default", "abc123")


def test_any_difference_means_train_again() -> None:
    assert not unchanged_champion(None, "f" * 64, "default", "abc123")
    assert not unchanged_champion(_version(), "e" * 64, "default", "abc123")  # new data
    assert not unchanged_champion(_version(), "f" * 64, "quick", "abc123")  # other model config
    assert not unchanged_champion(_version(), "f" * 64, "default", "def456")  # new code
    assert not unchanged_champion(_version(code_version=None), "f" * 64, "default", None)  # unknown code
