"""What the benchmarks share: a private local stack (SeaweedFS and, when asked, a Prefect server, on free ports,
with a state folder and bucket of its own, so a developer's `.local/` stack is never touched), child processes
that report one `RESULT {json}` line, and results written as JSON + markdown beside the command that made them.

Each bench is a script (`.venv/bin/python bench/<name>.py`), so this module is imported as `harness` (the
script's folder is first on sys.path); importing it puts the repository root on sys.path too. Import it first:
a child's import time is counted from then.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PROCESS_START = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
RESULT_PREFIX = "RESULT "
BUCKET = "conveyor-bench"


@contextmanager
def private_stack(
    prefix: str, services: tuple[str, ...] = ("s3", "prefect"), state_dir: Path | None = None
) -> Iterator[dict[str, str]]:
    """Start a stack of its own and point this process at it (os.environ), call before the bench imports
    Prefect: Prefect reads its API URL once, when first imported. Yields the environment children need;
    stops what it started (by PID) on the way out, also when the bench is stopped with SIGTERM."""
    from configs.settings import TELEMETRY_OFF_ENV, load_settings
    from conveyor.ops.local_stack import LocalStack, private_stack_env

    state = state_dir or Path(tempfile.mkdtemp(prefix=prefix))
    env = {**TELEMETRY_OFF_ENV, **private_stack_env(state, bucket=BUCKET)}
    os.environ.update(env)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below when stopped
    stack = LocalStack(load_settings())
    try:
        stack.up(services=services)
        if "prefect" in services:
            env.update(stack.client_env())
            os.environ.update(env)
        print(f"private stack ({', '.join(services)}) at {state}", flush=True)
        yield env
    finally:
        stack.down(services=tuple(reversed(services)))


def report(result: dict[str, Any]) -> None:
    """A child's answer to its parent: the last RESULT line of its stdout."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mb() -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec, so a child would report its parent's peak.
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024


class Work:
    """A child's measured work, from `Work()` (after its imports) to `report`: wall and CPU seconds, the imports
    before it (from process start), the process's peak RSS."""

    def __init__(self) -> None:
        self.imports_s = time.perf_counter() - PROCESS_START
        self._cpu_at_start = _cpu_seconds()
        self._started = time.perf_counter()

    def report(self, mode: str, rows: int, extra: dict[str, Any] | None = None) -> None:
        work_s, cpu_s = time.perf_counter() - self._started, _cpu_seconds() - self._cpu_at_start
        measured = {"work_s": work_s, "cpu_s": cpu_s, "imports_s": self.imports_s, "peak_rss_mb": _peak_rss_mb()}
        report({"mode": mode, "rows": rows, **measured, **(extra or {})})


def run_child(argv: list[str], env: dict[str, str] | None = None, timeout: float = 3600) -> dict[str, Any]:
    """Run `python <argv>` in a fresh interpreter (imports and peak RSS of its own) and return its RESULT,
    with the process's wall time, the time outside the reported `work_s` (startup, imports) and the load.
    With BENCH_PROFILE_DIR set, the child runs under cProfile and leaves its dump there: where the time goes."""
    command = [sys.executable, *argv]
    if profile_dir := os.environ.get("BENCH_PROFILE_DIR"):
        name = "-".join(Path(a).stem if a.endswith(".py") else Path(a).name.lstrip("-") for a in argv)
        command[1:1] = ["-m", "cProfile", "-o", str(Path(profile_dir) / f"{name}.prof")]
    started = time.perf_counter()
    proc = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    wall = time.perf_counter() - started
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(argv)} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :])
    result["wall_s"] = wall
    if "work_s" in result:
        result["startup_s"] = wall - result["work_s"]
    result["load_1m"] = os.getloadavg()[0]
    return result


def write_results(name: str, payload: dict[str, Any], table: str, about: str = "") -> Path:
    """bench/results/<name>.json (everything measured) and <name>.md (the command, the machine, the table)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = " ".join([".venv/bin/python", os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    load = os.getloadavg()[0]
    machine = {"cpus": os.cpu_count(), "load_1m_at_end": load, "command": command}
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps({"machine": machine, **payload}, indent=2) + "\n")
    header = f"`{command}`; {os.cpu_count()} CPUs, load {load:.1f} at the end" + (f"; {about}" if about else "")
    out.with_suffix(".md").write_text(f"{header}\n\n{table}\n")
    print(f"\n{table}\n\nresults: {out} and {out.with_suffix('.md')}", flush=True)
    return out


def drift_bench_model(frame: Any, features: list[str], categorical: list[str], label: str) -> Any:
    """The small gradient-boosting Pipeline the monitoring benches score with (what it predicts is not timed)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    model = Pipeline(
        [
            ("pre", ColumnTransformer([("cat", OrdinalEncoder(), categorical)], remainder="passthrough")),
            ("clf", HistGradientBoostingClassifier(max_iter=100, random_state=0)),
        ]
    )
    return model.fit(frame[features], frame[label])


def best_of(repeat: int, fn: Any) -> float:
    """The fastest of `repeat` calls of `fn`, in seconds (the least disturbed by other work on the machine)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)
