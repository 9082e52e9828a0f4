from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from configs.settings import CONFIG_DIR, ConfigError, load_settings


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
    data = yaml.safe_load(path.read_text())
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
    _edit(config_dir / "base.yaml", lambda d: d["storage"].update({"buckt": "x"}))
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
    with pytest.raises(ConfigError, match=r"dataset\.entity_column: Field required"):
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
