"""The training flow end to end on the real S3 server, Prefect test server and Feast (temp paths): first
champion, a refused run on corrupted labels, a challenger inside the noise kept out by the default rule and let in
by `promote_when: not_worse`, its model card, rollback via the CLI."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import httpx
import numpy as np
import pandas as pd
import pytest

from configs.settings import Settings, load_settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.raw_data import publish_raw_partition, read_raw_window
from conveyor.adapters.registry import ModelRegistry
from conveyor.demo.synthetic import generate_day
from conveyor.ops import cli
from conveyor.services.training import data_fingerprint, read_training_rows
from flows.ingest import ingest
from flows.training import training

pytestmark = pytest.mark.integration
START = dt.date(2026, 1, 1)
END = dt.date(2026, 2, 9)  # 40 days
BAD_START = dt.date(2026, 3, 1)  # 20 days with shuffled labels
BAD_END = dt.date(2026, 3, 20)


@pytest.fixture(scope="module")
def env(s3_server: Settings, prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A bucket and Feast state of this module's own, a small population; clean and corrupted windows landed."""
    patch = pytest.MonkeyPatch()
    patch.setenv("CONVEYOR_STORAGE__BUCKET", f"train-{uuid.uuid4().hex[:10]}")
    patch.setenv("CONVEYOR_FEATURES__STATE_DIR", str(tmp_path_factory.mktemp("feast")))
    patch.setenv("CONVEYOR_GENERATOR__N_ENTITIES", "3000")
    settings = load_settings()
    ingest(start_date=START, days=(END - START).days + 1)
    publish_shuffled_labels(settings, BAD_START, BAD_END)
    yield settings
    patch.undo()


def publish_shuffled_labels(settings: Settings, start: dt.date, end: dt.date) -> None:
    """Raw days whose labels are shuffled (no signal left): a model trained on them must fail the gates."""
    store, rng = ObjectStore(settings.storage), np.random.default_rng(0)
    label = settings.dataset.label_column
    for offset in range((end - start).days + 1):
        day = start + dt.timedelta(days=offset)
        frame = generate_day(day, settings.dataset, settings.generator)
        frame[label] = rng.permutation(frame[label].to_numpy())
        publish_raw_partition(store, settings, day, frame, run_id="corrupt-labels")


def run_artifacts(flow_run_id: uuid.UUID | None) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: str(a.data) for a in found if a.key}


