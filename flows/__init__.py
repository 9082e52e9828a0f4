"""Prefect flows. Importing this package (every flow module, deployment entrypoint and CLI does) installs the
engine fix in flows/prefect_fixes.py before any flow runs."""

from flows import prefect_fixes

prefect_fixes.install()
