"""Online inference: the service (`conveyor serve`) vs a bare FastAPI + joblib endpoint vs Feast's own feature
server, in one run, on 127.0.0.1, load bounded in count and time.

    .venv/bin/python bench/online_service.py                       # sklearn runtime
    .venv/bin/python bench/online_service.py --runtimes sklearn,onnx

A private stack (SeaweedFS on free loopback ports, temp state dir) is started and stopped by PID. One model
(the training default: HistGradientBoosting behind the dataset's preprocessing Pipeline) is registered and promoted;
2,000 entities are written to the Feast online store (SQLite). Scenarios, each at concurrency 1, 8 and 32:
  (a) one entity id, features from the online store     (b) one row of feature values
  (c) 100 entity ids                                     bare: one row to the bare endpoint
  feast: `feast serve`'s /get-online-features for one entity (features only, no model)
Latency is measured by the client (request sent -> response read), which shares the machine's two cores.
Then a champion swap under load: (a) at concurrency 8 while a new version is registered and promoted.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import psutil

from configs.settings import TELEMETRY_OFF_ENV, Settings, load_settings
from conveyor.adapters.feature_store import apply_definitions, feast_env, write_online_rows
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.registry import ModelMetadata, ModelRegistry
from conveyor.demo.synthetic import generate_day
from conveyor.ops.local_stack import API, LocalStack, free_port, private_stack_env, stop_process_group
from conveyor.services.training import build_pipeline

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONCURRENCY = (1, 8, 32)
MAX_REQUESTS = {1: 300, 8: 800, 32: 1200}
MAX_SECONDS = 12.0
ENTITIES = 2000


def train_and_register(settings: Settings, seed: int) -> tuple[Any, int]:
    ds = settings.dataset
    frame = generate_day(dt.date(2026, 1, 15), ds, settings.generator, snapshot=True, n_entities=5000)
    model = build_pipeline(ds, settings.training.models[settings.training.model_config_name], seed)
    model.fit(frame[ds.feature_names], frame[ds.label_column])
    sample = frame.head(200)
    reference = sample[ds.feature_names].assign(score=model.predict_proba(sample[ds.feature_names])[:, 1])
    metadata = ModelMetadata({}, {"passed": True}, {}, settings.features.feature_service, ds.feature_names, "bench", {})
    registry = ModelRegistry(ObjectStore(settings.storage), settings)
    twin_rows = frame[ds.feature_names].tail(2000)  # the ONNX twin's parity rows (scoring.runtime: onnx)
    version = registry.register(settings.scoring.model_name, model, metadata, reference, twin_rows=twin_rows).version
    registry.promote(settings.scoring.model_name, version, actor="bench", reason="bench champion")
    return model, version


def wait_healthy(url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} not healthy after {timeout}s")


async def _load(
    url: str,
    bodies: list[dict[str, Any]],
    concurrency: int,
    headers: dict[str, str],
    max_requests: int | None = None,
    max_seconds: float = MAX_SECONDS,
) -> dict[str, Any]:
    latencies: list[float] = []
    failures = 0
    kinds: collections.Counter[str] = collections.Counter()  # what each failure was: HTTP status or exception
    limit, deadline = max_requests or MAX_REQUESTS[concurrency], time.monotonic() + max_seconds
    sent = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30, headers=headers) as client:
        for body in bodies[:3]:  # warm the connections and the server's code paths
            await client.post(url, json=body)

        async def worker() -> None:
            nonlocal sent, failures
            while sent < limit and time.monotonic() < deadline:
                body = bodies[sent % len(bodies)]
                sent += 1
                start = time.perf_counter()
                try:
                    response = await client.post(url, json=body)
                except httpx.TransportError as exc:  # a dropped connection is a failed request, not the bench's end
                    failures += 1
                    kinds[type(exc).__name__] += 1
                    continue
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    failures += 1
                    kinds[f"HTTP {response.status_code}"] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies),
        "failures": failures,
        "failure_kinds": dict(kinds),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "throughput_rps": len(latencies) / wall,
    }


def run_cells(name: str, url: str, bodies: list[dict[str, Any]], headers: dict[str, str] | None = None) -> list[dict]:  # type: ignore[type-arg]
    cells = []
    for concurrency in CONCURRENCY:
        cell = {
            "scenario": name,
            "concurrency": concurrency,
            **asyncio.run(_load(url, bodies, concurrency, headers or {})),
        }
        cell["load_average_1m"] = os.getloadavg()[0]
        print(json.dumps(cell), flush=True)
        cells.append(cell)
    return cells


def swap_under_load(settings: Settings, url: str, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """(a) at concurrency 8 for a bounded time while a new champion is registered and promoted."""
    versions: dict[int, int] = {}
    failures = 0

    async def load() -> None:
        nonlocal failures
        deadline = time.monotonic() + 25
        async with httpx.AsyncClient(timeout=30) as client:

            async def worker(offset: int) -> None:
                nonlocal failures
                n = offset
                while time.monotonic() < deadline and n < 20_000:
                    n += 8
                    try:
                        response = await client.post(url, json=bodies[n % len(bodies)])
                    except httpx.TransportError:
                        failures += 1
                        continue
                    if response.status_code != 200:
                        failures += 1
                        continue
                    version = response.json()["predictions"][0]["model_version"]
                    versions[version] = versions.get(version, 0) + 1

            await asyncio.gather(*(worker(i) for i in range(8)))

    def promote() -> int:
        time.sleep(3)
        return train_and_register(settings, seed=7)[1]

    async def both() -> int:
        loop = asyncio.get_running_loop()
        promoted = loop.run_in_executor(None, promote)
        await load()
        return await promoted

    new_version = asyncio.run(both())
    return {"failures": failures, "answers_by_version": versions, "new_version": new_version}


SOAK_CONCURRENCY = 8
SOAK_SLICE_SECONDS = 30.0
SOAK_SLICE_MAX_REQUESTS = 30_000  # a bound in count too, whatever the service's speed


def soak(stack: LocalStack, url: str, bodies: list[dict[str, Any]], seconds: float) -> list[dict[str, Any]]:
    """(a) at concurrency 8 for `seconds`, in 30-s slices: each slice's latency and the service's RSS after it
    (is memory flat under steady load?)."""
    slices: list[dict[str, Any]] = []
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        cell = asyncio.run(
            _load(url, bodies, SOAK_CONCURRENCY, {}, SOAK_SLICE_MAX_REQUESTS, min(SOAK_SLICE_SECONDS, seconds))
        )
        slices.append(
            {
                "elapsed_s": time.monotonic() - started,
                **cell,
                "rss_mb": service_rss(stack),
                "load_1m": os.getloadavg()[0],
            }
        )
        print(json.dumps({"soak": slices[-1]}), flush=True)
    return slices


def soak_markdown(runtime: str, slices: list[dict[str, Any]], rss_start: float) -> str:
    lines = [
        f"Soak: `{runtime}` runtime, (a) one entity id at concurrency {SOAK_CONCURRENCY}, {len(slices)} slices of "
        f"{SOAK_SLICE_SECONDS:.0f} s; service RSS before the soak {rss_start:.0f} MB.",
        "",
        "| elapsed s | requests | failures | p50 ms | p99 ms | req/s | service RSS MB | load avg 1m |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in slices:
        lines.append(
            f"| {s['elapsed_s']:.0f} | {s['requests']} | {s['failures']} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | "
            f"{s['throughput_rps']:.0f} | {s['rss_mb']:.0f} | {s['load_1m']:.1f} |"
        )
    return "\n".join(lines)


def service_rss(stack: LocalStack) -> float:
    state = {s.name: s.pid for s in stack.status()}
    pid = state.get(API)
    if pid is None:
        return float("nan")
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


def bench_service(  # type: ignore[type-arg]
    settings: Settings, stack: LocalStack, runtime: str, rows: list[dict], ids: list[int], soak_seconds: float = 0
) -> dict:
    os.environ["CONVEYOR_SCORING__RUNTIME"] = runtime
    if runtime == "sklearn":
        os.environ.pop("CONVEYOR_SCORING__RUNTIME")  # the default, and a setting an older branch may not have
    stack.up((API,))
    try:
        wait_healthy(f"{stack.api_url}/ready")
        url = f"{stack.api_url}/v1/models/{settings.scoring.model_name}/predict"
        rng = random.Random(0)
        rss_start = service_rss(stack)
        cells = run_cells(f"{runtime}: (a) 1 entity id", url, [{"entity_ids": [rng.choice(ids)]} for _ in range(500)])
        cells += run_cells(f"{runtime}: (b) 1 row", url, [{"rows": [rng.choice(rows)]} for _ in range(500)])
        cells += run_cells(
            f"{runtime}: (c) 100 entity ids", url, [{"entity_ids": rng.sample(ids, 100)} for _ in range(50)]
        )
        swap = swap_under_load(settings, url, [{"entity_ids": [rng.choice(ids)]} for _ in range(500)])
        print(json.dumps({"swap": swap}), flush=True)
        outcome = {"cells": cells, "swap": swap, "rss_mb": [rss_start, service_rss(stack)]}
        if soak_seconds:
            before = service_rss(stack)
            slices = soak(stack, url, [{"entity_ids": [rng.choice(ids)]} for _ in range(500)], soak_seconds)
            outcome["soak"] = {"rss_before_mb": before, "slices": slices}
            (ROOT / "bench" / "results" / f"online_service_soak_{runtime}.md").write_text(
                soak_markdown(runtime, slices, before) + "\n"
            )
        return outcome
    finally:
        stack.down((API,))


def bench_bare(model: Any, tmp: Path, rows: list[dict]) -> list[dict]:  # type: ignore[type-arg]
    path = tmp / "model.joblib"
    joblib.dump(model, path)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "bare_fastapi.py"), str(port), str(path)], start_new_session=True
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", process)
        rng = random.Random(0)
        return run_cells(
            "bare FastAPI + joblib: 1 row",
            f"http://127.0.0.1:{port}/predict",
            [{"rows": [rng.choice(rows)]} for _ in range(500)],
        )
    finally:
        stop_process_group(process.pid, 30, process)


def bench_feast(settings: Settings, ids: list[int]) -> list[dict]:  # type: ignore[type-arg]
    port = free_port()
    env = {**os.environ, **feast_env(settings)}
    cmd = [
        str(BIN / "feast"),
        "-c",
        str(settings.features.repo_dir),
        "serve",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "--no-access-log",
    ]
    process = subprocess.Popen(cmd, env=env, start_new_session=True, cwd=ROOT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", process)
        rng = random.Random(0)
        bodies = [
            {
                "feature_service": settings.features.feature_service,
                "entities": {settings.dataset.entity_column: [rng.choice(ids)]},
            }
            for _ in range(500)
        ]
        return run_cells("feast serve: 1 entity, features only", f"http://127.0.0.1:{port}/get-online-features", bodies)
    finally:
        stop_process_group(process.pid, 30, process)


def _failures(cell: dict[str, Any]) -> str:
    kinds = cell.get("failure_kinds") or {}
    return str(cell["failures"]) + (" (" + ", ".join(f"{k} x{n}" for k, n in kinds.items()) + ")" if kinds else "")


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| scenario | concurrency | requests | failures | p50 ms | p95 ms | p99 ms | req/s | load avg 1m |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in results["cells"]:
        lines.append(
            f"| {c['scenario']} | {c['concurrency']} | {c['requests']} | {_failures(c)} | {c['p50_ms']:.1f} | "
            f"{c['p95_ms']:.1f} | {c['p99_ms']:.1f} | {c['throughput_rps']:.0f} | {c['load_average_1m']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runtimes", default="sklearn", help="comma-separated: sklearn, onnx")
    parser.add_argument("--skip-feast", action="store_true")
    parser.add_argument(
        "--soak", type=float, default=0, help="seconds of steady load after the cells, per runtime (memory over time)"
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "online_service.json"))
    args = parser.parse_args()
    os.environ.update(TELEMETRY_OFF_ENV)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped by PID: still stop the stack (finally)
    with tempfile.TemporaryDirectory(prefix="conveyor-online-bench-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ.update(private_stack_env(tmp / "stack", "bench-online"))
        os.environ["CONVEYOR_SERVING__PORT"] = str(free_port())
        stack = LocalStack(load_settings())
        stack.up(("s3",))
        try:
            settings = load_settings()
            model, _ = train_and_register(settings, seed=0)
            ds = settings.dataset
            frame = generate_day(dt.date(2026, 3, 1), ds, settings.generator, snapshot=True, n_entities=ENTITIES)
            apply_definitions(settings)
            write_online_rows(settings, frame)
            rows = frame[ds.feature_names].to_dict("records")
            ids = frame[ds.entity_column].tolist()
            results: dict[str, Any] = {"started": dt.datetime.now(dt.UTC).isoformat(), "cells": [], "services": {}}
            for runtime in args.runtimes.split(","):
                outcome = bench_service(settings, stack, runtime, rows, ids, args.soak)
                results["cells"] += outcome.pop("cells")
                results["services"][runtime] = outcome
            results["cells"] += bench_bare(model, tmp, rows)
            if not args.skip_feast:
                try:
                    results["cells"] += bench_feast(settings, ids)
                except Exception as exc:  # Feast's server is a baseline: its failure must not lose the rest
                    results["feast_serve"] = f"not measured: {type(exc).__name__}: {exc}"
            results["finished"] = dt.datetime.now(dt.UTC).isoformat()
            results["cpu_count"] = os.cpu_count()
        finally:
            stack.down()
    Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    print(markdown(results))


if __name__ == "__main__":
    main()
