"""The Feast repo as the flows see it: `feature_repo/feature_store[.<profile>].yaml` with its `${VAR}`s set from
the settings, the declarations of `feature_repo/definitions.py`, and `apply`.

Layout (local profile, under `features.state_dir`, default `<local_stack.state_dir>/feast`): `registry.db` (the
file registry) and `online.db` (the SQLite online store). The offline data is the raw Delta table on the object
store, read by duckdb directly (conveyor/adapters/duckdb_s3.py): there is no local copy.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import feast.infra.data_sources.mlflow.mlflow_dataset_source  # noqa: F401  (eager: see the note below the imports)
import pandas as pd
from feast import FeatureService, FeatureStore, RepoConfig
from feast.errors import FeatureServiceNotFoundException
from feast.repo_config import load_repo_config

from configs.settings import Settings
from conveyor.adapters import raw_data
from conveyor.domain.failures import DeterministicFailure

# The eager mlflow_dataset_source import: Feast imports that module lazily inside every duckdb offline read. It is
# @typechecked, so importing it runs ast.parse over its source, and CPython 3.11.7 shares the AST constructor's
# recursion counter between parses (gh-106905, fixed in 3.11.8): a parse in a task's thread while another thread
# parses fails with `SystemError: AST constructor recursion depth mismatch`, as it did in CI inside
# get_historical_features. Imported here, with the flow modules, before any task thread runs; never parsed again.

# Importing feast runs `warnings.simplefilter("once", DeprecationWarning)`, which overrides a filter set earlier
# (the CLI's); ibis 12 on duckdb 1.5 (the offline store) then prints a deprecation we cannot fix from here on
# every retrieval. Filtered after the import, so this filter comes first. Tests keep pytest's own filters.
warnings.filterwarnings("ignore", message=r"fetch_arrow_table\(\) is deprecated", category=DeprecationWarning)


class FeatureStoreError(DeterministicFailure, RuntimeError):
    """The feature store could not do what was asked; the message says what and where. Deterministic (a
    declaration or configuration problem): never retried; Feast's own connection errors are not wrapped."""


def state_dir(settings: Settings) -> Path:
    assert settings.features.state_dir is not None  # resolved by Settings
    return settings.features.state_dir


def _yaml_path(settings: Settings) -> Path:
    profile = settings.active_profile
    name = "feature_store.yaml" if profile == "local" else f"feature_store.{profile}.yaml"
    path = settings.features.repo_dir / name
    if not path.exists():
        raise FeatureStoreError(f"feature store config {path} not found (profile {profile!r})")
    return path


def feast_env(settings: Settings, *, with_secrets: bool = True) -> dict[str, str]:
    """The `${VAR}`s feature_store.yaml names, from the settings (the same values the feast CLI needs)."""
    env = {
        "CONVEYOR_FEAST_PROJECT": settings.features.project,
        "CONVEYOR_FEAST_STATE_DIR": str(state_dir(settings)),
        "CONVEYOR_FEAST_REDIS": settings.features.redis_connection_string,
    }
    url = settings.features.registry_url
    if url is not None and with_secrets:
        env["CONVEYOR_FEAST_REGISTRY_URL"] = url.get_secret_value()
    return env


