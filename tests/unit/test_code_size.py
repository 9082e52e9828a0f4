"""Code size (STYLE.md, point 8): no function longer than one screen (60 lines) and no module longer than one
sitting (400 lines) in the library, the flows, the tasks, the configs and the Feast repo.

A function is measured by `ast` from its `def` line to its last line (end_lineno - lineno + 1; decorators not
counted); methods and nested functions are measured on their own, under their qualified names (`Class.method`,
`outer.inner`). A module is measured in lines of text.

ALLOWED_LONG_FUNCTIONS lists the functions still waiting to be split, each with its length when it was listed, as
a ceiling: an entry may shrink but not grow, and an entry that is no longer too long (or no longer exists) fails
the test until it is removed, so the list cannot go stale.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("conveyor", "flows", "tasks", "configs", "feature_repo")
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400

# (path from the repository root, qualified name) -> the function's length when listed. The online service's
# long functions are being split separately; empty this as they are.
ALLOWED_LONG_FUNCTIONS: dict[tuple[str, str], int] = {}  # none left; the serving ones were split


@dataclass(frozen=True)
class Function:
    path: str
    name: str  # qualified: Class.method, outer.inner
    lines: int

    def __str__(self) -> str:
        return f"{self.path}: {self.name} is {self.lines} lines"


def functions_in(source: str, path: str) -> list[Function]:
    """Every function and method of a module's source, nested ones included, with its length."""
    found: list[Function] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    assert child.end_lineno is not None
                    found.append(Function(path, name, child.end_lineno - child.lineno + 1))
                visit(child, f"{name}.")
            else:  # a def inside an if, a with, a try... keeps the enclosing name
                visit(child, prefix)

    visit(ast.parse(source, filename=path), "")
    return found


def source_files() -> dict[str, str]:
    """Path from the repository root -> source, for every .py file under SOURCE_DIRS."""
    return {
        path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8")
        for directory in SOURCE_DIRS
        for path in sorted((ROOT / directory).rglob("*.py"))
    }


def all_functions() -> list[Function]:
    return [f for path, source in source_files().items() for f in functions_in(source, path)]


def test_every_source_directory_is_scanned() -> None:
    """A wrong root or a renamed folder would make the size tests pass on nothing."""
    scanned = {path.split("/", 1)[0] for path in source_files()}
    assert scanned == set(SOURCE_DIRS)


def test_no_function_is_longer_than_a_screen() -> None:
    too_long = [
        f for f in all_functions() if f.lines > MAX_FUNCTION_LINES and (f.path, f.name) not in ALLOWED_LONG_FUNCTIONS
    ]
    assert not too_long, (
        f"functions over {MAX_FUNCTION_LINES} lines (def to last line); split each into named steps:\n"
        + "\n".join(map(str, too_long))
    )


def test_no_module_is_longer_than_a_sitting() -> None:
    too_long = {
        path: lines for path, source in source_files().items() if (lines := len(source.splitlines())) > MAX_MODULE_LINES
    }
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines; split each by concern:\n" + "\n".join(
        f"{path}: {lines} lines" for path, lines in too_long.items()
    )


def test_the_allowed_long_functions_are_still_long_and_do_not_grow() -> None:
    lengths = {(f.path, f.name): f.lines for f in all_functions()}
    stale = []
    for (path, name), ceiling in ALLOWED_LONG_FUNCTIONS.items():
        lines = lengths.get((path, name))
        if lines is None:
            stale.append(f"{path}: {name} no longer exists: remove it from ALLOWED_LONG_FUNCTIONS")
        elif lines <= MAX_FUNCTION_LINES:
            stale.append(f"{path}: {name} is {lines} lines, within the limit: remove it from ALLOWED_LONG_FUNCTIONS")
        elif lines > ceiling:
            stale.append(f"{path}: {name} grew from {ceiling} to {lines} lines: an allowed function may only shrink")
    assert not stale, "\n".join(stale)


def test_lengths_are_counted_from_def_to_the_last_line_under_qualified_names() -> None:
    body = "".join(f"        x{i} = {i}\n" for i in range(59))
    source = (
        "import functools\n\n\n"
        "class Service:\n"
        "    @functools.cache\n"  # decorators are not counted
        f"    def long(self) -> None:\n{body}        return None\n\n"
        "    def short(self) -> None:\n"
        "        if True:\n"
        "            def inner() -> None:\n"
        "                pass\n"
    )
    found = {f.name: f.lines for f in functions_in(source, "example.py")}
    assert found == {"Service.long": 61, "Service.short": 4, "Service.short.inner": 2}
