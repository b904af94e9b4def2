"""``breachwatch health``: ask a running ``run`` or ``console`` in this container whether it is
alive (or ready), for the image's HEALTHCHECK and compose; exit status 0 yes, 1 no."""

from __future__ import annotations

import urllib.error
import urllib.request

import click

from breachwatch.cli.common import settings_or_exit
from breachwatch.cli.main import SettingError

WILDCARDS = {"0.0.0.0", "::", ""}


def _url(host: str, port: int, path: str) -> str:
    # A process listening on every address is asked on the loopback one.
    host = "127.0.0.1" if host in WILDCARDS else host
    return f"http://{f'[{host}]' if ':' in host else host}:{port}{path}"


@click.command("health")
@click.argument("process", type=click.Choice(["run", "console"]))
@click.option("--ready", is_flag=True, help="ask /readyz (doing its work now) instead of /healthz (alive)")
@click.option("--timeout", type=click.FloatRange(0.1, 60), default=5.0, show_default=True, help="seconds to wait")
def health(process: str, ready: bool, timeout: float) -> None:
    """Ask the PROCESS running here, at the address its settings give, whether it is alive."""
    settings = settings_or_exit()
    path = "/readyz" if ready else "/healthz"
    if process == "console":
        url = _url(settings.console_host, settings.console_port, path)
    elif settings.metrics_port is None:
        raise SettingError("BREACHWATCH_METRICS_PORT is not set: `run` serves no health endpoint without it")
    else:
        url = _url(settings.metrics_host, settings.metrics_port, path)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            click.echo(response.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        click.echo(exc.read().decode("utf-8", "replace"))
        raise SystemExit(1) from None
    except OSError as exc:
        raise click.ClickException(f"no answer from {url}: {exc}") from None


COMMANDS = (health,)
