"""The validation gate against the real S3 server and a Prefect run: every fault is rejected, quarantined
byte for byte, and stops the flow before the next task; row-level mode accounts for every row."""

from __future__ import annotations

import datetime as dt
import io

import pandas as pd
import pyarrow.parquet as pq
import pytest
from prefect import flow, task

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore, sha256_bytes
from conveyor.adapters.raw_data import publish_raw_partition, raw_day_files, raw_prefix
from conveyor.demo.synthetic import Fault, Scenario, generate_day
from conveyor.services.validation import DataValidationError, check_or_quarantine, check_stored_partition
from tasks.validation import validate_or_quarantine, validate_raw_partition

pytestmark = pytest.mark.integration

DAY = dt.date(2026, 2, 1)

# fault -> (column the message must name, how the count appears in it)
CASES: dict[str, tuple[Fault | None, str, str]] = {
    "nulls": (Fault(kind="nulls", column="age", fraction=0.05), "age", "{n:,} of"),
    "out_of_range": (Fault(kind="out_of_range", column="num_products", fraction=0.05), "num_products", "{n:,} of"),
    "wrong_type": (
        Fault(kind="wrong_type", column="tenure_months", fraction=0.05),
        "tenure_months",
        "{n:,} values are not numbers",
    ),
    "missing_column": (Fault(kind="missing_column", column="region"), "region", "column exists"),
    "duplicate_keys": (Fault(kind="duplicate_keys", fraction=0.05), "customer_id,event_timestamp", "{n2:,} of"),
    "stale": (None, "event_timestamp", "observed 2026-02-01T"),
    "empty_rows": (None, "table", "observed 0 rows"),
}


def _settings_for(store: ObjectStore, settings: Settings, **validation: object) -> Settings:
    update = settings.validation.model_copy(update=validation)
    return settings.model_copy(update={"storage": store.config, "validation": update})


def _publish(store: ObjectStore, settings: Settings, frame: pd.DataFrame) -> tuple[str, bytes]:
    publish_raw_partition(store, settings, DAY, frame, run_id="landing")
    (key,) = raw_day_files(store, settings, DAY)  # the one file the day's commit holds
    return key, store.get_bytes(key)


@pytest.mark.parametrize("case", sorted(CASES))
def test_faulty_partition_is_rejected_and_quarantined_byte_identical(
    store: ObjectStore, s3_server: Settings, case: str
) -> None:
    settings = _settings_for(store, s3_server)
    fault, column, count_text = CASES[case]
    frame = generate_day(DAY, settings.dataset, settings.generator, Scenario(faults=[fault] if fault else []))
    if case == "empty_rows":
        # A day of zero rows is no day in the Delta table: the commit removes it, and the stored-day check says
        # so (an empty batch in memory is still rejected by the suite, checked here).
        publish_raw_partition(store, settings, DAY, frame.iloc[:0], run_id="landing")
        with pytest.raises(FileNotFoundError, match="holds no rows of that day"):
            check_stored_partition(store, settings, raw_prefix(settings, DAY), "raw", run_id="run-1")
        with pytest.raises(DataValidationError, match="observed 0 rows"):
            check_or_quarantine(store, frame.iloc[:0], "raw", settings, DAY.isoformat(), "run-1")
        return
    key, stored = _publish(store, settings, frame)
    as_of = DAY + dt.timedelta(days=6) if case == "stale" else None

    with pytest.raises(DataValidationError) as failure:
        check_stored_partition(store, settings, raw_prefix(settings, DAY), "raw", run_id="run-1", as_of=as_of)

    clean_rows = len(generate_day(DAY, settings.dataset, settings.generator))
    message = str(failure.value)
    quarantine = f"quarantine/{settings.dataset.name}/{DAY.isoformat()}/run-1/"
    assert store.uri(quarantine) in message and failure.value.quarantine_uri == store.uri(quarantine)
    assert (f"column {column!r}" if column != "table" else "table:") in message
    assert count_text.format(n=round(0.05 * clean_rows), n2=2 * round(0.05 * clean_rows)) in message, message
    name = key.rsplit("/", 1)[-1]
    assert sha256_bytes(store.get_bytes(quarantine + name)) == sha256_bytes(stored)
    report = store.get_json(quarantine + "report.json")
    assert report["result"]["passed"] is False and report["files"][0]["sha256"] == sha256_bytes(stored)
    assert report["great_expectations"]["success"] is False  # GX's own report of the same batch
    assert report["data_docs"].startswith("file://")
    # The Data Docs page travels with the batch: a copy next to report.json, naming the failed column.
    assert report["data_docs_published"] == store.uri(quarantine + "data-docs.html")
    page = store.get_bytes(quarantine + "data-docs.html")
    assert page.startswith(b"<!DOCTYPE html>") and b"Data documentation compiled by Great Expectations" in page
    if column != "table":
        assert all(part.encode() in page for part in column.split(",")), column


