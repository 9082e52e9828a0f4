"""A served model version: what answers `predict_proba(frame)` (classification) or `predict(frame)` (regression)
for it (the runtime), loaded through the registry (SHA-256 verified before unpickling) and warmed on its own
reference sample before it takes traffic. The version's recorded task decides its outputs (`ModelTask`).

Warming is also the load check: the version must reproduce the outputs recorded with its reference sample at
registration (score; class probabilities; prediction), so an artifact that loads but computes something else is
never served."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from conveyor.adapters.object_store import ObjectStoreError
from conveyor.adapters.onnx_twin import TwinRecord
from conveyor.adapters.registry import ModelRegistry
from conveyor.adapters.registry_records import ModelVersion
from conveyor.domain.failures import DeterministicFailure
from conveyor.domain.task_outputs import numeric_prediction_columns
from conveyor.domain.task_types import ModelTask
from conveyor.services.scoring import predict_outputs

# Anything with scikit-learn's `predict_proba` (classification) or `predict` (regression) over a frame of the
# model's feature columns: the Pipeline or its ONNX twin.
ModelRuntime = Any


class ModelLoadRefused(RuntimeError):
    """A version was not put into service; the message says which and why (the old version keeps serving).
    `permanent`: it would fail the same way again (tampered, unsigned, no twin, wrong scores), so it is not
    retried; otherwise (the store unreachable) the next poll tries again."""

    def __init__(self, message: str, permanent: bool = True) -> None:
        super().__init__(message)
        self.permanent = permanent


# runtime name (`scoring.runtime`) -> how to get it for a registry version: the pickled Pipeline (unpickled only
# after its SHA-256 is verified) or the version's parity-checked ONNX twin in onnxruntime (no silent fallback).
RUNTIMES: dict[str, Callable[[ModelRegistry, ModelVersion], ModelRuntime]] = {
    "sklearn": lambda registry, meta: registry.load_version(meta).model,
    "onnx": lambda registry, meta: registry.load_twin(meta),
}


@dataclass(frozen=True)
class ServedModel:
    """One version in service: its runtime and what requests need to know about it."""

    version: int
    feature_names: tuple[str, ...]
    feature_service: str
    runtime_name: str
    runtime: ModelRuntime
    task: ModelTask = ModelTask("binary", ("0", "1"))  # the version's recorded task

    @property
    def label(self) -> str:
        return f"v{self.version}"

    def outputs(self, features: pd.DataFrame, threshold: float) -> pd.DataFrame:
        """The task's output columns per row: the batch engine's `predict_outputs` over the model's columns."""
        columns = list(self.feature_names)
        # The twin reads its inputs by name; a Pipeline refuses columns other than its own. Selecting them is a
        # take (~0.3 ms on a request's row), so only when the Pipeline needs it.
        in_order = self.runtime_name == "onnx" or list(features.columns) == columns
        model_rows = features if in_order else features[columns]
        return predict_outputs(self.runtime, model_rows, self.task, threshold)


def warmup_tolerance(runtime_name: str, twin_tolerance: float) -> float:
    """How close a runtime must reproduce the reference scores recorded at registration (by the Pipeline): the
    Pipeline itself exactly (up to float noise), the ONNX twin within its own parity tolerance (float32 inside)."""
    return 1e-9 if runtime_name == "sklearn" else twin_tolerance


def load_served_model(
    registry: ModelRegistry,
    meta: ModelVersion,
    runtime_name: str,
    warmup_rows: int,
    default_service: str,
    tolerance: float = 1e-9,
) -> ServedModel:
    """Load `meta` (checksum verified), build its runtime and warm it on its reference sample; raises
    ModelLoadRefused (with the cause) when any step fails or the warm-up outputs differ from the recorded ones
    by more than `tolerance` (a regression twin: `tolerance` x the target scale of its parity record)."""
    if runtime_name not in RUNTIMES:
        raise ModelLoadRefused(f"{meta.label}: unknown runtime {runtime_name!r} (known: {sorted(RUNTIMES)})")
    try:
        runtime = RUNTIMES[runtime_name](registry, meta)
        reference = registry.reference_of(meta).head(warmup_rows)
        task = meta.model_task
        served = ServedModel(
            meta.version,
            tuple(meta.feature_names),
            meta.feature_service or default_service,
            runtime_name,
            runtime,
            task,
        )
        columns = numeric_prediction_columns(task)
        warm = served.outputs(reference, 0.5)[columns].to_numpy(dtype="float64")
        expected = reference[columns].to_numpy(dtype="float64")
    except Exception as exc:  # whatever broke, this version is not served
        permanent = isinstance(exc, DeterministicFailure | ModelLoadRefused) or not isinstance(exc, ObjectStoreError)
        raise ModelLoadRefused(f"{meta.label} not loaded: {type(exc).__name__}: {exc}", permanent) from exc
    if task.kind == "regression" and runtime_name == "onnx":
        tolerance *= TwinRecord.from_json(meta.twin).scale or 1.0
    worst = float(np.max(np.abs(warm - expected))) if len(expected) else 0.0
    if worst > tolerance:
        raise ModelLoadRefused(
            f"{meta.label} not loaded: on {len(expected)} reference rows its {runtime_name} outputs {columns} differ "
            f"from the ones recorded at registration by up to {worst:.3g} (tolerance {tolerance:g})"
        )
    return served
