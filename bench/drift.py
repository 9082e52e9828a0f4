"""Drift statistics at scale vs batch scoring, measured side by side in one run.

    .venv/bin/python bench/drift.py [--rows 1000000] [--repeat 3]

Current window: `--rows` rows x 10 features (8 numeric, 2 categorical) of the synthetic churn data with one
feature shifted; reference: the same number of rows from the training period (worst case; the registry keeps a
sample). Baseline in the same run: `predict_proba` of a HistGradientBoosting pipeline on the same rows (the
work of batch scoring without I/O; STACK.md's read -> predict -> write floor is 2.1 s per 1e6 rows).
Prints a markdown table and writes bench/results/drift.json, with the load average: compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
from harness import best_of, drift_bench_model

from configs.settings import load_settings
from conveyor.demo.synthetic import CovariateDrift, Scenario, generate_day
from conveyor.domain import drift, drift_report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    settings = load_settings()
    features = settings.dataset.feature_names[:10]
    dataset = settings.dataset.model_copy(update={"features": settings.dataset.features[:10]})
    label = settings.dataset.label_column
    made = time.perf_counter()
    reference = generate_day(
        dt.date(2026, 1, 15), settings.dataset, settings.generator, snapshot=True, n_entities=args.rows
    )
    shifted = Scenario(covariate_drift=[CovariateDrift(feature="monthly_charges", start=dt.date(2026, 3, 1))])
    current = generate_day(
        dt.date(2026, 3, 15), settings.dataset, settings.generator, shifted, snapshot=True, n_entities=args.rows
    )
    made = time.perf_counter() - made

    categorical = [f for f in features if f in settings.dataset.categorical_features]
    model = drift_bench_model(reference.head(100_000), features, categorical, label)
    reference["score"] = model.predict_proba(reference[features])[:, 1]

    config = settings.drift
    window = dict(
        model_name="churn", model_version="bench", window_start=dt.date(2026, 3, 15), window_end=dt.date(2026, 3, 15)
    )
    results: dict[str, float] = {}
    scores: dict[str, np.ndarray] = {}

    def score() -> None:
        scores["s"] = model.predict_proba(current[features])[:, 1]

    results["predict_proba (batch scoring work)"] = best_of(args.repeat, score)
    current_scores = pd.Series(scores["s"])
    report: dict[str, drift.DriftReport] = {}

    def stats() -> None:
        report["r"] = drift.compare(reference, current, dataset, config, current_scores=current_scores, **window)

    results["drift stats: 10 features + score"] = best_of(args.repeat, stats)
    sample = reference.sample(50_000, random_state=0)

    def stats_sampled_reference() -> None:
        drift.compare(sample, current, dataset, config, current_scores=current_scores, **window)

    results["drift stats, 50k-row reference sample"] = best_of(args.repeat, stats_sampled_reference)

    def html() -> None:
        drift_report.render_html(report["r"], reference, current, current_scores, config.histogram_sample)

    results["HTML report (histograms, 200k-row sample)"] = best_of(1, html)

    base = results["predict_proba (batch scoring work)"]
    print(f"\n## Drift statistics at {args.rows:,} rows x {len(features)} features (+ score), best of {args.repeat}")
    print(
        f"data generation {made:.1f}s (not timed below); load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs: read the ratios\n"
    )
    print("| step | seconds | ratio vs predict_proba |")
    print("|---|---:|---:|")
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.3f} | {seconds / base:.2f} |")
    print(
        f"\nverdict: {report['r'].verdict}; drifted: {report['r'].drifted_features}; "
        f"STACK.md plain read->predict->write floor: 2.1 s per 1e6 rows"
    )

    out = Path(__file__).parent / "results" / "drift.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "rows": args.rows,
                "features": len(features),
                "repeat": args.repeat,
                "seconds": results,
                "ratio_vs_predict": {k: v / base for k, v in results.items()},
                "drifted_features": report["r"].drifted_features,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "measured_at": dt.datetime.now(dt.UTC).isoformat(),
                "load_avg_1m": os.getloadavg()[0],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
