"""The model registry on the object store. Its layout (conveyor/adapters/registry_versions.py writes and reads
the versions, conveyor/adapters/registry_log.py the log and the pointer; nothing else knows it):

    models/<name>/versions/000007/_claim            version number taken (create-if-absent)
    models/<name>/versions/000007/model.joblib      the fitted sklearn Pipeline
    models/<name>/versions/000007/model.onnx        its ONNX twin, stored only when it passed the parity check
    models/<name>/versions/000007/reference.parquet training-feature sample + the model's outputs (drift reference)
    models/<name>/versions/000007/<plot>.png        evaluation plots
    models/<name>/versions/000007/metadata.json.sig Ed25519 signature of metadata.json's bytes (written before it)
    models/<name>/versions/000007/metadata.json     written LAST: a version without it does not exist
    models/<name>/log/00000012.json                 audit log: one numbered event per object, create-if-absent
    models/<name>/champion.json                     pointer: the log's state at some sequence number

`prune` deletes the artifacts of refused, never-promoted versions after a while; their metadata.json and the
log stay, so the record of what was trained and why it was refused is kept.

The audit log is the source of truth: appended with S3's create-if-absent, `champion.json` a cache of its state
moved by compare-and-swap (conveyor/adapters/registry_log.py says how races and dead writers are handled).
Artifacts are verified against their SHA-256 before `joblib.load` (unpickling runs code), and those SHA-256s are
trusted only because metadata.json is signed: every read of a version's metadata (`get_version`, and every load:
model, twin, reference sample) verifies the signature with the trusted public keys (conveyor/adapters/signing.py)
and refuses an unsigned or wrongly signed version (`UnverifiedVersion`). Loads re-read the signed metadata rather
than trust a `ModelVersion` handed in, so a listing (`list_versions`, not verified) cannot smuggle checksums in.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from collections.abc import Callable
from typing import Any

import joblib
import pandas as pd

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.onnx_twin import OnnxTwin, TwinRecord, TwinUnavailable
from conveyor.adapters.registry_log import (
    ANY_CHAMPION,
    ModelLog,
    NothingToDo,
    promotion,
    prunable_versions,
    prune_transition,
    rollback_transition,
)
from conveyor.adapters.registry_records import (
    AuditEvent,
    LoadedModel,
    ModelMetadata,
    ModelVersion,
    PromotionConflict,  # noqa: F401  (re-exported: callers catch it from here, where promote raises it)
    RegistryError,
    RegistryState,
    default_actor,
)
from conveyor.adapters.registry_versions import VersionStore
from conveyor.adapters.signing import Keyring
from conveyor.domain.task_outputs import check_registration
from conveyor.domain.task_types import ModelTask

log = logging.getLogger(__name__)


class ModelRegistry:
    """Versioned models on the object store, with an atomically moved champion and an audit log."""

    def __init__(self, store: ObjectStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.root = settings.storage.prefixes.models
        self._conditional_checked = False
        self._versions = VersionStore(store, settings)

    def keyring(self) -> Keyring:
        return self._versions.keyring()

    def version_uri(self, model_name: str, version: int) -> str:
        return self._versions.version_uri(model_name, version)

    def _require_conditional_writes(self) -> None:
        if self._conditional_checked:
            return
        if not self.store.supports_conditional_writes(f"{self.root}/_probe"):
            raise RegistryError(
                f"the S3 server at {self.store.config.endpoint_url or 'AWS'} ignores conditional writes "
                "(If-None-Match); the registry needs them to keep one champion under concurrent promotions"
            )
        self._conditional_checked = True

    # ---- versions (conveyor/adapters/registry_versions.py) ------------------------------------------------
    def register(
        self,
        model_name: str,
        model: Any,
        metadata: ModelMetadata,
        reference: pd.DataFrame,
        files: dict[str, bytes] | Callable[[int], dict[str, bytes]] | None = None,
        actor: str | None = None,
        twin_rows: pd.DataFrame | None = None,
    ) -> ModelVersion:
        """Store a new version: artifact, its ONNX twin, reference sample, files, then metadata.json last (the
        commit). `files` may be a function of the version number, for files that name their version (the model
        card). `twin_rows` (the test rows, raw feature columns) are what the twin's parity is checked on; without
        them no twin is exported (recorded as `not_exported`)."""
        self._require_conditional_writes()
        check_registration(model, ModelTask.from_json(metadata.task), reference)
        signing_key = self._versions.signing_key()  # before the claim: an untrusted key writes nothing
        version = self._versions.claim(model_name)
        files = files(version) if callable(files) else files
        stored = self._versions.store_artifacts(model_name, version, model, reference, files or {}, twin_rows)
        registered = self._versions.commit(model_name, version, metadata, stored, actor, signing_key)
        self._append(
            model_name,
            lambda state: ("register", version, state.champion),
            actor or default_actor(),
            f"registered (gates {'passed' if registered.gates_passed else 'failed'})",
        )
        log.info(
            "registered %s (sha256 %s...) at %s",
            registered.label,
            registered.sha256[:12],
            self.version_uri(model_name, version),
        )
        return registered

    def get_version(self, model_name: str, version: int) -> ModelVersion:
        """The version's metadata, its signature verified (UnverifiedVersion when unsigned or wrongly signed)."""
        return self._versions.get_version(model_name, version)

    def list_versions(self, model_name: str) -> list[ModelVersion]:
        """Complete versions (those with metadata.json), oldest first. For listing: signatures are not checked
        here (every load and `get_version` checks them)."""
        return self._versions.list_versions(model_name)

    def sign_unsigned(self, model_name: str) -> list[int]:
        """Sign the versions registered before signing existed (no metadata.json.sig), each after checking its
        stored artifacts against the checksums its metadata records (`conveyor keys adopt`); a version that has a
        signature, valid or not, is left alone."""
        return self._versions.sign_unsigned(model_name)

    # ---- loading --------------------------------------------------------------------------------------
    def load(self, model_name: str, version: int | None = None) -> LoadedModel:
        """The champion (version None) or a given version, checksum verified BEFORE unpickling."""
        if version is None:
            version = self.champion_version(model_name)
            if version is None:
                raise RegistryError(f"{model_name}: no champion yet (train and promote one: the training flow)")
        return self.load_version(self.get_version(model_name, version))

    def load_version(self, meta: ModelVersion) -> LoadedModel:
        """The model of `meta`'s version: signed metadata re-read and verified, then the artifact's checksum,
        BEFORE unpickling."""
        meta = self.get_version(meta.model_name, meta.version)
        data = self._versions.verified_bytes(meta.artifact_key, meta.sha256, f"{meta.label} model")
        return LoadedModel(meta, joblib.load(io.BytesIO(data)))

    def load_twin(self, meta: ModelVersion) -> OnnxTwin:
        """The ONNX twin of `meta`, SHA-256 verified; raises TwinUnavailable when the version has none that
        passed its parity check (never a silent fallback to the Pipeline). Signed metadata re-read first."""
        meta = self.get_version(meta.model_name, meta.version)
        record = TwinRecord.from_json(meta.twin)
        if not record.usable:
            raise TwinUnavailable(
                f"{meta.label}: no usable ONNX twin (status {record.status}: {record.reason}); score it with "
                "scoring.runtime=sklearn, or register the model again"
            )
        assert record.key is not None and record.sha256 is not None
        data = self._versions.verified_bytes(record.key, record.sha256, f"{meta.label} ONNX twin")
        return OnnxTwin.from_bytes(data, self.settings.twin.threads)

    def load_reference(self, model_name: str, version: int | None = None) -> pd.DataFrame:
        """The version's reference sample: training feature rows plus the model's outputs on them (the task's
        `prediction_columns`: `score` for binary)."""
        if version is None:
            version = self.champion_version(model_name)
            if version is None:
                raise RegistryError(f"{model_name}: no champion yet, so no reference sample")
        return self.reference_of(self.get_version(model_name, version))

    def reference_of(self, meta: ModelVersion) -> pd.DataFrame:
        """The reference sample of `meta`'s version: signed metadata re-read and verified, then the checksum."""
        meta = self.get_version(meta.model_name, meta.version)
        data = self._versions.verified_bytes(
            meta.reference_key, meta.reference_sha256, f"{meta.label} reference sample"
        )
        return pd.read_parquet(io.BytesIO(data))

    def get_file(self, model_name: str, version: int, name: str) -> bytes:
        meta = self.get_version(model_name, version)
        if name not in meta.files:
            raise RegistryError(f"{meta.label} has no file {name!r} (it has {sorted(meta.files)})")
        return self.store.get_bytes(meta.files[name])

    # ---- champion and the audit log (conveyor/adapters/registry_log.py) -----------------------------------
    def _log(self, model_name: str) -> ModelLog:
        return ModelLog(self.store, self._versions.model_root(model_name), model_name)

    def state(self, model_name: str) -> RegistryState:
        """The pointer's state, caught up with any event written after it (a writer may have died in between)."""
        return self._log(model_name).state()

    def champion_version(self, model_name: str) -> int | None:
        return self.state(model_name).champion

    def champion(self, model_name: str) -> ModelVersion | None:
        version = self.champion_version(model_name)
        return None if version is None else self.get_version(model_name, version)

    def audit_log(self, model_name: str) -> list[AuditEvent]:
        return self._log(model_name).events()

    def _append(self, model_name: str, decide: Any, actor: str, reason: str, forced: bool = False) -> AuditEvent:
        self._require_conditional_writes()
        return self._log(model_name).append(decide, actor, reason, forced)

    def promote(
        self,
        model_name: str,
        version: int,
        actor: str,
        reason: str,
        expected_champion: int | None | object = ANY_CHAMPION,
        force: bool = False,
    ) -> AuditEvent | None:
        """Make `version` the champion. With `expected_champion`, only if the champion is still that version
        (the one the gates compared against); raises PromotionConflict otherwise. Refuses a version whose
        gates failed unless `force` (recorded in the log). Returns None when it already is the champion."""
        meta = self.get_version(model_name, version)
        if not meta.gates_passed and not force:
            reasons = "; ".join(meta.gates.get("reasons", [])) or "no gate result recorded"
            raise RegistryError(f"{meta.label} did not pass its gates ({reasons}); promote with force to override")

        try:
            decide = promotion(model_name, version, meta.label, expected_champion)
            event = self._append(model_name, decide, actor, reason, forced=force and not meta.gates_passed)
        except NothingToDo:
            log.info("%s is already the champion; nothing to do", meta.label)
            return None
        log.info("promoted %s (was v%s) by %s: %s", meta.label, event.previous_champion, actor, reason)
        return event

    def record_event(self, model_name: str, action: str, version: int, actor: str, reason: str) -> AuditEvent:
        """Append an event that does not move the champion (e.g. a rollout change: conveyor/adapters/rollouts.py)."""
        return self._append(model_name, lambda state: (action, version, state.champion), actor, reason)

    def rollback(self, model_name: str, actor: str, reason: str) -> AuditEvent:
        """Restore the champion before the current one (the previous promotion), and log it."""
        event = self._append(model_name, rollback_transition(model_name), actor, reason)
        log.info(
            "rolled back %s to v%s (from v%s) by %s: %s",
            model_name,
            event.version,
            event.previous_champion,
            actor,
            reason,
        )
        return event

    def prunable(self, model_name: str, older_than: dt.timedelta, now: dt.datetime | None = None) -> list[ModelVersion]:
        """Versions whose artifacts `prune` would delete: gates failed, registered more than `older_than` ago,
        never promoted (not even forced), not pruned yet."""
        cutoff = (now or dt.datetime.now(dt.UTC)) - older_than
        return prunable_versions(self.list_versions(model_name), self.audit_log(model_name), cutoff)

    def prune(
        self, model_name: str, older_than: dt.timedelta, actor: str, reason: str, now: dt.datetime | None = None
    ) -> list[tuple[ModelVersion, int]]:
        """Delete the artifacts (model, reference sample, plots) of every `prunable` version: the log records the
        prune first, then the objects go; metadata.json stays. Returns (version, bytes freed) per pruned version.
        A version (force-)promoted after `prunable` looked is skipped: promote and prune are both log events,
        and each re-checks the other on the newest state before it is written."""
        pruned = []
        for meta in self.prunable(model_name, older_than, now):
            twin_key = TwinRecord.from_json(meta.twin).key
            keys = [meta.artifact_key, meta.reference_key, *meta.files.values(), *([twin_key] if twin_key else [])]
            sizes = {key: size for key in keys if (size := self.store.size(key)) is not None}

            try:
                self._append(model_name, prune_transition(meta.version), actor, reason)
            except NothingToDo:
                continue
            self.store.delete_keys(list(sizes))
            log.info(
                "pruned %s: %d objects, %d bytes (metadata and audit log kept)",
                meta.label,
                len(sizes),
                sum(sizes.values()),
            )
            pruned.append((meta, sum(sizes.values())))
        return pruned
