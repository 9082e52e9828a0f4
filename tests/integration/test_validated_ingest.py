"""Validated ingest of a user's files on the real S3 server (and Prefect test server): a day is checked before it
is published; a bad day, bad rows or a broken file go to quarantine, named, and every other day lands, trains
and scores; `conveyor data quarantine | reland | drop` manage what is there."""

from __future__ import annotations

import datetime as dt
import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from configs.settings import Settings, load_settings
from conveyor.adapters.object_store import ObjectStore, sha256_bytes
from conveyor.adapters.raw_data import published_days, read_raw_window
from conveyor.demo.synthetic import generate_day
from conveyor.domain.expectations import write_default_suites
from conveyor.ops import cli
from conveyor.services.ingest import IngestRejected, land_files
from conveyor.services.quarantine import list_quarantined

pytestmark = pytest.mark.integration

START = dt.date(2026, 1, 1)
POISONED_ROW = 17  # data row of the later file (1-based) whose monthly_charges is "abc"


def days_of(settings: Settings, start: dt.date, days: int) -> pd.DataFrame:
    frames = [generate_day(start + dt.timedelta(days=i), settings.dataset, settings.generator) for i in range(days)]
    return pd.concat(frames, ignore_index=True)


def poisoned(frame: pd.DataFrame, row: int = POISONED_ROW) -> pd.DataFrame:
    """The issue's case: a string 'abc' in one row of a float column."""
    bad = frame.assign(monthly_charges=frame["monthly_charges"].astype(object))
    bad.loc[row - 1, "monthly_charges"] = "abc"
    return bad


@pytest.fixture
def env(s3_server: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, Path]]:
    """A bucket of its own and a files source in a temporary folder, for the flows and the CLI too."""
    source = tmp_path / "source"
    source.mkdir()
    monkeypatch.setenv("CONVEYOR_STORAGE__BUCKET", f"ingest-{uuid.uuid4().hex[:10]}")
    monkeypatch.setenv("CONVEYOR_DATASET__SOURCE__KIND", "files")
    monkeypatch.setenv("CONVEYOR_DATASET__SOURCE__PATH", str(source))
    monkeypatch.setenv("CONVEYOR_GENERATOR__N_ENTITIES", "1500")
    yield load_settings(), source


def test_a_poisoned_value_quarantines_its_day_and_the_other_days_land(env: tuple[Settings, Path]) -> None:
    settings, source = env
    store = ObjectStore(settings.storage)
    history, later = days_of(settings, START, 3), days_of(settings, START + dt.timedelta(days=3), 2)
    history.to_csv(source / "history.csv", index=False)
    poisoned(later).to_csv(source / "later.csv", index=False)
    bad_day = later[settings.dataset.timestamp_column].dt.date.iloc[POISONED_ROW - 1]

    landed = land_files(settings, store, str(source), run_id="run-1")

    assert landed.days == [START + dt.timedelta(days=i) for i in range(5) if START + dt.timedelta(days=i) != bad_day]
    (rejected,) = landed.rejected
    assert rejected.batch_key == bad_day.isoformat()
    message = rejected.message
    print(message)
    assert "read from later.csv" in message and "column 'monthly_charges'" in message
    assert "1 of " in message and "type in [" in message and "1 values are not numbers, e.g. ['abc']" in message
    assert f"rows: later.csv row {POISONED_ROW}" in message
    assert landed.rows + rejected.rows == len(history) + len(later)  # every row published or quarantined

    # Nothing of that day is published; the table holds numbers only.
    assert published_days(store, settings) == landed.days
    with pytest.raises(LookupError):
        read_raw_window(store, settings, bad_day, bad_day)
    window = read_raw_window(store, settings, START, START + dt.timedelta(days=4))
    assert window["monthly_charges"].dtype == "float64" and len(window) == landed.rows

    prefix = f"quarantine/{settings.dataset.name}/{bad_day.isoformat()}/run-1/"
    report = store.get_json(prefix + "report.json")
    assert report["landing"] == {"kind": "files", "path": str(source), "files": ["later.csv"]}
    assert report["rows_quarantined"] == rejected.rows and report["great_expectations"]["success"] is False
    assert b"monthly_charges" in store.get_bytes(prefix + "data-docs.html")
    kept = pq.read_table(io.BytesIO(store.get_bytes(prefix + "rows-0000.parquet"))).to_pandas()
    assert len(kept) == rejected.rows and "abc" in set(kept["monthly_charges"])  # as read: text
    assert set(kept["_source_file"]) == {"later.csv"}


