"""`conveyor flow list|run`: run one flow by hand against the configured Prefect server (the local stack's, under
the local profile), so the run shows in its UI, never on a temporary server Prefect starts for a bare
`python -c "from flows... import ...; ...()"`."""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from configs.settings import ConfigError, load_settings
from conveyor.ops.output import out
from conveyor.ops.prefect_server import require_healthy, use_prefect_server


def _flow_name(node: ast.FunctionDef) -> str | None:
    """The name `@flow` / `@flow(name=...)` gives this function (Prefect's default: the name with hyphens)."""
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if not (isinstance(target, ast.Name) and target.id == "flow"):
            continue
        keywords = decorator.keywords if isinstance(decorator, ast.Call) else []
        named = [k.value.value for k in keywords if k.arg == "name" and isinstance(k.value, ast.Constant)]
        return str(named[0]) if named else node.name.replace("_", "-")
    return None


def flow_entrypoints(project_root: Path) -> dict[str, str]:
    """Every name a flow answers to -> its entrypoint (`flows/ingest.py:ingest`): the deployment names in
    prefect.yaml, and the flow and function names in flows/ (read from the source: no flow is imported)."""
    names: dict[str, str] = {}
    for path in sorted((project_root / "flows").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and (flow_name := _flow_name(node)) is not None:
                entrypoint = f"flows/{path.name}:{node.name}"
                for name in (flow_name, node.name, node.name.replace("_", "-")):
                    names.setdefault(name, entrypoint)
    manifest = yaml.safe_load((project_root / "prefect.yaml").read_text()) or {}
    for deployment in manifest.get("deployments") or []:
        names[deployment["name"]] = deployment["entrypoint"]
    return names


def load_flow(entrypoint: str) -> Any:
    """Import `flows/<module>.py:<function>` and return the flow object."""
    path, _, attribute = entrypoint.partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, attribute)


def parse_params(pairs: list[str]) -> dict[str, str]:
    """`["days=3", "start_date=2026-01-01"]` -> {"days": "3", ...}; a pair without '=' is a ConfigError."""
    raw: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {pair!r}: expected NAME=VALUE")
        raw[key.strip()] = value
    return raw


def coerce_params(flow: Any, raw: dict[str, str]) -> dict[str, Any]:
    """Convert each `--param` string through the flow's own signature (its pydantic types and constraints): a
    value is read as text first (`2026-01-01`, `3`, `true`), then as JSON (`["a", "b"]`, `{"k": 1}`)."""
    signature = inspect.signature(flow.fn)
    unknown = sorted(set(raw) - set(signature.parameters))
    if unknown:
        raise ConfigError(f"flow {flow.name!r}: unknown parameter(s) {unknown}; it takes {list(signature.parameters)}")
    hints = typing.get_type_hints(flow.fn, include_extras=True)
    values: dict[str, Any] = {}
    for key, text in raw.items():
        adapter: TypeAdapter[Any] = TypeAdapter(hints.get(key, Any))
        try:
            values[key] = adapter.validate_python(text)
        except ValidationError as as_text:
            try:
                values[key] = adapter.validate_json(text)
            except ValidationError:
                reason = as_text.errors()[0]["msg"]
                raise ConfigError(f"flow {flow.name!r}: --param {key}={text!r}: {reason}") from None
    missing = [
        name
        for name, parameter in signature.parameters.items()
        if parameter.default is inspect.Parameter.empty and name not in values
    ]
    if missing:
        raise ConfigError(f"flow {flow.name!r}: missing required parameter(s) {missing} (--param NAME=VALUE)")
    return values


def cmd_flow(args: argparse.Namespace) -> int:
    settings = load_settings()
    names = flow_entrypoints(settings.project_root)
    if args.action == "list":
        for name, entrypoint in sorted(names.items()):
            out(f"{name:20s} {entrypoint}")
        return 0
    if not args.name:
        raise ConfigError(f"flow run: name the flow to run, one of {sorted(names)}")
    if args.name not in names:
        raise ConfigError(f"flow {args.name!r}: no such flow or deployment; one of {sorted(names)}")
    raw = parse_params(args.param or [])
    env = use_prefect_server(settings)  # before prefect is imported: the run goes to this server
    require_healthy(env["PREFECT_API_URL"])
    flow = load_flow(names[args.name])
    state = flow(**coerce_params(flow, raw), return_state=True)
    run_id = state.state_details.flow_run_id
    out(f"flow run {run_id} ({flow.name}): {state.name}")
    out(f"  {env['PREFECT_API_URL'].removesuffix('/api')}/runs/flow-run/{run_id}")
    if not state.is_completed():
        out(f"  {state.message}")
        return 1
    return 0


def add_flow_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "flow", help="run one flow against the configured Prefect server (local profile: the local stack)"
    )
    parser.add_argument("action", choices=["run", "list"], help="list: the names `run` accepts")
    parser.add_argument("name", nargs="?", help="a deployment in prefect.yaml or a flow in flows/ (see `list`)")
    parser.add_argument(
        "--param", action="append", metavar="NAME=VALUE", help="a flow parameter, converted by its type; repeatable"
    )
    parser.set_defaults(func=cmd_flow)
