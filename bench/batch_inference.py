"""Batch inference: the orchestrated flow vs a plain pandas + scikit-learn script, side by side in one run.

    .venv/bin/python bench/batch_inference.py                    # 1e6 and 1e7 rows
    .venv/bin/python bench/batch_inference.py --rows 1000000     # one size only

A private stack (SeaweedFS S3 + Prefect server on free loopback ports, temp state dir) is started and stopped by
this script. Input: feature parquet generated with conveyor/demo/synthetic.generate_day(snapshot=True) in chunks of 1e6
rows (distinct seeds and entity ids per chunk), published on S3 as `bench/features/churn/dt=<day>/`. One model
(HistGradientBoosting in a Pipeline) is registered as champion in the registry and also stored as a plain joblib
for the baseline.

Variants, each in its own subprocess (peak RSS = that process's ru_maxrss):
  plain   read every input part from S3 -> pandas -> predict_proba -> write parquet (entity, score, decision)
          -> PUT. Nothing else: no validation, no checksum, no manifest, no Prefect.
  engine  conveyor.services.scoring.score_partition without Prefect (chunked, checks, checksums, manifest,
          atomic publish).
  flow    flows.batch_inference.batch_inference as a Prefect flow run against the private server: resolve +
          load the champion from the registry (SHA-256 verified), one score-partition task (everything the
          engine does + GX sample suite when present), artifacts.
  flow-stock  the same flow on Prefect's own sync engine, without conveyor/adapters/prefect_fixes.py (the engine
          waits for its heartbeat thread's 1 s sleep at the end of the run): what that fix is worth, in the same run.
`work` is the time of the work inside the process; `startup` is the rest of the process's wall time
(interpreter start, imports, teardown), reported separately.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from typing import Any

from harness import Work, private_stack, run_child, write_results

from conveyor.adapters.publication import Publication

DAY = dt.date(2026, 3, 1)
MODEL = "churn-bench"
INPUT_PREFIX = "bench/features/churn"
CHUNK = 1_000_000
MODES = ["plain", "engine", "flow", "flow-stock"]


# ---- children -------------------------------------------------------------------------------------------------
def child_plain(rows: int) -> None:
    import io

    import joblib
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from configs.settings import load_settings
    from conveyor.adapters.object_store import ObjectStore

    work = Work()
    settings = load_settings()
    store = ObjectStore(settings.storage)
    model = joblib.load(io.BytesIO(store.get_bytes("bench/model.joblib")))
    keys = [k for k in store.list_keys(f"{INPUT_PREFIX}/dt={DAY.isoformat()}/") if k.endswith(".parquet")]
    frame = pa.concat_tables([pq.read_table(io.BytesIO(store.get_bytes(k))) for k in keys]).to_pandas()
    ds = settings.dataset
    scores = model.predict_proba(frame[ds.feature_names])[:, 1]
    out = pd.DataFrame(
        {
            ds.entity_column: frame[ds.entity_column].to_numpy(),
            "score": scores,
            "decision": scores >= settings.scoring.threshold,
        }
    )
    buffer = io.BytesIO()
    out.to_parquet(buffer, index=False, compression="zstd")
    store.put_bytes(f"bench/plain/{MODEL}/dt={DAY.isoformat()}/part-00000.parquet", buffer.getvalue())
    work.report("plain", len(out))


def child_engine(rows: int) -> None:
    from configs.settings import load_settings
    from conveyor.adapters.object_store import ObjectStore
    from conveyor.services.batch_inference import load_scoring_model, resolve_model
    from conveyor.services.feature_sources import PublishedParquetSource
    from conveyor.services.scoring import score_partition

    work = Work()
    settings = load_settings()
    store = ObjectStore(settings.storage)
    ref = resolve_model(store, settings, MODEL, None)
    ds = settings.dataset
    source = PublishedParquetSource(
        store, f"{INPUT_PREFIX}/dt={DAY.isoformat()}", [ds.entity_column, *ds.feature_names]
    )
    result = score_partition(
        store, settings, source, load_scoring_model(store, settings, ref), MODEL, DAY, f"engine-{rows}"
    )
    work.report("engine", result.rows_scored)


def child_flow(rows: int, stock_engine: bool = False) -> None:
    from flows.batch_inference import batch_inference

    if stock_engine:
        from prefect import flow_engine

        flow_engine._send_heartbeats = flow_engine._send_heartbeats.__wrapped__  # type: ignore[attr-defined]

    work = Work()
    result = batch_inference(scoring_date=DAY, model_name=MODEL, features_prefix=INPUT_PREFIX)
    work.report("flow-stock" if stock_engine else "flow", result.rows_scored, {"where": result.where()})


# ---- parent ---------------------------------------------------------------------------------------------------
def train_model(settings: Any) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    from conveyor.demo.synthetic import generate_day

    ds = settings.dataset
    frame = generate_day(dt.date(2026, 2, 1), ds, settings.generator, snapshot=True, n_entities=50_000)
    encode = ColumnTransformer(
        [
            (
                "cat",
                OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1),
                ds.categorical_features,
            )
        ],
        remainder="passthrough",
    )
    model = Pipeline([("encode", encode), ("gbm", HistGradientBoostingClassifier(max_iter=100, random_state=0))])
    return model.fit(frame[ds.feature_names], frame[ds.label_column]), frame


def register_champion(store: Any, settings: Any) -> str:
    """Train once; register + promote in the registry (the flow's source) and store a joblib (the plain one's)."""
    import io

    import joblib

    from conveyor.adapters.registry import ModelMetadata, ModelRegistry

    model, frame = train_model(settings)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    store.put_bytes("bench/model.joblib", buffer.getvalue())
    ds = settings.dataset
    sample = frame[ds.feature_names].head(5000)
    metadata = ModelMetadata(
        metrics={},
        gates={"passed": True, "reasons": ["benchmark model"]},
        training_window={},
        feature_service=settings.features.feature_service,
        feature_names=ds.feature_names,
        data_fingerprint="bench",
        params={"max_iter": 100},
    )
    registry = ModelRegistry(store, settings)
    version = registry.register(MODEL, model, metadata, sample.assign(score=model.predict_proba(sample)[:, 1]))
    registry.promote(MODEL, version.version, actor="bench", reason="benchmark champion")
    return str(version.version)


def publish_input(store: Any, settings: Any, rows: int) -> float:
    """Generate `rows` feature rows in 1e6-row chunks and publish them as one input partition."""
    from conveyor.demo.synthetic import generate_day

    started = time.perf_counter()
    ds = settings.dataset
    prefix = f"{INPUT_PREFIX}/dt={DAY.isoformat()}"
    with Publication(store, prefix, f"input-{rows}") as pub:
        for index, start in enumerate(range(0, rows, CHUNK)):
            n = min(CHUNK, rows - start)
            generator = settings.generator.model_copy(update={"seed": settings.generator.seed + index})
            frame = generate_day(DAY, ds, generator, snapshot=True, n_entities=n)
            frame[ds.entity_column] += start  # distinct entity ids across chunks
            pub.write_parquet(f"part-{index:05d}.parquet", frame.drop(columns=[ds.label_column]))
            del frame
        pub.commit({"rows": rows})
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, action="append", help="input rows (repeatable); default 1e6 and 1e7")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant below 1e7 rows (1e7 runs once)")
    parser.add_argument("--note", default="", help="what else ran on the machine (recorded with the results)")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        children = {
            "plain": child_plain,
            "engine": child_engine,
            "flow": child_flow,
            "flow-stock": lambda rows: child_flow(rows, stock_engine=True),
        }
        children[args.child](args.rows[0])
        return 0

    sizes = args.rows or [1_000_000, 10_000_000]
    runs: list[dict[str, Any]] = []
    with private_stack("conveyor-bench-bi-") as env:
        from configs.settings import load_settings
        from conveyor.adapters.object_store import ObjectStore

        settings = load_settings()
        store = ObjectStore(settings.storage)
        version = register_champion(store, settings)
        print(f"champion {MODEL} v{version}; load {os.getloadavg()}", flush=True)
        for rows in sizes:
            print(
                f"generating + publishing {rows:,} input rows: {publish_input(store, settings, rows):.1f}s", flush=True
            )
            repeats = 1 if rows >= 10_000_000 else args.repeats
            for repeat in range(repeats):
                for mode in MODES[repeat % len(MODES) :] + MODES[: repeat % len(MODES)]:  # rotate: load drifts
                    runs.append(run_child([__file__, "--child", mode, "--rows", str(rows)], env))
                    print(json.dumps(runs[-1]), flush=True)
            store.delete_prefix(f"{INPUT_PREFIX}/")
    write_results("batch_inference", {"runs": runs}, results_table(runs), args.note or "no note")
    return 0


def results_table(runs: list[dict[str, Any]]) -> str:
    """Median (and best) work time per variant, ratios against plain of the same size, CPU seconds (less
    sensitive to other processes on the machine than wall time), startup and peak RSS."""
    import statistics

    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["rows"], r["mode"]), []).append(r)
    lines = [
        "| rows | variant | runs | work s (median) | ratio | work s (best) | ratio (best) | CPU s | CPU ratio "
        "| startup+imports s | peak RSS MB | load 1m |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (rows, mode), group in sorted(groups.items(), key=lambda kv: (kv[0][0], MODES.index(kv[0][1]))):
        plain = groups[(rows, "plain")]

        def med(g: list[dict[str, Any]], key: str) -> float:
            return float(statistics.median(x[key] for x in g))

        def best(g: list[dict[str, Any]], key: str) -> float:
            return float(min(x[key] for x in g))

        lines.append(
            f"| {rows:,} | {mode} | {len(group)} | {med(group, 'work_s'):.2f} | "
            f"{med(group, 'work_s') / med(plain, 'work_s'):.2f} | {best(group, 'work_s'):.2f} | "
            f"{best(group, 'work_s') / best(plain, 'work_s'):.2f} | {med(group, 'cpu_s'):.2f} | "
            f"{med(group, 'cpu_s') / med(plain, 'cpu_s'):.2f} | {med(group, 'startup_s'):.2f} | "
            f"{max(x['peak_rss_mb'] for x in group):.0f} | {med(group, 'load_1m'):.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