def test_row_mode_publishes_the_day_without_its_bad_row(env: tuple[Settings, Path]) -> None:
    settings, source = env
    settings = settings.model_copy(update={"validation": settings.validation.model_copy(update={"mode": "row"})})
    store = ObjectStore(settings.storage)
    later = days_of(settings, START, 2)
    poisoned(later).to_csv(source / "later.csv", index=False)
    bad_day = later[settings.dataset.timestamp_column].dt.date.iloc[POISONED_ROW - 1]

    landed = land_files(settings, store, str(source), run_id="run-row")

    assert landed.days == [START, START + dt.timedelta(days=1)] and not landed.rejected
    (partial,) = landed.quarantined
    assert (partial.batch_key, partial.rows, partial.whole) == (bad_day.isoformat(), 1, False)
    assert landed.rows == len(later) - 1
    prefix = f"quarantine/{settings.dataset.name}/{bad_day.isoformat()}/run-row/"
    rows = pq.read_table(io.BytesIO(store.get_bytes(prefix + "rows.parquet"))).to_pandas()
    assert rows[["_source_file", "_source_row", "monthly_charges"]].values.tolist() == [
        ["later.csv", POISONED_ROW, "abc"]
    ]
    assert read_raw_window(store, settings, bad_day, bad_day)["monthly_charges"].dtype == "float64"


def write_broken_files(settings: Settings, source: Path) -> dict[str, str]:
    """Good files for days 1-2 and one file broken in each way; -> batch key: what its message must say."""
    ds = settings.dataset
    days_of(settings, START, 2).to_csv(source / "good.csv", index=False)
    (source / "empty.csv").write_bytes(b"")
    (source / "header.csv").write_text(",".join(days_of(settings, START, 1).columns) + "\n")
    text = days_of(settings, START + dt.timedelta(days=2), 1).to_csv(index=False)
    (source / "truncated.csv").write_text(text[: len(text) - 30])  # the upload stopped 30 bytes early
    (source / "junk.parquet").write_bytes(b"PAR1 this is not a parquet file")
    days_of(settings, START + dt.timedelta(days=3), 1).drop(columns=["region"]).to_parquet(source / "nocol.parquet")
    when = days_of(settings, START + dt.timedelta(days=4), 1).head(3)
    when[ds.timestamp_column] = ["yesterday", None, "2026-13-45"]
    when.to_csv(source / "notime.csv", index=False)
    return {
        "file=empty.csv": "empty.csv: empty file (0 bytes)",
        "file=header.csv": "header.csv: no data rows (a header only)",
        "file=truncated.csv": "truncated.csv: truncated or malformed CSV at line",
        "file=junk.parquet": "junk.parquet: not a readable parquet file (truncated or corrupt?)",
        "file=nocol.parquet": "nocol.parquet: no column 'region' (declared in dataset.yaml)",
        "no-timestamp": "2 values are not ISO 8601 timestamps, e.g. ['yesterday', '2026-13-45']",
    }


def test_broken_files_are_quarantined_named_and_the_rest_lands(env: tuple[Settings, Path]) -> None:
    settings, source = env
    store = ObjectStore(settings.storage)
    expected = write_broken_files(settings, source)

    landed = land_files(settings, store, str(source), run_id="run-files")

    assert landed.days == [START, START + dt.timedelta(days=1)]
    found = {q.batch_key: q.message for q in landed.rejected}
    assert set(found) == set(expected)
    for key, text in expected.items():
        print(found[key])
        assert text in found[key], found[key]
    assert "rows: notime.csv rows 1, 3" in found["no-timestamp"] and "notime.csv row 2" in found["no-timestamp"]
    for name in ("empty.csv", "truncated.csv", "junk.parquet", "nocol.parquet"):
        kept = store.get_bytes(f"quarantine/{settings.dataset.name}/file={name}/run-files/{name}")
        assert sha256_bytes(kept) == sha256_bytes((source / name).read_bytes())  # byte for byte
    with pytest.raises(LookupError):
        read_raw_window(store, settings, START + dt.timedelta(days=2), START + dt.timedelta(days=4))