@contextmanager
def _expanded_env(settings: Settings) -> Iterator[None]:
    """Set the yaml's variables only while Feast reads it, so a registry password does not stay in os.environ
    (and in every subprocess's environment)."""
    path = _yaml_path(settings)
    if "${CONVEYOR_FEAST_REGISTRY_URL}" in path.read_text() and settings.features.registry_url is None:
        raise FeatureStoreError(
            f"{path} declares a SQL registry: set features.registry_url (CONVEYOR_FEATURES__REGISTRY_URL, "
            "e.g. postgresql+psycopg://user:password@host:5432/feast)"
        )
    overrides = feast_env(settings)
    saved = {key: os.environ.get(key) for key in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def repo_config(settings: Settings) -> RepoConfig:
    """The RepoConfig Feast reads from the profile's feature_store yaml, `${VAR}`s expanded from the settings."""
    with _expanded_env(settings):
        return load_repo_config(settings.features.repo_dir, _yaml_path(settings))


_STORES: dict[str, FeatureStore] = {}


def feature_store(settings: Settings) -> FeatureStore:
    """A FeatureStore for these settings (one per distinct configuration, reused within the process)."""
    # The JSON dump masks secrets, so settings that differ only in the registry URL would share a store.
    registry_url = settings.features.registry_url
    secret = registry_url.get_secret_value() if registry_url is not None else ""
    key = settings.model_dump_json() + hashlib.sha256(secret.encode()).hexdigest()
    if key not in _STORES:
        state_dir(settings).mkdir(parents=True, exist_ok=True)
        with _expanded_env(settings):
            _STORES[key] = FeatureStore(repo_path=str(settings.features.repo_dir), fs_yaml_file=_yaml_path(settings))
    return _STORES[key]


def raw_table(settings: Settings) -> raw_data.RawTable:
    """The raw Delta table the offline store reads (the one the ingest flow writes)."""
    return raw_data.raw_table(settings.storage, settings)


def _load_definitions_module(repo_dir: Path) -> Any:
    path = repo_dir / "definitions.py"
    spec = importlib.util.spec_from_file_location("conveyor_feature_repo_definitions", path)
    if spec is None or spec.loader is None:
        raise FeatureStoreError(f"cannot load Feast declarations from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses in the file look their module up there
    spec.loader.exec_module(module)
    return module


def definitions(settings: Settings) -> list[Any]:
    """The Feast objects `feature_repo/definitions.py` declares for these settings."""
    module = _load_definitions_module(settings.features.repo_dir)
    objects: list[Any] = module.build(settings, table_uri=raw_table(settings).uri).objects()
    return objects


def service_name(settings: Settings, feature_service: str | None) -> str:
    return feature_service or settings.features.feature_service


def service(store: FeatureStore, name: str) -> FeatureService:
    try:
        return store.get_feature_service(name)
    except FeatureServiceNotFoundException as exc:  # not a registry that cannot be reached: that stays retryable
        known = [s.name for s in store.list_feature_services()]
        raise FeatureStoreError(
            f"feature service {name!r} is not in the registry (known: {known}); declare it in "
            "feature_repo/definitions.py and run apply_definitions, or fix features.feature_service"
        ) from exc


def service_features(store: FeatureStore, name: str) -> list[str]:
    return [f.name for projection in service(store, name).feature_view_projections for f in projection.features]


def default_view(store: FeatureStore, settings: Settings) -> str:
    return str(service(store, settings.features.feature_service).feature_view_projections[0].name)


@dataclass(frozen=True)
class AppliedDefinitions:
    project: str
    entities: list[str]
    feature_views: list[str]
    feature_services: list[str]
    registry: str


def apply_definitions(settings: Settings) -> AppliedDefinitions:
    """Register the repo's declarations (FeatureStore.apply from Python: milliseconds, not the 6 s CLI)."""
    objects = definitions(settings)
    services = [o.name for o in objects if isinstance(o, FeatureService)]
    if settings.features.feature_service not in services:
        raise FeatureStoreError(
            f"features.feature_service {settings.features.feature_service!r} is not declared in "
            f"{settings.features.repo_dir / 'definitions.py'} (declared: {services})"
        )
    store = feature_store(settings)
    store.apply(objects)
    return AppliedDefinitions(
        project=store.project,
        entities=[e.name for e in store.list_entities()],
        feature_views=[v.name for v in store.list_feature_views()],
        feature_services=[s.name for s in store.list_feature_services()],
        registry=without_password(str(store.config.registry.path)),
    )


def without_password(registry_path: str) -> str:
    """A registry path fit for logs: a SQL registry's URL carries its database password."""
    if "://" not in registry_path:
        return registry_path
    from sqlalchemy.engine import make_url

    try:
        return make_url(registry_path).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL (e.g. s3://): it has no password to hide
        return registry_path.split("://", 1)[0] + "://..." if "@" in registry_path else registry_path


def utc(value: dt.datetime | dt.date | pd.Timestamp) -> dt.datetime:
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    result: dt.datetime = stamp.to_pydatetime()
    return result
