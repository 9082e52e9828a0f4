"""Ingest of sources of any size: peak memory of `land_files` on a 1e7-row source against a 1e6-row one.

    .venv/bin/python bench/ingest.py                        # 1e6 and 1e7 rows, parquet and CSV
    .venv/bin/python bench/ingest.py --rows 1000000 --formats parquet

Data: the synthetic churn rows, `--rows-per-day` rows a day (so 1e7 rows is ten times the days of 1e6: a longer
history, the case a batch size must bound), in files of at most `--rows-per-file` rows (parquet: a row group a
day; CSV: one header, then rows). Each run is a subprocess on a private SeaweedFS, landing the whole source into a
fresh raw Delta table (every day validated against the raw suite, then published as one commit); it reports its
own peak RSS (getrusage ru_maxrss), wall and CPU time. `before` is what ingest did until now, reading every file
into one DataFrame (`pd.concat`), measured up to the concat only (it has not landed anything yet).
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
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from harness import ROOT, private_stack, report, run_child

from configs.settings import TELEMETRY_OFF_ENV, Settings, load_settings

START = dt.date(2024, 1, 1)
ENTITIES_PER_ROW_PER_DAY = 15  # generator: ~2 events per entity per 30 days


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_source(folder: Path, settings: Settings, rows: int, rows_per_day: int, rows_per_file: int, fmt: str) -> int:
    """Write `rows` rows of consecutive days into files of at most `rows_per_file` rows. Returns the days."""
    from conveyor.demo.synthetic import generate_day

    folder.mkdir(parents=True)
    generator = settings.generator.model_copy(
        update={"n_entities": rows_per_day * ENTITIES_PER_ROW_PER_DAY, "start_date": START}
    )
    written, day, index, in_file = 0, START, 0, 0
    writer: pq.ParquetWriter | None = None
    path = folder / f"part-{index:03d}.{fmt}"
    while written < rows:
        frame = generate_day(day, settings.dataset, generator).head(rows - written)
        if in_file and in_file + len(frame) > rows_per_file:
            if writer is not None:
                writer.close()
                writer = None
            index, in_file = index + 1, 0
            path = folder / f"part-{index:03d}.{fmt}"
        if fmt == "parquet":
            table = pa.Table.from_pandas(frame, preserve_index=False)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
        else:
            frame.to_csv(path, mode="a", header=in_file == 0, index=False)
        written, in_file, day = written + len(frame), in_file + len(frame), day + dt.timedelta(days=1)
    if writer is not None:
        writer.close()
    return (day - START).days


def worker(variant: str, source: Path) -> dict[str, Any]:
    """Runs in a subprocess: land the whole source (or, `before`, read it the old way), report."""
    settings = load_settings()
    started, cpu = time.perf_counter(), _cpu()
    if variant == "before":
        files = sorted(p for p in source.iterdir() if p.suffix in (".csv", ".parquet"))
        frame = pd.concat([pd.read_parquet(f) if f.suffix == ".parquet" else pd.read_csv(f) for f in files])
        result: dict[str, Any] = {"rows_published": 0, "rows_read": len(frame), "days": 0, "quarantined": 0}
    else:
        from conveyor.adapters.object_store import ObjectStore
        from conveyor.services.ingest import land_files

        landed = land_files(settings, ObjectStore(settings.storage), str(source), run_id=f"bench-{variant}")
        rows_read = landed.rows + sum(q.rows for q in landed.quarantined)
        result = {"rows_published": landed.rows, "rows_read": rows_read, "days": len(landed.days)}
        result["quarantined"] = len(landed.quarantined)
    return {
        **result,
        "variant": variant,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": _cpu() - cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "batch_rows": settings.ingest.batch_rows,
    }


def run_one(variant: str, source: Path, bucket: str) -> dict[str, Any]:
    env = {**os.environ, **TELEMETRY_OFF_ENV, "CONVEYOR_STORAGE__BUCKET": bucket}
    cmd = [sys.executable, __file__, "--worker", variant, "--source", str(source)]
    result = run_child(cmd[1:], env)
    return result


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| source rows | format | files | size MB | days | variant | wall s | rows/s | CPU s | peak RSS MB | "
        "RSS vs 1e6 | published | quarantined |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    smallest = min(r["rows"] for r in results)
    base = {(r["format"], r["variant"]): r for r in results if r["rows"] == smallest}
    for r in results:
        ref = base.get((r["format"], r["variant"]))
        ratio = f"{r['peak_rss_mb'] / ref['peak_rss_mb']:.2f}x" if ref else "-"
        published = f"{r['rows_published']:,}" if r["variant"] == "ingest" else "(reads only)"
        lines.append(
            f"| {r['rows']:,} | {r['format']} | {r['files']} | {r['size_mb']:,.0f} | {r['source_days']} | "
            f"{r['variant']} | {r['seconds']:.1f} | {r['rows'] / r['seconds']:,.0f} | {r['cpu_seconds']:.1f} | "
            f"{r['peak_rss_mb']:,.0f} | {ratio} | {published} | {r['quarantined']} |"
        )
    return "\n".join(lines)


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    settings = load_settings()
    results: list[dict[str, Any]] = []
    for fmt in args.formats.split(","):
        for rows in sorted(args.rows or [1_000_000, 10_000_000]):
            source = args.work / f"{fmt}-{rows}"
            shutil.rmtree(source, ignore_errors=True)
            began = time.time()
            days = make_source(source, settings, rows, args.rows_per_day, args.rows_per_file, fmt)
            files = sorted(source.iterdir())
            size_mb = sum(f.stat().st_size for f in files) / 2**20
            print(
                f"{fmt} {rows:,} rows: {len(files)} files, {size_mb:,.0f} MB in {time.time() - began:.0f}s", flush=True
            )
            for variant in args.variants.split(","):
                result = run_one(variant, source, f"bench-{fmt}-{rows}-{variant}".lower())
                result.update(rows=rows, format=fmt, files=len(files), size_mb=size_mb, source_days=days)
                print(
                    f"  {variant:7s} {result['seconds']:7.1f}s wall {result['cpu_seconds']:7.1f}s CPU "
                    f"{result['peak_rss_mb']:7.0f} MB peak, {result['rows_published']:,} published",
                    flush=True,
                )
                results.append(result)
            shutil.rmtree(source, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, action="append", help="source rows (repeatable); default 1e6 and 1e7")
    parser.add_argument("--rows-per-day", type=int, default=50_000)
    parser.add_argument("--rows-per-file", type=int, default=5_000_000)
    parser.add_argument("--formats", default="parquet,csv")
    parser.add_argument("--variants", default="ingest,before")
    parser.add_argument("--work", type=Path, default=Path("/tmp") / f"conveyor-bench-ingest-{os.getpid()}")
    parser.add_argument("--worker", choices=("ingest", "before"))
    parser.add_argument("--source", type=Path)
    parser.add_argument("--render", type=Path, help="print the table of an earlier results JSON and exit")
    args = parser.parse_args()
    if args.render:
        print(table(json.loads(args.render.read_text())["results"]))
        return
    if args.worker:
        report(worker(args.worker, args.source))
        return
    started = time.time()
    try:
        with private_stack("conveyor-bench-ingest-", services=("s3",), state_dir=args.work / "stack"):
            results = run_all(args)
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    meta = {"when": dt.datetime.now(dt.UTC).isoformat(), "seconds": time.time() - started, "cpus": os.cpu_count()}
    (out / "ingest.json").write_text(json.dumps({**meta, "results": results}, indent=2) + "\n")
    rendered = table(results)
    (out / "ingest.md").write_text(rendered + "\n")
    print("\n" + rendered)


if __name__ == "__main__":
    main()