def test_cli_lists_relands_and_drops_quarantined_batches(
    env: tuple[Settings, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    settings, source = env
    store = ObjectStore(settings.storage)
    assert cli.main(["data", "quarantine"]) == 0  # a bucket nothing was written to yet: nothing in quarantine
    assert "0 quarantined batch(es)" in capsys.readouterr().out
    later = days_of(settings, START, 2)
    poisoned(later).to_csv(source / "later.csv", index=False)
    third = days_of(settings, START + dt.timedelta(days=2), 1).to_csv(index=False)
    (source / "third.csv").write_text(third[:-30])
    (source / "empty.csv").write_bytes(b"")
    bad_day = later[settings.dataset.timestamp_column].dt.date.iloc[POISONED_ROW - 1].isoformat()
    landed = land_files(settings, store, str(source), run_id="run-cli")
    assert {q.batch_key for q in landed.rejected} == {bad_day, "file=third.csv", "file=empty.csv"}

    assert cli.main(["data", "quarantine"]) == 0
    listing = capsys.readouterr().out
    print(listing)
    assert "3 quarantined batch(es)" in listing and f"{bad_day}/run-cli" in listing
    assert "column 'monthly_charges'" in listing and f"rows: later.csv row {POISONED_ROW}" in listing
    assert "file 'empty.csv': breaks 'readable csv file', observed empty file (0 bytes)" in listing

    assert cli.main(["data", "reland", bad_day]) == 1  # the source is not fixed yet: refused again
    assert "still refused" in capsys.readouterr().out
    later.to_csv(source / "later.csv", index=False)  # fixed
    (source / "third.csv").write_text(third)
    assert cli.main(["data", "reland", bad_day]) == 0
    out = capsys.readouterr().out
    print(out)
    assert f"{bad_day}: resolved (2 quarantine entries marked)" in out  # this run's and the first reland's
    assert cli.main(["data", "reland", "file=third.csv"]) == 0
    assert "file=third.csv: resolved" in capsys.readouterr().out
    assert published_days(store, settings) == [START + dt.timedelta(days=i) for i in range(3)]
    assert (
        len(read_raw_window(store, settings, START, START + dt.timedelta(days=2))) == len(later) + third.count("\n") - 1
    )

    assert cli.main(["data", "drop", "file=empty.csv"]) == 0
    assert "dropped file=empty.csv/run-cli" in capsys.readouterr().out
    assert list_quarantined(store, settings) == []
    assert len(list_quarantined(store, settings, include_resolved=True)) == 4  # two runs each of two batches
    assert cli.main(["data", "reland", "nothing-here"]) == 2


def test_ingest_flow_fails_naming_the_quarantined_day_and_keeps_the_good_ones(
    env: tuple[Settings, Path], prefect_harness: None
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId

    from flows.ingest import ingest

    settings, source = env
    later = days_of(settings, START, 3)
    poisoned(later).to_csv(source / "later.csv", index=False)
    bad_day = later[settings.dataset.timestamp_column].dt.date.iloc[POISONED_ROW - 1].isoformat()

    state = ingest(return_state=True)

    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, IngestRejected) and len(error.landed.days) == 2
    assert f"1 batch(es) quarantined, not published: {bad_day}; 2 day(s) landed" in str(error)
    assert f"later.csv row {POISONED_ROW}" in str(error)
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["ingest"])),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])),
        )
    assert f"QUARANTINED, not published: {bad_day}" in str(artifact.description)
    assert '"status": "QUARANTINED"' in str(artifact.data) and '"status": "published"' in str(artifact.data)


