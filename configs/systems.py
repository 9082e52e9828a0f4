"""Configuration of the data and the systems it lives in: the dataset, the object store, the Prefect server, the
local stack, notifications and the Feast feature store.

Each default is written once, here, with what it means (`Field(description=...)`); `configs/*.yaml` set only
what is not a default or what differs per profile. Derived values (the local profile's endpoints) are filled in
by `configs.settings.Settings`.
"""

from __future__ import annotations

import json
import zoneinfo
from pathlib import Path
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class StrictSection(BaseModel):
    # A typo in a YAML key must fail loudly, not be ignored.
    model_config = ConfigDict(extra="forbid")


class FeatureSpec(StrictSection):
    name: str
    dtype: Literal["int64", "float64", "category", "bool"]
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    max_null_share: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="share of missing values this feature may have in a batch (a feature that is legitimately "
        "often empty says so here); None: validation.max_null_share",
    )
    description: str = ""

    @model_validator(mode="after")
    def _check_domain(self) -> FeatureSpec:
        if self.dtype == "category" and not self.categories:
            raise ValueError(f"feature {self.name!r}: dtype 'category' needs a non-empty 'categories' list")
        if self.dtype != "category" and self.categories:
            raise ValueError(f"feature {self.name!r}: 'categories' is only valid with dtype 'category'")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"feature {self.name!r}: min ({self.min}) is greater than max ({self.max})")
        return self

    @property
    def is_numeric(self) -> bool:
        return self.dtype in ("int64", "float64")


class DataSource(StrictSection):
    kind: Literal["synthetic", "files"] = "synthetic"
    path: str | None = None

    @model_validator(mode="after")
    def _path_for_files(self) -> DataSource:
        if self.kind == "files" and not self.path:
            raise ValueError("source.kind 'files' needs source.path (a folder, file or s3:// prefix)")
        return self


class DirectionalCheck(StrictSection):
    """Adding `delta` to numeric `feature` must move the mean output in `direction` (within `tolerance`): the
    mean score (binary), the mean prediction (regression) or the mean probability of `target_class` (multiclass)."""

    feature: str
    delta: float
    direction: Literal["increase", "decrease"] = "increase"
    tolerance: float = Field(default=0.0, ge=0)
    target_class: str | None = Field(
        default=None,
        description="multiclass only, and required there: the class whose mean probability must move (a shift "
        "cannot raise every class's probability, so a check without one is refused at load)",
    )


class SensitiveAttribute(StrictSection):
    """A feature the model card reports fairness by: its categories, or numeric bins (edges, right-closed)."""

    feature: str
    bins: list[float] | None = Field(default=None, min_length=2, description="numeric features: bin edges")


class ModelCardText(StrictSection):
    """What every model card of this dataset's models says about them (the card's mechanics: `card` in
    configs/stages.py)."""

    purpose: str = Field(default="", description="what the model is for and what it must not be used for")
    owner: str = Field(default="", description="the team or person answerable for it")
    known_limitations: list[str] = Field(
        default_factory=list, description="stated on every card, with the ones the evaluation finds itself"
    )
    sensitive_attributes: list[SensitiveAttribute] = Field(
        default_factory=list,
        description="fairness by group (fairlearn): group metrics; demographic parity and equalized odds "
        "differences for binary tasks",
    )


