"""What the `conveyor` commands print for people (library code logs instead)."""

from __future__ import annotations

import sys


def out(line: str = "") -> None:
    """One line on stdout, flushed at once (a long run's progress shows as it happens)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
