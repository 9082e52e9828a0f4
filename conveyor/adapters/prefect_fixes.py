"""A fix for Prefect's sync flow engine, installed on import: every module under flows/ that defines a flow
imports this one (deployment entrypoints load those files on their own).

Every sync flow run starts a heartbeat thread (`prefect.flow_engine._send_heartbeats`; zombie-run detection, issue
8, depends on it). The thread sleeps in 1 s steps, and the sync engine joins it after the run's final state is
set, so each run returns 0-1 s (0.5 s on average) later than it could, doing nothing: about half of the
batch-inference flow's overhead over a plain script in bench/batch_inference.py. Prefect's async engine already
passes `join_on_exit=False`: the daemon thread sees the stop event at its next step and returns without emitting
again.
This makes the sync engine do the same. Heartbeats, their frequency and the final state are unchanged.

Checked against Prefect 3.8.8 and 3.9.1 (same code). If a later release renames the function or drops the
parameter, nothing is patched and a warning says so: runs are then just slower.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from prefect import flow_engine

_MARK = "_conveyor_heartbeat_not_joined"


def heartbeats_not_joined(stock: Callable[..., AbstractContextManager[None]]) -> Callable[..., Any]:
    """`stock` (Prefect's `_send_heartbeats`) with the join on exit turned off, as the async engine calls it."""

    @functools.wraps(stock)
    def send_heartbeats(engine: Any, join_on_exit: bool = True) -> AbstractContextManager[None]:
        return stock(engine, join_on_exit=False)

    setattr(send_heartbeats, _MARK, True)
    return send_heartbeats


def install() -> bool:
    """Patch `prefect.flow_engine._send_heartbeats` once per process; False (with a warning) when it does not fit."""
    stock = getattr(flow_engine, "_send_heartbeats", None)
    if stock is not None and getattr(stock, _MARK, False):
        return True
    if stock is None or "join_on_exit" not in inspect.signature(stock).parameters:
        warnings.warn(
            "prefect.flow_engine._send_heartbeats(engine, join_on_exit) not found: conveyor/adapters/prefect_fixes.py "
            "does not apply to this Prefect version (each sync flow run may end up to 1 s late)",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    flow_engine._send_heartbeats = heartbeats_not_joined(stock)  # type: ignore[attr-defined]
    return True


install()
