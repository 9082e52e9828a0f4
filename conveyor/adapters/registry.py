"""The model registry on the object store: the only module that knows its layout.

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
import json
import logging
import mimetypes
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict
from typing import Any

import joblib
import pandas as pd
from threadpoolctl import threadpool_limits

from configs.settings import Settings
from conveyor.adapters.object_store import (
    ObjectNotFound,
    ObjectStore,
    PreconditionFailed,
    dataframe_to_parquet_bytes,
    sha256_bytes,
)
from conveyor.adapters.onnx_twin import TWIN_FILE, OnnxTwin, TwinRecord, TwinUnavailable, export_twin
from conveyor.adapters.registry_log import (
    ANY_CHAMPION,
    MAX_ATTEMPTS,
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
    TamperedArtifact,
    UnverifiedVersion,
    _now,
    code_version,
    default_actor,
    library_versions,
)
from conveyor.adapters.signing import Keyring, SignatureRefused, Signer, signer, trusted_keyring
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
        self._keyring: Keyring | None = None
        self._signer: Signer | None = None

    # ---- layout ---------------------------------------------------------------------------------------
    def _model_root(self, model_name: str) -> str:
        if not model_name or "/" in model_name:
            raise RegistryError(f"invalid model name {model_name!r}")
        return f"{self.root}/{model_name}"

    def _version_root(self, model_name: str, version: int) -> str:
        return f"{self._model_root(model_name)}/versions/{version:06d}"

    def keyring(self) -> Keyring:
        if self._keyring is None:
            self._keyring = trusted_keyring(self.settings)
        return self._keyring

    def _signing_key(self) -> Signer:
        """The signer, checked to be trusted by this registry's keyring: a version nobody could load is refused
        before anything is written."""
        if self._signer is None:
            candidate = signer(self.settings)
            if candidate.key_id not in self.keyring().keys:
                raise RegistryError(
                    f"signing key {candidate.key_id} (from {candidate.source}) is not in the trusted keyring "
                    f"({sorted(self.keyring().keys)}): versions it signs could not be loaded; add its public key "
                    "to signing.trusted_public_keys or <signing.key_dir>/keyring.json (`conveyor keys list`)"
                )
            self._signer = candidate
        return self._signer

    def version_uri(self, model_name: str, version: int) -> str:
        return self.store.uri(f"{self._version_root(model_name, version)}/metadata.json")

    def _require_conditional_writes(self) -> None:
        if self._conditional_checked:
            return
        if not self.store.supports_conditional_writes(f"{self.root}/_probe"):
            raise RegistryError(
                f"the S3 server at {self.store.config.endpoint_url or 'AWS'} ignores conditional writes "
                "(If-None-Match); the registry needs them to keep one champion under concurrent promotions"
            )
        self._conditional_checked = True

    # ---- versions -------------------------------------------------------------------------------------
    def _claim_version(self, model_name: str) -> int:
        existing = [
            int(p.rstrip("/").rsplit("/", 1)[1])
            for p in self.store.list_prefixes(f"{self._model_root(model_name)}/versions/")
        ]
        candidate = max(existing, default=0) + 1
        for _ in range(MAX_ATTEMPTS):
            try:
                self.store.put_bytes_conditional(
                    f"{self._version_root(model_name, candidate)}/_claim",
                    json.dumps({"at": _now()}).encode(),
                    if_absent=True,
                )
                return candidate
            except PreconditionFailed:
                candidate += 1
        # Lost every race: not a RegistryError (those are deterministic), so a task retry may still win.
        raise PreconditionFailed(
            f"{model_name}: could not claim a version number after {MAX_ATTEMPTS} tries (too many concurrent writers?)"
        )

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
        signing_key = self._signing_key()
        version = self._claim_version(model_name)
        files = files(version) if callable(files) else files
        root = self._version_root(model_name, version)
        buffer = io.BytesIO()
        joblib.dump(model, buffer, compress=3)
        artifact = buffer.getvalue()
        sha = self.store.put_bytes(f"{root}/model.joblib", artifact)
        twin = self._store_twin(root, model, twin_rows)
        reference_bytes = dataframe_to_parquet_bytes(reference.reset_index(drop=True))
        reference_sha = self.store.put_bytes(f"{root}/reference.parquet", reference_bytes)
        stored_files = {}
        for name, data in (files or {}).items():
            key = f"{root}/{name}"
            self.store.put_bytes(key, data, content_type=mimetypes.guess_type(name)[0] or "application/octet-stream")
            stored_files[name] = key
        registered = ModelVersion(
            **asdict(metadata),
            model_name=model_name,
            version=version,
            created_at=_now(),
            artifact_key=f"{root}/model.joblib",
            sha256=sha,
            reference_key=f"{root}/reference.parquet",
            reference_sha256=reference_sha,
            files=stored_files,
            code_version=code_version(self.settings.project_root),
            library_versions=library_versions(),
            registered_by=actor or default_actor(),
            twin=twin.to_json(),
        )
        body = json.dumps(registered.to_json(), indent=2, sort_keys=True, default=str).encode()
        # The signature goes first: metadata.json is the commit, and a committed version is always signed.
        self.store.put_json(f"{root}/metadata.json.sig", signing_key.sign(body))
        self.store.put_bytes(f"{root}/metadata.json", body, content_type="application/json")
        self._append(
            model_name,
            lambda state: ("register", version, state.champion),
            actor or default_actor(),
            f"registered (gates {'passed' if registered.gates_passed else 'failed'})",
        )
        log.info(
            "registered %s (sha256 %s...) at %s", registered.label, sha[:12], self.version_uri(model_name, version)
        )
        return registered

    def _store_twin(self, root: str, model: Any, rows: pd.DataFrame | None) -> TwinRecord:
        """Export and parity-check the ONNX twin; store model.onnx only when it passed (a failed twin is never
        used, so it is not kept: its record says why)."""
        cfg = self.settings.twin
        if not cfg.export or rows is None:
            why = "twin.export is false" if not cfg.export else "no parity rows given at registration"
            return TwinRecord("not_exported", why, cfg.parity_tolerance)
        limit = self.settings.training.max_threads
        # The parity check runs the Pipeline too: capped like training's predict (OpenMP on busy cores crawls).
        with nullcontext() if limit is None else threadpool_limits(limits=limit):
            export = export_twin(model, rows.head(cfg.max_parity_rows), cfg.parity_tolerance, cfg.threads)
        record = export.record
        if record.status != "passed" or export.onnx_bytes is None:
            log.warning("ONNX twin of %s not stored: %s", root, record.reason)
            return record
        key = f"{root}/{TWIN_FILE}"
        sha = self.store.put_bytes(key, export.onnx_bytes)
        return TwinRecord(**{**record.to_json(), "key": key, "sha256": sha})

    def get_version(self, model_name: str, version: int) -> ModelVersion:
        """The version's metadata, its signature verified (UnverifiedVersion when unsigned or wrongly signed)."""
        root = self._version_root(model_name, version)
        try:
            body = self.store.get_bytes(f"{root}/metadata.json")
        except ObjectNotFound:
            raise RegistryError(
                f"{model_name} v{version} is not registered (no {self.version_uri(model_name, version)})"
            ) from None
        try:
            signature = self.store.get_json(f"{root}/metadata.json.sig")
        except ObjectNotFound:
            signature = None
        try:
            self.keyring().verify(body, signature)
        except SignatureRefused as exc:
            raise UnverifiedVersion(
                f"{model_name} v{version}: {exc} ({self.store.uri(root)}/metadata.json and .sig); refusing to use "
                "it: its checksums cannot be trusted. Train and register it again, or restore the original objects "
                "(a version registered before signing existed: `conveyor keys adopt` checks and signs it)"
            ) from None
        return ModelVersion.from_json(json.loads(body))

    def list_versions(self, model_name: str) -> list[ModelVersion]:
        """Complete versions (those with metadata.json), oldest first. For listing: signatures are not checked
        here (every load and `get_version` checks them)."""
        keys = self.store.list_keys(f"{self._model_root(model_name)}/versions/")
        return [ModelVersion.from_json(self.store.get_json(k)) for k in keys if k.endswith("/metadata.json")]

    def sign_unsigned(self, model_name: str) -> list[int]:
        """Sign the versions registered before signing existed (no metadata.json.sig), each after checking its
        stored artifacts against the checksums its metadata records. The operator vouches for the bucket as it
        is now (`conveyor keys adopt`); a version that has a signature, valid or not, is left alone."""
        signing_key = self._signing_key()
        adopted = []
        for key in self.store.list_keys(f"{self._model_root(model_name)}/versions/"):
            if not key.endswith("/metadata.json") or self.store.exists(f"{key}.sig"):
                continue
            body = self.store.get_bytes(key)
            meta = ModelVersion.from_json(json.loads(body))
            for artifact, sha, what in (
                (meta.artifact_key, meta.sha256, "model"),
                (meta.reference_key, meta.reference_sha256, "reference sample"),
            ):
                if self.store.exists(artifact):  # a pruned version keeps only its metadata
                    self._verified_bytes(artifact, sha, f"{meta.label} {what}")
            self.store.put_json(f"{key}.sig", signing_key.sign(body))
            log.warning("signed %s, registered unsigned, with key %s", meta.label, signing_key.key_id)
            adopted.append(meta.version)
        return adopted

    # ---- loading --------------------------------------------------------------------------------------
    def _verified_bytes(self, key: str, expected: str, what: str) -> bytes:
        try:
            data = self.store.get_bytes(key)
        except ObjectNotFound:
            raise RegistryError(
                f"{what}: {self.store.uri(key)} is gone (a pruned version? see the audit log: `conveyor models log`)"
            ) from None
        actual = sha256_bytes(data)
        if actual != expected:
            raise TamperedArtifact(
                f"{what}: SHA-256 of {self.store.uri(key)} is {actual[:16]}..., but {expected[:16]}... was recorded "
                "at registration. The artifact changed after it was registered; refusing to load it. "
                "Re-register the model (train again) or restore the original object."
            )
        return data

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
        data = self._verified_bytes(meta.artifact_key, meta.sha256, f"{meta.label} model")
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
        data = self._verified_bytes(record.key, record.sha256, f"{meta.label} ONNX twin")
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
        data = self._verified_bytes(meta.reference_key, meta.reference_sha256, f"{meta.label} reference sample")
        return pd.read_parquet(io.BytesIO(data))

    def get_file(self, model_name: str, version: int, name: str) -> bytes:
        meta = self.get_version(model_name, version)
        if name not in meta.files:
            raise RegistryError(f"{meta.label} has no file {name!r} (it has {sorted(meta.files)})")
        return self.store.get_bytes(meta.files[name])

    # ---- champion and the audit log (conveyor/adapters/registry_log.py) -----------------------------------
    def _log(self, model_name: str) -> ModelLog:
        return ModelLog(self.store, self._model_root(model_name), model_name)

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
