"""sklearn `predict_proba` vs the ONNX twin in onnxruntime, at 1 row and at 1e6 rows, in one run.

    .venv/bin/python bench/onnx_runtime.py [--rows 1000000] [--single-repeats 2000] [--repeats 3]

For each model config in base.yaml (`default`, `quick`, `logistic`): the training flow's Pipeline fitted on the
synthetic churn data (`fit_and_evaluate`), its twin exported and parity-checked as the registry does
(`export_twin`), then, both on one thread (`training.max_threads`, `twin.threads`):
- 1 row: `predict_proba` of a 1-row DataFrame, `--single-repeats` times after a warm-up; p50 / p99 / mean;
- `--rows` rows: one DataFrame of raw features (`snapshot` rows of the generator), best of `--repeats`.
Both sides take the same DataFrame, so the twin's time includes turning columns into its input tensors.
Prints a markdown table and writes bench/results/onnx_runtime.md and .json with the load average (the machine
is shared: compare ratios in the same run, not seconds across runs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from harness import best_of
from threadpoolctl import threadpool_limits

from configs.settings import load_settings
from conveyor.adapters.onnx_twin import OnnxTwin, export_twin
from conveyor.demo.synthetic import generate_day, generate_window
from conveyor.services.training import _features, fit_and_evaluate

RESULTS = Path(__file__).resolve().parent / "results"


def single_row_latencies(predict: Any, rows: list[pd.DataFrame], repeats: int) -> np.ndarray:
    for row in rows[:50]:  # warm-up: first calls allocate
        predict(row)
    times = np.empty(repeats)
    for i in range(repeats):
        row = rows[i % len(rows)]
        started = time.perf_counter()
        predict(row)
        times[i] = time.perf_counter() - started
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--single-repeats", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    settings = load_settings()
    ds = settings.dataset
    load_before = os.getloadavg()
    training = pd.concat(generate_window(dt.date(2026, 1, 1), 60, ds, settings.generator).values(), ignore_index=True)
    big = _features(generate_day(dt.date(2026, 3, 15), ds, settings.generator, snapshot=True, n_entities=args.rows), ds)
    singles = [big.iloc[[i]] for i in range(500)]

    rows: list[dict[str, Any]] = []
    for name in settings.training.models:
        candidate = fit_and_evaluate(training, settings, name)
        export = export_twin(candidate.model, _features(candidate.test, ds), settings.twin.parity_tolerance)
        assert export.onnx_bytes is not None, export.record.reason
        twin = OnnxTwin.from_bytes(export.onnx_bytes, threads=settings.twin.threads)
        runtimes = {"sklearn": candidate.model.predict_proba, "onnx": twin.predict_proba}
        measured: dict[str, dict[str, float]] = {}
        with threadpool_limits(limits=settings.training.max_threads or 1):
            for runtime, predict in runtimes.items():
                single = single_row_latencies(predict, singles, args.single_repeats) * 1000
                batch = best_of(args.repeats, lambda predict=predict: predict(big))
                measured[runtime] = {
                    "p50_ms": float(np.percentile(single, 50)),
                    "p99_ms": float(np.percentile(single, 99)),
                    "mean_ms": float(single.mean()),
                    "batch_s": batch,
                }
            big_diff = float(np.abs(twin.predict_proba(big)[:, 1] - candidate.model.predict_proba(big)[:, 1]).max())
        for runtime, m in measured.items():
            rows.append(
                {
                    "model_config": name,
                    "runtime": runtime,
                    **{k: round(v, 4) for k, v in m.items()},
                    "rows_per_s": round(args.rows / m["batch_s"]),
                    "p50_vs_sklearn": round(m["p50_ms"] / measured["sklearn"]["p50_ms"], 3),
                    "batch_vs_sklearn": round(m["batch_s"] / measured["sklearn"]["batch_s"], 3),
                    "onnx_bytes": len(export.onnx_bytes),
                    "parity_test_set": export.record.max_abs_diff,
                    "parity_big": big_diff,
                }
            )
    load_after = os.getloadavg()
    table = [
        f"| model config | runtime | 1 row p50 ms | 1 row p99 ms | 1 row vs sklearn (p50) | {args.rows:,} rows s "
        "| rows/s | vs sklearn | max abs diff (test set / big) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        table.append(
            f"| {r['model_config']} | {r['runtime']} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} "
            f"| {r['p50_vs_sklearn']:.2f}x "
            f"| {r['batch_s']:.2f} | {r['rows_per_s']:,} | {r['batch_vs_sklearn']:.2f}x "
            f"| {r['parity_test_set']:.1e} / {r['parity_big']:.1e} |"
        )
    header = (
        f"`.venv/bin/python bench/onnx_runtime.py --rows {args.rows} --single-repeats {args.single_repeats} "
        f"--repeats {args.repeats}` on {dt.date.today()} ({platform.node()}, {os.cpu_count()} cores, one thread "
        f"per runtime); load average {load_before[0]:.2f} at start, {load_after[0]:.2f} at end (1-minute). "
        f"1 row: {args.single_repeats} calls on a 1-row DataFrame; {args.rows:,} rows: best of {args.repeats}."
    )
    text = header + "\n\n" + "\n".join(table) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "onnx_runtime.md").write_text(text)
    meta = {"args": vars(args), "load_before": load_before, "load_after": load_after, "rows": rows}
    (RESULTS / "onnx_runtime.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
