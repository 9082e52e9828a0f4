"""The run a piece of library code is in: its id, its logger, its artifacts. Outside a run (scripts, tests)
each falls back to something sensible instead of failing."""

from __future__ import annotations

import logging
import uuid

from prefect.runtime import flow_run


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
