"""The one retry condition of the Prefect tasks: deterministic failures are never retried, transient ones are,
and every task that has retries uses it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import uuid
from collections.abc import Iterator

import pytest
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError
from prefect import Task, task
from prefect.client.schemas.objects import TaskRun
from prefect.settings import PREFECT_LOGGING_TO_API_ENABLED, temporary_settings
from prefect.states import Completed, Failed

import tasks
from configs.settings import ConfigError
from conveyor.adapters.feature_store import FeatureStoreError
from conveyor.adapters.object_store import (
    AccessDenied,
    BucketNotFound,
    ChecksumMismatch,
    ObjectNotFound,
    PreconditionFailed,
    StoreUnavailable,
)
from conveyor.adapters.prefect_runtime import retry_transient
from conveyor.adapters.registry_records import PromotionConflict, RegistryError, TamperedArtifact
from conveyor.domain.expectations import ValidationResult
from conveyor.domain.failures import DeterministicFailure, InvalidInput, MissingColumns, MissingFile, MissingInput
from conveyor.services.scoring import ScoringBatchRejected
from conveyor.services.validation import DataValidationError


@task(retries=1)
def _some_task() -> None:
    pass


_FAILED = ValidationResult("raw", False, 10, [], "fast", 0.0, "2026-03-01")
_RUN = TaskRun(flow_run_id=uuid.uuid4(), task_key="some-task", dynamic_key="0", name="some-task-0")


@pytest.fixture(autouse=True)
def _no_api_logging() -> Iterator[None]:
    with temporary_settings({PREFECT_LOGGING_TO_API_ENABLED: False}):  # the "not retried" line: no server here
        yield


def _retried(exc: BaseException) -> bool:
    return retry_transient(_some_task, _RUN, Failed(data=exc))


@pytest.mark.parametrize(
    "exc",
    [
        ScoringBatchRejected("scoring batch churn dt=2026-03-01 rejected: 300 of 3000 rows invalid"),
        DataValidationError("column 'age': 312 values outside [18, 100]", _FAILED, "s3://conveyor/quarantine/x/"),
        RegistryError("churn: no champion yet (train and promote one: the training flow)"),
        RegistryError("churn v2 did not pass its gates (roc_auc too low); promote with force to override"),
        PromotionConflict("champion changed from v1 to v3"),
        TamperedArtifact("churn v2 model: SHA-256 differs"),
        ChecksumMismatch("part-0.parquet: SHA-256 differs from the manifest"),
        AccessDenied("SignatureDoesNotMatch"),
        BucketNotFound("no bucket conveyor"),
        FeatureStoreError("feature service 'churn_v9' is not in the registry"),
        MissingInput("model 'churn' has no champion in the registry"),
        MissingColumns("training set lacks columns ['age']"),
        MissingFile("expectation suite configs/expectations/x.json not found"),
        InvalidInput("model config 'gbm2' is not in training.models"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_deterministic_failures_are_not_retried(exc: DeterministicFailure, caplog: pytest.LogCaptureFixture) -> None:
    assert isinstance(exc, DeterministicFailure)
    assert _retried(exc) is False
    assert f"not retried: {type(exc).__name__} is deterministic" in caplog.text


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionError("connection refused"),
        ConnectionResetError(104, "connection reset by peer"),
        TimeoutError("timed out"),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:8333"),
        ConnectTimeoutError(endpoint_url="http://127.0.0.1:8333"),
        StoreUnavailable("S3 put failed after 5 attempts at http://127.0.0.1:8333"),
        PreconditionFailed("churn: gave up appending to the audit log after 20 lost races"),
        ObjectNotFound("no object at s3://conveyor/predictions/churn/dt=2026-03-01/part-x.parquet"),
        RuntimeError("something nobody classified"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_transient_and_unclassified_failures_are_retried(exc: Exception) -> None:
    assert _retried(exc) is True


def test_a_state_without_an_exception_keeps_the_retry_policy() -> None:
    assert retry_transient(_some_task, _RUN, Completed(data=None)) is True


def test_marked_errors_are_still_caught_as_the_builtins_they_replaced() -> None:
    assert isinstance(MissingInput("x"), LookupError)
    assert isinstance(MissingColumns("x"), KeyError)
    assert isinstance(MissingFile("x"), FileNotFoundError)
    assert isinstance(InvalidInput("x"), ValueError)
    assert isinstance(ScoringBatchRejected("x"), RuntimeError)
    # Raised by load_settings() in a flow, before any task: configs/ sits below the domain layer and cannot
    # import the marker, so it is not one (no task ever sees it).
    assert not isinstance(ConfigError("x"), DeterministicFailure)


def _all_tasks() -> list[Task[..., object]]:
    found = []
    for module in pkgutil.iter_modules(tasks.__path__, prefix="tasks."):
        for _, obj in inspect.getmembers(importlib.import_module(module.name)):
            if isinstance(obj, Task):
                found.append(obj)
    return found


def test_every_task_with_retries_retries_only_transient_failures() -> None:
    with_retries = {t.name: t for t in _all_tasks() if t.retries}
    assert {"score-partition", "resolve-model", "materialize-features", "promote-model"} <= set(with_retries)
    wrong = sorted(name for name, t in with_retries.items() if t.retry_condition_fn is not retry_transient)
    assert wrong == [], f"tasks with retries but without retry_condition_fn=retry_transient: {wrong}"
    # Prefect calls the condition only when it is a plain function (any other callable means "never retry").
    assert inspect.isfunction(retry_transient)
