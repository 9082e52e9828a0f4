"""Rollouts as data: which version answers a request, pure. A plan (stored in the registry by
conveyor/adapters/rollouts.py) names a challenger and a share; a key (an entity id, or a hash of a row's values)
always lands in the same bucket for the same plan, so an entity sticks to its arm for the whole rollout."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any, Literal

RolloutMode = Literal["none", "canary", "shadow", "ab"]
Arm = Literal["champion", "challenger"]
MODES: tuple[RolloutMode, ...] = ("none", "canary", "shadow", "ab")


@dataclass(frozen=True)
class RolloutPlan:
    """canary / ab: the challenger answers `share` of the keys (ab is the same split, meant as an experiment:
    both arms' metrics compared, then promote or abort); shadow: the challenger also scores `share` of the keys,
    its answers are logged and never returned."""

    mode: RolloutMode = "none"
    challenger: int | None = None
    share: float = 0.0
    seq: int = 0  # bumped by every change: part of the hash salt, so a new rollout re-draws the buckets
    actor: str = ""
    reason: str = ""
    at: str = ""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"rollout mode {self.mode!r}: expected one of {MODES}")
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"rollout share {self.share}: must be within [0, 1]")
        if (self.mode == "none") != (self.challenger is None):
            raise ValueError(f"rollout mode {self.mode!r} with challenger {self.challenger}: a challenger iff a mode")

    @property
    def active(self) -> bool:
        return self.mode != "none"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RolloutPlan:
        return cls(**data)


def bucket(key: str, salt: str) -> float:
    """A uniform number in [0, 1) from the key: the same key and salt give the same number."""
    digest = hashlib.blake2b(f"{salt}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def arm_for(key: str, plan: RolloutPlan, model_name: str) -> Arm:
    """The arm whose answer is returned for `key`: the challenger for `share` of the keys in canary / ab."""
    if plan.mode in ("canary", "ab") and bucket(key, f"{model_name}:{plan.seq}") < plan.share:
        return "challenger"
    return "champion"


def shadowed(key: str, plan: RolloutPlan, model_name: str) -> bool:
    """Whether the challenger also scores `key` in a shadow rollout (its answer logged, never returned)."""
    return plan.mode == "shadow" and bucket(key, f"{model_name}:{plan.seq}") < plan.share