class DatasetConfig(StrictSection):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    entity_column: str
    entity_dtype: Literal["int64", "string"] = Field(
        default="int64", description="type of the entity key: int64, or string for ids such as C000123"
    )
    timestamp_column: str
    label_column: str
    task: Literal["binary", "multiclass", "regression"] = Field(
        default="binary",
        description="what the label is: binary (bool, 0/1, or two named classes with positive_class), multiclass "
        "(class names or integers, kept as text) or regression (numbers); conveyor/domain/task_types.py",
    )
    positive_class: str | None = Field(
        default=None, description="binary with named classes (e.g. churned / stayed): the class that is 1"
    )
    classes: list[str] | None = Field(
        default=None,
        min_length=2,
        description="multiclass: the classes the label may take (the raw suite and training refuse any other, and "
        "every one needs training rows); None: the classes seen in the training data. A version records them in "
        "its model's column order (sorted, as scikit-learn's classes_), which its probability columns follow",
    )
    timezone: str = Field(
        default="UTC",
        description="time zone of timestamps that carry none (naive parquet timestamps, text without an offset), "
        "an IANA name such as Europe/Paris; every timestamp is stored in UTC",
    )
    source: DataSource = DataSource()
    features: list[FeatureSpec] = Field(min_length=1)
    # The choices that name this dataset's features live here, beside them (each name checked at load).
    slices: list[str] = Field(
        default_factory=list,
        description="categorical features whose slices the per-slice no-regression gate and the card judge",
    )
    invariant_features: list[str] = Field(
        default_factory=list,
        description="behavioural: permuting one of these features moves outputs by at most gates.max_invariance_shift",
    )
    directional: list[DirectionalCheck] = Field(
        default_factory=list, description="behavioural: a feature's shift must move the mean output this way"
    )
    model_card: ModelCardText = ModelCardText()

    @model_validator(mode="after")
    def _check_columns(self) -> DatasetConfig:
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {self.timezone!r} is not a time zone name (e.g. UTC, Europe/Paris)") from None
        if self.positive_class is not None and self.task != "binary":
            raise ValueError(f"positive_class is for task binary, not {self.task}")
        if self.classes is not None and (self.task != "multiclass" or len(set(self.classes)) != len(self.classes)):
            raise ValueError("classes: a list of distinct class names, for task multiclass only")
        names = [f.name for f in self.features]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"features listed more than once: {duplicated}")
        reserved = {self.entity_column, self.timestamp_column, self.label_column}
        if len(reserved) != 3:
            raise ValueError("entity_column, timestamp_column and label_column must be three different columns")
        clash = sorted(reserved.intersection(names))
        if clash:
            raise ValueError(f"{clash} cannot be both a key/label column and a feature")
        problems = [*self._unknown_features(set(names)), *self._directional_problems()]
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _unknown_features(self, known: set[str]) -> list[str]:
        # A gate or card entry naming a feature the dataset does not have would be skipped silently.
        references = [
            *((f"slices[{i}]", name) for i, name in enumerate(self.slices)),
            *((f"invariant_features[{i}]", name) for i, name in enumerate(self.invariant_features)),
            *((f"directional[{i}].feature", c.feature) for i, c in enumerate(self.directional)),
            *(
                (f"model_card.sensitive_attributes[{i}].feature", a.feature)
                for i, a in enumerate(self.model_card.sensitive_attributes)
            ),
        ]
        return [
            f"{key}: {name!r} is not a feature of dataset {self.name!r} (features: {sorted(known)})"
            for key, name in references
            if name not in known
        ]

    def _directional_problems(self) -> list[str]:
        # A directional check on a multiclass model must say which class's probability moves.
        problems = []
        for i, check in enumerate(self.directional):
            key = f"directional[{i}] ({check.feature})"
            if self.task == "multiclass" and check.target_class is None:
                problems.append(f"{key}: task multiclass needs target_class (the class whose probability moves)")
            elif self.task != "multiclass" and check.target_class is not None:
                problems.append(f"{key}: target_class is for task multiclass, not {self.task}")
            elif self.classes and check.target_class is not None and check.target_class not in self.classes:
                problems.append(
                    f"{key}: target_class {check.target_class!r} is not one of dataset.classes {self.classes}"
                )
        return problems

    @property
    def entity_arrow_type(self) -> pa.DataType:
        return pa.int64() if self.entity_dtype == "int64" else pa.string()

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric_features(self) -> list[str]:
        return [f.name for f in self.features if f.is_numeric]

    @property
    def categorical_features(self) -> list[str]:
        return [f.name for f in self.features if f.dtype in ("category", "bool")]

    def feature(self, name: str) -> FeatureSpec:
        for spec in self.features:
            if spec.name == name:
                return spec
        raise KeyError(f"no feature named {name!r} in dataset {self.name!r}")


class StoragePrefixes(StrictSection):
    """Top-level key prefixes in the bucket, one per kind of object."""

    raw: str = Field(default="raw", description="raw daily partitions")
    quarantine: str = Field(default="quarantine", description="batches (or rows) refused by validation")
    models: str = Field(default="models", description="the model registry")
    predictions: str = Field(default="predictions", description="published scores")
    reports: str = Field(default="reports", description="drift reports, the retraining ledger")
    staging: str = Field(default="_staging", description="parts of writes not yet committed")


