"""The ``breachwatch`` command line: every command group joins the one ``main`` group here."""

from __future__ import annotations

from breachwatch.cli import db, devkit, health, incidents, logs, notices, pipeline, settings
from breachwatch.cli.main import entrypoint, main

for _module in (pipeline, logs, devkit, db, notices, incidents, settings, health):
    for _command in _module.COMMANDS:
        main.add_command(_command)

__all__ = ["entrypoint", "main"]
