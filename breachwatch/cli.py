"""The ``breachwatch`` command. Thin: parse, call one domain function, print."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from pydantic import SecretStr

from breachwatch import app
from breachwatch.settings import ConfigError, Settings, load_settings


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _echo(msg: str) -> None:
    click.echo(msg, err=True)


@click.group()
@click.version_option(package_name="breachwatch")
def main() -> None:
    """BreachWatch: incident detection and breach notification for the ERP's event streams."""


# --- simulate -------------------------------------------------------------------------------


@main.command()
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="dump folder to write")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--days", type=click.IntRange(3, 400), default=21, show_default=True)
@click.option("--tenants", type=click.IntRange(2, 100_000), default=25, show_default=True)
@click.option("--attack-days", type=click.IntRange(1, 399), default=None, help="scenarios only in the last N days")
def simulate(out: Path, seed: int, days: int, tenants: int, attack_days: int | None) -> None:
    """Write realistic multi-tenant ERP traffic with labelled attacks (labels.json)."""
    from streams.simulate import simulate as run_sim

    summary = run_sim(out, seed=seed, days=days, tenants=tenants, attack_days=attack_days)
    click.echo(json.dumps(_jsonable(summary), indent=2, default=str))


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "__dataclass_fields__"):
        return {k: _jsonable(getattr(obj, k)) for k in obj.__dataclass_fields__}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    return obj


# --- produce --------------------------------------------------------------------------------


