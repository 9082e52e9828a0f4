"""The gates' paired bootstrap vs a plain loop over scikit-learn, measured side by side in one run.

    .venv/bin/python bench/gates_bootstrap.py [--rows 10000] [--resamples 1000] [--repeat 5]

Two correlated models' scores on `--rows` test rows (about 30% positives, continuous scores: no ties). Variants:
the ROC AUC difference interval alone (what the champion comparison needs at the least), the three gated
metrics (ROC AUC, PR AUC, Brier) of both models as the gates compute them, the gated metrics of the other tasks
(multiclass, 3 classes: macro F1, balanced accuracy, log loss on the probability matrix; regression: RMSE, MAE,
R2), and the plain baseline: a Python
loop drawing each resample's indices and calling `roc_auc_score` twice (timed on `--baseline-resamples`
resamples, scaled to `--resamples`). Wall and CPU seconds (best of `--repeat`) with the load average: on a
shared machine compare CPU seconds and ratios, not wall seconds. Writes bench/results/gates_bootstrap.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from conveyor.domain.bootstrap import bootstrap


def best_of(repeat: int, fn) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--baseline-resamples", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    y = (rng.random(args.rows) < 0.3).astype(int)
    shared = 1.2 * y + rng.normal(0, 1, args.rows)
    champion = 1 / (1 + np.exp(-(shared + rng.normal(0, 0.5, args.rows))))
    challenger = 1 / (1 + np.exp(-(shared + rng.normal(0, 0.45, args.rows))))
    scores = {"challenger": challenger, "champion": champion}
    load_before = os.getloadavg()[0]

    def roc_only() -> None:
        bootstrap(y, scores, ["roc_auc"], args.resamples, 0.95, seed=0)

    def gated() -> None:
        bootstrap(y, scores, ["roc_auc", "pr_auc", "brier"], args.resamples, 0.95, seed=0)

    classes = rng.integers(0, 3, args.rows)
    logits = rng.normal(0, 1, (args.rows, 3)) + 1.5 * np.eye(3)[classes]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    other = np.roll(proba, 1, axis=0) * 0.2 + proba * 0.8
    target = rng.normal(50, 10, args.rows)
    predictions = {
        "challenger": target + rng.normal(0, 4, args.rows),
        "champion": target + rng.normal(0, 4.2, args.rows),
    }

    def multiclass() -> None:
        metrics = ["macro_f1", "balanced_accuracy", "log_loss"]
        bootstrap(classes, {"challenger": proba, "champion": other}, metrics, args.resamples, 0.95, seed=0)

    def regression() -> None:
        bootstrap(target, predictions, ["rmse", "mae", "r2"], args.resamples, 0.95, seed=0)

    def baseline() -> None:
        draw = np.random.default_rng(0)
        for _ in range(args.baseline_resamples):
            idx = draw.integers(0, args.rows, args.rows)
            roc_auc_score(y[idx], challenger[idx]) - roc_auc_score(y[idx], champion[idx])

    rows = []
    plain_wall, plain_cpu = best_of(max(1, args.repeat // 2), baseline)
    scale = args.resamples / args.baseline_resamples
    plain_wall, plain_cpu = plain_wall * scale, plain_cpu * scale
    variants = (
        ("ROC AUC difference (2 models)", roc_only),
        ("ROC AUC + PR AUC + Brier, 2 models", gated),
        ("multiclass: macro F1 + balanced accuracy + log loss, 2 models", multiclass),
        ("regression: RMSE + MAE + R2, 2 models", regression),
    )
    for name, fn in variants:
        wall, cpu = best_of(args.repeat, fn)
        rows.append({"variant": name, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3)})
    rows.append(
        {
            "variant": f"plain loop, roc_auc_score x2 (scaled from {args.baseline_resamples})",
            "wall_s": round(plain_wall, 3),
            "cpu_s": round(plain_cpu, 3),
        }
    )
    for row in rows:
        row["cpu_vs_plain"] = round(row["cpu_s"] / plain_cpu, 3)
    interval = bootstrap(y, scores, ["roc_auc"], args.resamples, 0.95, seed=0).gain("challenger", "champion", "roc_auc")
    result = {
        "rows": args.rows,
        "resamples": args.resamples,
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "interval": interval.to_json(),
        "variants": rows,
    }
    out = Path(__file__).parent / "results"
    (out / "gates_bootstrap.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"Paired bootstrap, {args.rows:,} rows x {args.resamples:,} resamples (best of {args.repeat}; load average "
        f"{result['load_average_before']} before, {result['load_average_after']} after, {os.cpu_count()} cores)",
        "",
        "| variant | wall s | CPU s | CPU vs plain loop |",
        "|---|---:|---:|---:|",
        *[f"| {r['variant']} | {r['wall_s']:.3f} | {r['cpu_s']:.3f} | {r['cpu_vs_plain']:.3f}x |" for r in rows],
        "",
        f"ROC AUC gain of the benchmark's challenger: {interval.text(signed=True)}",
    ]
    (out / "gates_bootstrap.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