def test_poisoned_later_file_end_to_end_the_other_days_train_and_score(
    env: tuple[Settings, Path], prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's scenario on the real servers: 40 days in two files, the later one with 'abc' in one row of a
    float column. Before: every training and scoring run died on a duckdb ConversionException. Now: that day is
    quarantined, and the pipeline (ingest -> training behind the gates -> features -> scoring) runs on the rest."""
    from flows.pipeline import conveyor_pipeline

    monkeypatch.setenv("CONVEYOR_FEATURES__STATE_DIR", str(tmp_path / "feast"))
    monkeypatch.setenv("CONVEYOR_GENERATOR__N_ENTITIES", "3000")
    settings, source = load_settings(), env[1]
    history, later = days_of(settings, START, 30), days_of(settings, START + dt.timedelta(days=30), 10)
    history.to_csv(source / "history.csv", index=False)
    row = int((later[settings.dataset.timestamp_column].dt.date == START + dt.timedelta(days=34)).to_numpy().argmax())
    poisoned(later, row + 1).to_csv(source / "later.csv", index=False)
    bad_day = START + dt.timedelta(days=34)

    result = conveyor_pipeline()

    landed = result.landed
    assert bad_day not in landed.days and len(landed.days) == 39
    assert [q.batch_key for q in landed.rejected] == [bad_day.isoformat()]
    assert f"rows: later.csv row {row + 1}" in landed.rejected[0].message
    assert result.trained.version is not None and result.trained.promoted, result.trained.reasons
    assert result.scored.rows_scored > 0 and result.scored.model_version == result.trained.version
    store = ObjectStore(settings.storage)
    with pytest.raises(LookupError):
        read_raw_window(store, settings, bad_day, bad_day)  # nothing of it reached the table Feast reads


def test_a_source_on_s3_is_read_file_by_file_and_named_by_its_uri(env: tuple[Settings, Path]) -> None:
    settings, _ = env
    store = ObjectStore(settings.storage)
    frame = days_of(settings, START, 2)
    store.put_bytes("incoming/2026/days.csv", frame.to_csv(index=False).encode())
    store.put_bytes("incoming/2026/broken.parquet", b"PAR1 this is not a parquet file")
    store.put_bytes("incoming/notes.txt", b"not data")

    landed = land_files(settings, store, f"s3://{store.bucket}/incoming", run_id="run-s3")

    assert landed.days == [START, START + dt.timedelta(days=1)] and landed.rows == len(frame)
    (refused,) = landed.rejected
    assert refused.batch_key == "file=2026/broken.parquet"
    assert refused.message.startswith(f"source file s3://{store.bucket}/incoming/2026/broken.parquet: ")
    kept = f"quarantine/{settings.dataset.name}/file=2026_broken.parquet/run-s3/broken.parquet"
    assert store.get_bytes(kept) == b"PAR1 this is not a parquet file"


def test_string_entity_keys_end_to_end(
    env: tuple[Settings, Path], prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ids like C000123 (`dataset.entity_dtype: string`): ingest -> training behind the gates -> features (the
    online store and its skew check) -> scoring, on the real servers, with the ids kept as text throughout."""
    from conveyor.adapters.feature_store import online_features
    from conveyor.adapters.publication import read_published_parquet
    from conveyor.services.scoring import predictions_prefix
    from flows.pipeline import conveyor_pipeline

    monkeypatch.setenv("CONVEYOR_FEATURES__STATE_DIR", str(tmp_path / "feast"))
    monkeypatch.setenv("CONVEYOR_GENERATOR__N_ENTITIES", "3000")
    monkeypatch.setenv("CONVEYOR_DATASET__ENTITY_DTYPE", "string")
    monkeypatch.setenv("CONVEYOR_VALIDATION__SUITES_DIR", str(tmp_path / "suites"))
    settings, source = load_settings(), env[1]
    write_default_suites(settings)  # what `conveyor validation init-suites` does after editing dataset.yaml
    ent = settings.dataset.entity_column
    history = days_of(settings, START, 35)
    history[ent] = history[ent].map(lambda i: f"C{i:06d}")
    history.to_csv(source / "history.csv", index=False)

    result = conveyor_pipeline()

    assert len(result.landed.days) == 35 and not result.landed.rejected
    assert result.trained.promoted, result.trained.reasons
    assert result.features.passed, result.features.reasons  # online values == point-in-time offline values
    assert result.scored.rows_scored > 0
    store = ObjectStore(settings.storage)
    raw = read_raw_window(store, settings, START, START + dt.timedelta(days=34))
    assert raw[ent].map(type).eq(str).all() and raw[ent].str.match(r"^C\d{6}$").all()
    day = result.landed.days[-1]  # the day the pipeline scores
    published = read_published_parquet(store, predictions_prefix(settings, settings.scoring.model_name, day))
    assert published[ent].str.match(r"^C\d{6}$").all() and len(published) == result.scored.rows_scored
    assert set(published[ent]) <= set(raw[ent])
    some = published[ent].head(5).tolist()
    online = online_features(settings, some)
    assert online[ent].tolist() == some and online[settings.dataset.feature_names].notna().any(axis=None)
