"""Materialization and training-set retrieval: Feast stock vs Conveyor, side by side in one run.

    .venv/bin/python bench/materialize.py                   # 1e5 and 1e6 entities x 10 features
    .venv/bin/python bench/materialize.py --entities 100000 # one size only

Data: N entities x 10 numeric features (5 int64, 5 float64), one row per entity, `--rows-per-day` rows per daily
partition (so the materialized window grows with N: 1 day at 1e5, 10 days at 1e6). Every variant runs in its own
subprocess reading the same raw Delta table on a private SeaweedFS (duckdb over S3), with its own registry and online
store; the subprocess
reports its own peak RSS (getrusage ru_maxrss) and wall time of the materialize call only.

Variants:
  stock        FeatureStore.materialize, stock SQLite online store, default materialization config
  stock+knobs  FeatureStore.materialize, stock SQLite online store, online_write_batch_size + pull_latest_features
  conveyor     conveyor.adapters.feature_store.materialize_window (time slices, batches, BatchedSqliteOnlineStore)
Retrieval: build_training_set (what the training flow calls) for N entity rows vs a pd.merge_asof baseline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from harness import ROOT, private_stack, report, run_child

from configs.settings import TELEMETRY_OFF_ENV, DatasetConfig, FeatureSpec, Settings, load_settings

START = dt.date(2026, 1, 1)
N_FEATURES = 10
VARIANTS = ("stock", "conveyor", "stock+knobs")
STORE_YAML = """project: bench
provider: local
registry: {{registry_type: file, path: ${{CONVEYOR_FEAST_STATE_DIR}}/registry.db}}
online_store: {{type: {online}, path: ${{CONVEYOR_FEAST_STATE_DIR}}/online.db}}
offline_store: {{type: duckdb}}
entity_key_serialization_version: 3
{materialization}
"""


def bench_dataset() -> DatasetConfig:
    features = [
        FeatureSpec(name=f"f{i}", dtype="int64" if i < N_FEATURES // 2 else "float64") for i in range(N_FEATURES)
    ]
    return DatasetConfig(
        name="bench",
        entity_column="entity_id",
        timestamp_column="event_timestamp",
        label_column="label",
        features=features,
    )


def bench_settings(work: Path, variant: str) -> Settings:
    # The parent loads the configuration once and hands it to every worker (configs/ may change meanwhile).
    snapshot = work / "settings.json"
    if snapshot.exists():
        base = Settings.model_validate_json(snapshot.read_text())
    else:
        base = load_settings("local")
        snapshot.write_text(base.model_dump_json())
    features = base.features.model_copy(
        update={
            "project": "bench",
            "feature_service": "bench_v1",
            "repo_dir": work / f"repo-{variant}",
            "state_dir": work / f"state-{variant}",
            "ttl_days": 365,
        }
    )
    return base.model_copy(update={"dataset": bench_dataset(), "features": features})


def make_repo(work: Path, variant: str) -> None:
    repo = work / f"repo-{variant}"
    repo.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "feature_repo" / "definitions.py", repo / "definitions.py")
    online = "conveyor.adapters.feast_online_store.BatchedSqliteOnlineStore" if variant == "conveyor" else "sqlite"
    knobs = "materialization: {online_write_batch_size: 20000, pull_latest_features: true}"
    knobs = "" if variant == "stock" else knobs
    (repo / "feature_store.yaml").write_text(STORE_YAML.format(online=online, materialization=knobs))


def make_data(work: Path, entities: int, rows_per_day: int, seed: int = 7) -> int:
    """Write the raw Delta table on S3 once, one commit per day (every variant reads it). Returns the days."""
    from conveyor.adapters.object_store import ObjectStore
    from conveyor.adapters.raw_data import raw_table, write_raw_day

    settings = bench_settings(work, "data")
    ObjectStore(settings.storage).ensure_bucket()
    table = raw_table(settings.storage, settings)
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(1, entities + 1, dtype=np.int64))
    days = -(-entities // rows_per_day)
    for d in range(days):
        chunk = ids[d * rows_per_day : (d + 1) * rows_per_day]
        n = len(chunk)
        day = START + dt.timedelta(days=d)
        frame = pd.DataFrame(
            {
                "entity_id": chunk,
                "event_timestamp": pd.Timestamp(day, tz="UTC")
                + pd.to_timedelta(np.sort(rng.integers(0, 86_400_000_000, n)), unit="us"),
            }
        )
        for i in range(N_FEATURES):
            frame[f"f{i}"] = rng.integers(0, 1000, n) if i < N_FEATURES // 2 else rng.normal(0, 1, n)
        write_raw_day(table, settings.dataset, day, frame, run_id="bench")
    return days


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker(work: Path, variant: str, days: int, entities: int) -> dict[str, Any]:
    """Runs in a subprocess: apply, materialize the whole window, spot-check online values, report."""
    from conveyor.adapters import feature_store as fsm
    from conveyor.adapters.duckdb_s3 import offline_session
    from conveyor.adapters.raw_data import read_table_window

    settings = bench_settings(work, variant)
    state = settings.features.state_dir
    assert state is not None
    state.mkdir(parents=True, exist_ok=True)
    fsm.apply_definitions(settings)
    end = START + dt.timedelta(days=days)
    begin, cpu0 = time.perf_counter(), _cpu()
    if variant == "conveyor":
        fsm.materialize_window(settings, START, end)
    else:
        with offline_session(fsm.raw_table(settings)):  # the stock path reads S3 through the same connection
            fsm.feature_store(settings).materialize(fsm.utc(START), fsm.utc(end))
    seconds, cpu_seconds = time.perf_counter() - begin, _cpu() - cpu0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Spot check: 200 random entities, online == source row.
    source = read_table_window(fsm.raw_table(settings), START, START).frame
    sample = source.sample(min(200, len(source)), random_state=1)
    online = fsm.online_features(settings, sample["entity_id"].tolist())
    cols = [f"f{i}" for i in range(N_FEATURES)]
    ok = bool(np.allclose(online[cols].to_numpy(float), sample[cols].to_numpy(float)))
    result: dict[str, Any] = {
        "variant": variant,
        "entities": entities,
        "days": days,
        "seconds": seconds,
        "entities_per_s": entities / seconds,
        "cpu_seconds": cpu_seconds,
        "peak_rss_mb": peak_mb,
        "spot_check_ok": ok,
    }
    if variant == "conveyor":
        result["retrieval"] = retrieval(settings, work, entities, days)
    return result


def retrieval(settings: Settings, work: Path, rows: int, days: int) -> dict[str, Any]:
    """Point-in-time training set for `rows` entity rows: Feast (duckdb) vs pd.merge_asof on the same data."""
    from conveyor.adapters import feature_store as fsm
    from conveyor.adapters.raw_data import read_table_window

    rng = np.random.default_rng(11)
    horizon_us = days * 86_400_000_000
    entity_df = pd.DataFrame(
        {
            "entity_id": rng.integers(1, rows + 1, rows).astype(np.int64),
            "event_timestamp": pd.Timestamp(START, tz="UTC")
            + pd.to_timedelta(rng.integers(0, horizon_us, rows), unit="us"),
            "label": rng.integers(0, 2, rows),
        }
    )
    begin = time.perf_counter()
    feast_frame = fsm.build_training_set(settings, entity_df)
    feast_s = time.perf_counter() - begin

    begin = time.perf_counter()
    source = read_table_window(fsm.raw_table(settings), START, START + dt.timedelta(days=days)).frame
    left = entity_df.assign(_row=np.arange(rows)).sort_values("event_timestamp")
    right = source.assign(event_timestamp=source["event_timestamp"].astype("datetime64[ns, UTC]"))
    right = right.sort_values("event_timestamp")
    merged = pd.merge_asof(
        left,
        right,
        on="event_timestamp",
        by="entity_id",
        direction="backward",
        tolerance=pd.Timedelta(days=settings.features.ttl_days),
    )
    merged = merged.sort_values("_row").reset_index(drop=True)
    asof_s = time.perf_counter() - begin
    cols = [f"f{i}" for i in range(N_FEATURES)]
    a, b = feast_frame[cols].to_numpy(float), merged[cols].to_numpy(float)
    agree = bool(np.allclose(a, b, equal_nan=True)) and len(feast_frame) == rows
    return {
        "rows": rows,
        "feast_seconds": feast_s,
        "merge_asof_seconds": asof_s,
        "rows_back": len(feast_frame),
        "same_values_as_merge_asof": agree,
        "non_null_share": float(np.isfinite(a[:, 0]).mean()),
    }


def run_size(work: Path, entities: int, rows_per_day: int, variants: list[str]) -> Iterator[dict[str, Any]]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    days = make_data(work, entities, rows_per_day)
    env = {**os.environ, **TELEMETRY_OFF_ENV}
    for variant in variants:
        make_repo(work, variant)
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            variant,
            "--work",
            str(work),
            "--days",
            str(days),
            "--entities",
            str(entities),
        ]
        result = run_child(cmd[1:], env)
        print(
            f"  {variant:12s} {entities:>9,} entities: {result['seconds']:7.1f}s wall "
            f"{result['cpu_seconds']:7.1f}s CPU {result['peak_rss_mb']:8.0f} MB",
            flush=True,
        )
        yield result
    shutil.rmtree(work, ignore_errors=True)


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| entities x 10 features | window | variant | wall s | entities/s | CPU s | peak RSS MB | "
        "speed vs stock (wall) | speed vs stock (CPU) | RSS vs stock | online spot check |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    stock = {r["entities"]: r for r in results if r["variant"] == "stock"}
    for r in results:
        base = stock.get(r["entities"])
        speed = f"{base['seconds'] / r['seconds']:.2f}x" if base else "-"
        cpu = f"{base['cpu_seconds'] / r['cpu_seconds']:.2f}x" if base and "cpu_seconds" in r else "-"
        rss = f"1/{base['peak_rss_mb'] / r['peak_rss_mb']:.1f}" if base else "-"
        lines.append(
            f"| {r['entities']:,} | {r['days']} d | {r['variant']} | {r['seconds']:.1f} | "
            f"{r['entities_per_s']:,.0f} | {r.get('cpu_seconds', float('nan')):.1f} | "
            f"{r['peak_rss_mb']:,.0f} | {speed} | {cpu} | {rss} | "
            f"{'ok' if r['spot_check_ok'] else 'MISMATCH'} |"
        )
    lines += [
        "",
        "| entity rows | build_training_set s | pd.merge_asof s | ratio | rows back | same values |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        q = r.get("retrieval")
        if q:
            lines.append(
                f"| {q['rows']:,} | {q['feast_seconds']:.2f} | {q['merge_asof_seconds']:.2f} | "
                f"{q['feast_seconds'] / q['merge_asof_seconds']:.1f}x slower | {q['rows_back']:,} | "
                f"{q['same_values_as_merge_asof']} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, action="append", help="entity count (repeatable); default 1e5 and 1e6")
    parser.add_argument("--rows-per-day", type=int, default=100_000)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--work", type=Path, default=Path("/tmp") / f"conveyor-bench-materialize-{os.getpid()}")
    parser.add_argument("--worker", choices=VARIANTS)
    parser.add_argument("--days", type=int)
    parser.add_argument("--render", type=Path, help="print the table of an earlier results JSON and exit")
    parser.add_argument("--tag", default="delta", help="results go to bench/results/materialize.<tag>.json/.md")
    args = parser.parse_args()
    if args.render:
        print(table(json.loads(args.render.read_text())["results"]))
        return
    if args.worker:
        result = worker(args.work, args.worker, args.days, args.entities[0])
        report(result)
        return
    with private_stack("", services=("s3",), state_dir=args.work.with_name(args.work.name + "-stack")):
        run_all(args)


def run_all(args: argparse.Namespace) -> None:
    sizes = args.entities or [100_000, 1_000_000]
    variants = args.variants.split(",")
    results: list[dict[str, Any]] = []
    started = time.time()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        print(f"{n:,} entities x {N_FEATURES} features", flush=True)
        for variant_results in run_size(args.work, n, args.rows_per_day, variants):
            results.append(variant_results)
            meta = {
                "machine": f"{os.cpu_count()} cores",
                "load_avg_1m": os.getloadavg()[0],
                "when": dt.datetime.now(dt.UTC).isoformat(),
                "wall_seconds": time.time() - started,
                "rows_per_day": args.rows_per_day,
            }
            # Written after every variant, so a long run that is stopped keeps what it measured.
            (out / f"materialize.{args.tag}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    md = table(results)
    print()
    print(md)
    (out / f"materialize.{args.tag}.md").write_text(md + "\n")


if __name__ == "__main__":
    main()