@main.command()
@click.argument("dump", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--partitions", type=click.IntRange(1, 1024), default=None, help="partitions of new event topics")
def produce(dump: Path, partitions: int | None) -> None:
    """Load a dump folder into the topics (KAFKA_BOOTSTRAP, or the local broker)."""
    from streams.kafka_client import check_connection, ensure_topics
    from streams.produce import Rate, produce_dump

    settings = _settings(partitions=partitions)
    if not settings.kafka_bootstrap:
        raise click.ClickException(
            "KAFKA_BOOTSTRAP is not set: produce needs a running cluster (the demo starts its own)"
        )
    check_connection(settings, settings.kafka_bootstrap)  # a wrong password fails here, in seconds, by name
    ensure_topics(settings, settings.kafka_bootstrap)
    counts = produce_dump(settings, settings.kafka_bootstrap, dump, progress=Rate("produce", echo=_echo))
    click.echo(json.dumps(counts))


# --- run ------------------------------------------------------------------------------------


@main.command()
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--db", "db_url", default=None, help="SQLAlchemy URL (default: BREACHWATCH_DB_URL)")
@click.option("--until-caught-up", is_flag=True, help="exit once every event present at start is processed")
def run(model: Path | None, db_url: str | None, until_caught_up: bool) -> None:
    """The long-running service: consume, detect, open incidents, page the on-call."""
    settings = _settings(db_url=db_url, model_path=model)
    app.setup_logging(settings)
    stats = _run_service(settings, until_caught_up=until_caught_up)
    click.echo(json.dumps(stats))


def _run_service(settings: Settings, *, until_caught_up: bool, bootstrap: str | None = None) -> dict[str, Any]:
    from streams.consumer import Service
    from streams.kafka_client import check_connection, ensure_topics
    from streams.pipeline import fewer_collections

    engine = app.database(settings)
    model = app.load_model(settings.model_path)
    pipeline = app.build_pipeline(settings, engine, model)
    dispatcher = app.dispatcher(settings, engine)
    with app.kafka_bootstrap(settings, _echo) if bootstrap is None else nullcontext(bootstrap) as boot:
        checked = check_connection(settings, boot)
        _echo(f"Kafka at {checked.bootstrap}: {checked.security_protocol}, {checked.brokers} broker(s)")
        ensure_topics(settings, boot)
        service = Service(settings, boot, pipeline, after_batch=dispatcher.tick)
        service.install_signal_handlers()
        # Full garbage collections walking all detector state were the long pauses of a busy
        # stream (a quarter of replay's time); reference counting frees nearly everything anyway.
        with app.metrics_server(settings, service), fewer_collections():
            stats = service.run(until_caught_up=until_caught_up)
    dispatcher.drain()
    return stats


# --- replay ---------------------------------------------------------------------------------


@main.command()
@click.argument("dump", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="incidents, one JSON per line")
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
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
    from streams.dump import DeadLetterFile
    from streams.dump import replay as run_replay
    from streams.produce import Rate

    settings = _settings(model_path=model, partitions=partitions)
    app.setup_logging(settings)
    with tempfile.TemporaryDirectory() as tmp:
        engine = app.database(settings, db_url or f"sqlite:///{tmp}/replay.db")
        pipeline = app.build_pipeline(settings, engine, app.load_model(settings.model_path), notify=notify)
        dlq = DeadLetterFile(out.with_name(out.name + ".dlq.jsonl"))
        try:
            report = run_replay(
                dump,
                pipeline,
                partitions=settings.partitions,
                max_bytes=settings.max_message_bytes,
                sink=dlq,
                progress=Rate("replay", echo=_echo),
                jobs=jobs or _cpus(),
            )
        finally:
            dlq.close()
        incidents = pipeline.store.incidents()
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as fh:
            for inc in incidents:
                fh.write(inc.to_json_line())
        if notify:
            app.dispatcher(settings, engine).drain()
        engine.dispose()
    summary = {
        "events": report.events,
        "events_per_second": round(report.events_per_second),
        "dead_letters": report.dead_letters,
        "incidents": len(incidents),
        "out": str(out),
    }
    if report.dead_letters:
        summary["dead_letter_file"] = str(dlq.path)
    click.echo(json.dumps(summary))


# --- train / backtest -----------------------------------------------------------------------


def _parse_ts(text: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an RFC 3339 time (e.g. 2026-11-24T00:00:00Z)") from None
    if ts.tzinfo is None:
        raise click.BadParameter(f"{text!r} has no offset; write e.g. 2026-11-24T00:00:00Z")
    return ts


def _pseudonym_key(settings: Settings) -> bytes:
    key = settings.secret("pseudonym_key")
    if not key:
        raise click.ClickException(
            "BREACHWATCH_PSEUDONYM_KEY is not set: training needs it to pseudonymise identities in the model file"
        )
    return key.encode()


def _false_positive_windows(db_url: str | None) -> list[tuple[str, datetime, datetime]]:
    """(actor, start, end) of incidents marked false positive: left out of training."""
    if not db_url:
        return []
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from incidents.db import IncidentRow, make_engine

    with Session(make_engine(db_url)) as session:
        rows = session.scalars(select(IncidentRow).where(IncidentRow.status == "false_positive")).all()
        return [(a, r.opened_at, r.updated_at) for r in rows for a in r.actor_ids]


def _train_from_dump(settings: Settings, dump: Path, until: datetime, db_url: str | None) -> Any:
    from detectors.learned import train as fit
    from streams.dump import iter_events, load_reference_tables

    pipeline = app.build_pipeline(settings, app.database(settings, "sqlite://"), notify=False)
    load_reference_tables(pipeline, dump, lambda _d: None, settings.max_message_bytes)
    events = iter_events(dump, lambda _d: None, settings.max_message_bytes)
    return fit(
        events,
        pipeline.tables,
        until=until,
        pseudonym_key=_pseudonym_key(settings),
        max_alerts_per_day=settings.max_alerts_per_day,
        progress=_echo,
        exclude=_false_positive_windows(db_url),
    )


@main.command()
@click.argument("dump", type=click.Path(exists=True, file_okay=False, path_type=Path), required=False)
@click.option("--until", "until", required=True, help="train on events before this time (RFC 3339)")
@click.option(
    "--model", "model", type=click.Path(dir_okay=False, path_type=Path), required=True, help="model file to write"
)
@click.option("--kafka", "from_kafka", is_flag=True, help="train from the topics instead of a dump")
@click.option("--max-alerts-per-day", type=float, default=None, help="alert budget the threshold is calibrated to")
@click.option("--db", "db_url", default=None, help="incident database: its false positives are left out")
def train(
    dump: Path | None, until: str, model: Path, from_kafka: bool, max_alerts_per_day: float | None, db_url: str | None
) -> None:
    """Fit the learned detectors on events before --until; opted-out tenants are excluded."""
    from detectors.learned import save_model
    from detectors.learned import train as fit

    settings = _settings(max_alerts_per_day=max_alerts_per_day)
    app.setup_logging(settings)
    when = _parse_ts(until)
    if from_kafka == (dump is not None):
        raise click.UsageError("give a DUMP folder or --kafka (not both)")
    if dump is not None:
        trained = _train_from_dump(settings, dump, when, db_url)
    else:
        from streams import history

        with app.kafka_bootstrap(settings, _echo) as boot:
            tables = history.reference_tables(settings, boot)
            trained = fit(
                history.events(settings, boot),
                tables,
                until=when,
                pseudonym_key=_pseudonym_key(settings),
                max_alerts_per_day=settings.max_alerts_per_day,
                progress=_echo,
                exclude=_false_positive_windows(db_url),
            )
    save_model(trained, model)
    for line in trained.report.lines():
        click.echo(line)
    click.echo(f"model written to {model}")


def _cpus() -> int:
    """CPUs this process may use (a container's limit, not the host's count)."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def backtest_dump(settings: Settings, dump: Path, truth: dict[str, Any], when: datetime) -> Any:
    """Train on ``dump`` before ``when``, replay all of it, and score the incidents against
    ``truth`` (labels.json content): the figures of ``backtest`` and ``bench.quality``."""
    from detectors.backtest import evaluate
    from streams.dump import replay as run_replay

    if not settings.secret("pseudonym_key"):
        # A backtest's model is thrown away; a random key keeps it pseudonymised all the same.
        import secrets

        settings = settings.model_copy(update={"pseudonym_key": SecretStr(secrets.token_hex(16))})
    trained = _train_from_dump(settings, dump, when, None)
    with tempfile.TemporaryDirectory() as tmp:
        engine = app.database(settings, f"sqlite:///{tmp}/backtest.db")
        pipeline = app.build_pipeline(settings, engine, trained, notify=False)
        run_replay(dump, pipeline, partitions=settings.partitions, max_bytes=settings.max_message_bytes, jobs=_cpus())
        result = evaluate(pipeline.store.incidents(), truth, since=when, detected_at=pipeline.store.detected_at())
        engine.dispose()
    return result


@main.command()
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
    labels = labels or dump / "labels.json"
    truth = json.loads(labels.read_text(encoding="utf-8"))
    settings = _settings()
    app.setup_logging(settings)
    result = backtest_dump(settings, dump, truth, _parse_ts(until or truth["clean_until"]))
    click.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.table())


# --- demo -----------------------------------------------------------------------------------


@main.command()
@click.option("--tenants", type=click.IntRange(1, 10_000), default=12, show_default=True)
@click.option("--days", type=click.IntRange(3, 60), default=7, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("demo"), show_default=True)
def demo(tenants: int, days: int, seed: int, workdir: Path) -> None:
    """Local broker + simulated ERP traffic + the service until caught up + a summary."""
    from streams.produce import Rate, produce_dump
    from streams.simulate import simulate as run_sim

    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / "breachwatch.db"
    db_path.unlink(missing_ok=True)
    settings = _settings(
        db_url=f"sqlite:///{db_path}",
        outbox_dir=workdir / "outbox",
        group_id=f"breachwatch-demo-{int(time.time())}",
        topic_prefix=f"demo{int(time.time())}.",
    )
    app.setup_logging(settings)
    dump = workdir / "dump"
    _echo(f"simulating {days} days of ERP traffic for {tenants} tenants into {dump}")
    run_sim(dump, seed=seed, days=days, tenants=tenants)
    from streams.kafka_client import ensure_topics

    with app.kafka_bootstrap(settings, _echo) as boot:
        ensure_topics(settings, boot)
        _echo(f"producing the dump into Kafka at {boot}")
        produce_dump(settings, boot, dump, progress=Rate("produce", echo=_echo))
        _echo("running the service until it has caught up")
        t0 = time.perf_counter()
        stats = _run_service(settings, until_caught_up=True, bootstrap=boot)
        secs = time.perf_counter() - t0
    engine = app.database(settings)
    from incidents.store import IncidentStore

    incidents = IncidentStore(engine).incidents()
    consumed = sum(stats["consumed"].values())
    click.echo(f"\nprocessed {consumed:,} events in {secs:.1f}s; {len(incidents)} incidents opened\n")
    for inc in incidents[:40]:
        click.echo(f"  [{inc.severity:8}] {inc.opened_at:%Y-%m-%d %H:%M} {inc.kind:24} {inc.title[:90]}")
    if len(incidents) > 40:
        click.echo(f"  ... and {len(incidents) - 40} more")
    outbox = settings.outbox_dir
    n = len(list(outbox.glob("*.eml"))) if outbox.exists() else 0
    click.echo(f"\non-call alert emails: {n} in {outbox}")
    click.echo(f"incident database: {db_path}")


def _register_domain_commands() -> None:
    """Commands that live with their domain (incidents, notices) join the one CLI here."""
    from notifier.cli_notices import register as register_notices

    register_notices(main)
    try:
        from breachwatch.cli_incidents import register as register_incidents
    except ImportError:  # pragma: no cover - the console package is optional at import time
        return
    register_incidents(main)


_register_domain_commands()


def entrypoint() -> None:
    try:
        main()
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
