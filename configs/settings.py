"""Typed configuration: `configs/*.yaml` merged, then environment variables on top.

Load order (later wins): base.yaml -> dataset.yaml (as `dataset`) -> <profile>.yaml -> CONVEYOR_* env vars.
`CONVEYOR_PROFILE` picks the profile (local | prod); `CONVEYOR_CONFIG_DIR` points at another configs folder.
Nothing is read at import time: call `load_settings()` once at the edge and pass the result down.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

CONFIG_DIR = Path(__file__).resolve().parent
PROFILES = ("local", "prod")

# Set in every process Conveyor starts (servers, workers, flows, tests): no usage data leaves the machine.
TELEMETRY_OFF_ENV = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "false",
    "FEAST_USAGE": "False",
}


class ConfigError(ValueError):
    """Configuration could not be loaded; the message names every offending key."""


class _Strict(BaseModel):
    # A typo in a YAML key must fail loudly, not be ignored.
    model_config = ConfigDict(extra="forbid")


class FeatureSpec(_Strict):
    name: str
    dtype: Literal["int64", "float64", "category", "bool"]
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
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


class DataSource(_Strict):
    kind: Literal["synthetic", "files"] = "synthetic"
    path: str | None = None

    @model_validator(mode="after")
    def _path_for_files(self) -> DataSource:
        if self.kind == "files" and not self.path:
            raise ValueError("source.kind 'files' needs source.path (a folder, file or s3:// prefix)")
        return self


class DatasetConfig(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    entity_column: str
    timestamp_column: str
    label_column: str
    source: DataSource = DataSource()
    features: list[FeatureSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_columns(self) -> DatasetConfig:
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
        return self

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


class StoragePrefixes(_Strict):
    raw: str = "raw"
    quarantine: str = "quarantine"
    models: str = "models"
    predictions: str = "predictions"
    reports: str = "reports"
    staging: str = "_staging"


class StorageConfig(_Strict):
    endpoint_url: str | None = None
    region: str = "us-east-1"
    bucket: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.\-]*[a-z0-9]$")
    addressing_style: Literal["path", "virtual", "auto"] = "path"
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    credentials_file: Path | None = None
    # Name of a prefect-aws `AwsCredentials` block on the Prefect server: the keys live in the server's database,
    # never in this repo or the environment of each process.
    credentials_block: str | None = Field(default=None, min_length=1)
    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff_seconds: float = Field(default=0.2, ge=0)
    connect_timeout_seconds: float = Field(default=5, gt=0)
    read_timeout_seconds: float = Field(default=60, gt=0)
    # Batch inference sweeps staging garbage (failed runs' parts, unaborted multipart uploads) older than this;
    # longer than any run, so a run in flight never loses its parts.
    staging_retention_hours: float = Field(default=24, gt=0)
    prefixes: StoragePrefixes = StoragePrefixes()

    def resolved_credentials(self) -> tuple[str, str] | None:
        """Explicit keys, else the credentials file, else None: the object store then asks the Prefect block
        (`credentials_block`) if one is named, else boto3's default chain (env, profile, instance role)."""
        if self.access_key_id and self.secret_access_key:
            return self.access_key_id.get_secret_value(), self.secret_access_key.get_secret_value()
        if self.credentials_file and self.credentials_file.exists() and not self.credentials_block:
            data = json.loads(self.credentials_file.read_text())
            return data["access_key_id"], data["secret_access_key"]
        return None


class PrefectConfig(_Strict):
    api_url: str = "http://127.0.0.1:4200/api"
    work_pool: str = "conveyor-process"
    # The Prefect server's database. None: SQLite under PREFECT_HOME. Production: a PostgreSQL URL such as
    # postgresql+asyncpg://prefect:<password>@db:5432/prefect, from CONVEYOR_PREFECT__DATABASE_URL (never the repo).
    database_url: SecretStr | None = None
    # Basic auth for the Prefect API ('user:password'): the server enforces it (PREFECT_SERVER_API_AUTH_STRING),
    # every client the stack starts sends it (PREFECT_API_AUTH_STRING). From CONVEYOR_PREFECT__API_AUTH_STRING.
    api_auth_string: SecretStr | None = None
    # `conveyor deploy` installs an automation that marks a flow run Crashed once it has missed this many
    # heartbeats (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, default 180 s) without ending: its process died. 0: don't.
    zombie_after_missed_heartbeats: int = Field(default=3, ge=0, le=100)


