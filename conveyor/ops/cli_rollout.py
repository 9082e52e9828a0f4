"""`conveyor rollout canary|shadow|ab|promote|abort|status`: gradual rollouts of a registered version, as data in
the registry (conveyor/adapters/rollouts.py), each change an audit-log event. The online service picks a change
up within `serving.poll_seconds`; batch shadow scoring reads the same plan."""

from __future__ import annotations

import argparse

from configs.settings import load_settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.registry import ModelRegistry, RegistryError, default_actor
from conveyor.adapters.rollouts import Rollouts
from conveyor.ops.output import out as _out

DEFAULT_SHARES = {"canary": 0.05, "shadow": 1.0, "ab": 0.5}


def add_rollout_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    rollout = sub.add_parser(
        "rollout",
        help="roll a version out: canary (a share answers), shadow (scored, never returned), ab, "
        "promote (the challenger becomes champion), abort, status",
    )
    rollout.add_argument("action", choices=["canary", "shadow", "ab", "promote", "abort", "status"])
    rollout.add_argument("version", nargs="?", type=int, help="the challenger version (canary, shadow, ab)")
    rollout.add_argument("--share", type=float, help=f"share of keys the challenger takes; defaults {DEFAULT_SHARES}")
    rollout.add_argument("--model", help="registry model name; default scoring.model_name")
    rollout.add_argument("--reason", default="", help="why: recorded in the audit log")
    rollout.add_argument("--actor", default=None, help="who (default: the current user)")
    rollout.set_defaults(func=cmd_rollout)


def cmd_rollout(args: argparse.Namespace) -> int:
    settings = load_settings()
    name = args.model or settings.scoring.model_name
    registry = ModelRegistry(ObjectStore(settings.storage), settings)
    rollouts = Rollouts(registry)
    actor = args.actor or default_actor()
    try:
        plan = rollouts.plan(name)
        if args.action == "status":
            champion = registry.champion_version(name)
            _out(
                f"{name}: champion v{champion}; rollout {plan.mode}"
                + (
                    f" of v{plan.challenger} at share {plan.share:g} (by {plan.actor} at {plan.at}: {plan.reason})"
                    if plan.active
                    else ""
                )
            )
            return 0
        if args.action in DEFAULT_SHARES:
            if args.version is None:
                raise RegistryError(f"rollout {args.action}: name the challenger version")
            share = DEFAULT_SHARES[args.action] if args.share is None else args.share
            changed = rollouts.change(name, args.action, args.version, share, actor, args.reason)
            _out(f"{name}: {changed.mode} of v{changed.challenger} at share {changed.share:g} (rollout #{changed.seq})")
            return 0
        if not plan.active or plan.challenger is None:
            raise RegistryError(f"{name}: no rollout in progress (`conveyor rollout status`)")
        if args.action == "promote":
            registry.promote(name, plan.challenger, actor, args.reason or f"rollout {plan.mode} promoted")
        rollouts.change(name, "none", None, 0.0, actor, f"{args.action}: {args.reason}".strip(": "))
        verb = "is the champion now" if args.action == "promote" else "rollout aborted, the champion stays"
        _out(f"{name}: v{plan.challenger} {verb}")
        return 0
    except RegistryError as exc:
        _out(f"error: {exc}")
        return 2