@pytest.mark.parametrize("data", [b"", b"PAR1 this is not a parquet file"], ids=["empty_file", "unreadable"])
def test_empty_or_unreadable_file_is_quarantined_byte_identical(
    store: ObjectStore, s3_server: Settings, data: bytes
) -> None:
    settings = _settings_for(store, s3_server)
    # A committed file damaged on the store afterwards (the commit still lists it).
    key, _ = _publish(store, settings, generate_day(DAY, settings.dataset, settings.generator))
    store.put_bytes(key, data)
    name = key.rsplit("/", 1)[-1]
    with pytest.raises(DataValidationError) as failure:
        check_stored_partition(store, settings, raw_prefix(settings, DAY), "raw", run_id="run-2")
    message = str(failure.value)
    assert name in message and "readable parquet file" in message
    assert ("empty file (0 bytes)" in message) == (data == b"")
    quarantine = f"quarantine/{settings.dataset.name}/{DAY.isoformat()}/run-2/"
    assert store.get_bytes(quarantine + name) == data
    assert store.exists(quarantine + "report.json")


def test_clean_partition_passes_and_quarantines_nothing(store: ObjectStore, s3_server: Settings) -> None:
    settings = _settings_for(store, s3_server)
    frame = generate_day(DAY, settings.dataset, settings.generator)
    _publish(store, settings, frame)
    batch = check_stored_partition(store, settings, raw_prefix(settings, DAY), "raw", run_id="run-3")
    assert batch.result.passed and batch.rows_passed == batch.rows_in == len(frame) and batch.rows_quarantined == 0
    assert batch.quarantine_uri is None
    assert store.list_keys("quarantine/") == []