def test_training_lifecycle(env: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    registry = ModelRegistry(ObjectStore(env.storage), env)
    name = env.training.model_name

    first = training(start_date=START, end_date=END, model_config_name="quick")
    assert first.promoted and first.gates_passed, first.reasons
    assert (first.champion_before, first.champion_after) == (None, first.version)
    assert first.test_metrics["roc_auc"] >= env.gates.min_roc_auc
    assert set(first.timings) == {
        "read_raw",
        "validation",
        "feature_retrieval",
        "fit",
        "evaluation_gates",
        "model_card",
        "registry",
    }
    meta = registry.get_version(name, first.version)
    assert meta.feature_service == env.features.feature_service and meta.data_fingerprint
    assert meta.training_window["start"] == START.isoformat() and set(meta.files) == {
        "roc.png",
        "calibration.png",
        "card.html",
        "monitoring_reference.parquet",  # held-out rows the drift monitor's performance estimation calibrates on
        "monitoring_profile.npz",  # its precomputed PCA and standard errors
    }
    assert registry.get_file(name, first.version, "roc.png").startswith(b"\x89PNG")
    trained_on = read_raw_window(ObjectStore(env.storage), env, START, END)
    assert meta.data_uri == f"s3://{env.storage.bucket}/raw/{env.dataset.name}" and meta.data_version is not None
    columns = [env.dataset.timestamp_column, *env.dataset.feature_names, env.dataset.label_column]
    assert data_fingerprint(trained_on, columns) == meta.data_fingerprint  # these rows, features as of each row

    state = training(start_date=BAD_START, end_date=BAD_END, model_config_name="quick", return_state=True)
    assert state.is_completed()  # a refused model is an outcome, not a crashed run
    refused = state.result()
    artifacts = run_artifacts(state.state_details.flow_run_id)
    assert {
        f"{name}-metrics",
        f"{name}-gate-decision",
        f"{name}-training-outcome",
        f"{name}-registered-version",
    } <= set(artifacts)
    assert "FAILED: the champion stays" in artifacts[f"{name}-gate-decision"]
    assert "gates.min_roc_auc" in artifacts[f"{name}-training-outcome"]
    assert not refused.promoted and not refused.gates_passed
    assert any("absolute_minimums: test roc_auc" in r for r in refused.reasons), refused.reasons
    assert registry.champion_version(name) == first.version == refused.champion_after
    assert not registry.get_version(name, refused.version).gates_passed  # registered for the record, refused

    # The default model vs the quick champion on this small window: a higher point estimate, but inside the test
    # set's noise. The default rule (promote_when=better) keeps the champion and says so, with the interval.
    same = training(start_date=START, end_date=END, model_config_name="default")
    assert not same.promoted and same.champion_after == first.version
    assert same.test_metrics["roc_auc"] > first.test_metrics["roc_auc"]
    noise = [r for r in same.reasons if r.startswith("challenger_vs_champion: roc_auc not different from the champion")]
    assert len(noise) == 1 and "95% CI [-" in noise[0] and "the champion stays" in noise[0], same.reasons
    assert registry.get_version(name, same.version).gates["verdict"] == "not different"

    # promote_when=not_worse prefers the newer model unless it may be worse by more than the margin: promoted.
    monkeypatch.setenv("CONVEYOR_GATES__PROMOTE_WHEN", "not_worse")
    monkeypatch.setenv("CONVEYOR_GATES__MAX_REGRESSION_VS_CHAMPION", "0.01")
    better_state = training(start_date=START, end_date=END, model_config_name="default", return_state=True)
    monkeypatch.delenv("CONVEYOR_GATES__PROMOTE_WHEN")
    monkeypatch.delenv("CONVEYOR_GATES__MAX_REGRESSION_VS_CHAMPION")
    better = better_state.result()
    assert better.promoted, better.reasons
    assert better.test_metrics == same.test_metrics  # same rows, config and seed: the same model
    assert (better.champion_before, better.champion_after) == (first.version, better.version)
    # Its card: HTML next to the version, JSON in the metadata, markdown in the UI; the gates' verdict with its CI.
    better_meta = registry.get_version(name, better.version)
    assert better_meta.gates["verdict"] == "not different"
    assert better_meta.extra["card"]["comparison"]["rule"] == "not_worse"
    card = better_meta.extra["card"]
    assert card["comparison"]["champion_version"] == first.version and card["lineage"]["data_uri"] == meta.data_uri
    page = registry.get_file(name, better.version, "card.html").decode()
    assert f"<title>Model card: {name} v{better.version}</title>" in page and "<h2>Fairness</h2>" in page
    card_artifact = run_artifacts(better_state.state_details.flow_run_id)[f"{name}-model-card"]
    assert f"# Model card: {name} v{better.version}" in card_artifact and "95% CI" in card_artifact
    link = card_artifact.split("[open it](", 1)[1].split(")", 1)[0]  # presigned: a browser opens it, no keys
    opened = httpx.get(link, timeout=30)
    assert opened.status_code == 200 and f"<title>Model card: {name} v{better.version}</title>" in opened.text
    capsys.readouterr()
    assert cli.main(["models", "card", str(better.version), "--model", name]) == 0
    assert capsys.readouterr().out.strip() == registry.store.uri(better_meta.files["card.html"])
    assert cli.main(["models", "compare", str(first.version), str(better.version), "--model", name]) == 0
    compared = capsys.readouterr().out
    assert "* model config" in compared and "quick" in compared and "default" in compared

    assert (
        cli.main(
            ["models", "rollback", "--model", name, "--reason", "bad feedback from the field", "--actor", "oncall"]
        )
        == 0
    )
    assert registry.champion_version(name) == first.version
    last = registry.audit_log(name)[-1]
    assert (last.action, last.version, last.previous_champion, last.actor, last.reason) == (
        "rollback",
        first.version,
        better.version,
        "oncall",
        "bad feedback from the field",
    )
    capsys.readouterr()
    assert cli.main(["models", "list", "--model", name]) == 0
    listing = capsys.readouterr().out
    assert f"v{first.version}" in listing and "champion" in listing and "refused" in listing

    # Refused versions' artifacts can go (here: everything older than 0 days); their record stays.
    assert cli.main(["models", "prune", "--model", name, "--older-than-days", "0", "--dry-run"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == [
        f"would prune {name} v{v} (registered {registry.get_version(name, v).created_at[:19]}, gates failed)"
        for v in (refused.version, same.version)
    ]
    assert cli.main(["models", "prune", "--model", name, "--older-than-days", "0", "--actor", "ops"]) == 0
    pruned = capsys.readouterr().out
    assert f"pruned {name} v{refused.version}: " in pruned and f"pruned {name} v{same.version}: " in pruned
    assert not ObjectStore(env.storage).exists(registry.get_version(name, refused.version).artifact_key)
    assert cli.main(["models", "list", "--model", name]) == 0
    statuses = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()}
    assert statuses[f"v{refused.version}"] == "pruned" and statuses[f"v{first.version}"] == "champion"

    # The recorded data version reads back exactly the first model's training rows after a day inside its window
    # was replaced (half the rows) and a later day appended.
    store = ObjectStore(env.storage)
    replaced = START + dt.timedelta(days=1)
    publish_raw_partition(store, env, replaced, generate_day(replaced, env.dataset, env.generator).iloc[::2], "fix")
    later = BAD_END + dt.timedelta(days=1)
    publish_raw_partition(store, env, later, generate_day(later, env.dataset, env.generator), "late")
    assert len(read_raw_window(store, env, START, END)) < len(trained_on)
    back = read_training_rows(store, registry.get_version(name, first.version))
    key = [env.dataset.entity_column, env.dataset.timestamp_column]
    pd.testing.assert_frame_equal(
        back.sort_values(key).reset_index(drop=True), trained_on.sort_values(key).reset_index(drop=True)
    )
    assert data_fingerprint(back, columns) == meta.data_fingerprint
