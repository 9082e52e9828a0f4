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
    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff_seconds: float = Field(default=0.2, ge=0)
    connect_timeout_seconds: float = Field(default=5, gt=0)
    read_timeout_seconds: float = Field(default=60, gt=0)
    prefixes: StoragePrefixes = StoragePrefixes()

    def resolved_credentials(self) -> tuple[str, str] | None:
        """Explicit keys, else the credentials file, else None (boto3's default chain: env, role...)."""
        if self.access_key_id and self.secret_access_key:
            return self.access_key_id.get_secret_value(), self.secret_access_key.get_secret_value()
        if self.credentials_file and self.credentials_file.exists():
            data = json.loads(self.credentials_file.read_text())
            return data["access_key_id"], data["secret_access_key"]
        return None


class PrefectConfig(_Strict):
    api_url: str = "http://127.0.0.1:4200/api"
    work_pool: str = "conveyor-process"


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


class GatesConfig(_Strict):
    min_roc_auc: float = Field(default=0.70, ge=0, le=1)
    min_pr_auc: float = Field(default=0.30, ge=0, le=1)
    max_brier: float = Field(default=0.20, ge=0, le=1)
    min_training_rows: int = Field(default=1000, ge=1)
    max_regression_vs_champion: float = Field(default=0.005, ge=0)
    min_improvement_to_replace: float = Field(default=0.0, ge=0)


class DriftConfig(_Strict):
    psi_threshold: float = Field(default=0.2, gt=0)
    ks_threshold: float = Field(default=0.1, gt=0, le=1)
    prediction_psi_threshold: float = Field(default=0.2, gt=0)
    max_drifted_share: float = Field(default=0.0, ge=0, le=1)


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
    local_stack: LocalStackConfig = LocalStackConfig()
    generator: GeneratorConfig = GeneratorConfig()
    gates: GatesConfig = GatesConfig()
    drift: DriftConfig = DriftConfig()

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
        got = f" (got {err['input']!r})" if err["type"] not in ("missing",) and not isinstance(
            err.get("input"), dict | list
        ) else ""
        lines.append(f"  {key}: {err['msg']}{got}")
    sources = ", ".join(str(f) for f in files)
    return f"invalid configuration ({len(lines)} problem(s)) from {sources} + CONVEYOR_* env:\n" + "\n".join(
        lines
    )


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
