"""A real sync flow run on the Prefect server with conveyor/adapters/prefect_fixes.py installed: it still sends its
heartbeat (zombie-run detection depends on it) and completes, and the engine no longer waits out the heartbeat
thread."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from prefect import flow
from prefect.flow_engine import FlowRunEngine

from conveyor.adapters import prefect_fixes  # noqa: F401  (installs the fix on import)

pytestmark = pytest.mark.integration

heartbeat_sent = threading.Event()


@flow(name="heartbeat-probe")
def heartbeat_probe() -> str:
    # End only once the heartbeat thread has sent its first heartbeat and gone to sleep (on a first run in a
    # process, sending it starts Prefect's events worker, which can take longer than this whole run).
    if not heartbeat_sent.wait(timeout=30):
        raise TimeoutError("no heartbeat within 30 s")
    return "done"


def test_a_sync_flow_run_sends_its_heartbeat_and_does_not_wait_for_the_thread(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[str, threading.Thread]] = []
    stock_emit = FlowRunEngine._emit_flow_run_heartbeat

    def recording_emit(self: FlowRunEngine[Any, Any], *args: Any) -> None:
        stock_emit(self, *args)
        sent.append((str(self.flow_run.id) if self.flow_run else "?", threading.current_thread()))
        heartbeat_sent.set()

    monkeypatch.setattr(FlowRunEngine, "_emit_flow_run_heartbeat", recording_emit)
    state = heartbeat_probe(return_state=True)

    assert state.is_completed() and state.result() == "done"
    ((run_id, heartbeat_thread),) = sent  # one heartbeat, at the start of the run (the next is due 180 s later)
    assert run_id == str(state.state_details.flow_run_id)
    # The stock sync engine joins this thread, which sleeps in 1 s steps, before returning. With the fix the run
    # has returned while the thread finishes its step; it then stops without sending another heartbeat.
    assert heartbeat_thread.is_alive()
    heartbeat_thread.join(timeout=2)
    assert not heartbeat_thread.is_alive() and len(sent) == 1
