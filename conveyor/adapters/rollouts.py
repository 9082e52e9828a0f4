"""Rollout state in the model registry: `models/<name>/rollout.json`, next to the champion pointer.

Written with compare-and-swap (create-if-absent, then If-Match on its ETag), so of two racing rollout commands
exactly one wins and the other is told to re-read. Every change is also an event in the registry's audit log
(`conveyor models log`). The online service and batch shadow scoring read the same object.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

from conveyor.adapters.object_store import ObjectNotFound, ObjectStore, PreconditionFailed
from conveyor.adapters.registry import ModelRegistry, RegistryError
from conveyor.domain.rollouts import RolloutPlan

log = logging.getLogger(__name__)


class RolloutConflict(RegistryError):
    """The rollout changed between reading and writing it (another rollout command won): re-read, decide again."""


class Rollouts:
    """Read and change the rollout plan of a registry model."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.store: ObjectStore = registry.store

    def _key(self, model_name: str) -> str:
        if not model_name or "/" in model_name:
            raise RegistryError(f"invalid model name {model_name!r}")
        return f"{self.registry.root}/{model_name}/rollout.json"

    def read(self, model_name: str) -> tuple[RolloutPlan, str | None]:
        """The current plan and its ETag (None: no rollout was ever written, the plan is 'none')."""
        try:
            data, etag = self.store.get_bytes_and_etag(self._key(model_name))
        except ObjectNotFound:
            return RolloutPlan(), None
        return RolloutPlan.from_json(json.loads(data)), etag

    def plan(self, model_name: str) -> RolloutPlan:
        return self.read(model_name)[0]

    def change(
        self, model_name: str, mode: str, challenger: int | None, share: float, actor: str, reason: str
    ) -> RolloutPlan:
        """Replace the plan (compare-and-swap on what was read), then record the change in the audit log."""
        current, etag = self.read(model_name)
        if challenger is not None:
            meta = self.registry.get_version(model_name, challenger)  # raises when not registered
            if challenger == self.registry.champion_version(model_name):
                raise RegistryError(f"{meta.label} is the champion already: nothing to roll out")
        plan = RolloutPlan(
            mode=mode,  # type: ignore[arg-type]  # checked by RolloutPlan
            challenger=challenger,
            share=share,
            seq=current.seq + 1,
            actor=actor,
            reason=reason,
            at=dt.datetime.now(dt.UTC).isoformat(),
        )
        body = json.dumps(plan.to_json(), sort_keys=True, indent=2).encode()
        try:
            if etag is None:
                self.store.put_bytes_conditional(self._key(model_name), body, if_absent=True)
            else:
                self.store.put_bytes_conditional(self._key(model_name), body, if_match=etag)
        except PreconditionFailed:
            raise RolloutConflict(
                f"{model_name}: the rollout changed while this command ran (another rollout command won); "
                "check `conveyor rollout status` and run it again"
            ) from None
        version = challenger if challenger is not None else (current.challenger or 0)
        share_text = f" share {share:g}" if plan.active else ""
        action = f"rollout_{mode}" if plan.active else "rollout_end"
        self.registry.record_event(model_name, action, version, actor, f"{reason}{share_text}".strip())
        log.info("%s rollout -> %s (challenger v%s%s) by %s", model_name, mode, challenger, share_text, actor)
        return plan
