"""The development kit's commands: simulate ERP traffic, backtest against its labels, the demo,
and the embedded broker. They need ``breachwatch-devkit`` installed beside the service; the
service's own commands never import it (``run`` only with ``--embedded-broker``)."""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from breachwatch.cli.common import cpus, echo, jsonable, parse_ts, settings_or_exit
from breachwatch.core.settings import Settings
from breachwatch.runtime import logs

DEVKIT = "breachwatch.devkit"


def require_devkit(what: str) -> None:
    """A clear error, instead of an import failure, where the development kit is not installed."""
    if importlib.util.find_spec(DEVKIT) is None:
        raise click.ClickException(
            f"{what} is part of the development kit, which is not installed here "
            "(pip install breachwatch-devkit, or from a checkout: pip install ./devkit)"
        )


@contextmanager
def embedded_bootstrap(settings: Settings) -> Iterator[str]:
    """A local single-node broker for the duration (its jars are fetched into the cache once)."""
    require_devkit("the embedded broker")
    from breachwatch.devkit.local_kafka import embedded_bootstrap as start

    with start(settings, echo) as boot:
        yield boot


@click.command()
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="dump folder to write")
@click.option("--seed", type=int, default=7, show_default=True, help="random seed: the same seed writes the same dump")
@click.option("--days", type=click.IntRange(3, 400), default=21, show_default=True, help="days of traffic")
@click.option("--tenants", type=click.IntRange(2, 100_000), default=25, show_default=True, help="ERP tenants")
@click.option("--attack-days", type=click.IntRange(1, 399), default=None, help="scenarios only in the last N days")
@click.option(
    "--extra-kinds",
    is_flag=True,
    help="add brute force, error burst and anomalous-hour scenarios (the rest of the dump is unchanged)",
)
def simulate(out: Path, seed: int, days: int, tenants: int, attack_days: int | None, extra_kinds: bool) -> None:
    """Write realistic multi-tenant ERP traffic with labelled attacks (labels.json)."""
    require_devkit("simulate")
    from breachwatch.devkit.simulate import simulate as run_sim

    summary = run_sim(out, seed=seed, days=days, tenants=tenants, attack_days=attack_days, extra_kinds=extra_kinds)
    click.echo(json.dumps(jsonable(summary), indent=2, default=str))


@click.command()
@click.argument("dump", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--labels",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="labels.json (default: the dump's own)",
)
@click.option(
    "--until", "until", default=None, help="train before this time; judge after it (default: labels' clean_until)"
)
@click.option("--json", "as_json", is_flag=True, help="print the figures as JSON")
def backtest(dump: Path, labels: Path | None, until: str | None, as_json: bool) -> None:
    """Train, replay, and score against labels: recall per kind, precision, false incidents/day, time to detect."""
    require_devkit("backtest")
    from breachwatch.devkit.backtest import backtest_dump

    labels = labels or dump / "labels.json"
    truth = json.loads(labels.read_text(encoding="utf-8"))
    settings = settings_or_exit()
    logs.setup_logging(settings)
    result = backtest_dump(settings, dump, truth, parse_ts(until or truth["clean_until"]), jobs=cpus())
    click.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.table())


@click.command()
@click.option("--tenants", type=click.IntRange(1, 10_000), default=12, show_default=True, help="ERP tenants simulated")
@click.option("--days", type=click.IntRange(3, 60), default=7, show_default=True, help="days of traffic simulated")
@click.option("--seed", type=int, default=7, show_default=True, help="random seed of the simulation")
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    default=Path("demo"),
    show_default=True,
    help="where the dump, the database and the email outbox are written",
)
def demo(tenants: int, days: int, seed: int, workdir: Path) -> None:
    """Local broker + simulated ERP traffic + the service until caught up + a summary."""
    require_devkit("demo")
    from breachwatch.devkit.demo import run_demo

    workdir = workdir.resolve()
    stamp = int(time.time())
    settings = settings_or_exit(
        db_url=f"sqlite:///{workdir / 'breachwatch.db'}",
        outbox_dir=workdir / "outbox",
        group_id=f"breachwatch-demo-{stamp}",
        # The alerts in demo/outbox link to the console as `make console` serves it.
        console_url=os.environ.get("BREACHWATCH_CONSOLE_URL") or "http://127.0.0.1:8080",
        topic_prefix=f"demo{stamp}.",
    )
    logs.setup_logging(settings)
    click.echo(run_demo(settings, workdir, tenants=tenants, days=days, seed=seed, echo=echo))


@click.group()
def broker() -> None:
    """The embedded single-node Kafka broker (from Maven Central jars): for trials and tests."""


def _kafka_options(f: click.decorators.FC) -> click.decorators.FC:
    f = click.option("--kafka-version", default=None, help="Kafka version (default: BREACHWATCH_KAFKA_VERSION)")(f)
    return click.option(
        "--cache-dir", type=click.Path(path_type=Path), default=None, help="jar cache (default: BREACHWATCH_CACHE_DIR)"
    )(f)


@broker.command("fetch")
@_kafka_options
def broker_fetch(kafka_version: str | None, cache_dir: Path | None) -> None:
    """Download the broker's jars into the cache (a no-op once cached)."""
    require_devkit("the embedded broker")
    from breachwatch.devkit.local_kafka import LocalKafka

    settings = settings_or_exit()
    version = kafka_version or settings.kafka_version
    started = time.monotonic()
    libs = LocalKafka(cache_dir or settings.cache_dir, version).fetch()
    click.echo(f"Kafka {version} jars in {libs} ({time.monotonic() - started:.1f} s)")


@broker.command("run")
@_kafka_options
@click.option("--port", type=int, default=None, help="broker port (default: a free one)")
@click.option(
    "--work-dir", type=click.Path(path_type=Path), default=None, help="data directory (default: a temporary one)"
)
@click.option(
    "--secure",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="SASL_SSL (SCRAM-SHA-512) and SSL listeners only; a CA, certificates and the password go into DIR",
)
def broker_run(
    kafka_version: str | None, cache_dir: Path | None, port: int | None, work_dir: Path | None, secure: Path | None
) -> None:
    """Start a broker and keep it running until Ctrl-C, printing the settings that reach it."""
    require_devkit("the embedded broker")
    from breachwatch.devkit.local_kafka import LocalKafka, LocalKafkaError, local_security, serve

    settings = settings_or_exit()
    security = local_security(secure) if secure is not None else None
    local = LocalKafka(
        cache_dir or settings.cache_dir,
        kafka_version or settings.kafka_version,
        work_dir=work_dir,
        port=port,
        security=security,
    )
    try:
        code = serve(local, security, secure)
    except LocalKafkaError as exc:
        raise click.ClickException(str(exc)) from None
    raise SystemExit(code)


COMMANDS = (simulate, backtest, demo, broker)
