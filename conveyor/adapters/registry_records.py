"""What the model registry stores, as values: a version's metadata, the audit-log events and the registry
state they fold into, and the lineage recorded with each version (code version, library versions, actor).

conveyor/adapters/registry.py (through registry_versions.py and registry_log.py) reads and writes them on the object
store.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pandas as pd

from conveyor.adapters.object_store import ChecksumMismatch
from conveyor.domain.failures import DeterministicFailure
from conveyor.domain.task_types import ModelTask

_LIBRARIES = ("scikit-learn", "pandas", "numpy", "scipy", "joblib", "pyarrow", "feast", "prefect")


class RegistryError(DeterministicFailure, RuntimeError):
    """A registry operation could not be done; the message says which model/version and why. Deterministic
    (no champion, a gate refusal, a pruned version...): never retried. Losing every race for a write raises
    PreconditionFailed instead, which is."""


class TamperedArtifact(ChecksumMismatch):
    """A stored artifact's bytes differ from the SHA-256 recorded at registration: it is never unpickled."""


class UnverifiedVersion(RegistryError):
    """A version's metadata.json is unsigned, signed with an untrusted key, or changed after it was signed: its
    checksums (and so its artifacts) cannot be trusted, and it is never loaded."""


class PromotionConflict(RegistryError):
    """The champion changed between the decision to promote and the promotion (e.g. a racing promotion)."""


@dataclass(frozen=True)
class LoadedModel:
    version: ModelVersion
    model: Any  # an sklearn Pipeline: predict_proba (classification) or predict (regression) of frame[feature_names]

    @property
    def task(self) -> ModelTask:
        return self.version.model_task

    def score(self, frame: pd.DataFrame) -> Any:
        """Binary: P(positive) per row."""
        return self.model.predict_proba(frame[self.version.feature_names])[:, 1]

    def outputs(self, frame: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
        """The task's output columns (`ModelTask.output_columns`) for the rows of `frame`."""
        return self.task.outputs(self.model, frame[self.version.feature_names], threshold)


@dataclass(frozen=True)
class ModelMetadata:
    """What the trainer knows about a model; the registry adds version, checksum, code and library versions."""

    metrics: dict[str, Any]
    gates: dict[str, Any]
    training_window: dict[str, str]
    feature_service: str | None
    feature_names: list[str]
    data_fingerprint: str
    params: dict[str, Any]
    model_config_name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # The raw Delta table and the version of it the training rows were read from: `read_raw_window(...,
    # version=data_version)` reads exactly those rows again (until a vacuum removes that version's files).
    data_uri: str | None = None
    data_version: int | None = None
    # ModelTask.to_json(): binary / multiclass (with its classes, in the model's column order) / regression.
    # None for versions registered before tasks existed: they are binary 0/1.
    task: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class ModelVersion(ModelMetadata):
    """One registered version, as stored in its metadata.json: the trainer's metadata plus the registry's."""

    model_name: str
    version: int
    created_at: str
    artifact_key: str
    sha256: str
    reference_key: str
    reference_sha256: str
    files: dict[str, str]
    code_version: str | None
    library_versions: dict[str, str]
    registered_by: str
    # The ONNX twin's record (conveyor.adapters.onnx_twin.TwinRecord as JSON): parity status, max difference,
    # rows checked, key and SHA-256 of model.onnx. Empty for versions registered before twins existed.
    twin: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.model_name} v{self.version}"

    @property
    def model_task(self) -> ModelTask:
        return ModelTask.from_json(self.task)

    @property
    def gates_passed(self) -> bool:
        return bool(self.gates.get("passed", False))

    @property
    def test_metrics(self) -> dict[str, float]:
        return dict(self.metrics.get("test", {}))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelVersion:
        return cls(**data)


@dataclass(frozen=True)
class AuditEvent:
    """One entry of the append-only log: who did what to which version, when and why."""

    seq: int
    event_id: str
    action: str  # register, promote, rollback and prune move the state (apply); rollout_* events are a record
    model_name: str
    version: int
    previous_champion: int | None
    champion_after: int | None
    actor: str
    reason: str
    at: str
    forced: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RegistryState:
    """The log replayed up to `seq`: the champion and the champions before it (what rollback returns to), and
    the versions whose artifacts were pruned (never promotable again)."""

    seq: int = 0
    history: tuple[int, ...] = ()
    pruned: tuple[int, ...] = ()

    @property
    def champion(self) -> int | None:
        return self.history[-1] if self.history else None

    def apply(self, event: AuditEvent) -> RegistryState:
        if event.seq != self.seq + 1:
            raise RegistryError(f"audit log out of order: event {event.seq} after {self.seq}")
        history, pruned = self.history, self.pruned
        if event.action == "promote":
            history = (*history, event.version)
        elif event.action == "rollback":
            history = history[:-1]
        elif event.action == "prune":
            pruned = (*pruned, event.version)
        return RegistryState(event.seq, history, pruned)


def code_version(project_root: Path) -> str | None:
    """The git commit of the code that trained the model, if this is a git checkout. With uncommitted changes to
    tracked files it is `<commit>-dirty-<hash of git diff HEAD>`, so changed code never matches the clean
    commit (or other changes) and `skip_if_unchanged` retrains it."""
    commit = _git(project_root, "rev-parse", "HEAD")
    if commit is None:
        return None
    diff = _git(project_root, "diff", "HEAD", "--binary", "--no-ext-diff", "--no-color")
    if diff is None:
        return None  # the state of the tree is unknown: never claim it is the clean commit
    if not diff:
        return commit
    return f"{commit}-dirty-{hashlib.sha256(diff.encode()).hexdigest()[:16]}"


def _git(project_root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=project_root, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def library_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return found


def default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()
