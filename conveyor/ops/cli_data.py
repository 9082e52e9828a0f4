"""`conveyor data ...`: the raw Delta table's housekeeping (compact, vacuum, history) and the environment the
`feast` CLI needs to see the registry the flows use."""

from __future__ import annotations

import argparse
import shlex
import sys

from configs.settings import load_settings
from conveyor.adapters.feature_store import feast_env
from conveyor.adapters.raw_data import compact_table, raw_table, table_version, vacuum_table


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def add_data_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    data = sub.add_parser("data", help="the raw Delta table: compact, vacuum; the feast CLI's environment")
    actions = data.add_subparsers(dest="action", required=True)
    actions.add_parser("compact", help="rewrite small files into larger ones (a new table version)")
    vacuum = actions.add_parser(
        "vacuum",
        help="delete files no recent version needs; versions older than the retention can no longer be read back "
        "(models record the version they trained on: keep the retention longer than you need to reproduce them)",
    )
    vacuum.add_argument("--retention-hours", type=int, help="default: the table's own (7 days)")
    vacuum.add_argument("--dry-run", action="store_true", help="list the files, delete nothing")
    actions.add_parser(
        "feast-env", help='print the exports that point the feast CLI at the flows\' registry (eval "$(...)")'
    )
    data.set_defaults(func=cmd_data)


def cmd_data(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.action == "feast-env":
        # No secrets: a SQL registry's URL (prod) is left for the user to export themselves.
        for key, value in feast_env(settings, with_secrets=False).items():
            _out(f"export {key}={shlex.quote(value)}")
        if settings.features.registry_url is not None:
            _out("# also export CONVEYOR_FEAST_REGISTRY_URL (the SQL registry URL, from your secret store)")
        return 0
    table = raw_table(settings.storage, settings)
    try:
        if args.action == "compact":
            metrics = compact_table(table)
            _out(
                f"{table.uri}: compacted {metrics.get('numFilesRemoved', 0)} files into "
                f"{metrics.get('numFilesAdded', 0)}; now version {table_version(table)}"
            )
        else:
            removed = vacuum_table(table, args.retention_hours, args.dry_run)
            verb = "would delete" if args.dry_run else "deleted"
            for path in removed:
                _out(f"{verb} {path}")
            _out(f"{table.uri}: {verb} {len(removed)} files (version {table_version(table)})")
    except LookupError as exc:
        _out(f"error: {exc}")
        return 2
    return 0