class NotificationsConfig(_Strict):
    """Where a failed run or a refused gate is reported (conveyor/adapters/notify.py)."""

    # Apprise URLs (slack://..., mailto://..., json://host/path); they hold tokens: set them from the
    # environment (CONVEYOR_NOTIFICATIONS__APPRISE_URLS='["slack://T/B/C"]'), never in the repo.
    apprise_urls: list[SecretStr] = Field(default_factory=list)
    on_failure: bool = Field(default=True, description="notify when a flow run fails or crashes")
    on_gate_refusal: bool = Field(default=True, description="notify when an evaluation gate refuses a model")


class LocalStackConfig(_Strict):
    state_dir: Path = Path(".local")
    host: Literal["127.0.0.1"] = "127.0.0.1"
    s3_port: int = Field(default=8333, ge=1024, le=55000)
    prefect_port: int = Field(default=4200, ge=1024, le=65535)
    start_timeout_seconds: float = Field(default=90, gt=0)


class GeneratorConfig(_Strict):
    seed: int = 7
    n_entities: int = Field(default=5000, ge=10)
    start_date: dt.date = dt.date(2026, 1, 1)
    days: int = Field(default=120, ge=1)
    events_per_entity_per_month: float = Field(default=2.0, gt=0)


class DirectionalCheck(_Strict):
    """Adding `delta` to numeric `feature` must move the mean score in `direction` (within `tolerance`)."""

    feature: str
    delta: float
    direction: Literal["increase", "decrease"] = "increase"
    tolerance: float = Field(default=0.0, ge=0)


class GatesConfig(_Strict):
    min_roc_auc: float = Field(default=0.70, ge=0, le=1)
    min_pr_auc: float = Field(default=0.30, ge=0, le=1)
    max_brier: float = Field(default=0.20, ge=0, le=1)
    min_training_rows: int = Field(default=1000, ge=1)
    max_regression_vs_champion: float = Field(default=0.005, ge=0)
    min_improvement_to_replace: float = Field(default=0.0, ge=0)
    # Per-slice no-regression (segments: training.segments), on the primary metric, vs the champion.
    max_slice_regression: float = Field(default=0.02, ge=0, description="ROC AUC drop allowed in any slice")
    min_slice_rows: int = Field(default=200, ge=1, description="smaller slices (or one class only) are skipped")
    # Behavioural checks on the test set (tests/model): invariance and directional expectations.
    invariant_features: list[str] = Field(default_factory=list, description="permuting one moves scores little")
    max_invariance_shift: float = Field(default=0.05, ge=0, description="mean |score change| allowed")
    directional: list[DirectionalCheck] = Field(default_factory=list)


class FeatureDriftThresholds(_Strict):
    psi: float | None = Field(default=None, gt=0)
    ks: float | None = Field(default=None, gt=0, le=1)


class DriftConfig(_Strict):
    """Drift monitor (conveyor/domain/drift.py, flows/drift_monitor.py). A feature drifts when PSI or KS exceeds
    its threshold."""

    psi_threshold: float = Field(default=0.2, gt=0)
    ks_threshold: float = Field(default=0.1, gt=0, le=1)
    prediction_psi_threshold: float = Field(default=0.2, gt=0)
    max_drifted_share: float = Field(default=0.0, ge=0, le=1)
    per_feature: dict[str, FeatureDriftThresholds] = Field(default_factory=dict, description="overrides by feature")
    bins: int = Field(default=10, ge=2, le=100, description="reference-quantile bins for numeric PSI")
    min_rows: int = Field(default=500, ge=1, description="fewer current rows: no verdict (insufficient data)")
    max_metric_drop: float = Field(default=0.05, ge=0, le=1, description="ROC AUC drop vs test metrics = decay")
    label_delay_days: int = Field(default=30, ge=0, description="labels of a window are known this many days later")
    window_days: int = Field(default=7, ge=1, description="days of raw rows compared with the reference")
    histogram_sample: int = Field(default=200_000, ge=1000, description="rows drawn for the HTML histograms")


class RetrainingConfig(_Strict):
    """Event-driven retraining (flows/retraining.py) and its guardrails."""

    cooldown_hours: float = Field(default=24.0, ge=0, description="no second retraining of a model within this")
    training_window_days: int = Field(default=60, ge=1, description="days of data up to the drifted window")
    require_approval: bool = Field(default=False, description="register the challenger; a person promotes it")
    approval_timeout_seconds: int = Field(default=86_400, ge=1)
    approval_poll_seconds: int = Field(default=10, ge=1, description="a paused run checks for the answer this often")
    concurrency_slot_timeout_seconds: float = Field(
        default=10, gt=0, description="a trigger that cannot get the model's slot in this time is suppressed"
    )


