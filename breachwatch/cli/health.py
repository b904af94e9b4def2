"""``breachwatch health``: ask a running ``run`` or ``console`` here whether it is alive (or
ready), at the address its settings give; exit status 0 yes, 1 no. Container health checks use
the lighter ``python -m breachwatch.probe``, which asks the same way."""

from __future__ import annotations

import click

from breachwatch import probe
from breachwatch.cli.common import settings_or_exit
from breachwatch.cli.main import SettingError


@click.command("health")
@click.argument("process", type=click.Choice(["run", "console"]))
@click.option("--ready", is_flag=True, help="ask /readyz (doing its work now) instead of /healthz (alive)")
@click.option("--timeout", type=click.FloatRange(0.1, 60), default=5.0, show_default=True, help="seconds to wait")
def health(process: str, ready: bool, timeout: float) -> None:
    """Ask the PROCESS running here, at the address its settings give, whether it is alive."""
    settings = settings_or_exit()
    path = "/readyz" if ready else "/healthz"
    if process == "console":
        address = probe.url(settings.console_host, settings.console_port, path)
    elif settings.metrics_port is None:
        raise SettingError("BREACHWATCH_METRICS_PORT is not set: `run` serves no health endpoint without it")
    else:
        address = probe.url(settings.metrics_host, settings.metrics_port, path)
    status, body = probe.ask(address, timeout)
    if status == 0:
        raise click.ClickException(body)
    click.echo(body)
    if status != 200:
        raise SystemExit(1)


COMMANDS = (health,)
