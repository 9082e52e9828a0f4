"""The online inference service over real HTTP, started by `LocalStack.up(("api",))` (what `conveyor stack up --api`
does) on the session's S3 server, with a real Feast online store: parity with the batch engine, bad requests,
hot swap under load, canary and shadow rollouts, metrics."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pandas as pd
import pytest

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.publication import published_prefixes, read_published_parquet
from conveyor.adapters.registry import ModelRegistry
from conveyor.adapters.rollouts import Rollouts
from conveyor.domain.rollouts import arm_for
from conveyor.services.batch_inference import ModelRef, load_scoring_model
from conveyor.services.feature_sources import FrameSource
from conveyor.services.scoring import predictions_prefix, score_partition
from tests.integration.scoring_data import DAY, register
from tests.integration.serving_helpers import online_population, running_service, service_env, settings_for, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODEL = "churn"


@dataclass
class Service:
    settings: Settings
    url: str
    frame: pd.DataFrame  # the entities in the online store
    champion: int

    def predict(self, client: httpx.Client, **body: object) -> httpx.Response:
        return client.post(f"{self.url}/v1/models/{MODEL}/predict", json=body, timeout=30)

    def ready(self) -> dict:  # type: ignore[type-arg]
        return httpx.get(f"{self.url}/ready", timeout=10).json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def service(s3_server: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    env = service_env(s3_server, tmp_path_factory.mktemp("feast"))
    settings = settings_for(env)
    champion = register(settings, MODEL, seed=1, promote=True)
    frame = online_population(settings)
    with running_service(env, settings) as url:
        yield Service(settings, url, frame, champion)


def batch_scores(settings: Settings, frame: pd.DataFrame, version: int, run_id: str) -> pd.DataFrame:
    """What the batch engine publishes for `frame` with `version`."""
    store = ObjectStore(settings.storage)
    model = load_scoring_model(store, settings, ModelRef(MODEL, version, settings.features.feature_service))
    score_partition(store, settings, FrameSource(frame), model, MODEL, DAY, run_id)
    return read_published_parquet(store, predictions_prefix(settings, MODEL, DAY))


def test_predictions_equal_the_batch_engine(service: Service) -> None:
    settings, frame = service.settings, service.frame
    ds = settings.dataset
    batch = batch_scores(settings, frame, service.champion, "parity")
    ids = frame[ds.entity_column].tolist()
    with httpx.Client() as client:
        by_entity = [
            p
            for lo in range(0, len(ids), 100)
            for p in service.predict(client, entity_ids=ids[lo : lo + 100]).json()["predictions"]
        ]
        rows = frame[ds.feature_names].to_dict("records")
        by_rows = service.predict(client, rows=rows[:200]).json()
        unknown = service.predict(client, entity_ids=[ids[0], 987_654_321]).json()

    expected = batch.set_index(ds.entity_column).loc[ids]
    assert [p["entity_id"] for p in by_entity] == ids
    assert {p["status"] for p in by_entity} == {"scored"}
    assert {p["model_version"] for p in by_entity} == {service.champion}
    np.testing.assert_allclose([p["score"] for p in by_entity], expected["score"].to_numpy(), rtol=0, atol=1e-12)
    assert [p["decision"] for p in by_entity] == expected["decision"].tolist()
    assert by_rows["model_version"] == service.champion and len(by_rows["request_id"]) == 32
    np.testing.assert_allclose(
        [p["score"] for p in by_rows["predictions"]], expected["score"].to_numpy()[:200], rtol=0, atol=1e-12
    )
    # scoring.unknown_entities defaults to quarantine: no score, and counted.
    assert [p["status"] for p in unknown["predictions"]] == ["scored", "unknown_entity"]
    assert unknown["predictions"][1]["score"] is None
    assert unknown["counts"] == {"scored": 1, "unknown_entity": 1}


def test_bad_requests_are_refused_naming_the_field(service: Service) -> None:
    good = service.frame[service.settings.dataset.feature_names].iloc[0].to_dict()
    with httpx.Client() as client:
        bad_rows = service.predict(
            client,
            rows=[
                good,
                {**good, "age": 500},
                {**good, "region": "mars", "colour": "red"},
                {**good, "tenure_months": "ten"},
            ],
        )
        bad_ids = service.predict(client, entity_ids=[1, "x"])
        both = service.predict(client, entity_ids=[1], rows=[good])
        too_many = service.predict(client, entity_ids=list(range(1001)))
        unknown_model = client.post(f"{service.url}/v1/models/other/predict", json={"entity_ids": [1]})
        too_large = client.post(
            f"{service.url}/v1/models/{MODEL}/predict",
            content=b'{"rows": [' + b" " * 2_000_000 + b"]}",
            headers={"content-type": "application/json"},
        )
    assert bad_rows.status_code == 422
    errors = {(e["row"], e["field"]): e["rule"] for e in bad_rows.json()["detail"]["errors"]}
    assert errors == {
        (1, "age"): "range: <= 100",
        (2, "region"): "category: one of ['north', 'south', 'east', 'west']",
        (2, "colour"): "unknown field: not a feature of 'churn'",
        (3, "tenure_months"): "type: a number (int64)",
    }
    assert "row 1, field 'age'" in bad_rows.json()["detail"]["message"]
    assert bad_ids.status_code == 422 and bad_ids.json()["detail"]["errors"] == [
        {"row": 1, "field": "customer_id", "rule": "type: an integer id (int64)", "value": "x"}
    ]
    assert both.status_code == 422 and "exactly one of entity_ids" in both.json()["detail"][0]["msg"]
    assert too_many.status_code == 413 and "serving.max_rows=1000" in too_many.json()["detail"]
    assert unknown_model.status_code == 404
    assert too_large.status_code == 413


def test_hot_swap_under_concurrent_requests_without_errors(service: Service) -> None:
    settings = service.settings
    registry = ModelRegistry(ObjectStore(settings.storage), settings)
    ids = service.frame[settings.dataset.entity_column].tolist()[:20]
    failures: list[str] = []
    versions: Counter[int] = Counter()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client() as client:
            for n in range(5000):  # bounded; stopped much earlier
                if stop.is_set():
                    return
                response = service.predict(client, entity_ids=ids[n % 20 : n % 20 + 1])
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                else:
                    versions[response.json()["predictions"][0]["model_version"]] += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        before = service.ready()["champion"]
        new = register(settings, MODEL, seed=2, promote=True)
        wait_for(lambda: service.ready()["champion"] == new, what=f"v{new} in service")
        wait_for(lambda: versions[new] >= 20, what=f"requests answered by v{new}")
        # A version whose artifact changed after registration is refused; the old one keeps serving.
        broken = register(settings, MODEL, seed=3, promote=False)
        meta = registry.get_version(MODEL, broken)
        registry.store.put_bytes(meta.artifact_key, b"not the registered model")
        registry.promote(MODEL, broken, actor="test", reason="a tampered artifact")
        refused = wait_for(lambda: service.ready()["refused_versions"].get(str(broken)), what="the refusal")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert versions[before] > 0 and versions[new] > 0 and versions[broken] == 0
    assert "SHA-256" in refused and service.ready()["champion"] == new
    registry.rollback(MODEL, actor="test", reason="back from the tampered version")  # champion = new again


def test_canary_split_is_sticky_and_shadow_is_never_returned(service: Service) -> None:
    settings = service.settings
    registry = ModelRegistry(ObjectStore(settings.storage), settings)
    rollouts = Rollouts(registry)
    champion = wait_for(lambda: service.ready()["champion"], what="a champion")
    challenger = register(settings, MODEL, seed=4, promote=False)
    ids = service.frame[settings.dataset.entity_column].tolist()
    plan = rollouts.change(MODEL, "canary", challenger, 0.3, "test", "canary test")
    wait_for(lambda: (service.ready()["rollout"] or {}).get("seq") == plan.seq, what="the canary in service")
    with httpx.Client() as client:
        first = [
            p
            for lo in range(0, 300, 100)
            for p in service.predict(client, entity_ids=ids[lo : lo + 100]).json()["predictions"]
        ]
        again = [
            p
            for lo in range(0, 300, 100)
            for p in service.predict(client, entity_ids=ids[lo : lo + 100]).json()["predictions"]
        ]
    arms = [p["arm"] for p in first]
    assert arms == [p["arm"] for p in again]  # sticky by entity
    assert arms == [arm_for(str(i), plan, MODEL) for i in ids[:300]]
    assert {p["model_version"] for p in first if p["arm"] == "challenger"} == {challenger}
    n, share = len(arms), 0.3
    taken = arms.count("challenger")
    assert abs(taken - n * share) <= 4 * (n * share * (1 - share)) ** 0.5, taken  # within 4 standard deviations
    metrics = httpx.get(f"{service.url}/metrics", timeout=10).text  # per-arm counts: the A/B read
    challenger_rows = (
        f'conveyor_serving_rows_total{{arm="challenger",model="churn",outcome="scored",version="{challenger}"}}'
    )
    assert f"{challenger_rows} {2.0 * taken}" in metrics

    shadow = rollouts.change(MODEL, "shadow", challenger, 1.0, "test", "shadow test")
    wait_for(lambda: (service.ready()["rollout"] or {}).get("seq") == shadow.seq, what="the shadow in service")
    with httpx.Client() as client:
        shadowed = service.predict(client, entity_ids=ids[:50], **{}).json()
    assert {p["arm"] for p in shadowed["predictions"]} == {"champion"}
    assert {p["model_version"] for p in shadowed["predictions"]} == {champion}
    rollouts.change(MODEL, "none", None, 0.0, "test", "abort")

    store = ObjectStore(settings.storage)
    root = f"{settings.serving.log_prefix}/{MODEL}/"

    def shadow_rows() -> tuple[pd.DataFrame] | None:
        logged = [read_published_parquet(store, p) for p in published_prefixes(store, root)]
        frame = pd.concat(logged) if logged else pd.DataFrame()
        rows = frame[frame["request_id"] == shadowed["request_id"]] if len(frame) else frame
        return (rows,) if len(rows) == 100 else None

    (rows,) = wait_for(shadow_rows, what="the shadow request in the prediction log")
    assert sorted(rows.loc[~rows["returned"], "model_version"].unique()) == [challenger]
    assert (rows.loc[~rows["returned"], "arm"] == "shadow").all()
    assert sorted(rows.loc[rows["returned"], "model_version"].unique()) == [champion]
    actions = [e.action for e in registry.audit_log(MODEL)]
    assert actions[-3:] == ["rollout_canary", "rollout_shadow", "rollout_end"]


def test_metrics_count_requests_rows_and_versions(service: Service) -> None:
    with httpx.Client() as client:
        service.predict(client, entity_ids=[987_654_320])
        text = client.get(f"{service.url}/metrics").text
    assert 'conveyor_serving_requests_total{kind="entities",model="churn",status="200"}' in text
    assert 'outcome="unknown_entity"' in text
    assert 'conveyor_serving_model_version{arm="champion",model="churn"}' in text
    assert "conveyor_serving_request_seconds_bucket" in text


def test_the_drift_monitor_judges_online_traffic_from_the_prediction_log(service: Service) -> None:
    """Every answer is logged with its inputs (the online store's values for an entity); the drift monitor's
    online source judges the day's champion answers against the champion's reference, like a batch-scored day."""

    from conveyor.services.monitoring import drift_report_for_day, write_reports
    from conveyor.services.online_traffic import online_traffic, read_prediction_log

    settings, frame = service.settings, service.frame
    ds = settings.dataset
    store, registry = ObjectStore(settings.storage), ModelRegistry(ObjectStore(settings.storage), settings)
    champion = registry.champion(MODEL)
    assert champion is not None
    ids = frame[ds.entity_column].tolist()[:300]
    with httpx.Client() as client:
        answer = service.predict(client, entity_ids=ids).json()
    root = f"{settings.serving.log_prefix}/{MODEL}/"

    def logged() -> tuple[pd.DataFrame] | None:
        log = read_prediction_log(store, root)
        mine = log[log["request_id"] == answer["request_id"]] if len(log) else log
        return (log,) if len(mine) == len(ids) else None

    (log,) = wait_for(logged, what="the request in the prediction log")
    mine = log[log["request_id"] == answer["request_id"]].set_index("entity_id").loc[ids]
    expected = frame.set_index(ds.entity_column).loc[ids, ds.feature_names]
    for feature in ds.feature_names:  # the inputs logged are the values the answer was computed from
        got, want = mine[f"input_{feature}"].to_numpy(), expected[feature].to_numpy()
        assert all(g == w or (pd.isna(g) and pd.isna(w)) for g, w in zip(got, want, strict=True)), feature

    day = mine["logged_at"].iloc[0].date()
    assert abs(mine["logged_at"].iloc[0] - pd.Timestamp.now(tz="UTC")) < pd.Timedelta(minutes=10)  # today's
    inputs, outputs = online_traffic(store, settings, champion, day)
    by_champion = log[log["returned"] & (log["model_version"] == champion.version) & log["status"].eq("scored")]
    assert len(inputs) == len(outputs) == len(by_champion) >= len(ids)
    assert list(inputs.columns) == ds.feature_names and list(outputs.columns) == ["score"]
    # A verdict on a few hundred rows: this test's own traffic may be all the day holds.
    judge = settings.model_copy(update={"drift": settings.drift.model_copy(update={"min_rows": 100})})
    report, reference, current, judged_outputs = drift_report_for_day(store, judge, MODEL, day, source="online")
    assert report.source == "online" and report.window_start == report.window_end == day.isoformat()
    assert len(current) == len(by_champion) and report.prediction is not None
    assert {f.name for f in report.features} == set(ds.feature_names)
    uris = write_reports(store, settings, report, reference, current, judged_outputs)
    assert uris["html"].endswith(f"dt={day.isoformat()}/online/drift.html")
