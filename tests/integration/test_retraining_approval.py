"""Approval mode (retraining.require_approval: true) on the Prefect test server, the real S3 server and Feast:
the retraining registers a challenger that passes the gates, the flow run pauses (state Paused) with the champion
unchanged, and a person's answer (the UI's resume form, here `resume_flow_run(..., run_input=...)`) decides.

The champion is deliberately bad (trained on shuffled labels, force-promoted) so the challenger passes the gates
and the approval is what matters. The flow runs in a thread (a blocking pause in an in-process run); the test
thread polls the run's state through the API and resumes it, exactly as the UI does.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from configs.settings import Settings, load_settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.registry import ModelRegistry
from conveyor.services.retraining import RetrainingOutcome, read_ledger
from flows.ingest import ingest
from flows.retraining import retraining
from flows.training import training
from tests.integration.test_training_flow import publish_shuffled_labels

pytestmark = pytest.mark.integration
START = dt.date(2026, 1, 1)
END = dt.date(2026, 1, 30)  # 30 clean days: the retraining window
BAD_START = dt.date(2026, 3, 1)  # 10 days with shuffled labels: the bad champion's window
BAD_END = dt.date(2026, 3, 10)
MODEL = "churn-approval"
PAUSE_WAIT_SECONDS = 120


@pytest.fixture(scope="module")
def env(s3_server: Settings, prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Own bucket and Feast state, approval mode on, no cooldown (two retraining runs back to back), a bad
    champion in the registry."""
    patch = pytest.MonkeyPatch()
    for key, value in {
        "CONVEYOR_STORAGE__BUCKET": f"approve-{uuid.uuid4().hex[:10]}",
        "CONVEYOR_FEATURES__STATE_DIR": str(tmp_path_factory.mktemp("feast")),
        "CONVEYOR_GENERATOR__N_ENTITIES": "2000",
        "CONVEYOR_RETRAINING__REQUIRE_APPROVAL": "true",
        "CONVEYOR_RETRAINING__COOLDOWN_HOURS": "0",
        "CONVEYOR_RETRAINING__TRAINING_WINDOW_DAYS": str((END - START).days + 1),
        "CONVEYOR_RETRAINING__APPROVAL_TIMEOUT_SECONDS": "600",
        "CONVEYOR_RETRAINING__APPROVAL_POLL_SECONDS": "1",  # default 10: the resumed run notices within 1 s
        "CONVEYOR_TRAINING__MODEL_CONFIG_NAME": "quick",
    }.items():
        patch.setenv(key, value)
    settings = load_settings()
    assert settings.retraining.require_approval
    ingest(start_date=START, days=(END - START).days + 1)
    publish_shuffled_labels(settings, BAD_START, BAD_END)
    store = ObjectStore(settings.storage)
    bad = training(start_date=BAD_START, end_date=BAD_END, model_name=MODEL, promote=False)
    assert bad.version is not None and not bad.gates_passed, bad.reasons
    ModelRegistry(store, settings).promote(MODEL, bad.version, actor="test", reason="bad champion", force=True)
    yield settings
    patch.undo()


def _run_in_thread(tag: str) -> tuple[threading.Thread, dict[str, Any]]:
    from prefect import tags

    box: dict[str, Any] = {}

    def target() -> None:
        try:
            with tags(tag):
                box["state"] = retraining(
                    model_name=MODEL,
                    window_end=END,
                    drifted_features=["tenure_months"],
                    trigger_event_id=f"test-{tag}",
                    return_state=True,
                )
        except BaseException as exc:  # reported by the test thread
            box["error"] = exc

    thread = threading.Thread(target=target, name=tag, daemon=True)
    thread.start()
    return thread, box


