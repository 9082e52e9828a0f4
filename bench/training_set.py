"""Training-set retrieval: `build_training_set` (what the training flow calls) vs `pd.merge_asof` on the same data,
and Feast's own point-in-time join (`feast_training_set`) for reference, in one run.

    .venv/bin/python bench/training_set.py                                # 1e6 and 1e7 entity rows
    .venv/bin/python bench/training_set.py --rows 1000000 --feast-up-to 1000000

A private SeaweedFS (free loopback ports, temp dir) is started and stopped by this script; the synthetic
generator lands `--days` days for `--entities` customers in the raw Delta table (not timed) and the feature
definitions are applied. Entity rows: random (known customer, timestamp in the window) pairs. Each variant
reads the raw table itself (the baseline: `read_table_window` of the days the rows need, then merge_asof with
the TTL as tolerance). Every variant must return the same values (checked). One process, sequential; wall time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import sys
import time
from typing import Any

from harness import private_stack, write_results

START = dt.date(2026, 3, 1)


def merge_asof_baseline(settings: Any, entity_df: Any, days: int) -> Any:
    import numpy as np
    import pandas as pd

    from conveyor.adapters.raw_data import raw_table, read_table_window

    ds = settings.dataset
    ttl = pd.Timedelta(days=settings.features.ttl_days)
    first = (entity_df[ds.timestamp_column].min() - ttl).date()
    source = read_table_window(raw_table(settings.storage, settings), first, START + dt.timedelta(days=days)).frame
    left = entity_df.assign(_row=np.arange(len(entity_df)))
    left[ds.timestamp_column] = left[ds.timestamp_column].astype(source[ds.timestamp_column].dtype)
    left = left.sort_values(ds.timestamp_column)
    right = source[[ds.entity_column, ds.timestamp_column, *ds.feature_names]].sort_values(ds.timestamp_column)
    merged = pd.merge_asof(
        left, right, on=ds.timestamp_column, by=ds.entity_column, direction="backward", tolerance=ttl
    ).sort_values("_row")
    return merged.reset_index(drop=True)


def same_values(a: Any, b: Any, columns: list[str]) -> bool:
    import numpy as np

    for column in columns:
        left, right = a[column].reset_index(drop=True), b[column].reset_index(drop=True)
        if not (left.isna() == right.isna()).all():
            return False
        x, y = left[left.notna()], right[right.notna()]
        if x.dtype.kind in "if" or y.dtype.kind in "if":
            if not np.array_equal(x.astype(float).to_numpy(), y.astype(float).to_numpy()):
                return False
        elif not (x.astype(str).to_numpy() == y.astype(str).to_numpy()).all():
            return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, action="append", help="entity rows (repeatable); default 1e6, 1e7")
    parser.add_argument("--entities", type=int, default=1_000_000, help="customers in the raw data")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--feast-up-to", type=int, default=1_000_000, help="run Feast's join up to this many rows")
    parser.add_argument("--note", default="")
    args = parser.parse_args()

    import numpy as np
    import pandas as pd

    results: list[dict[str, Any]] = []
    with private_stack("conveyor-bench-ts-", services=("s3",)):
        from configs.settings import load_settings
        from conveyor.adapters import feature_store as fsm
        from conveyor.adapters.object_store import ObjectStore
        from conveyor.adapters.raw_data import publish_raw_partition, raw_table, read_table_window
        from conveyor.demo.synthetic import generate_day

        settings = load_settings()
        ds = settings.dataset
        store = ObjectStore(settings.storage)
        generator = settings.generator.model_copy(update={"n_entities": args.entities})
        began = time.perf_counter()
        for offset in range(args.days):
            day = START + dt.timedelta(days=offset)
            publish_raw_partition(store, settings, day, generate_day(day, ds, generator), "bench")
        fsm.apply_definitions(settings)
        window = START, START + dt.timedelta(days=args.days)
        known = read_table_window(raw_table(settings.storage, settings), *window, columns=[ds.entity_column]).frame
        ids = known[ds.entity_column].unique()
        print(
            f"landed {args.days} days x {args.entities:,} customers in {time.perf_counter() - began:.1f}s", flush=True
        )
        rng = np.random.default_rng(11)
        for rows in args.rows or [1_000_000, 10_000_000]:
            stamps = rng.integers(0, args.days * 86_400_000_000, rows)
            entity_df = pd.DataFrame(
                {
                    ds.entity_column: rng.choice(ids, rows),
                    ds.timestamp_column: pd.Timestamp(START, tz="UTC") + pd.to_timedelta(stamps, unit="us"),
                    ds.label_column: rng.integers(0, 2, rows),
                }
            )
            timed: dict[str, float] = {}
            frames: dict[str, Any] = {}
            variants = {
                "merge_asof": lambda e=entity_df: merge_asof_baseline(settings, e, args.days),
                "build_training_set": lambda e=entity_df: fsm.build_training_set(settings, e),
            }
            if rows <= args.feast_up_to:
                variants["feast_training_set"] = lambda e=entity_df: fsm.feast_training_set(settings, e)
            for name, run in variants.items():
                began = time.perf_counter()
                frames[name] = run()
                timed[name] = time.perf_counter() - began
                print(f"{rows:,} rows: {name} {timed[name]:.2f}s", flush=True)
            base = frames["merge_asof"]
            results.append(
                {
                    "rows": rows,
                    "seconds": timed,
                    "same_values": {n: same_values(f, base, ds.feature_names) for n, f in frames.items()},
                    "non_null_share": float(frames["build_training_set"][ds.feature_names[0]].notna().mean()),
                    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                }
            )
            del frames
    about = f"{args.days} days x {args.entities:,} customers; {args.note or 'no note'}"
    write_results("training_set", {"args": vars(args), "results": results}, results_table(results), about)
    return 0


def results_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| entity rows | merge_asof s | build_training_set s | ratio | Feast's join s | ratio | same values | "
        "non-null share | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r["seconds"]
        feast = s.get("feast_training_set")
        feast_cells = "— | —" if feast is None else f"{feast:.2f} | {feast / s['merge_asof']:.2f}x"
        lines.append(
            f"| {r['rows']:,} | {s['merge_asof']:.2f} | {s['build_training_set']:.2f} | "
            f"{s['build_training_set'] / s['merge_asof']:.2f}x | "
            f"{feast_cells} | "
            f"{all(r['same_values'].values())} | {r['non_null_share']:.3f} | {r['peak_rss_mb']:,.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
