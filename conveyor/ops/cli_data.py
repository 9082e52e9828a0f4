"""`conveyor data ...`: the raw Delta table's housekeeping (compact, vacuum), the batches in quarantine (list them
with their reasons, re-land one once its source is fixed, drop one) and the environment the `feast` CLI needs
to see the registry the flows use.

Imports of Prefect and Feast stay inside the commands: `conveyor.ops.cli` imports this module at start, before
`conveyor run` points Prefect at the stack's server, and Prefect reads its API URL once, when first imported
(imported too early, every flow ran on a temporary server of its own).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from configs.settings import Settings, load_settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.source_files import SourceFileError
from conveyor.services.quarantine import QuarantinedBatch, dataset_root, drop, list_quarantined, select


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
    listing = actions.add_parser("quarantine", help="list the quarantined batches of the dataset, with their reasons")
    listing.add_argument("--all", action="store_true", help="also the batches already re-landed (resolved)")
    again = actions.add_parser(
        "reland", help="land a quarantined batch again from its source (fix the source first); validated as ever"
    )
    again.add_argument("batch", help="a batch id from `conveyor data quarantine` (<key>/<run id>), or a key")
    again.add_argument("--from", dest="source_path", help="read the fixed source here instead of where it was")
    dropping = actions.add_parser("drop", help="delete a quarantined batch (its files and report)")
    dropping.add_argument("batch", help="a batch id (<key>/<run id>), or a key: every run that quarantined it")
    data.set_defaults(func=cmd_data)


def cmd_data(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.action == "feast-env":
        from conveyor.adapters.feature_store import feast_env

        # No secrets: a SQL registry's URL (prod) is left for the user to export themselves.
        for key, value in feast_env(settings, with_secrets=False).items():
            _out(f"export {key}={shlex.quote(value)}")
        if settings.features.registry_url is not None:
            _out("# also export CONVEYOR_FEAST_REGISTRY_URL (the SQL registry URL, from your secret store)")
        return 0
    if args.action in ("quarantine", "reland", "drop"):
        return _quarantine_command(settings, args)
    from conveyor.adapters.raw_data import compact_table, raw_table, table_version, vacuum_table

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


def _describe(batch: QuarantinedBatch) -> list[str]:
    landing = batch.landing
    if landing is None:
        source = "refused by a later stage's gate, not by ingest"
    elif landing.get("kind") == "synthetic":
        source = "synthetic source"
    else:
        source = f"files {landing.get('files') or []} of {landing.get('path')}"
    rows = "a whole file" if batch.rows is None else f"{batch.rows:,} rows"
    state = f", resolved {batch.resolution.get('resolved_at')}" if batch.resolution else ""
    head = f"{batch.batch_id}  {rows}  {batch.report.get('created_at', '')[:19]}  {source}{state}"
    return [head, *(f"    - {reason}" for reason in batch.reasons())]


def _quarantine_command(settings: Settings, args: argparse.Namespace) -> int:
    store = ObjectStore(settings.storage)
    found = list_quarantined(store, settings, include_resolved=args.action == "quarantine" and args.all)
    if args.action == "quarantine":
        resolved = sum(1 for b in found if b.resolution)
        _out(
            f"{len(found) - resolved} quarantined batch(es) of dataset {settings.dataset.name!r} under "
            f"{store.uri(dataset_root(settings))}" + (f" (and {resolved} resolved)" if resolved else "")
        )
        for batch in found:
            for line in _describe(batch):
                _out(line)
        return 0
    chosen = select(found, args.batch)
    if not chosen:
        _out(f"error: no quarantined batch {args.batch!r} (`conveyor data quarantine` lists them)")
        return 2
    if args.action == "drop":
        for batch in chosen:
            _out(f"dropped {batch.batch_id}: {drop(store, batch)} objects deleted")
        return 0
    keys = {b.batch_key for b in chosen}
    if len(keys) > 1:
        _out(f"error: {args.batch!r} names batches of several keys {sorted(keys)}: give one batch id")
        return 2
    from conveyor.adapters.prefect_runtime import current_run_id
    from conveyor.services.relanding import reland

    try:
        done = reland(settings, store, chosen, f"reland-{current_run_id()}", args.source_path)
    except (ValueError, LookupError, FileNotFoundError, SourceFileError) as exc:
        _out(f"error: {exc}")
        return 2
    landed = done.landed
    _out(
        f"landed {len(landed.days)} day(s), {landed.rows:,} rows: {', '.join(map(str, landed.days)) or '-'} "
        f"(raw table version {landed.table_version})"
    )
    for q in landed.quarantined:
        _out(("quarantined again: " if q.whole else "") + q.message)
    if done.resolved:
        _out(f"{done.batch_key}: resolved ({len(chosen)} quarantine entr{'y' if len(chosen) == 1 else 'ies'} marked)")
        return 0
    _out(f"{done.batch_key}: still refused; the quarantine entries stay")
    return 1