def _wait_paused(tag: str, thread: threading.Thread, box: dict[str, Any]) -> Any:
    """The retraining run (found by its tag) once it is Paused; fails fast if the flow ended instead."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterTags

    deadline = time.monotonic() + PAUSE_WAIT_SECONDS
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            assert thread.is_alive(), f"retraining ended without pausing: {box}"
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["retraining"])),
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])),
            )
            if runs and runs[0].state is not None and runs[0].state.is_paused():
                return runs[0]
            time.sleep(1)
    raise AssertionError(f"retraining run {tag} did not pause within {PAUSE_WAIT_SECONDS}s")


def _paused_then_resume(
    env: Settings, answer: dict[str, Any], while_paused: Callable[[], None] | None = None
) -> tuple[RetrainingOutcome, Any, int | None]:
    """Start a retraining, check the pause, call `while_paused`, resume with `answer`; return its outcome, its
    paused run and the champion seen while it was paused (before `while_paused`)."""
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    registry = ModelRegistry(ObjectStore(env.storage), env)
    tag = f"approval-{uuid.uuid4().hex[:8]}"
    thread, box = _run_in_thread(tag)
    paused = _wait_paused(tag, thread, box)
    assert paused.state.type.value == "PAUSED", paused.state
    keyset = paused.state.state_details.run_input_keyset
    with get_client(sync_client=True) as client:  # the schema the UI renders its resume form from
        schema = json.loads(client.read_flow_run_input(paused.id, keyset["schema"]))
        description = json.loads(client.read_flow_run_input(paused.id, keyset["description"]))
    assert {"approve", "approver", "reason"} <= set(schema["properties"]), schema
    # The form links the challenger's model card: an artifact of this run in the UI, and the HTML on S3.
    assert "model card in this UI: [" in description and "/artifacts/artifact/" in description, description
    assert "/card.html`" in description, description
    champion_while_paused = registry.champion_version(MODEL)
    kinds = [e.kind for e in read_ledger(ObjectStore(env.storage), env, MODEL) if e.run_id == str(paused.id)]
    assert kinds[-1] == "awaiting_approval", kinds
    if while_paused is not None:
        while_paused()
    resume_flow_run(paused.id, run_input=answer)
    thread.join(timeout=120)
    assert not thread.is_alive(), "the resumed run did not finish"
    assert "error" not in box, box
    state = box["state"]
    assert state.is_completed(), state
    # Every ledger entry of the run names the event that triggered it, the approval steps' too.
    mine = [e for e in read_ledger(ObjectStore(env.storage), env, MODEL) if e.run_id == str(paused.id)]
    assert {e.trigger_event_id for e in mine} == {f"test-{tag}"}, [(e.kind, e.trigger_event_id) for e in mine]
    return state.result(), paused, champion_while_paused


def test_approval_mode_reject_then_approve(env: Settings) -> None:
    store = ObjectStore(env.storage)
    registry = ModelRegistry(store, env)
    bad_champion = registry.champion_version(MODEL)
    assert bad_champion is not None
    log_before = len(registry.audit_log(MODEL))

    # A person refuses: the challenger stays registered (gates passed), the bad champion stays.
    refused, paused, while_paused = _paused_then_resume(
        env, {"approve": False, "approver": "bob", "reason": "wait for the quarterly review"}
    )
    assert while_paused == bad_champion
    assert refused.status == "rejected_by_approver" and refused.version is not None, refused
    assert refused.reasons == ["rejected by bob: wait for the quarterly review"]
    assert registry.get_version(MODEL, int(refused.version)).gates_passed
    assert registry.champion_version(MODEL) == bad_champion
    assert [(e.action, e.version) for e in registry.audit_log(MODEL)[log_before:]] == [
        ("register", int(refused.version))
    ]  # registered for the record, nothing promoted
    mine = [e for e in read_ledger(store, env, MODEL) if e.run_id == str(paused.id)]
    assert [e.kind for e in mine] == ["started", "awaiting_approval", "rejected", "completed"], mine
    assert mine[2].detail == {"version": refused.version, "approver": "bob", "reason": "wait for the quarterly review"}
    assert mine[3].detail["status"] == "rejected_by_approver"

    # The champion changes while a run waits (a person promotes the refused challenger by hand): the approval
    # arrives for a comparison that no longer holds, so nothing is promoted and the ledger says why.
    def promote_while_paused() -> None:
        registry.promote(MODEL, int(refused.version), actor="carol", reason="hand promotion during the pause")

    stale, paused, _ = _paused_then_resume(
        env, {"approve": True, "approver": "dave", "reason": "looks good"}, while_paused=promote_while_paused
    )
    assert stale.status == "champion_changed" and stale.version not in (None, refused.version), stale
    assert registry.champion_version(MODEL) == int(refused.version)
    assert f"champion is v{refused.version} now, not v{bad_champion}" in stale.reasons[0], stale.reasons
    mine = [e for e in read_ledger(store, env, MODEL) if e.run_id == str(paused.id)]
    assert [e.kind for e in mine] == ["started", "awaiting_approval", "superseded", "completed"], mine
    assert mine[2].detail["compared_with"] == bad_champion and mine[2].detail["approver"] == "dave"
    registry.rollback(MODEL, actor="test", reason="restore the bad champion for the next steps")
    assert registry.champion_version(MODEL) == bad_champion

    # Nobody answers within approval_timeout_seconds: the run fails, the ledger says why, the champion stays.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONVEYOR_RETRAINING__APPROVAL_TIMEOUT_SECONDS", "4")
        tag = f"approval-timeout-{uuid.uuid4().hex[:8]}"
        thread, box = _run_in_thread(tag)
        thread.join(timeout=120)
    assert not thread.is_alive() and "error" not in box, box
    assert box["state"].is_failed() and "never resumed" in str(box["state"].message), box["state"]
    assert registry.champion_version(MODEL) == bad_champion
    run_id = str(box["state"].state_details.flow_run_id)
    mine = [e for e in read_ledger(store, env, MODEL) if e.run_id == run_id]
    assert [e.kind for e in mine] == ["started", "awaiting_approval", "failed"], mine
    assert "approval_timeout_seconds=4" in mine[2].detail["reason"]
    assert {e.trigger_event_id for e in mine} == {f"test-{tag}"}, mine

    # A person approves: the new challenger becomes champion, the audit log names the approver and reason.
    approved, paused, while_paused = _paused_then_resume(
        env, {"approve": True, "approver": "alice", "reason": "drift on tenure confirmed"}
    )
    assert while_paused == bad_champion  # not promoted before the answer
    assert approved.status == "promoted" and approved.version not in (None, refused.version), approved
    assert registry.champion_version(MODEL) == int(approved.version)
    last = registry.audit_log(MODEL)[-1]
    assert (last.action, last.version, last.previous_champion, last.actor, last.reason) == (
        "promote",
        int(approved.version),
        bad_champion,
        "alice",
        "drift on tenure confirmed",
    )
    mine = [e for e in read_ledger(store, env, MODEL) if e.run_id == str(paused.id)]
    assert [e.kind for e in mine] == ["started", "awaiting_approval", "approved", "completed"], mine
    assert mine[3].detail["status"] == "promoted"

    # A retraining on the same window and config: training returns the champion itself; nothing to approve.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONVEYOR_RETRAINING__APPROVAL_TIMEOUT_SECONDS", "4")  # were it to pause, it fails fast
        state = retraining(model_name=MODEL, window_end=END, return_state=True)
    assert state.is_completed(), state
    rerun = state.result()
    assert rerun.status == "kept_champion" and rerun.version == approved.version, rerun
    kinds = [e.kind for e in read_ledger(store, env, MODEL) if e.run_id == str(state.state_details.flow_run_id)]
    assert kinds == ["started", "completed"], kinds