class StorageConfig(StrictSection):
    """The object store (conveyor/adapters/object_store.py)."""

    endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint; None: AWS S3 for `region`. Local profile, when not set: the local stack's S3 "
        "server, http://<local_stack.host>:<local_stack.s3_port>",
    )
    region: str = "us-east-1"
    bucket: str = Field(default="conveyor", min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.\-]*[a-z0-9]$")
    addressing_style: Literal["path", "virtual", "auto"] = Field(
        default="path", description="path-style URLs (bucket in the path): what SeaweedFS and most S3 servers need"
    )
    access_key_id: SecretStr | None = Field(default=None, description="from the environment only")
    secret_access_key: SecretStr | None = Field(default=None, description="from the environment only")
    credentials_file: Path | None = Field(
        default=None,
        description="JSON keys file; local profile, when not set: <local_stack.state_dir>/s3-credentials.json, "
        "generated on the first `stack up` (git-ignored)",
    )
    presigned_url_expiry_seconds: int = Field(
        default=604_800,
        ge=60,
        le=604_800,
        description="links in Prefect artifacts (reports, dashboard, Data Docs) open over HTTP for this long "
        "(SigV4's maximum: 7 days); a rebuilt artifact gets a fresh link",
    )
    credentials_block: str | None = Field(
        default=None,
        min_length=1,
        description="name of a prefect-aws `AwsCredentials` block on the Prefect server: the keys live in the "
        "server's database, never in this repo or the environment of each process",
    )
    max_attempts: int = Field(
        default=5,
        ge=1,
        le=20,
        description="per S3 call, on transient errors (connection refused/reset, 5xx, throttling)",
    )
    backoff_seconds: float = Field(default=0.2, ge=0, description="first wait between attempts; doubles each attempt")
    connect_timeout_seconds: float = Field(default=5, gt=0)
    read_timeout_seconds: float = Field(default=60, gt=0)
    staging_retention_hours: float = Field(
        default=24,
        gt=0,
        description="batch inference sweeps staging garbage (failed runs' parts, unaborted multipart uploads) "
        "older than this; longer than any run, so a run in flight never loses its parts",
    )
    prefixes: StoragePrefixes = Field(default_factory=StoragePrefixes)

    def resolved_credentials(self) -> tuple[str, str] | None:
        """Explicit keys, else the credentials file, else None: the object store then asks the Prefect block
        (`credentials_block`) if one is named, else boto3's default chain (env, profile, instance role)."""
        if self.access_key_id and self.secret_access_key:
            return self.access_key_id.get_secret_value(), self.secret_access_key.get_secret_value()
        if self.credentials_file and self.credentials_file.exists() and not self.credentials_block:
            data = json.loads(self.credentials_file.read_text())
            return data["access_key_id"], data["secret_access_key"]
        return None


class SigningConfig(StrictSection):
    """Ed25519 signatures on registry versions (conveyor/adapters/signing.py): the registry signs each version's
    metadata (artifact checksums included) with a key held outside the bucket; scorers verify with public keys."""

    private_key: SecretStr | None = Field(
        default=None, description="from the environment only: PEM PKCS#8 Ed25519 key, or base64 of its 32-byte seed"
    )
    private_key_block: str | None = Field(
        default=None, description="name of a Prefect Secret block holding the PEM private key (prod)"
    )
    key_dir: Path | None = Field(
        default=None,
        description="keyring.json and the key pairs `conveyor keys rotate` creates; None: "
        "<local_stack.state_dir>/signing (the local profile creates a dev pair there on first use)",
    )
    trusted_public_keys: dict[str, str] = Field(
        default_factory=dict,
        description="key id -> base64 Ed25519 public key, trusted in addition to <key_dir>/keyring.json "
        "(scorers that have no key dir)",
    )