def test_gx_engine_runs_great_expectations_once_per_failed_batch(
    store: ObjectStore, s3_server: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `validation.engine: gx`, the GX run that decided is also the report: its describe_dict and Data Docs
    page go to quarantine, and GX is not run a second time to write them."""
    from conveyor.adapters import gx_validation

    runs: list[str] = []
    stock = gx_validation.gx_validate

    def counted(*args: object, **kwargs: object) -> gx_validation.GxRun:
        runs.append(str(kwargs.get("batch_name")))
        return stock(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(gx_validation, "gx_validate", counted)
    settings = _settings_for(store, s3_server, engine="gx")
    frame = generate_day(
        DAY, settings.dataset, settings.generator, Scenario(faults=[Fault(kind="nulls", column="age", fraction=0.05)])
    )
    with pytest.raises(DataValidationError) as failure:
        check_or_quarantine(store, frame, "raw", settings, batch_key=DAY.isoformat(), run_id="run-gx")

    assert runs == ["2026-02-01"]
    assert failure.value.result.engine == "gx" and "column 'age'" in str(failure.value)
    quarantine = f"quarantine/{settings.dataset.name}/{DAY.isoformat()}/run-gx/"
    report = store.get_json(quarantine + "report.json")
    assert report["great_expectations"]["success"] is False and report["rows_quarantined"] == len(frame)
    assert report["data_docs_published"] == store.uri(quarantine + "data-docs.html")
    assert b"age" in store.get_bytes(quarantine + "data-docs.html")


def test_row_level_mode_accounts_for_every_row(store: ObjectStore, s3_server: Settings) -> None:
    settings = _settings_for(store, s3_server, mode="row")
    scenario = Scenario(
        faults=[
            Fault(kind="out_of_range", column="age", fraction=0.04),
            Fault(kind="out_of_range", column="contract_type", fraction=0.02),
            Fault(kind="duplicate_keys", fraction=0.01),
        ]
    )
    frame = generate_day(DAY, settings.dataset, settings.generator, scenario)
    batch = check_or_quarantine(store, frame, "raw", settings, batch_key=DAY.isoformat(), run_id="run-4")
    assert batch.rows_in == len(frame) == batch.rows_passed + batch.rows_quarantined
    assert 0 < batch.rows_quarantined < len(frame) and len(batch.frame) == batch.rows_passed
    assert batch.result.passed  # the rows that went on are clean
    prefix = f"quarantine/{settings.dataset.name}/{DAY.isoformat()}/run-4/"
    quarantined = pq.read_table(io.BytesIO(store.get_bytes(prefix + "rows.parquet"))).to_pandas()
    assert len(quarantined) == batch.rows_quarantined
    assert (quarantined["age"] > 100).sum() == (frame["age"] > 100).sum()
    assert store.get_json(prefix + "report.json")["rows_quarantined"] == batch.rows_quarantined


def test_row_level_mode_still_rejects_batch_level_faults(store: ObjectStore, s3_server: Settings) -> None:
    settings = _settings_for(store, s3_server, mode="row")
    frame = generate_day(
        DAY, settings.dataset, settings.generator, Scenario(faults=[Fault(kind="missing_column", column="region")])
    )
    with pytest.raises(DataValidationError, match="column 'region'"):
        check_or_quarantine(store, frame, "raw", settings, batch_key=DAY.isoformat(), run_id="run-5")


def test_nothing_downstream_runs_after_a_rejected_batch(
    store: ObjectStore, s3_server: Settings, prefect_harness: None
) -> None:
    settings = _settings_for(store, s3_server)
    bad = generate_day(
        DAY,
        settings.dataset,
        settings.generator,
        Scenario(faults=[Fault(kind="out_of_range", column="age", fraction=0.1)]),
    )
    _publish(store, settings, bad)
    reached: list[int] = []

    @task
    def downstream(rows: int) -> None:
        reached.append(rows)

    @flow
    def guarded(day: dt.date) -> None:
        batch = validate_raw_partition(settings, day, "flow-run")
        downstream(batch.rows_passed)

    @flow
    def guarded_frame(frame: pd.DataFrame) -> None:
        batch = validate_or_quarantine(frame, "raw", settings, DAY.isoformat(), "flow-run-2")
        downstream(batch.rows_passed)

    with pytest.raises(DataValidationError, match="column 'age'"):
        guarded(DAY)
    with pytest.raises(DataValidationError, match="column 'age'"):
        guarded_frame(bad)
    assert reached == []
    assert store.exists(f"quarantine/{settings.dataset.name}/{DAY.isoformat()}/flow-run/report.json")
    guarded_frame(generate_day(DAY, settings.dataset, settings.generator))  # clean: the next task runs
    assert reached and reached[0] > 0


def test_validate_raw_flow_names_the_bad_day_and_leaves_artifacts(s3_server: Settings, prefect_harness: None) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId

    from flows.ingest import ingest
    from flows.validation import validate_raw

    good, bad = dt.date(2026, 3, 10), dt.date(2026, 3, 11)
    ingest(start_date=good, days=1)
    # A bad day in the table: ingest itself would refuse it, but a partition can go bad after it landed (a suite
    # tightened, a file damaged), which is what this flow re-checks.
    faulty = Scenario(faults=[Fault(kind="nulls", column="monthly_charges", fraction=0.2)])
    store = ObjectStore(s3_server.storage)
    publish_raw_partition(store, s3_server, bad, generate_day(bad, s3_server.dataset, s3_server.generator, faulty), "x")
    state = validate_raw(start_date=good, end_date=bad, return_state=True)
    assert state.is_failed()
    with pytest.raises(DataValidationError) as failure:
        state.result()
    message = str(failure.value)
    assert "1 of 2 raw partitions failed" in message and "batch '2026-03-11'" in message
    assert "column 'monthly_charges'" in message
    assert f"/quarantine/{s3_server.dataset.name}/2026-03-11/" in message
    assert validate_raw(start_date=good, end_date=good) > 0  # the good day alone passes

    key = f"validation-{s3_server.dataset.name}-raw"
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])),
        )
    texts = sorted(str(a.data) for a in artifacts)
    assert len(texts) == 2  # one per validated partition
    assert texts[0].startswith("FAILED") and "Data Docs: [file://" in texts[0] and "monthly_charges" in texts[0]
    assert texts[1].startswith("PASSED") and "\n" not in texts[1]  # a clean batch: one short line
