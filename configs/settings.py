"""Typed configuration: `configs/*.yaml` merged, then environment variables on top.

Load order (later wins): base.yaml -> dataset.yaml (as `dataset`) -> <profile>.yaml -> CONVEYOR_* env vars.
`CONVEYOR_PROFILE` picks the profile (local | prod); `CONVEYOR_CONFIG_DIR` points at another configs folder.
Nothing is read at import time: call `load_settings()` once at the edge and pass the result down.
The sections and every default live in `configs/dataset.py`, `configs/systems.py`, `configs/stages.py` and
`configs/monitoring.py`; this module merges the sources, derives the local profile's endpoints from `local_stack`,
and checks references across sections.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from configs.dataset import (
    DatasetConfig,
    DataSource,
    DirectionalCheck,
    FeatureDriftThresholds,
    FeatureSpec,
    ModelCardText,
    SensitiveAttribute,
)
from configs.monitoring import DriftConfig, RetrainingConfig
from configs.stages import (
    GatesConfig,
    GeneratorConfig,
    IngestConfig,
    ModelCardConfig,
    ModelSpec,
    ScoringConfig,
    ServingConfig,
    TrainingConfig,
    TwinConfig,
    ValidationConfig,
)
from configs.systems import (
    FeaturesConfig,
    LocalStackConfig,
    NotificationsConfig,
    PrefectConfig,
    SigningConfig,
    StorageConfig,
    StoragePrefixes,
)

# The section models are imported from here too (`from configs.settings import StorageConfig`).
__all__ = [
    "CONFIG_DIR",
    "PROFILES",
    "TELEMETRY_OFF_ENV",
    "ConfigError",
    "DataSource",
    "DatasetConfig",
    "DirectionalCheck",
    "DriftConfig",
    "FeatureDriftThresholds",
    "FeatureSpec",
    "FeaturesConfig",
    "GatesConfig",
    "GeneratorConfig",
    "IngestConfig",
    "LocalStackConfig",
    "ModelCardConfig",
    "ModelCardText",
    "ModelSpec",
    "NotificationsConfig",
    "PrefectConfig",
    "RetrainingConfig",
    "ScoringConfig",
    "SensitiveAttribute",
    "ServingConfig",
    "Settings",
    "SigningConfig",
    "StorageConfig",
    "StoragePrefixes",
    "TrainingConfig",
    "TwinConfig",
    "ValidationConfig",
    "config_directory",
    "load_settings",
]

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


class Settings(BaseSettings):
    """Everything Conveyor is configured by. Build it with `load_settings()`."""

    model_config = SettingsConfigDict(
        env_prefix="CONVEYOR_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    active_profile: Literal["local", "prod"] = "local"
    project_root: Path
    dataset: DatasetConfig
    # default_factory, not a shared instance: the validators below fill in derived values per Settings object.
    storage: StorageConfig = Field(default_factory=StorageConfig)
    signing: SigningConfig = Field(default_factory=SigningConfig)
    prefect: PrefectConfig = Field(default_factory=PrefectConfig)
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)
    local_stack: LocalStackConfig = Field(default_factory=LocalStackConfig)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    gates: GatesConfig = Field(default_factory=GatesConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    retraining: RetrainingConfig = Field(default_factory=RetrainingConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    card: ModelCardConfig = Field(default_factory=ModelCardConfig)
    twin: TwinConfig = Field(default_factory=TwinConfig)

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

    @model_validator(mode="before")
    @classmethod
    def _refuse_moved_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and (moved := _moved_keys(data)):
            raise ValueError(_MOVED_KEYS + "\n".join(moved))
        return data

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
        staging = self.ingest.staging_dir
        if staging is not None and not staging.is_absolute():
            self.ingest.staging_dir = self.project_root / staging
        if self.validation.docs_dir is None:
            self.validation.docs_dir = self.local_stack.state_dir / "gx-docs"
        elif not self.validation.docs_dir.is_absolute():
            self.validation.docs_dir = self.project_root / self.validation.docs_dir
        if self.signing.key_dir is None:
            self.signing.key_dir = self.local_stack.state_dir / "signing"
        elif not self.signing.key_dir.is_absolute():
            self.signing.key_dir = self.project_root / self.signing.key_dir
        cred = self.storage.credentials_file
        if cred is not None and not cred.is_absolute():
            self.storage.credentials_file = self.project_root / cred
        return self

    @model_validator(mode="after")
    def _derive_local_endpoints(self) -> Settings:
        # The local profile's clients use the servers `conveyor stack up` starts, so their addresses follow
        # `local_stack` (one setting moves server and clients). A value set in YAML or env is never replaced:
        # `model_fields_set` holds the keys given explicitly, even an explicit null.
        if self.active_profile != "local":
            return self
        if "endpoint_url" not in self.storage.model_fields_set:
            self.storage.endpoint_url = self.local_stack.s3_url
        if "credentials_file" not in self.storage.model_fields_set:
            self.storage.credentials_file = self.local_stack.state_dir / "s3-credentials.json"
        if "api_url" not in self.prefect.model_fields_set:
            self.prefect.api_url = self.local_stack.prefect_api_url
        return self

    @model_validator(mode="after")
    def _derive_dataset_names(self) -> Settings:
        # Names that follow from the dataset unless set: a user's own dataset.yaml renames them all at once.
        self.training.model_name = self.training.model_name or self.dataset.name
        self.scoring.model_name = self.scoring.model_name or self.training.model_name
        self.features.feature_service = self.features.feature_service or f"{self.dataset.name}_v1"
        default_model = self.training.default_models.get(self.dataset.task, "default")
        self.training.model_config_name = self.training.model_config_name or default_model
        return self


_MOVED_KEYS = "moved key(s):\n"
# Keys that moved: a configuration that still sets one fails at load saying where it went, not just "extra input".
_MOVED = {
    ("drift", "per_feature"): "moved to configs/dataset.yaml: give the feature's own entry its thresholds, e.g. "
    "`- {name: age, dtype: int64, min: 18, max: 100, drift: {psi: 0.3, ks: 0.15}}`",
}


def _moved_keys(data: dict[str, Any]) -> list[str]:
    found = []
    for (section, key), where in _MOVED.items():
        value = data.get(section)
        if isinstance(value, dict) and key in value:
            found.append(f"{section}.{key}: {where}")
    return found


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


def _feature_named(loc: tuple[int | str, ...], merged: dict[str, Any]) -> str:
    # `dataset.features.3.drift.psii` says where; the feature's name says which.
    if len(loc) < 3 or loc[:2] != ("dataset", "features") or not isinstance(loc[2], int):
        return ""
    features = merged.get("dataset", {}).get("features")
    entry = features[loc[2]] if isinstance(features, list) and loc[2] < len(features) else None
    return f" (feature {entry['name']!r})" if isinstance(entry, dict) and "name" in entry else ""


def _describe(exc: ValidationError, files: list[Path], merged: dict[str, Any]) -> str:
    lines = []
    for err in exc.errors():
        message = str(err.get("ctx", {}).get("error", ""))
        if not err["loc"] and message.startswith(_MOVED_KEYS):
            # A cross-section check: its message already names each key, one problem a line.
            lines += [f"  {problem}" for problem in message.removeprefix(_MOVED_KEYS).splitlines()]
            continue
        key = ".".join(str(part) for part in err["loc"]) or "<root>"
        got = (
            f" (got {err['input']!r})"
            if err["type"] not in ("missing",) and not isinstance(err.get("input"), dict | list)
            else ""
        )
        lines.append(f"  {key}{_feature_named(err['loc'], merged)}: {err['msg']}{got}")
    sources = ", ".join(str(f) for f in files)
    return f"invalid configuration ({len(lines)} problem(s)) from {sources} + CONVEYOR_* env:\n" + "\n".join(lines)


def config_directory(config_dir: Path | str | None = None) -> Path:
    """Where the YAML files are: `config_dir`, else $CONVEYOR_CONFIG_DIR, else this package's folder."""
    return Path(config_dir or os.environ.get("CONVEYOR_CONFIG_DIR") or CONFIG_DIR).resolve()


def load_settings(profile: str | None = None, config_dir: Path | str | None = None) -> Settings:
    """Read and validate the configuration for `profile` (default: $CONVEYOR_PROFILE or 'local')."""
    profile = profile or os.environ.get("CONVEYOR_PROFILE") or "local"
    if profile not in PROFILES:
        raise ConfigError(f"CONVEYOR_PROFILE: unknown profile {profile!r}; expected one of {PROFILES}")
    directory = config_directory(config_dir)
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
        raise ConfigError(_describe(exc, files, merged)) from None
