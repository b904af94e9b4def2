"""The ``breachwatch`` command line: every command group joins the one ``main`` group here."""

from __future__ import annotations

from breachwatch.cli import db, devkit, incidents, logs, notices, pipeline, staff_access
from breachwatch.cli.main import entrypoint, main

for _module in (pipeline, logs, devkit, db, notices, incidents, staff_access):
    for _command in _module.COMMANDS:
        main.add_command(_command)

__all__ = ["entrypoint", "main"]