class ModelSpec(_Strict):
    """An estimator (import path) and its hyper-parameters; preprocessing comes from dataset.features."""

    estimator: str = Field(pattern=r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$", description="e.g. sklearn.ensemble.X")
    params: dict[str, Any] = Field(default_factory=dict)
    scale_numeric: bool = Field(default=False, description="StandardScaler on numeric features (linear models)")


class TrainingConfig(_Strict):
    """Training (tasks/training.py, flows/training.py) and the model registry (conveyor/adapters/registry.py)."""

    model_name: str = Field(default="churn", pattern=r"^[a-z][a-z0-9_-]*$", description="registry model name")
    model_config_name: str = Field(default="default", description="entry of `models` used when the flow names none")
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    seed: int = 42
    validation_fraction: float = Field(default=0.15, gt=0, lt=0.5, description="by event time, after train")
    test_fraction: float = Field(default=0.2, gt=0, lt=0.5, description="the latest rows by event time")
    primary_metric: Literal["roc_auc", "pr_auc"] = "roc_auc"
    segments: list[str] = Field(default_factory=list, description="categorical features sliced by the slice gate")
    reference_sample_rows: int = Field(default=20_000, ge=100, description="training rows kept for drift")
    window_days: int = Field(default=90, ge=1, description="training window when the flow names no start date")
    # OpenMP/BLAS threads while fitting and scoring (threadpoolctl). None: the libraries' default (all cores).
    max_threads: int | None = Field(default=1, ge=1, description="cap on native threads in fit/predict")

    @model_validator(mode="after")
    def _default_model_exists(self) -> TrainingConfig:
        if self.models and self.model_config_name not in self.models:
            raise ValueError(f"model_config_name {self.model_config_name!r} is not one of {sorted(self.models)}")
        return self


class FeaturesConfig(_Strict):
    """The Feast feature store (conveyor/adapters/feature_store.py, declarations in feature_repo/)."""

    project: str = Field(default="conveyor", pattern=r"^[a-z][a-z0-9_]*$")
    feature_service: str = Field(default="churn_v1", description="FeatureService used when none is named")
    repo_dir: Path = Path("feature_repo")
    # Registry, SQLite online store and the offline parquet copy of the raw partitions; default <state_dir>/feast.
    state_dir: Path | None = None
    ttl_days: int = Field(default=90, ge=1)
    owner: str = "ml-platform"
    redis_connection_string: str = "127.0.0.1:6379"  # prod profile's online store
    # Prod profile's registry: a SQLAlchemy URL (postgresql+psycopg://user:password@host/db) of a SQL registry that
    # every worker shares; from the environment (CONVEYOR_FEATURES__REGISTRY_URL), never from this repo.
    registry_url: SecretStr | None = None
    materialize_chunk_hours: int = Field(default=24, ge=1, description="time slice read from the offline store")
    online_write_batch_size: int = Field(default=20_000, ge=1, description="rows per online_write_batch call")
    skew_sample_size: int = Field(default=200, ge=1)
    skew_tolerance: float = Field(default=1e-9, ge=0, description="absolute tolerance for float features")


class ScoringConfig(_Strict):
    """Batch inference (flows/batch_inference.py, conveyor/services/scoring.py)."""

    model_name: str = Field(default="churn", description="registry model scored when the flow names none")
    chunk_rows: int = Field(default=500_000, ge=1_000, description="rows in memory per chunk, whatever the input")
    threshold: float = Field(default=0.5, ge=0, le=1, description="decision = score >= threshold")
    feature_source: Literal["offline", "online"] = "offline"  # Feast point-in-time as of the scoring time, or online
    population_lookback_days: int = Field(default=30, ge=1, description="score entities seen in this many days")
    # Rows whose entity has no feature values at all / rows with some features null: score them with
    # `feature_defaults` (unset features stay NaN for the model's own imputer) or quarantine them. Counted either way.
    unknown_entities: Literal["default", "quarantine"] = "quarantine"
    missing_features: Literal["default", "quarantine"] = "default"
    feature_defaults: dict[str, float | str] = Field(default_factory=dict)
    max_quarantined_share: float = Field(default=0.05, ge=0, le=1, description="above it the batch is rejected")
    validation_sample_rows: int = Field(default=10_000, ge=100, description="rows checked by the GX scoring suite")
    upload_part_mb: int = Field(default=16, ge=5, le=512, description="S3 multipart part size")
    task_runner: Literal["thread", "dask"] = "thread"
    max_parallel_partitions: int = Field(default=2, ge=1, description="partitions scored at once")
    shadow_prefix: str = "shadow-predictions"  # challenger scores; never under storage.prefixes.predictions


class ValidationConfig(_Strict):
    """The data validation gate (tasks/validation.py); the suites themselves are JSON in `suites_dir`."""

    mode: Literal["batch", "row"] = Field(
        default="batch",
        description="batch: any failure rejects the whole batch; row: rows breaking row-level "
        "rules are quarantined and the rest go on (batch-level rules still reject the batch)",
    )
    engine: Literal["fast", "gx"] = Field(
        default="fast",
        description="fast: vectorized pandas decides, Great Expectations renders the report and "
        "Data Docs when a batch fails; gx: Great Expectations decides every batch (slower)",
    )
    suites_dir: Path = Path("configs/expectations")
    # Data Docs (HTML) go here; default <local_stack.state_dir>/gx-docs (git-ignored).
    docs_dir: Path | None = None
    build_docs: bool = True
    # Also copy a failed batch's Data Docs page next to its report.json in quarantine (data-docs.html), so the
    # page is where the batch is, not only on the machine that ran the flow.
    publish_docs: bool = True
    sample_size: int = Field(default=5, ge=0, le=100, description="bad values kept per failed expectation")
    # Defaults `conveyor validation init-suites` writes into the suites; at run time the JSON files rule.
    max_null_share: float = Field(default=0.01, ge=0, le=1)
    max_age_hours: float = Field(default=36, gt=0, description="newest timestamp at most this old vs as_of")
    min_rows: int = Field(default=1, ge=0)
    max_rows: int = Field(default=50_000_000, ge=1)


class Settings(BaseSettings):
    """Everything Conveyor is configured by. Build it with `load_settings()`."""

    model_config = SettingsConfigDict(
        env_prefix="CONVEYOR_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    active_profile: Literal["local", "prod"] = "local"
    project_root: Path
    dataset: DatasetConfig
    storage: StorageConfig
    prefect: PrefectConfig = PrefectConfig()
    notifications: NotificationsConfig = NotificationsConfig()
    local_stack: LocalStackConfig = LocalStackConfig()
    generator: GeneratorConfig = GeneratorConfig()
    gates: GatesConfig = GatesConfig()
    drift: DriftConfig = DriftConfig()
    retraining: RetrainingConfig = RetrainingConfig()
    scoring: ScoringConfig = ScoringConfig()
    features: FeaturesConfig = FeaturesConfig()
    validation: ValidationConfig = ValidationConfig()
    training: TrainingConfig = TrainingConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The merged YAML arrives as init kwargs; environment variables must beat it.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _resolve_paths(self) -> Settings:
        # Relative paths in YAML are relative to the project root, not to the caller's cwd.
        if not self.local_stack.state_dir.is_absolute():
            self.local_stack.state_dir = self.project_root / self.local_stack.state_dir
        if not self.features.repo_dir.is_absolute():
            self.features.repo_dir = self.project_root / self.features.repo_dir
        if self.features.state_dir is None:
            self.features.state_dir = self.local_stack.state_dir / "feast"
        elif not self.features.state_dir.is_absolute():
            self.features.state_dir = self.project_root / self.features.state_dir
        if not self.validation.suites_dir.is_absolute():
            self.validation.suites_dir = self.project_root / self.validation.suites_dir
        if self.validation.docs_dir is None:
            self.validation.docs_dir = self.local_stack.state_dir / "gx-docs"
        elif not self.validation.docs_dir.is_absolute():
            self.validation.docs_dir = self.project_root / self.validation.docs_dir
        cred = self.storage.credentials_file
        if cred is not None and not cred.is_absolute():
            self.storage.credentials_file = self.project_root / cred
        return self


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _describe(exc: ValidationError, files: list[Path]) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "<root>"
        got = (
            f" (got {err['input']!r})"
            if err["type"] not in ("missing",) and not isinstance(err.get("input"), dict | list)
            else ""
        )
        lines.append(f"  {key}: {err['msg']}{got}")
    sources = ", ".join(str(f) for f in files)
    return f"invalid configuration ({len(lines)} problem(s)) from {sources} + CONVEYOR_* env:\n" + "\n".join(lines)


def load_settings(profile: str | None = None, config_dir: Path | str | None = None) -> Settings:
    """Read and validate the configuration for `profile` (default: $CONVEYOR_PROFILE or 'local')."""
    profile = profile or os.environ.get("CONVEYOR_PROFILE") or "local"
    if profile not in PROFILES:
        raise ConfigError(f"CONVEYOR_PROFILE: unknown profile {profile!r}; expected one of {PROFILES}")
    directory = Path(config_dir or os.environ.get("CONVEYOR_CONFIG_DIR") or CONFIG_DIR).resolve()
    files = [directory / "base.yaml", directory / "dataset.yaml", directory / f"{profile}.yaml"]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise ConfigError(f"configuration files not found: {missing}")

    merged = _read_yaml(files[0])
    merged = _deep_merge(merged, {"dataset": _read_yaml(files[1])})
    merged = _deep_merge(merged, _read_yaml(files[2]))
    merged["active_profile"] = profile
    merged.setdefault("project_root", directory.parent)
    try:
        return Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, files)) from None
