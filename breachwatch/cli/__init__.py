"""The ``breachwatch`` command line: every command group joins the one ``main`` group here."""

from __future__ import annotations

from breachwatch.cli import db, devkit, health, incidents, logs, notices, pipeline, register, settings, staff_access
from breachwatch.cli.main import entrypoint, main

for _module in (pipeline, logs, devkit, db, notices, incidents, register, staff_access, settings, health):
    for _command in _module.COMMANDS:
        main.add_command(_command)
# Decisions on a breach's notices: under ``breachwatch notices`` beside list, preview, approve.
for _command in register.NOTICE_COMMANDS:
    notices.notices_group.add_command(_command)

__all__ = ["entrypoint", "main"]
