"""Validation cost next to the cost of reading the same data.

For each size: write a clean synthetic batch to parquet, then time (median of --repeats runs, same process,
side by side) reading it back (`pd.read_parquet`, and the stored-partition gate's reader, which also keeps the
arrow table with text dictionary-encoded), validating it with the configured suite through the fast engine —
with that arrow table, as the stored-partition gate runs it, and from the frame alone, as a flow handing over
a DataFrame runs it — and through Great Expectations, and a plain-pandas baseline doing the same checks by hand.

    .venv/bin/python bench/validation.py [--rows 100000 1000000] [--repeats 3] [--gx-repeats 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from configs.settings import TELEMETRY_OFF_ENV, Settings, load_settings
from conveyor.adapters.object_store import dataframe_to_parquet_bytes
from conveyor.demo.synthetic import generate_day
from conveyor.domain.parquet_batch import read_parquet_batch
from conveyor.services.validation import validate_frame

DAY = dt.date(2026, 2, 1)
AS_OF = dt.datetime(2026, 2, 2, tzinfo=dt.UTC)
RESULTS = Path(__file__).resolve().parent / "results" / "validation.json"


def plain_checks(frame: pd.DataFrame, settings: Settings) -> bool:
    """The same rules written by hand in pandas: the floor for what validation can cost."""
    ds = settings.dataset
    keys = [ds.entity_column, ds.timestamp_column]
    ok = all(c in frame.columns for c in [*keys, *ds.feature_names, ds.label_column])
    ok &= 1 <= len(frame) and not frame[keys].isna().any().any()
    for spec in ds.features:
        col = frame[spec.name]
        ok &= col.isna().mean() <= settings.validation.max_null_share
        if spec.is_numeric:
            ok &= bool(col.dropna().between(spec.min, spec.max).all())
        else:
            ok &= bool(col.dropna().isin(spec.categories or []).all())
    ok &= bool(frame[ds.label_column].isin([0, 1]).all())
    ok &= not frame.duplicated(keys).any()
    newest = frame[ds.timestamp_column].max()
    ok &= newest >= pd.Timestamp(AS_OF) - pd.Timedelta(hours=settings.validation.max_age_hours)
    return bool(ok)


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


def run(
    rows: int, settings: Settings, repeats: int, gx_repeats: int, folder: Path, repeating_entities: bool
) -> dict[str, object]:
    frame = generate_day(DAY, settings.dataset, settings.generator, snapshot=True, n_entities=rows)
    if repeating_entities:
        # Event data as a user's files may hold it: ~10 rows per customer, rows NOT sorted by time, so the
        # entity+timestamp uniqueness check cannot use the sorted shortcut and hashes every key.
        ent = settings.dataset.entity_column
        frame[ent] = frame[ent] % max(rows // 10, 1)
        frame = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    path = folder / f"batch-{rows}-{repeating_entities}.parquet"
    path.write_bytes(dataframe_to_parquet_bytes(frame))
    read_s, loaded = timed(lambda: pd.read_parquet(path), repeats)
    assert isinstance(loaded, pd.DataFrame)
    gate_read_s, batch = timed(lambda: read_parquet_batch(path.read_bytes()), repeats)
    gate_frame, arrow = batch  # type: ignore[misc]
    pd.testing.assert_frame_equal(gate_frame, loaded)  # the same frame either way
    plain_s, plain_ok = timed(lambda: plain_checks(loaded, settings), repeats)
    fast_s, fast = timed(
        lambda: validate_frame(gate_frame, "raw", settings, as_of=AS_OF, engine="fast", arrow=arrow), repeats
    )
    frame_only_s, frame_only = timed(
        lambda: validate_frame(loaded, "raw", settings, as_of=AS_OF, engine="fast"), repeats
    )
    gx_s, gx = timed(lambda: validate_frame(loaded, "raw", settings, as_of=AS_OF, engine="gx"), gx_repeats)
    passed = plain_ok and fast.passed and frame_only.passed and gx.passed  # type: ignore[attr-defined]
    assert passed, "the clean batch must pass every way"
    return {
        "rows": rows,
        "entities": "~10 rows each, unsorted" if repeating_entities else "1 row each, sorted",
        "columns": frame.shape[1],
        "parquet_mb": round(path.stat().st_size / 1e6, 2),
        "expectations": len(fast.outcomes),  # type: ignore[attr-defined]
        "read_s": read_s,
        "gate_read_s": gate_read_s,
        "plain_pandas_s": plain_s,
        "fast_engine_s": fast_s,
        "fast_engine_frame_only_s": frame_only_s,
        "gx_engine_s": gx_s,
        "fast_vs_read": fast_s / read_s,
        "gx_vs_read": gx_s / read_s,
        "plain_vs_read": plain_s / read_s,
        "fast_vs_plain": fast_s / plain_s,
        "fast_frame_only_vs_plain": frame_only_s / plain_s,
    }


def main() -> None:
    for key, value in TELEMETRY_OFF_ENV.items():
        os.environ.setdefault(key, value)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gx-repeats", type=int, default=1)
    args = parser.parse_args()
    settings = load_settings()
    # Import GX once before timing so that its ~3 s import is not billed to the first size.
    import great_expectations  # noqa: F401

    import conveyor.adapters.gx_validation  # noqa: F401

    with tempfile.TemporaryDirectory() as tmp:
        results = [
            run(n, settings, args.repeats, args.gx_repeats, Path(tmp), repeating)
            for n in args.rows
            for repeating in (False, True)
        ]
    load = os.getloadavg()
    print(
        f"\nvalidation vs parquet read (median of {args.repeats}; GX median of {args.gx_repeats}); "
        f"{os.cpu_count()} cores, load avg {load[0]:.1f}\n"
    )
    print(
        "| rows | entities | expectations | read | gate read | plain pandas | fast engine (gate) "
        "| fast, frame only | GX engine | fast/read | GX/read | plain/read | fast/plain | frame only/plain |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['rows']:,} | {r['entities']} | {r['expectations']} | {r['read_s']:.3f}s "
            f"| {r['gate_read_s']:.3f}s | {r['plain_pandas_s']:.3f}s "
            f"| {r['fast_engine_s']:.3f}s | {r['fast_engine_frame_only_s']:.3f}s | {r['gx_engine_s']:.3f}s "
            f"| {r['fast_vs_read']:.2f} | {r['gx_vs_read']:.2f} | {r['plain_vs_read']:.2f} "
            f"| {r['fast_vs_plain']:.2f} | {r['fast_frame_only_vs_plain']:.2f} |"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "measured_at": dt.datetime.now(dt.UTC).isoformat(),
                "python": platform.python_version(),
                "cores": os.cpu_count(),
                "load_avg_1m": load[0],
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nresults: {RESULTS}")


if __name__ == "__main__":
    main()
