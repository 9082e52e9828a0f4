"""Rollout plans in the registry (conveyor/adapters/rollouts.py) on the real S3 server: compare-and-swap, audit-log
events, the challenger batch shadow scoring picks up, and the pure arm assignment's split and stickiness."""

from __future__ import annotations

import pytest

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.registry import ModelRegistry, RegistryError
from conveyor.adapters.rollouts import RolloutConflict, Rollouts
from conveyor.domain.rollouts import RolloutPlan, arm_for, shadowed
from conveyor.services.batch_inference import rollout_challenger
from tests.integration.scoring_data import register

pytestmark = pytest.mark.integration


def test_rollout_changes_are_compare_and_swap_and_audit_logged(s3_server: Settings, store: ObjectStore) -> None:
    settings = s3_server.model_copy(update={"storage": store.config})
    champion = register(settings, "churn", seed=1, promote=True)
    challenger = register(settings, "churn", seed=2, promote=False)
    registry = ModelRegistry(store, settings)
    rollouts = Rollouts(registry)
    assert rollouts.plan("churn") == RolloutPlan() and rollout_challenger(store, settings, "churn") is None

    with pytest.raises(RegistryError, match="is the champion already"):
        rollouts.change("churn", "canary", champion, 0.1, "test", "")
    stale = rollouts.read("churn")
    canary = rollouts.change("churn", "canary", challenger, 0.1, "alice", "first 10%")
    assert (canary.mode, canary.challenger, canary.share, canary.seq) == ("canary", challenger, 0.1, 1)
    assert rollout_challenger(store, settings, "churn") == challenger  # what batch shadow scoring reads

    # A writer that read before the canary loses: the plan it would overwrite is not the one it saw.
    with pytest.raises(RolloutConflict, match="another rollout command won"):
        _change_with(rollouts, stale, challenger)

    rollouts.change("churn", "none", None, 0.0, "bob", "abort")
    events = registry.audit_log("churn")
    assert [(e.action, e.version, e.actor) for e in events[-2:]] == [
        ("rollout_canary", challenger, "alice"),
        ("rollout_end", challenger, "bob"),
    ]
    assert events[-2].reason == "first 10% share 0.1"
    assert registry.champion_version("churn") == champion  # rollout events never move the champion
    assert rollout_challenger(store, settings, "churn") is None


def _change_with(rollouts: Rollouts, seen: tuple[RolloutPlan, str | None], challenger: int) -> None:
    """A rollout command that read `seen` (plan, ETag) and writes now."""
    original = rollouts.read
    rollouts.read = lambda name: seen  # type: ignore[method-assign]
    try:
        rollouts.change("churn", "shadow", challenger, 1.0, "carol", "late writer")
    finally:
        rollouts.read = original  # type: ignore[method-assign]


def test_arm_split_is_near_the_share_sticky_and_redrawn_per_rollout() -> None:
    plan = RolloutPlan("canary", 2, 0.2, seq=1)
    keys = [str(i) for i in range(20_000)]
    arms = [arm_for(k, plan, "churn") for k in keys]
    share = arms.count("challenger") / len(keys)
    assert abs(share - 0.2) < 4 * (0.2 * 0.8 / len(keys)) ** 0.5
    assert arms == [arm_for(k, plan, "churn") for k in keys]  # sticky
    next_plan = RolloutPlan("canary", 2, 0.2, seq=2)
    assert arms != [arm_for(k, next_plan, "churn") for k in keys]  # a new rollout re-draws the buckets
    shadow = RolloutPlan("shadow", 2, 0.5, seq=3)
    assert {arm_for(k, shadow, "churn") for k in keys} == {"champion"}  # shadow never answers
    assert 0.45 < sum(shadowed(k, shadow, "churn") for k in keys) / len(keys) < 0.55
    with pytest.raises(ValueError, match="a challenger iff a mode"):
        RolloutPlan("canary", None, 0.1)


def test_rollout_commands_canary_status_promote(
    s3_server: Settings, store: ObjectStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from conveyor.ops.cli import main

    settings = s3_server.model_copy(update={"storage": store.config})
    champion = register(settings, "churn", seed=1, promote=True)
    challenger = register(settings, "churn", seed=2, promote=False)
    monkeypatch.setenv("CONVEYOR_STORAGE__BUCKET", store.bucket)
    assert main(["rollout", "canary", str(challenger), "--share", "0.2", "--reason", "try it", "--actor", "ann"]) == 0
    assert main(["rollout", "status"]) == 0
    assert main(["rollout", "promote", "--reason", "clean canary", "--actor", "ann"]) == 0
    assert main(["rollout", "abort"]) == 2  # nothing in progress any more
    out = capsys.readouterr().out
    assert f"canary of v{challenger} at share 0.2" in out
    assert f"champion v{champion}; rollout canary of v{challenger} at share 0.2 (by ann" in out
    assert f"v{challenger} is the champion now" in out and "no rollout in progress" in out
    registry = ModelRegistry(store, settings)
    assert registry.champion_version("churn") == challenger
    assert [e.action for e in registry.audit_log("churn")][-3:] == ["rollout_canary", "promote", "rollout_end"]
    assert Rollouts(registry).plan("churn").mode == "none"
