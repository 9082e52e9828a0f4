"""Failures that running the step again cannot fix.

A rejected scoring batch, a failed validation, a gate's refusal, a missing champion, a configuration that names
something that does not exist: each follows from the step's inputs (the data, the configuration, the registry's
state), so a second attempt fails the same way, only later. Every such exception inherits `DeterministicFailure`,
and the one retry condition of the Prefect tasks (`conveyor.adapters.prefect_runtime.retry_transient`) never
retries it. Anything else — a refused connection, a timeout, a 5xx, a lost race — keeps the task's retries.

The subclasses below also inherit the built-in exception the code raised before, so `except LookupError` (and
`KeyError`, `ValueError`, `FileNotFoundError`) still catch them.
"""

from __future__ import annotations


class DeterministicFailure(Exception):
    """Marker base: the same inputs give the same failure, so a retry cannot help. Fix the input, then rerun."""


class MissingInput(DeterministicFailure, LookupError):
    """What the step needs is not there (no champion, no raw rows, nothing published yet): run the step that
    produces it first."""


class MissingColumns(DeterministicFailure, KeyError):
    """A frame lacks columns the configuration names."""


class MissingFile(DeterministicFailure, FileNotFoundError):
    """A file or committed partition the step reads does not exist."""


class InvalidInput(DeterministicFailure, ValueError):
    """The data, parameters or configuration given to the step cannot be used as they are; the message says
    which and why."""
