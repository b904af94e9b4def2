"""The ``breachwatch`` command group. Thin: each command parses, calls one function, prints.

Exit statuses, the same for every command (the README lists them):
0 done; 1 the command failed, saying why; 2 wrong usage or a setting to fix (a bad or unknown
setting, one that is missing, a broker the settings cannot reach at start-up).
"""

from __future__ import annotations

from typing import Any

import click

from breachwatch.core.settings import ConfigError
from breachwatch.detectors.learned.signing import ModelFileError

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


class SettingError(click.ClickException):
    """A setting to fix: reported like click's usage errors, with exit status 2."""

    exit_code = EXIT_CONFIG


class _Main(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:  # raised wherever settings are checked, even deep in a command
            raise SettingError(str(exc)) from None
        except ModelFileError as exc:  # a refused model file: the reason, not a traceback
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Main)
@click.version_option(package_name="breachwatch")
def main() -> None:
    """BreachWatch: incident detection and breach notification for the ERP's event streams.

    Exit status: 0 done, 1 failed (the message says why), 2 wrong usage or a setting to fix.
    """


def entrypoint() -> None:
    """The console script."""
    main()
