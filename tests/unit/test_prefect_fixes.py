"""conveyor/adapters/prefect_fixes.py: the sync engine no longer waits for the heartbeat thread's 1 s sleep at
the end of a run; heartbeats are still sent and the thread still stops without sending another one."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from prefect import flow_engine

from conveyor.adapters import prefect_fixes  # installs the fix on import


class FakeEngine:
    """What `_send_heartbeats` uses of a flow run engine; counts the heartbeats it is asked to emit."""

    heartbeat_seconds = 30
    flow_run = None  # no state: the thread's stop event is what ends it
    logger = logging.getLogger("fake-flow-engine")

    def __init__(self) -> None:
        self.heartbeats = 0

    def _build_heartbeat_event_template(self) -> tuple[dict[str, str], list[Any]]:
        return {}, []

    def _emit_flow_run_heartbeat(self, resource: dict[str, str], related: list[Any]) -> None:
        self.heartbeats += 1


def run_briefly(send_heartbeats: Callable[..., Any]) -> tuple[FakeEngine, threading.Thread, float]:
    """A 0.1 s 'flow run' inside `send_heartbeats`: the heartbeat thread has emitted once and is in its first
    1 s sleep when the run ends. Returns the engine, the heartbeat thread and how long the exit took."""
    engine = FakeEngine()
    before = set(threading.enumerate())
    with send_heartbeats(engine):
        time.sleep(0.1)
        (thread,) = set(threading.enumerate()) - before
        exit_started = time.perf_counter()
    return engine, thread, time.perf_counter() - exit_started


def test_importing_the_module_installs_the_fix_once() -> None:
    assert getattr(flow_engine._send_heartbeats, "_conveyor_heartbeat_not_joined", False)
    assert prefect_fixes.install() is True
    assert not getattr(flow_engine._send_heartbeats.__wrapped__, "_conveyor_heartbeat_not_joined", False)


def test_stock_engine_waits_for_the_heartbeat_sleep_and_the_fix_does_not() -> None:
    stock = flow_engine._send_heartbeats.__wrapped__
    engine, thread, exit_seconds = run_briefly(stock)
    assert not thread.is_alive()  # joined: the exit waited out the thread's 1 s sleep
    assert exit_seconds > 0.5, exit_seconds
    assert engine.heartbeats == 1

    engine, thread, exit_seconds = run_briefly(flow_engine._send_heartbeats)
    assert thread.is_alive()  # not joined: the run is over while the daemon thread finishes its sleep
    assert exit_seconds < 0.2, exit_seconds
    thread.join(timeout=2)
    assert not thread.is_alive()  # it saw the stop event at its next step ...
    assert engine.heartbeats == 1  # ... and sent nothing after the run ended


def test_the_fix_is_skipped_with_a_warning_when_prefect_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    def renamed(engine: Any) -> None:  # a future signature without join_on_exit
        raise AssertionError("never called")

    monkeypatch.setattr(flow_engine, "_send_heartbeats", renamed)
    with pytest.warns(RuntimeWarning, match="join_on_exit"):
        assert prefect_fixes.install() is False
    assert flow_engine._send_heartbeats is renamed
