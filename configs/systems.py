"""Configuration of the systems the data lives in: the object store, the Prefect server, the local stack,
notifications, signing and the Feast feature store (the dataset itself: configs/dataset.py).

Each default is written once, here, with what it means (`Field(description=...)`); `configs/*.yaml` set only
what is not a default or what differs per profile. Derived values (the local profile's endpoints) are filled in
by `configs.settings.Settings`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class StrictSection(BaseModel):
    # A typo in a YAML key must fail loudly, not be ignored.
    model_config = ConfigDict(extra="forbid")


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
