from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from configs.settings import CONFIG_DIR, ConfigError, FeatureDriftThresholds, Settings, load_settings


@pytest.fixture(autouse=True)
def _no_conveyor_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests read the shipped YAML; variables set by the integration fixtures must not leak in."""
    for key in [k for k in os.environ if k.startswith("CONVEYOR_")]:
        monkeypatch.delenv(key)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A copy of the shipped configs that a test may break."""
    target = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return target


def _edit(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(path.read_text()) or {}  # a profile file may hold only comments
    change(data)
    path.write_text(yaml.safe_dump(data))


def test_shipped_profiles_load(monkeypatch: pytest.MonkeyPatch) -> None:
    local = load_settings("local")
    prod = load_settings("prod")
    assert local.active_profile == "local" and prod.active_profile == "prod"
    assert local.storage.endpoint_url == "http://127.0.0.1:8333"
    assert prod.storage.endpoint_url is None and prod.storage.bucket == "conveyor-prod"
    assert local.dataset.entity_column == "customer_id"
    assert len(local.dataset.features) == 11
    # relative paths resolve against the project root, not the caller's working directory
    assert local.local_stack.state_dir == CONFIG_DIR.parent / ".local"


def test_profile_selected_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_PROFILE", "prod")
    assert load_settings().active_profile == "prod"


def test_environment_overrides_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_STORAGE__BUCKET", "team-bucket")
    monkeypatch.setenv("CONVEYOR_GATES__MIN_ROC_AUC", "0.81")
    settings = load_settings("local")
    assert settings.storage.bucket == "team-bucket"
    assert settings.gates.min_roc_auc == pytest.approx(0.81)
    assert settings.storage.prefixes.raw == "raw"  # untouched siblings survive a nested override


def test_unknown_profile_is_named() -> None:
    with pytest.raises(ConfigError, match="unknown profile 'staging'"):
        load_settings("staging")


def test_invalid_env_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_GATES__MIN_ROC_AUC", "1.7")
    with pytest.raises(ConfigError, match=r"gates\.min_roc_auc: .*less than or equal to 1"):
        load_settings("local")


def test_typo_in_yaml_key_names_the_key(config_dir: Path) -> None:
    _edit(config_dir / "base.yaml", lambda d: d.setdefault("storage", {}).update({"buckt": "x"}))
    with pytest.raises(ConfigError, match=r"storage\.buckt: Extra inputs are not permitted"):
        load_settings("local", config_dir)


def test_bad_feature_type_names_the_feature(config_dir: Path) -> None:
    _edit(config_dir / "dataset.yaml", lambda d: d["features"][2].update({"dtype": "decimal"}))
    with pytest.raises(ConfigError, match=r"dataset\.features\.2\.dtype"):
        load_settings("local", config_dir)


def test_category_without_categories_is_rejected(config_dir: Path) -> None:
    _edit(config_dir / "dataset.yaml", lambda d: d["features"][-1].pop("categories"))
    with pytest.raises(ConfigError, match="feature 'region': dtype 'category' needs a non-empty 'categories'"):
        load_settings("local", config_dir)


def test_label_cannot_be_a_feature(config_dir: Path) -> None:
    _edit(config_dir / "dataset.yaml", lambda d: d.update({"label_column": "age"}))
    with pytest.raises(ConfigError, match=r"\['age'\] cannot be both a key/label column and a feature"):
        load_settings("local", config_dir)


def test_missing_required_key_is_named(config_dir: Path) -> None:
    _edit(config_dir / "dataset.yaml", lambda d: d.pop("entity_column"))
    with pytest.raises(ConfigError, match=r"dataset: Value error, entity_column: Field required \(or entity_columns"):
        load_settings("local", config_dir)


def test_broken_yaml_names_the_file(config_dir: Path) -> None:
    (config_dir / "local.yaml").write_text("storage: [unclosed\n")
    with pytest.raises(ConfigError, match=r"local\.yaml: not valid YAML"):
        load_settings("local", config_dir)


def test_secrets_are_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_STORAGE__SECRET_ACCESS_KEY", "super-secret-value")
    monkeypatch.setenv("CONVEYOR_STORAGE__ACCESS_KEY_ID", "key-id")
    settings = load_settings("prod")
    assert "super-secret-value" not in repr(settings)
    assert settings.storage.resolved_credentials() == ("key-id", "super-secret-value")


# ---- each default written once ------------------------------------------------------------------------------


def _leaves(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found: list[tuple[tuple[str, ...], Any]] = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            found += _leaves(value, (*prefix, key))
        else:
            found.append(((*prefix, key), value))
    return found


def _field_default(path: tuple[str, ...]) -> Any:
    """The default the typed models give the key at `path` (a section's default instance, walked down)."""
    section = Settings.model_fields[path[0]]
    value: Any = section.get_default(call_default_factory=True)
    for key in path[1:]:
        if not isinstance(value, BaseModel) or key not in type(value).model_fields:
            return _NO_DEFAULT  # a free-form mapping (training.models): no field default
        value = getattr(value, key)
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


_NO_DEFAULT = object()


@pytest.mark.parametrize("name", ["base.yaml", "local.yaml", "prod.yaml"])
def test_yaml_repeats_no_default(name: str) -> None:
    """A key in a YAML file whose value equals the typed default is a second copy of it, which drifts."""
    data = yaml.safe_load((CONFIG_DIR / name).read_text()) or {}
    repeated = [
        ".".join(path)
        for path, value in _leaves(data)
        if (default := _field_default(path)) is not _NO_DEFAULT and _same(default, value)
    ]
    assert not repeated, f"{name}: {len(repeated)} key(s) repeat their default from configs/*.py: {repeated}"


def _same(default: Any, value: Any) -> bool:
    if isinstance(default, Path | dt.date) or isinstance(value, dt.date):
        return str(default) == str(value)
    return bool(default == value)


# ---- derived values ----------------------------------------------------------------------------------------


def test_local_clients_follow_the_stack_ports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CONVEYOR_LOCAL_STACK__S3_PORT", "9555")
    monkeypatch.setenv("CONVEYOR_LOCAL_STACK__PREFECT_PORT", "4999")
    monkeypatch.setenv("CONVEYOR_LOCAL_STACK__STATE_DIR", str(tmp_path))
    settings = load_settings("local")
    assert settings.storage.endpoint_url == "http://127.0.0.1:9555"
    assert settings.prefect.api_url == "http://127.0.0.1:4999/api"
    assert settings.storage.credentials_file == tmp_path / "s3-credentials.json"
    assert settings.features.state_dir == tmp_path / "feast"


def test_an_explicit_endpoint_beats_the_derived_one(monkeypatch: pytest.MonkeyPatch, config_dir: Path) -> None:
    monkeypatch.setenv("CONVEYOR_LOCAL_STACK__S3_PORT", "9555")
    monkeypatch.setenv("CONVEYOR_PREFECT__API_URL", "http://127.0.0.1:4300/api")
    _edit(config_dir / "local.yaml", lambda d: d.update({"storage": {"endpoint_url": None}}))  # explicit null: AWS
    settings = load_settings("local", config_dir)
    assert settings.storage.endpoint_url is None
    assert settings.prefect.api_url == "http://127.0.0.1:4300/api"
    monkeypatch.setenv("CONVEYOR_STORAGE__ENDPOINT_URL", "http://127.0.0.1:7000")
    assert load_settings("local", config_dir).storage.endpoint_url == "http://127.0.0.1:7000"


def test_prod_derives_nothing_from_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_LOCAL_STACK__S3_PORT", "9555")
    prod = load_settings("prod")
    assert prod.storage.endpoint_url is None and prod.prefect.api_url is None
    assert prod.storage.credentials_file is None


def test_port_clash_advice_moves_server_and_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """The advice `stack up` gives on a busy port names a setting; following it moves the server and clients."""
    from conveyor.ops.local_stack import LocalStack, port_clash_message

    for service, variable, client in [
        ("s3", "CONVEYOR_LOCAL_STACK__S3_PORT", lambda s: s.storage.endpoint_url),
        ("prefect", "CONVEYOR_LOCAL_STACK__PREFECT_PORT", lambda s: s.prefect.api_url),
    ]:
        message = port_clash_message(service, "127.0.0.1", [8333])
        advised = re.search(r"(CONVEYOR_\w+)=<port>", message)
        assert advised is not None and advised.group(1) == variable, message
        monkeypatch.setenv(variable, "24680")
        settings = load_settings("local")
        stack = LocalStack(settings)
        server = stack.s3_url if service == "s3" else stack.prefect_api_url
        assert ":24680" in server and client(settings).startswith(server.removesuffix("/api")), (server, client)


# ---- feature names must exist ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "change"),
    [
        ("dataset.invariant_features[1]", lambda d: d.update({"invariant_features": ["region", "regoin"]})),
        (
            "dataset.directional[0].feature",
            lambda d: d.update({"directional": [{"feature": "support_calls", "delta": 3}]}),
        ),
        ("dataset.slices[0]", lambda d: d.update({"slices": ["contract"]})),
        (
            "dataset.model_card.sensitive_attributes[0].feature",
            lambda d: d["model_card"].update({"sensitive_attributes": [{"feature": "agee"}]}),
        ),
    ],
)
def test_a_feature_name_not_in_the_dataset_fails_at_load(config_dir: Path, key: str, change: Any) -> None:
    """The choices that name features live in dataset.yaml, beside them."""
    _edit(config_dir / "dataset.yaml", change)
    with pytest.raises(ConfigError) as info:
        load_settings("local", config_dir)
    message = str(info.value)
    assert f"{key.removeprefix('dataset.')}: " in message and "is not a feature of dataset 'churn'" in message, message
    assert "(1 problem(s))" in message and "'days_since_last_login'" in message  # lists what does exist


def _feature_entry(name: str, **extra: Any):  # type: ignore[no-untyped-def]
    def change(data: dict[str, Any]) -> None:
        next(f for f in data["features"] if f["name"] == name).update(extra)

    return change


def test_a_feature_carries_its_own_drift_thresholds(config_dir: Path) -> None:
    _edit(config_dir / "dataset.yaml", _feature_entry("age", drift={"psi": 0.3, "ks": 0.15}))
    _edit(config_dir / "dataset.yaml", _feature_entry("region", drift={"psi": 0.5}))
    dataset = load_settings("local", config_dir).dataset
    assert dataset.feature("age").drift == FeatureDriftThresholds(psi=0.3, ks=0.15)
    assert dataset.feature("region").drift == FeatureDriftThresholds(psi=0.5)
    assert dataset.feature("tenure_months").drift is None  # unset: the drift section's thresholds


@pytest.mark.parametrize(
    ("drift", "expected"),
    [
        ({"psii": 0.3}, r"dataset\.features\.0\.drift\.psii \(feature 'age'\): Extra inputs are not permitted"),
        ({"ks": 1.5}, r"dataset\.features\.0\.drift\.ks \(feature 'age'\): Input should be less than or equal to 1"),
        ({"psi": 0}, r"dataset\.features\.0\.drift\.psi \(feature 'age'\): Input should be greater than 0"),
    ],
)
def test_a_bad_feature_drift_threshold_names_the_key_and_feature(
    config_dir: Path, drift: dict[str, float], expected: str
) -> None:
    _edit(config_dir / "dataset.yaml", _feature_entry("age", drift=drift))
    with pytest.raises(ConfigError, match=expected):
        load_settings("local", config_dir)


def test_ks_on_a_categorical_feature_is_refused(config_dir: Path) -> None:
    _edit(config_dir / "dataset.yaml", _feature_entry("region", drift={"ks": 0.2}))
    with pytest.raises(ConfigError, match=r"feature 'region': drift\.ks is for numeric features; a category feature"):
        load_settings("local", config_dir)


@pytest.mark.parametrize("where", ["base.yaml", "env"])
def test_drift_per_feature_says_where_it_moved(config_dir: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """Each setting is written once: per-feature thresholds moved to the feature's entry in dataset.yaml."""
    if where == "env":
        monkeypatch.setenv("CONVEYOR_DRIFT__PER_FEATURE", '{"age": {"psi": 0.3}}')
    else:
        _edit(config_dir / "base.yaml", lambda d: d.update({"drift": {"per_feature": {"age": {"psi": 0.3}}}}))
    with pytest.raises(ConfigError) as info:
        load_settings("local", config_dir)
    message = str(info.value)
    assert "(1 problem(s))" in message and "drift.per_feature: moved to configs/dataset.yaml" in message, message
    assert "drift: {psi: 0.3" in message, message


def test_every_unknown_feature_is_named_at_once(config_dir: Path) -> None:
    _edit(config_dir / "dataset.yaml", lambda d: d.update({"slices": ["a", "b"]}))
    with pytest.raises(ConfigError) as info:
        load_settings("local", config_dir)
    assert "slices[0]: 'a'" in str(info.value) and "slices[1]: 'b'" in str(info.value)


def test_names_follow_the_dataset_unless_set(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's own dataset.yaml renames the model and the feature service: no churn name to hunt down."""
    _edit(config_dir / "dataset.yaml", lambda d: d.update({"name": "loans"}))
    settings = load_settings("local", config_dir)
    assert (settings.training.model_name, settings.scoring.model_name) == ("loans", "loans")
    assert settings.features.feature_service == "loans_v1"
    monkeypatch.setenv("CONVEYOR_TRAINING__MODEL_NAME", "loans-gbm")  # set: kept, and scoring follows it
    settings = load_settings("local", config_dir)
    assert (settings.training.model_name, settings.scoring.model_name) == ("loans-gbm", "loans-gbm")
    monkeypatch.setenv("CONVEYOR_SCORING__MODEL_NAME", "loans-champion")
    assert load_settings("local", config_dir).scoring.model_name == "loans-champion"


def test_the_default_model_follows_the_task(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings("local").training.model_config_name == "default"
    monkeypatch.setenv("CONVEYOR_DATASET__TASK", "regression")
    assert load_settings("local").training.model_config_name == "regression"  # training.default_models
    monkeypatch.setenv("CONVEYOR_TRAINING__MODEL_CONFIG_NAME", "ridge")
    assert load_settings("local").training.model_config_name == "ridge"  # named explicitly: kept


def test_a_default_model_that_is_not_in_the_catalogue_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_TRAINING__DEFAULT_MODELS", '{"regression": "gbm"}')
    with pytest.raises(ConfigError, match=r"default_models \{'regression': 'gbm'\}: not entries of models"):
        load_settings("local")


def test_a_multiclass_directional_check_must_name_its_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_DATASET__TASK", "multiclass")
    with pytest.raises(ConfigError, match=r"directional\[0\] \(support_calls_30d\): task multiclass needs "):
        load_settings("local")  # dataset.yaml's check names no class
    monkeypatch.setenv("CONVEYOR_DATASET__DIRECTIONAL", '[{"feature": "age", "delta": 1, "target_class": "gold"}]')
    monkeypatch.setenv("CONVEYOR_DATASET__CLASSES", '["basic", "premium"]')
    with pytest.raises(ConfigError, match=r"target_class 'gold' is not one of dataset.classes"):
        load_settings("local")
    monkeypatch.setenv("CONVEYOR_DATASET__DIRECTIONAL", '[{"feature": "age", "delta": 1, "target_class": "basic"}]')
    assert load_settings("local").dataset.directional[0].target_class == "basic"
    monkeypatch.setenv("CONVEYOR_DATASET__TASK", "binary")
    monkeypatch.delenv("CONVEYOR_DATASET__CLASSES")
    with pytest.raises(ConfigError, match=r"target_class is for task multiclass, not binary"):
        load_settings("local")
