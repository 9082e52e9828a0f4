"""The daily scoring path users run, vs a good plain script, side by side in one run.

    .venv/bin/python bench/daily_scoring.py                              # 1e5, 1e6 and 1e7 customers
    .venv/bin/python bench/daily_scoring.py --entities 1000000 --repeats 3

A private stack (SeaweedFS S3 + Prefect server on free loopback ports, temp state dir) is started and stopped by
this script. Per size: the synthetic churn generator lands 30 days for N customers (about 2 events per customer
a month, so ~87% of them are in the 30-day population) in the raw Delta table (not timed), one model
(HistGradientBoosting in a Pipeline) is the registry's champion and also a plain joblib for the baseline.

Variants, each in its own subprocess (peak RSS = that process's VmHWM):
  plain   the floor, written as well as we know: one delta-rs read of the window's needed columns -> latest row
          per customer as of the end of the day (pyarrow group-by max + join, no object-column sort) ->
          predict_proba -> one parquet (entity, score, decision) -> PUT. No checks, no checksum, no manifest,
          no Prefect.
  cold    flows.batch_inference.batch_inference for that day as a Prefect flow run (the deployment's code path:
          resolve + load the champion, SHA-256 verified; population and features from the raw table; row
          checks + scoring suite; chunked write; atomic publish), the first run on the freshly landed data
  warm    the same flow run again (an idempotent rerun of the day), in a new process
`work` is the time inside the process after its imports; `startup` is the rest of the process's wall time
(interpreter, imports, teardown). The flow's step breakdown comes from timers around the functions it calls.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import sys
import time
from collections import defaultdict
from typing import Any

from batch_inference import register_champion
from harness import Work, private_stack, run_child, write_results

START = dt.date(2026, 3, 1)
DAYS = 30
DAY = START + dt.timedelta(days=DAYS - 1)  # the scored day: the population is the whole landed window
MODEL = "churn-bench"
MODES = ["plain", "cold", "warm"]


# ---- children -------------------------------------------------------------------------------------------------
def child_plain(entities: int) -> None:
    import io

    import joblib
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    from configs.settings import load_settings
    from conveyor.adapters.object_store import ObjectStore
    from conveyor.adapters.raw_data import raw_table

    work = Work()
    settings = load_settings()
    ds = settings.dataset
    store = ObjectStore(settings.storage)
    model = joblib.load(io.BytesIO(store.get_bytes("bench/model.joblib")))
    table = raw_table(settings.storage, settings)
    first = DAY - dt.timedelta(days=settings.scoring.population_lookback_days - 1)
    window = DeltaTable(table.uri, storage_options=table.storage_options).to_pyarrow_table(
        filters=[("dt", ">=", first.isoformat()), ("dt", "<=", DAY.isoformat())],
        columns=[ds.entity_column, ds.timestamp_column, *ds.feature_names],
    )
    latest = window.group_by(ds.entity_column).aggregate([(ds.timestamp_column, "max")])
    latest = latest.rename_columns([ds.entity_column, ds.timestamp_column])
    rows = window.join(latest, [ds.entity_column, ds.timestamp_column], join_type="inner")
    # An entity with two rows at its latest timestamp: keep one (as the flow does).
    rows = rows.take(_first_per_key(rows, ds))
    frame = rows.to_pandas()
    scores = model.predict_proba(frame[ds.feature_names])[:, 1]
    out = pa.table(
        {
            ds.entity_column: frame[ds.entity_column].to_numpy(),
            "score": scores,
            "decision": scores >= settings.scoring.threshold,
        }
    )
    buffer = io.BytesIO()
    pq.write_table(out, buffer, compression="zstd")
    store.put_bytes(f"bench/plain/{MODEL}/dt={DAY.isoformat()}/part-00000.parquet", buffer.getvalue())
    work.report("plain", len(frame))


def _first_per_key(rows: Any, ds: Any) -> Any:
    import numpy as np
    import pandas as pd

    ids = rows.column(ds.entity_column).to_numpy()
    return np.flatnonzero(~pd.Index(ids).duplicated(keep="first"))


STEP_TIMERS: dict[str, float] = defaultdict(float)
# MB the process's peak RSS (VmHWM) rose during each step's calls: where the peak was reached, as a profile.
STEP_PEAK_GROWTH: dict[str, float] = defaultdict(float)


def _peak_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def _timed(owner: Any, name: str, step: str) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began, peak = time.perf_counter(), _peak_mb()
        try:
            return original(*args, **kwargs)
        finally:
            STEP_TIMERS[step] += time.perf_counter() - began
            STEP_PEAK_GROWTH[step] += _peak_mb() - peak

    setattr(owner, name, wrapper)


def child_flow(mode: str) -> None:
    from conveyor.adapters.registry import ModelRegistry
    from conveyor.domain.point_in_time import LatestRows
    from conveyor.services import scoring
    from conveyor.services.partition_writer import PartitionWriter
    from flows.batch_inference import batch_inference

    for owner, name, step in [
        (LatestRows, "add_keys", "pass 1: keys"),
        (LatestRows, "finish_keys", "pass 1: latest per entity"),
        (LatestRows, "select", "pass 2: select rows"),
        (scoring, "check_chunk", "row checks"),
        (scoring, "predict_outputs", "predict"),
        (PartitionWriter, "write", "write parquet"),
        (ModelRegistry, "load", "load model"),
        (scoring._PartitionRun, "finish", "publish"),
    ]:
        _timed(owner, name, step)
    work = Work()
    peak_at_start = _peak_mb()
    result = batch_inference(scoring_date=DAY, model_name=MODEL)
    partition = result.partitions[0]
    steps = {k: round(v, 3) for k, v in STEP_TIMERS.items()}
    steps["partition task total"] = round(partition.seconds, 3)
    heavy = sorted(m for m in ("feast", "great_expectations", "ibis") if m in sys.modules)
    growth = {k: round(v) for k, v in STEP_PEAK_GROWTH.items()}
    growth["outside the timed steps"] = round(_peak_mb() - peak_at_start - sum(STEP_PEAK_GROWTH.values()))
    growth["at the start of the work"] = round(peak_at_start)
    extra = {"steps": steps, "peak_growth_mb": growth, "heavy_imports": heavy}
    work.report(mode, partition.rows_scored, extra)


# ---- parent ---------------------------------------------------------------------------------------------------
def land(settings: Any, store: Any, entities: int) -> float:
    from conveyor.adapters.raw_data import publish_raw_partition
    from conveyor.demo.synthetic import generate_day

    started = time.perf_counter()
    generator = settings.generator.model_copy(update={"n_entities": entities})
    for offset in range(DAYS):
        day = START + dt.timedelta(days=offset)
        publish_raw_partition(store, settings, day, generate_day(day, settings.dataset, generator), "bench")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, action="append", help="customers (repeatable); default 1e5, 1e6, 1e7")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of plain/cold/warm below 1e7 (1e7: one)")
    parser.add_argument("--note", default="", help="what else ran on the machine (recorded with the results)")
    parser.add_argument("--modes", default=",".join(MODES), help="variants to run, in this order (default: all)")
    parser.add_argument("--tag", default="", help="results go to bench/results/daily_scoring.<tag>.md (default: none)")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child == "plain":
            child_plain(args.entities[0])
        else:
            child_flow(args.child)
        return 0

    runs: list[dict[str, Any]] = []
    with private_stack("conveyor-bench-daily-") as env:
        from configs.settings import load_settings
        from conveyor.adapters.object_store import ObjectStore
        from conveyor.adapters.raw_data import raw_root

        settings = load_settings()
        store = ObjectStore(settings.storage)
        version = register_champion(store, settings)
        print(f"champion {MODEL} v{version}", flush=True)
        for entities in args.entities or [100_000, 1_000_000, 10_000_000]:
            store.delete_prefix(raw_root(settings))
            print(f"landing {DAYS} days for {entities:,} customers: {land(settings, store, entities):.1f}s", flush=True)
            for _ in range(1 if entities >= 10_000_000 else args.repeats):
                for mode in args.modes.split(","):  # cold must follow the landing: fixed order
                    child = run_child([__file__, "--child", mode, "--entities", str(entities)], env)
                    runs.append({**child, "entities": entities})
                    print(json.dumps(runs[-1]), flush=True)
    name = "daily_scoring" + (f".{args.tag}" if args.tag else "")
    write_results(name, {"runs": runs}, results_table(runs), args.note or "no note")
    return 0


def results_table(runs: list[dict[str, Any]]) -> str:
    """Median work and whole-process time per variant, ratios against plain of the same size, CPU, peak RSS;
    then the flow's steps."""
    import statistics

    groups: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[(r["entities"], r["mode"])].append(r)

    def med(group: list[dict[str, Any]], key: str) -> float:
        return float(statistics.median(x[key] for x in group))

    lines = [
        "| customers | scored | variant | runs | work s | ratio | process s | ratio | CPU s | imports s "
        "| peak RSS MB | load 1m |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (entities, mode), group in sorted(groups.items(), key=lambda kv: (kv[0][0], MODES.index(kv[0][1]))):
        plain = groups.get((entities, "plain"))

        def ratio(key: str, group: list[dict[str, Any]] = group, plain: list[dict[str, Any]] | None = plain) -> str:
            return f"{med(group, key) / med(plain, key):.2f}" if plain else "—"

        lines.append(
            f"| {entities:,} | {group[0]['rows']:,} | {mode} | {len(group)} | {med(group, 'work_s'):.2f} | "
            f"{ratio('work_s')} | {med(group, 'wall_s'):.2f} | {ratio('wall_s')} | {med(group, 'cpu_s'):.2f} | "
            f"{med(group, 'imports_s'):.2f} | {max(x['peak_rss_mb'] for x in group):.0f} | "
            f"{med(group, 'load_1m'):.1f} |"
        )
    steps = sorted({s for r in runs for s in r.get("steps", {})})
    flows = [(k, g) for k, g in sorted(groups.items()) if k[1] != "plain"]
    lines += ["", "| step (s, median) | " + " | ".join(f"{e:,} {m}" for (e, m), _ in flows) + " |"]
    lines.append("|---|" + "---|" * len(flows))
    for step in steps:
        cells = [f"{statistics.median(r['steps'].get(step, 0.0) for r in g):.2f}" for _, g in flows]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    growth_steps = sorted({s for r in runs for s in r.get("peak_growth_mb", {})})
    if growth_steps:
        lines += ["", "| peak RSS rise (MB, max) | " + " | ".join(f"{e:,} {m}" for (e, m), _ in flows) + " |"]
        lines.append("|---|" + "---|" * len(flows))
        for step in growth_steps:
            cells = [f"{max(r.get('peak_growth_mb', {}).get(step, 0) for r in g):.0f}" for _, g in flows]
            lines.append(f"| {step} | " + " | ".join(cells) + " |")
    heavy = sorted({m for r in runs for m in r.get("heavy_imports", [])})
    lines.append(f"\nheavy modules imported by a flow process: {', '.join(heavy) or 'none (no feast, GX, ibis)'}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