class PrefectConfig(StrictSection):
    """The Prefect server the CLI and the stack's clients talk to."""

    api_url: str | None = Field(
        default=None,
        description="the Prefect API clients use. Local profile, when not set: the local stack's server, "
        "http://<local_stack.host>:<local_stack.prefect_port>/api. Prod profile: CONVEYOR_PREFECT__API_URL "
        "(or Prefect's own PREFECT_API_URL)",
    )
    work_pool: str = Field(default="conveyor-process", description="process work pool of `stack up --worker`")
    database_url: SecretStr | None = Field(
        default=None,
        description="the Prefect server's database. None: SQLite under PREFECT_HOME. Production: a PostgreSQL "
        "URL (postgresql+asyncpg://prefect:<password>@db:5432/prefect) from CONVEYOR_PREFECT__DATABASE_URL, "
        "never the repo",
    )
    api_auth_string: SecretStr | None = Field(
        default=None,
        description="basic auth for the Prefect API ('user:password'): the server enforces it "
        "(PREFECT_SERVER_API_AUTH_STRING), every client the stack starts sends it (PREFECT_API_AUTH_STRING). "
        "From CONVEYOR_PREFECT__API_AUTH_STRING",
    )
    zombie_after_missed_heartbeats: int = Field(
        default=3,
        ge=0,
        le=100,
        description="`conveyor stack up` and `conveyor deploy` install an automation that marks a flow run "
        "Crashed once it has missed this many heartbeats (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, default 180 s) "
        "without ending: its process died. 0: don't",
    )


class NotificationsConfig(StrictSection):
    """Where a failed run or a refused gate is reported (conveyor/adapters/notify.py)."""

    apprise_urls: list[SecretStr] = Field(
        default_factory=list,
        description="Apprise URLs (slack://..., mailto://..., json://host/path); they hold tokens: set them from "
        "the environment (CONVEYOR_NOTIFICATIONS__APPRISE_URLS='[\"slack://T/B/C\"]'), never in the repo",
    )
    on_failure: bool = Field(default=True, description="notify when a flow run fails or crashes")
    on_gate_refusal: bool = Field(default=True, description="notify when an evaluation gate refuses a model")


class LocalStackConfig(StrictSection):
    """The local servers `conveyor stack up` starts; the local profile's clients follow their ports."""

    state_dir: Path = Field(default=Path(".local"), description="data, logs, PID files, generated credentials")
    host: Literal["127.0.0.1"] = Field(default="127.0.0.1", description="loopback only")
    s3_port: int = Field(
        default=8333, ge=1024, le=55000, description="SeaweedFS S3 port; it also takes the next four and each + 10000"
    )
    prefect_port: int = Field(default=4200, ge=1024, le=65535)
    s3_max_volumes: int = Field(
        default=1000,
        ge=8,
        description="SeaweedFS volumes (a bucket takes at least one; sparse files). Left to SeaweedFS the limit "
        "is free disk / 1 GiB, 63 on a disk with 64 GB free: the 64th bucket's writes then fail (InternalError)",
    )
    start_timeout_seconds: float = Field(default=90, gt=0)

    @property
    def s3_url(self) -> str:
        return f"http://{self.host}:{self.s3_port}"

    @property
    def prefect_api_url(self) -> str:
        return f"http://{self.host}:{self.prefect_port}/api"


class FeaturesConfig(StrictSection):
    """The Feast feature store (conveyor/adapters/feature_store.py, declarations in feature_repo/)."""

    project: str = Field(default="conveyor", pattern=r"^[a-z][a-z0-9_]*$")
    feature_service: str = Field(
        default="",
        description="the FeatureService training and scoring use when none is named; default: <dataset name>_v1, "
        "the service feature_repo/definitions.py declares first",
    )
    repo_dir: Path = Field(default=Path("feature_repo"), description="Feast declarations + feature_store.yaml")
    state_dir: Path | None = Field(
        default=None,
        description="registry, SQLite online store and other Feast state; None: <local_stack.state_dir>/feast",
    )
    ttl_days: int = Field(
        default=90, ge=1, description="feature values older than this are null in training sets and the skew check"
    )
    owner: str = "ml-platform"
    redis_connection_string: str = Field(default="127.0.0.1:6379", description="prod profile's online store")
    registry_url: SecretStr | None = Field(
        default=None,
        description="prod profile's registry: a SQLAlchemy URL (postgresql+psycopg://user:password@host/db) of a "
        "SQL registry every worker shares; from CONVEYOR_FEATURES__REGISTRY_URL, never from this repo",
    )
    materialize_chunk_hours: int = Field(
        default=24, ge=1, description="time slice per offline read: bounds materialization memory"
    )
    online_write_batch_size: int = Field(default=20_000, ge=1, description="rows per online_write_batch call")
    skew_sample_size: int = Field(default=200, ge=1)
    skew_tolerance: float = Field(default=1e-9, ge=0, description="absolute tolerance for float features")
