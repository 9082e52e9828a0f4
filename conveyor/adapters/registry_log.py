"""One model's audit log and champion pointer on the object store (the registry's state; layout in
conveyor/adapters/registry.py).

An event is appended by creating `log/<seq+1>` with S3's create-if-absent (`If-None-Match: *`): of two writers
racing for the same number exactly one succeeds, the other re-reads the log, re-checks its preconditions (the
`decide` function) and tries the next number. `champion.json` caches the state after event `seq`; it only moves
forward (compare-and-swap on its ETag) and readers catch up with any newer events, so a writer that dies between
the event and the pointer leaves a stale pointer that is healed on the next read, never a wrong champion.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable

from conveyor.adapters.object_store import ObjectNotFound, ObjectStore, PreconditionFailed
from conveyor.adapters.registry_records import (
    AuditEvent,
    ModelVersion,
    PromotionConflict,
    RegistryError,
    RegistryState,
    _now,
)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 50  # lost races before a writer gives up (retryable: PreconditionFailed)

# state -> (action, version, previous champion); raises to refuse. Re-run on the newest state after a lost race.
Decide = Callable[[RegistryState], tuple[str, int, int | None]]
ANY_CHAMPION = object()  # a promotion's `expected_champion` not given: promote whatever the champion is


class NothingToDo(Exception):
    """A transition that finds its work done: already the champion, or promoted or pruned meanwhile."""


# ---- the transitions the registry appends (each re-checked on the newest state by ModelLog.append) ----------
def promotion(model_name: str, version: int, label: str, expected_champion: int | None | object) -> Decide:
    def decide(state: RegistryState) -> tuple[str, int, int | None]:
        if version in state.pruned:
            raise RegistryError(f"{label} was pruned (its artifacts are deleted): it cannot be the champion")
        if expected_champion is not ANY_CHAMPION and state.champion != expected_champion:
            raise PromotionConflict(
                f"{model_name}: champion is v{state.champion} now, not v{expected_champion} as expected "
                f"when promoting v{version} (another promotion won; re-evaluate against the new champion)"
            )
        if state.champion == version:
            raise NothingToDo
        return "promote", version, state.champion

    return decide


def rollback_transition(model_name: str) -> Decide:
    def decide(state: RegistryState) -> tuple[str, int, int | None]:
        if len(state.history) < 2:
            raise RegistryError(
                f"{model_name}: no previous champion to roll back to "
                f"(champion history: {list(state.history) or 'empty'})"
            )
        return "rollback", state.history[-2], state.history[-1]

    return decide


def prune_transition(version: int) -> Decide:
    def decide(state: RegistryState) -> tuple[str, int, int | None]:
        if version in state.history or version in state.pruned:
            raise NothingToDo  # promoted meanwhile (or pruned by a concurrent prune): keep it
        return "prune", version, state.champion

    return decide


def prunable_versions(
    versions: list[ModelVersion], events: list[AuditEvent], cutoff: dt.datetime
) -> list[ModelVersion]:
    """Gates failed, registered before `cutoff`, never promoted (not even forced), not pruned yet."""
    ever_champion = {e.version for e in events if e.action in ("promote", "rollback")}
    pruned = {e.version for e in events if e.action == "prune"}
    return [
        v
        for v in versions
        if not v.gates_passed
        and v.version not in ever_champion | pruned
        and dt.datetime.fromisoformat(v.created_at) < cutoff
    ]


class ModelLog:
    def __init__(self, store: ObjectStore, model_root: str, model_name: str) -> None:
        self.store = store
        self.model_name = model_name
        self._root = model_root

    def _event_key(self, seq: int) -> str:
        return f"{self._root}/log/{seq:08d}.json"

    @property
    def _pointer_key(self) -> str:
        return f"{self._root}/champion.json"

    def event(self, seq: int) -> AuditEvent | None:
        try:
            return AuditEvent(**self.store.get_json(self._event_key(seq)))
        except ObjectNotFound:
            return None

    def _pointer(self) -> tuple[RegistryState, str | None]:
        try:
            data, etag = self.store.get_bytes_and_etag(self._pointer_key)
        except ObjectNotFound:
            return RegistryState(), None
        payload = json.loads(data)
        return RegistryState(int(payload["seq"]), tuple(payload["history"]), tuple(payload.get("pruned", []))), etag

    def state(self) -> RegistryState:
        """The pointer's state, caught up with any event written after it (a writer may have died in between)."""
        state, _ = self._pointer()
        while (event := self.event(state.seq + 1)) is not None:
            state = state.apply(event)
        return state

    def events(self) -> list[AuditEvent]:
        keys = self.store.list_keys(f"{self._root}/log/")
        return [AuditEvent(**self.store.get_json(k)) for k in keys if k.endswith(".json")]

    def _advance_pointer(self, target: RegistryState) -> None:
        """Move champion.json forward to `target` (compare-and-swap on its ETag); never backwards."""
        payload = json.dumps(
            {
                "seq": target.seq,
                "champion": target.champion,
                "history": list(target.history),
                "pruned": list(target.pruned),
                "updated_at": _now(),
            },
            sort_keys=True,
        ).encode()
        for _ in range(MAX_ATTEMPTS):
            current, etag = self._pointer()
            if current.seq >= target.seq:
                return
            try:
                if etag is None:
                    self.store.put_bytes_conditional(self._pointer_key, payload, if_absent=True)
                else:
                    self.store.put_bytes_conditional(self._pointer_key, payload, if_match=etag)
                return
            except PreconditionFailed:
                continue
        log.warning(
            "%s: champion pointer not advanced to seq %d (readers catch up from the log)", self.model_name, target.seq
        )

    def append(self, decide: Decide, actor: str, reason: str, forced: bool = False) -> AuditEvent:
        """Append one event: `decide(state)` is re-run on the newest state after every lost race, so its checks
        (e.g. "champion is still X") hold at the moment the event is written."""
        for _ in range(MAX_ATTEMPTS):
            state = self.state()
            action, version, previous = decide(state)
            after = state.apply(
                AuditEvent(state.seq + 1, "", action, self.model_name, version, previous, None, actor, reason, "")
            )
            event = AuditEvent(
                seq=state.seq + 1,
                event_id=uuid.uuid4().hex,
                action=action,
                model_name=self.model_name,
                version=version,
                previous_champion=previous,
                champion_after=after.champion,
                actor=actor,
                reason=reason,
                at=_now(),
                forced=forced,
            )
            body = json.dumps(event.to_json(), sort_keys=True, indent=2).encode()
            try:
                self.store.put_bytes_conditional(self._event_key(event.seq), body, if_absent=True)
            except PreconditionFailed:
                # Lost the race for this number -- unless the winner is our own earlier attempt (a retried PUT
                # whose first try succeeded but whose response was lost).
                written = self.event(event.seq)
                if written is None or written.event_id != event.event_id:
                    continue
            self._advance_pointer(after)
            return event
        raise PreconditionFailed(  # lost every race: retryable, unlike a RegistryError
            f"{self.model_name}: gave up appending to the audit log after {MAX_ATTEMPTS} "
            "lost races (too many concurrent writers?)"
        )
