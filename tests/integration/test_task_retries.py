"""Task retries, counted through the Prefect API: a deterministic failure (a rejected scoring batch) runs once,
a transient one (the S3 endpoint unreachable) is retried. The batch-inference flow against the real test S3 and
Prefect servers; attempts are the task runs' `run_count` as the server recorded them."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import TaskRun

import tasks.batch_inference as batch_tasks
from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.publication import Publication, read_manifest
from conveyor.demo.synthetic import generate_day
from conveyor.services.scoring import ScoringBatchRejected, predictions_prefix
from flows.batch_inference import batch_inference
from tests.integration.scoring_data import DAYS, register

pytestmark = pytest.mark.integration


def _publish(store: ObjectStore, settings: Settings, root: str, day: dt.date, bad_share: float = 0.0) -> None:
    frame = generate_day(day, settings.dataset, settings.generator, snapshot=True, n_entities=1000)
    n_bad = int(len(frame) * bad_share)
    if n_bad:  # out-of-range ages: the batch is rejected
        frame["age"] = frame["age"].astype("float64")
        frame.loc[: n_bad - 1, "age"] = 999.0
    with Publication(store, f"{root}/dt={day.isoformat()}", "snap") as pub:
        pub.write_parquet("part-0.parquet", frame)
        pub.commit()


def _final_task_runs(flow_run_id: uuid.UUID, expected: int, timeout: float = 60) -> list[TaskRun]:
    """The flow run's task runs once the server has recorded each in a final state (task-run states reach the
    server as events, a moment after the run returns)."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            if len(runs) >= expected and all(r.state is not None and r.state.is_final() for r in runs):
                return runs
            assert time.monotonic() < deadline, [(r.name, r.state_name) for r in runs]
            time.sleep(0.5)


def test_a_rejected_batch_runs_once_and_a_transient_failure_is_retried(
    s3_server: Settings, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"churn_{uuid.uuid4().hex[:8]}"
    register(s3_server, name, seed=0, promote=True)
    store = ObjectStore(s3_server.storage)
    root = f"features-{uuid.uuid4().hex[:8]}/churn"
    flaky_day, bad_day = DAYS
    _publish(store, s3_server, root, flaky_day)
    _publish(store, s3_server, root, bad_day, bad_share=0.2)

    # The scoring function under the task: the flaky day's first attempt finds the S3 endpoint unreachable.
    attempts: dict[dt.date, int] = {flaky_day: 0, bad_day: 0}
    score = batch_tasks.score_partition

    def counted(*args: Any, **kwargs: Any) -> Any:
        day = args[5]
        attempts[day] += 1
        if day == flaky_day and attempts[day] == 1:
            raise EndpointConnectionError(endpoint_url=str(s3_server.storage.endpoint_url))
        return score(*args, **kwargs)

    monkeypatch.setattr(batch_tasks, "score_partition", counted)
    monkeypatch.setattr(batch_tasks.score_partition_task, "retry_delay_seconds", 0)  # the delay is not under test

    state = batch_inference(
        scoring_date=flaky_day, end_date=bad_day, model_name=name, features_prefix=root, return_state=True
    )

    assert state.is_failed()
    with pytest.raises(ScoringBatchRejected, match=f"dt={bad_day} rejected"):
        state.result()
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    runs = {r.name: r for r in _final_task_runs(flow_run_id, expected=4) if r.name.startswith("score-")}
    flaky, bad = runs[f"score-{flaky_day}"], runs[f"score-{bad_day}"]
    assert bad.state_name == "Failed" and bad.run_count == 1, (bad.state_name, bad.run_count)
    assert flaky.state_name == "Completed" and flaky.run_count == 2, (flaky.state_name, flaky.run_count)
    assert attempts == {flaky_day: 2, bad_day: 1}
    assert read_manifest(store, predictions_prefix(s3_server, name, flaky_day)) is not None
    assert read_manifest(store, predictions_prefix(s3_server, name, bad_day)) is None
