"""Hot swap: the versions in service, replaced without a restart when the registry's champion or rollout changes.

A background thread re-reads the champion pointer and the rollout plan every `serving.poll_seconds`. A version
that changed is loaded, checksum-verified and warmed (conveyor/serving/runtime.py) *before* it is swapped in;
the swap replaces one immutable snapshot reference, so a request that already took the old snapshot finishes on
it. A version that fails to load is never served: the old snapshot stays, and the refusal is logged and counted
once per version (it is not retried until the registry moves again)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from conveyor.adapters.registry import ModelRegistry, RegistryError
from conveyor.adapters.rollouts import Rollouts
from conveyor.domain.rollouts import RolloutPlan
from conveyor.serving.runtime import ModelLoadRefused, ServedModel, load_served_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """What answers requests right now: the champion, the rollout's challenger (when it loaded) and the plan."""

    champion: ServedModel
    plan: RolloutPlan = field(default_factory=RolloutPlan)
    challenger: ServedModel | None = None

    @property
    def effective_plan(self) -> RolloutPlan:
        """The plan as served: no challenger loaded (or it became the champion) means no rollout."""
        if self.challenger is None or self.challenger.version == self.champion.version:
            return RolloutPlan()
        return self.plan


class ModelPool:
    """The current Snapshot, refreshed from the registry by `refresh()` (called by the poll thread)."""

    def __init__(
        self,
        registry: ModelRegistry,
        model_name: str,
        runtime_name: str,
        warmup_rows: int,
        default_service: str,
        on_event: Callable[[str, str], None] | None = None,
        tolerance: float = 1e-9,
    ) -> None:
        self.registry = registry
        self.rollouts = Rollouts(registry)
        self.model_name = model_name
        self.runtime_name = runtime_name
        self.warmup_rows = warmup_rows
        self.default_service = default_service
        self.tolerance = tolerance
        self.on_event = on_event or (lambda kind, version: None)  # ("swap" | "load_failed", version label)
        self.current: Snapshot | None = None
        self.refused: dict[int, str] = {}
        self.last_error: str | None = None
        self._lock = threading.Lock()  # one refresh at a time (poll thread vs an explicit call)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _load(self, version: int) -> ServedModel | None:
        """The version in service already, or freshly loaded; None when it was (or is now) refused."""
        snapshot = self.current
        for served in (snapshot.champion, snapshot.challenger) if snapshot else ():
            if served is not None and served.version == version:
                return served
        if version in self.refused:
            return None
        try:
            try:
                meta = self.registry.get_version(self.model_name, version)  # its signature verified
            except RegistryError as exc:  # unsigned, foreign-signed or changed metadata: never trusted
                raise ModelLoadRefused(f"v{version} not loaded: {type(exc).__name__}: {exc}") from exc
            served = load_served_model(
                self.registry, meta, self.runtime_name, self.warmup_rows, self.default_service, self.tolerance
            )
        except ModelLoadRefused as exc:
            if exc.permanent:
                self.refused[version] = str(exc)
            log.error("%s: %s; still serving %s", self.model_name, exc, self.describe())
            self.on_event("load_failed", f"v{version}")
            return None
        log.info("%s v%d loaded, verified and warmed (%s runtime)", self.model_name, version, self.runtime_name)
        return served

    def refresh(self) -> Snapshot | None:
        """Re-read the champion and the rollout; swap in what changed once it is loaded. Returns the snapshot."""
        with self._lock:
            champion_version = self.registry.champion_version(self.model_name)
            plan = self.rollouts.plan(self.model_name)
            old = self.current
            champion = old.champion if old else None
            if champion_version is not None and (champion is None or champion.version != champion_version):
                champion = self._load(champion_version) or champion
            if champion is None:
                self.last_error = (
                    f"{self.model_name}: no champion in the registry"
                    if champion_version is None
                    else self.refused.get(champion_version, "champion not loaded")
                )
                return None
            challenger = self._load(plan.challenger) if plan.challenger is not None else None
            snapshot = Snapshot(champion, plan, challenger)
            if snapshot != old:
                self.current = snapshot
                if old is None or old.champion.version != champion.version:
                    log.info(
                        "%s: now serving v%d (was %s)", self.model_name, champion.version, old and old.champion.label
                    )
                    self.on_event("swap", champion.label)
            self.last_error = None
            return snapshot

    def describe(self) -> str:
        snapshot = self.current
        return "nothing" if snapshot is None else f"v{snapshot.champion.version}"

    def _poll(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                self.refresh()
            except Exception as exc:  # the registry unreachable for a while: keep serving what is loaded
                self.last_error = f"registry poll failed: {type(exc).__name__}: {exc}"
                log.warning("%s: %s; still serving %s", self.model_name, self.last_error, self.describe())

    def start(self, poll_seconds: float) -> None:
        self._thread = threading.Thread(target=self._poll, args=(poll_seconds,), name="model-pool", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
