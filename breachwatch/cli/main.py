"""The ``breachwatch`` command group. Thin: each command parses, calls one function, prints."""

from __future__ import annotations

import sys

import click

from breachwatch.core.settings import ConfigError


@click.group()
@click.version_option(package_name="breachwatch")
def main() -> None:
    """BreachWatch: incident detection and breach notification for the ERP's event streams."""


def entrypoint() -> None:
    """The console script: a configuration error is one line naming the setting, exit status 2."""
    try:
        main()
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
