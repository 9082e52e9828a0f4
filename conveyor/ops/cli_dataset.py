"""`conveyor dataset init --from PATH`: a starting configs/dataset.yaml and suites from a sample of your files;
`conveyor dataset check`: dataset.yaml and its raw suite against a sample of the data, every problem at once."""

from __future__ import annotations

import argparse
import sys

from configs.settings import config_directory, load_settings


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def add_dataset_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dataset = sub.add_parser("dataset", help="draft dataset.yaml from your files (init), check it against them")
    actions = dataset.add_subparsers(dest="action", required=True)
    init = actions.add_parser("init", help="profile a sample of the files and write configs/dataset.yaml + suites")
    init.add_argument("--from", dest="path", required=True, help="a file or folder of parquet/CSV, or s3://...")
    init.add_argument("--name", default=None, help="dataset name (default: the folder's name)")
    for role in ("entity", "timestamp", "label"):
        init.add_argument(f"--{role}", help=f"the {role} column (default: guessed from names and values)")
    init.add_argument("--rows", type=int, default=100_000, help="rows sampled, spread over the files")
    init.add_argument("--margin", type=float, default=0.1, help="observed ranges widened by this share each way")
    init.add_argument("--force", action="store_true", help="overwrite an existing configs/dataset.yaml")
    check = actions.add_parser("check", help="dataset.yaml and the raw suite against a sample of the source files")
    check.add_argument("--rows", type=int, default=100_000, help="rows sampled, spread over the files")
    dataset.set_defaults(func=cmd_dataset)


def _default_name(path: str) -> str:
    import re

    stem = path.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0].lower()
    name = re.sub(r"[^a-z0-9_]+", "_", stem).strip("_")
    return name if name[:1].isalpha() else f"data_{name}"


def cmd_dataset(args: argparse.Namespace) -> int:
    from conveyor.adapters.object_store import ObjectStore
    from conveyor.domain.dataset_profile import ProfileError
    from conveyor.services import dataset_setup

    settings = load_settings()
    store = ObjectStore(settings.storage)
    if args.action == "check":
        problems = dataset_setup.check_against_data(settings, store, args.rows)
        for problem in problems:
            _out(f"- {problem}")
        _out(f"{len(problems)} problem(s)" if problems else "dataset.yaml matches the sampled rows: no problem")
        return 1 if problems else 0
    target = config_directory() / "dataset.yaml"
    if target.exists() and not args.force:
        _out(f"error: {target} exists (--force overwrites it; it is in git, so `git diff` shows what changed)")
        return 2
    roles = {"entity": args.entity, "timestamp": args.timestamp, "label": args.label}
    try:
        drafted = dataset_setup.draft_from_files(
            args.path, store, args.name or _default_name(args.path), args.rows, args.margin, roles
        )
    except (ProfileError, FileNotFoundError, ValueError) as exc:
        _out(f"error: {exc}")
        return 2
    dataset_setup.write_dataset_yaml(drafted, target, f"conveyor dataset init --from {args.path}")
    from conveyor.domain.expectations import write_default_suites

    written = write_default_suites(load_settings(), overwrite=True)  # loads the new file: checked as ever
    r, features = drafted.roles, len(drafted.dataset["features"])
    _out(f"wrote {target}: {features} features from {drafted.rows:,} rows of {drafted.files} file(s)")
    _out(f"  key {r.entity!r} ({drafted.dataset['entity_dtype']}), time {r.timestamp!r}, label {r.label!r} ({r.task})")
    _out(f"  suites: {', '.join(str(p) for p in written)}")
    for why in drafted.skipped:
        _out(f"  left out {why}")
    _out("next: review the ranges and categories, then `conveyor dataset check` and `make run`")
    return 0
