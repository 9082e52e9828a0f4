"""Small helpers every flow uses."""

from __future__ import annotations

import uuid

from prefect.runtime import flow_run


def current_run_id() -> str:
    """The Prefect flow-run id when inside a run, else a fresh id (scripts, tests)."""
    run_id = flow_run.get_id()
    return str(run_id) if run_id else uuid.uuid4().hex
