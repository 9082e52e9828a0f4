"""The run a piece of library code is in: its id, its logger, its artifacts. Outside a run (scripts, tests)
each falls back to something sensible instead of failing. And the retry condition every task with retries uses."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from prefect.runtime import flow_run

from conveyor.domain.failures import DeterministicFailure

if TYPE_CHECKING:
    from prefect import Task
    from prefect.client.schemas.objects import State, TaskRun


def current_run_id() -> str:
    """The Prefect flow-run id when inside a run, else a fresh id (scripts, tests)."""
    run_id = flow_run.get_id()
    return str(run_id) if run_id else uuid.uuid4().hex


def _in_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return TaskRunContext.get() is not None or FlowRunContext.get() is not None


def run_logger(fallback: logging.Logger) -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The Prefect run logger inside a run (its lines show in the UI), else `fallback`."""
    if not _in_run():
        return fallback
    from prefect import get_run_logger

    return get_run_logger()  # type: ignore[return-value]


def publish_markdown(markdown: str, key: str, description: str) -> None:
    """A markdown artifact on the current run; nothing outside a run."""
    if not _in_run():
        return
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(markdown=markdown, key=key, description=description)


def retry_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect `retry_condition_fn` of every task with retries: retry unless the failure is a
    `DeterministicFailure` (a rejected batch, a validation failure, a gate refusal, a missing champion...), which
    a second attempt would only repeat. Connection errors, timeouts and anything unclassified keep their retries.

    Prefect calls it as `fn(task, task_run, state)` with the Failed state; for a raised exception the state's
    `data` is the exception itself. It must stay a plain function: Prefect treats any other callable as "never"."""
    failure = state.data
    if not isinstance(failure, DeterministicFailure):
        return True
    from prefect.logging.loggers import task_run_logger

    task_run_logger(task_run, task=task).info(
        "not retried: %s is deterministic (the same inputs fail the same way)", type(failure).__name__
    )
    return False
