"""`conveyor models list|show|card|compare|promote|rollback|log|prune`: the model registry for people (same module
as the flows)."""

from __future__ import annotations

import argparse
import datetime as dt
import json

from configs.settings import Settings, load_settings
from conveyor.adapters.object_store import ObjectStore, ObjectStoreError
from conveyor.adapters.registry import ModelRegistry, RegistryError, default_actor
from conveyor.ops.output import out as _out
from conveyor.services.model_card import CARD_FILE
from conveyor.services.model_comparison import comparison_text


def add_models_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    models = sub.add_parser(
        "models", help="the model registry: list, show, card, compare, promote, rollback, log, prune"
    )
    models.add_argument("action", choices=list(_ACTIONS))
    models.add_argument("version", nargs="?", type=int, help="version number (show, card, compare, promote)")
    models.add_argument("other", nargs="?", type=int, help="compare: the second version (default: the champion)")
    models.add_argument("--output", help="card: also save the HTML card to this file")
    models.add_argument("--model", help="registry model name; default training.model_name")
    models.add_argument("--reason", help="why (promote, rollback, prune): recorded in the audit log")
    models.add_argument("--actor", default=None, help="who (default: the current user)")
    models.add_argument("--force", action="store_true", help="promote even though the version's gates failed")
    models.add_argument(
        "--older-than-days",
        type=float,
        default=30.0,
        help="prune: refused versions registered longer ago than this (default 30)",
    )
    models.add_argument("--dry-run", action="store_true", help="prune: list what would be deleted, delete nothing")
    models.set_defaults(func=cmd_models)


def _list(registry: ModelRegistry, settings: Settings, name: str, args: argparse.Namespace, actor: str) -> None:
    state = registry.state(name)
    champion, pruned = state.champion, set(state.pruned)
    versions = registry.list_versions(name)
    if not versions:
        _out(f"no versions of {name!r} at {registry.store.uri(settings.storage.prefixes.models + '/' + name)}/")
    for v in versions:
        test, nan = v.test_metrics, float("nan")
        status = (
            "champion"
            if v.version == champion
            else "gates ok"
            if v.gates_passed
            else "pruned"
            if v.version in pruned
            else "refused"
        )
        first, second = v.model_task.metric_names[:2]  # binary: roc_auc, pr_auc; regression: rmse, mae; ...
        _out(
            f"v{v.version:<4d} {status:9s} {v.created_at[:19]}  {first} {test.get(first, nan):.4f}"
            f"  {second} {test.get(second, nan):.4f}  {v.model_config_name or '-':9s} "
            f"window {v.training_window.get('start', '?')}..{v.training_window.get('end', '?')}"
        )


def _show(registry: ModelRegistry, settings: Settings, name: str, args: argparse.Namespace, actor: str) -> None:
    version = args.version or registry.champion_version(name)
    if version is None:
        raise RegistryError(f"{name}: no champion; name a version")
    meta = registry.get_version(name, version)
    _out(json.dumps({**meta.to_json(), "uri": registry.version_uri(name, version)}, indent=2, default=str))


def _card(registry: ModelRegistry, settings: Settings, name: str, args: argparse.Namespace, actor: str) -> None:
    version = args.version or registry.champion_version(name)
    if version is None:
        raise RegistryError(f"{name}: no champion; name a version")
    meta = registry.get_version(name, version)
    if CARD_FILE not in meta.files:
        raise RegistryError(f"{meta.label} has no model card (registered before cards were written)")
    _out(registry.store.uri(meta.files[CARD_FILE]))
    if args.output:
        with open(args.output, "wb") as handle:
            handle.write(registry.get_file(name, version, CARD_FILE))
        _out(f"saved to {args.output}")


def _compare(registry: ModelRegistry, settings: Settings, name: str, args: argparse.Namespace, actor: str) -> None:
    other = args.other or registry.champion_version(name)
    if args.version is None or other is None:
        raise RegistryError("compare needs two versions (or one and a champion): conveyor models compare A B")
    a, b = registry.get_version(name, args.version), registry.get_version(name, other)
    _out(comparison_text(a, b, a.label, b.label))


def _promote(registry: ModelRegistry, settings: Settings, name: str, args: argparse.Namespace, actor: str) -> None:
    if args.version is None or not args.reason:
        raise RegistryError("promote needs a version and --reason")
    event = registry.promote(name, args.version, actor=actor, reason=args.reason, force=args.force)
    _out(
        f"{name} v{args.version} already is the champion"
        if event is None
        else f"{name}: champion v{event.previous_champion} -> v{event.version} (audit event {event.seq})"
    )


def _rollback(registry: ModelRegistry, settings: Settings, name: str, args: argparse.Namespace, actor: str) -> None:
    if not args.reason:
        raise RegistryError("rollback needs --reason")
    event = registry.rollback(name, actor=actor, reason=args.reason)
    _out(f"{name}: rolled back v{event.previous_champion} -> v{event.version} (audit event {event.seq})")


def _prune(registry: ModelRegistry, settings: Settings, name: str, args: argparse.Namespace, actor: str) -> None:
    older_than = dt.timedelta(days=args.older_than_days)
    if args.dry_run:
        for v in registry.prunable(name, older_than):
            _out(f"would prune {v.label} (registered {v.created_at[:19]}, gates failed)")
        return
    reason = args.reason or f"refused, older than {args.older_than_days:g} days"
    pruned_now = registry.prune(name, older_than, actor=actor, reason=reason)
    for meta, freed in pruned_now:
        _out(f"pruned {meta.label}: {freed:,} bytes of artifacts deleted (metadata and audit log kept)")
    _out(f"{name}: {len(pruned_now)} version(s) pruned")


def _log(registry: ModelRegistry, settings: Settings, name: str, args: argparse.Namespace, actor: str) -> None:
    for e in registry.audit_log(name):
        _out(
            f"#{e.seq:<4d} {e.at[:19]} {e.action:9s} v{e.version:<4d} champion {e.champion_after} "
            f"by {e.actor}{' (forced)' if e.forced else ''}: {e.reason}"
        )


_ACTIONS = {
    "list": _list,
    "show": _show,
    "card": _card,
    "compare": _compare,
    "promote": _promote,
    "rollback": _rollback,
    "prune": _prune,
    "log": _log,
}


def cmd_models(args: argparse.Namespace) -> int:
    settings = load_settings()
    registry = ModelRegistry(ObjectStore(settings.storage), settings)
    name = args.model or settings.training.model_name
    try:
        _ACTIONS[args.action](registry, settings, name, args, args.actor or default_actor())
    except (RegistryError, ObjectStoreError) as exc:
        _out(f"error: {exc}")
        return 2
    return 0
