"""The pipeline's commands: run the service, replay a dump, load a dump into the topics, train
the learned detectors. Thin: parse, call the composition root, print."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from breachwatch.cli.common import cpus, echo, parse_ts, settings_or_exit
from breachwatch.cli.main import SettingError
from breachwatch.core.settings import Settings
from breachwatch.runtime import app, logs

NO_BOOTSTRAP = (
    "KAFKA_BOOTSTRAP is not set: give the cluster's bootstrap servers "
    "(or --embedded-broker to start a local broker for a trial; it needs the development kit)"
)


@contextmanager
def bootstrap_of(settings: Settings, embedded: bool) -> Iterator[str]:
    """The configured cluster; with ``embedded`` and no cluster configured, a local broker."""
    if settings.kafka_bootstrap:
        yield settings.kafka_bootstrap
        return
    if not embedded:
        raise SettingError(NO_BOOTSTRAP)
    from breachwatch.cli.devkit import embedded_bootstrap

    with embedded_bootstrap(settings) as boot:
        yield boot


@click.command()
@click.argument("dump", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--partitions",
    type=click.IntRange(1, 1024),
    default=None,
    help="partitions of event topics it creates (default: BREACHWATCH_PARTITIONS); existing topics stay as they are",
)
def produce(dump: Path, partitions: int | None) -> None:
    """Load a dump folder into the topics of the cluster at KAFKA_BOOTSTRAP (topics are created
    if missing). Without KAFKA_BOOTSTRAP it stops: it never starts a broker of its own."""
    from breachwatch.streams.kafka_client import check_connection, ensure_topics
    from breachwatch.streams.produce import Rate, produce_dump

    settings = settings_or_exit(partitions=partitions)
    logs.setup_logging(settings)
    if not settings.kafka_bootstrap:
        raise SettingError("KAFKA_BOOTSTRAP is not set: produce needs a running cluster")
    check_connection(settings, settings.kafka_bootstrap)  # a wrong password fails here, in seconds, by name
    ensure_topics(settings, settings.kafka_bootstrap)
    counts = produce_dump(settings, settings.kafka_bootstrap, dump, progress=Rate("produce", echo=echo))
    click.echo(json.dumps(counts))


@click.command()
@click.option(
    "--model",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="trained model file, signed by `train` (default: BREACHWATCH_MODEL_PATH; none: rules only)",
)
@click.option("--db", "db_url", default=None, help="SQLAlchemy URL (default: BREACHWATCH_DB_URL)")
@click.option("--until-caught-up", is_flag=True, help="exit once every event present at start is processed")
@click.option(
    "--embedded-broker",
    is_flag=True,
    help="without KAFKA_BOOTSTRAP, start a local single-node broker (a trial; needs the development kit)",
)
def run(model: Path | None, db_url: str | None, until_caught_up: bool, embedded_broker: bool) -> None:
    """The long-running service: consume, detect, open incidents, page the on-call.

    SIGTERM or Ctrl-C finishes the batch in hand, checkpoints, commits and exits 0. With
    BREACHWATCH_METRICS_PORT it serves /metrics, /healthz and /readyz."""
    settings = settings_or_exit(db_url=db_url, model_path=model)
    logs.setup_logging(settings)
    with bootstrap_of(settings, embedded_broker) as boot:
        stats = app.run_service(settings, boot, until_caught_up=until_caught_up)
    click.echo(json.dumps(stats))


@click.command()
@click.argument("dump", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="incidents, one JSON per line")
@click.option(
    "--model",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="trained model file, signed by `train` (default: BREACHWATCH_MODEL_PATH; none: rules only)",
)
@click.option("--db", "db_url", default=None, help="SQLAlchemy URL (default: a throwaway SQLite file)")
@click.option(
    "--partitions", type=click.IntRange(1, 1024), default=None, help="as the live topics have (default: setting)"
)
@click.option("--notify/--no-notify", default=False, help="also deliver on-call alerts (default: only write incidents)")
@click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    default=None,
    help="worker processes for the detectors (default: one per CPU); the incidents are the same",
)
def replay(
    dump: Path,
    out: Path,
    model: Path | None,
    db_url: str | None,
    partitions: int | None,
    notify: bool,
    jobs: int | None,
) -> None:
    """Run the identical pipeline over a dump, in event-time order, deterministically."""
    from breachwatch.runtime.replay import replay_to_file

    settings = settings_or_exit(model_path=model, partitions=partitions)
    logs.setup_logging(settings)
    with tempfile.TemporaryDirectory() as tmp:
        summary = replay_to_file(
            settings,
            dump,
            out,
            db_url=db_url or f"sqlite:///{tmp}/replay.db",
            notify=notify,
            jobs=jobs or cpus(),
            echo=echo,
        )
    click.echo(json.dumps(summary))


def _signing_key(settings: Settings) -> bytes:
    key = settings.secret("model_signing_key")
    if not key:
        raise SettingError(
            "BREACHWATCH_MODEL_SIGNING_KEY is not set: training signs the model file with it (and `run` checks it)"
        )
    return key.encode()


def _pseudonym_key(settings: Settings) -> bytes:
    key = settings.secret("pseudonym_key")
    if not key:
        raise SettingError(
            "BREACHWATCH_PSEUDONYM_KEY is not set: training needs it to pseudonymise identities in the model file"
        )
    return key.encode()


@click.command()
@click.argument("dump", type=click.Path(exists=True, file_okay=False, path_type=Path), required=False)
@click.option("--until", "until", required=True, help="train on events before this time (RFC 3339)")
@click.option(
    "--model",
    "model",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="model file to write, signed with BREACHWATCH_MODEL_SIGNING_KEY",
)
@click.option("--kafka", "from_kafka", is_flag=True, help="train from the topics at KAFKA_BOOTSTRAP instead of a dump")
@click.option("--max-alerts-per-day", type=float, default=None, help="alert budget the threshold is calibrated to")
@click.option("--db", "db_url", default=None, help="incident database: its false positives are left out")
def train(
    dump: Path | None, until: str, model: Path, from_kafka: bool, max_alerts_per_day: float | None, db_url: str | None
) -> None:
    """Fit the learned detectors on events before --until; opted-out tenants are excluded."""
    from breachwatch.detectors.learned.detector import save_model
    from breachwatch.runtime.training import train_from_dump, train_from_topics

    settings = settings_or_exit(max_alerts_per_day=max_alerts_per_day)
    logs.setup_logging(settings)
    when: datetime = parse_ts(until)
    if from_kafka == (dump is not None):
        raise click.UsageError("give a DUMP folder or --kafka (not both)")
    key = _pseudonym_key(settings)
    signing_key = _signing_key(settings)  # asked before the training, not after it
    trained: Any
    if dump is not None:
        trained = train_from_dump(settings, dump, when, key, db_url=db_url, progress=echo)
    else:
        if not settings.kafka_bootstrap:
            raise SettingError(NO_BOOTSTRAP.split(" (")[0])
        trained = train_from_topics(settings, settings.kafka_bootstrap, when, key, db_url=db_url, progress=echo)
    save_model(trained, model, signing_key)
    for line in trained.report.lines():
        click.echo(line)
    click.echo(f"model written to {model}")


COMMANDS = (produce, run, replay, train)
