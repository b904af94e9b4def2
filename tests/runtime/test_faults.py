"""The service survives a database outage and a broker restart without losing or doubling anything."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaConnectionError, KafkaTimeoutError
from sqlalchemy import select
from sqlalchemy.engine import Engine
from traffic import TENANTS, cross_tenant, send_reads

from breachwatch.console.app import create_app
from breachwatch.core.settings import Settings, load_settings
from breachwatch.devkit.local_kafka import LocalKafka, free_port
from breachwatch.incidents.model import IncidentOut
from breachwatch.incidents.store import IncidentStore
from breachwatch.incidents.tables import EvidenceRow
from breachwatch.runtime import app
from breachwatch.runtime.service import Service
from breachwatch.streams.kafka_client import client_options, ensure_topics


def intruder(n: int) -> tuple[bytes, bytes]:
    """Key and value of a cross-tenant read by the n-th intruder (one incident each)."""
    actor = f"u-intruder-{n}"
    return actor.encode(), json.dumps(cross_tenant(n, actor, records=12)).encode()


def produce(settings: Settings, bootstrap: str, numbers: range, tenants: bool = False) -> None:
    producer = KafkaProducer(**client_options(settings, bootstrap), acks="all")
    if tenants:
        for t in TENANTS:
            producer.send(settings.topic("erp.tenants"), key=t["tenant_id"].encode(), value=json.dumps(t).encode())
    for n in numbers:
        key, value = intruder(n)
        producer.send(settings.topic("erp.access"), key=key, value=value)
    producer.flush()
    producer.close()


def wait_for(condition: Callable[[], bool], timeout: float, what: str, state: Callable[[], str] = str) -> None:
    """Poll ``condition``; on timeout fail naming ``what`` and, if given, the ``state()`` seen then."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what} {state()}")
        time.sleep(0.2)


def signature(incidents: list[IncidentOut]) -> list[tuple]:
    """What two runs over the same events must agree on: everything but ids and wall-clock times."""
    return sorted(
        (i.kind, i.severity, tuple(i.actor_ids), tuple(i.tenant_ids), tuple(sorted(i.evidence_event_ids)), i.opened_at)
        for i in incidents
    )


def committed_offsets(settings: Settings, bootstrap: str) -> dict[int, int]:
    """The group's committed offset per erp.access partition (the topics were made with
    ``settings.partitions``). Each look-up is bounded: kafka-python's metadata fetch for a topic
    a fresh client has not seen waits without a limit, and once hung this way outlived the test's
    own deadlines on a loaded machine."""
    consumer = KafkaConsumer(**client_options(settings, bootstrap), group_id=settings.group_id)
    topic = settings.topic("erp.access")
    try:
        return {
            p: consumer.committed(TopicPartition(topic, p), timeout_ms=10_000) or 0 for p in range(settings.partitions)
        }
    finally:
        consumer.close()


def committed_total(settings: Settings, bootstrap: str) -> int:
    """The committed offsets' sum; -1 while the group coordinator does not answer in time."""
    try:
        return sum(committed_offsets(settings, bootstrap).values())
    except KafkaTimeoutError:
        return -1


@pytest.mark.kafka
def test_database_outage_pauses_commits_nothing_and_resumes(
    kafka_bootstrap: str, tmp_path: Path, topic_prefix: str
) -> None:
    db = tmp_path / "bw.db"
    settings = load_settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topic_prefix,
        db_url=f"sqlite:///{db}",
        outbox_dir=tmp_path / "outbox",
        db_lock_timeout_s=0.3,
    )
    ensure_topics(settings, kafka_bootstrap)
    engine = app.database(settings)
    produce(settings, kafka_bootstrap, range(20), tenants=True)

    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # the database is unavailable to everyone else
    service = Service(settings, kafka_bootstrap, app.build_pipeline(settings, engine))
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(service.run(until_caught_up=True)))
    worker.start()
    try:
        wait_for(lambda: service.health.status == "degraded", 60, "the service to report degraded")
        assert "database unavailable" in service.health.detail
        time.sleep(2)
        assert committed_total(settings, kafka_bootstrap) == 0, "offsets committed while nothing was durable"
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    worker.join(120)
    assert not worker.is_alive()
    assert result["consumed"]["erp.access"] == 20
    assert len(IncidentStore(engine).incidents()) == 20
    assert committed_total(settings, kafka_bootstrap) == 20


@pytest.mark.slow
@pytest.mark.kafka
def test_broker_restart_mid_stream_loses_nothing(
    make_local_kafka: Callable[..., LocalKafka], tmp_path: Path, topic_prefix: str
) -> None:
    broker = make_local_kafka()
    bootstrap = broker.start()
    settings = load_settings(
        kafka_bootstrap=bootstrap,
        topic_prefix=topic_prefix,
        db_url=f"sqlite:///{tmp_path / 'bw.db'}",
        outbox_dir=tmp_path / "outbox",
        # Checkpoints (and their offset commits) keep coming while the broker is down: a commit
        # that cannot reach it must be retried later, not end the service.
        checkpoint_interval_s=0.3,
    )
    ensure_topics(settings, bootstrap)
    engine = app.database(settings)
    produce(settings, bootstrap, range(10), tenants=True)
    service = Service(settings, bootstrap, app.build_pipeline(settings, engine))
    worker = threading.Thread(target=service.run)
    worker.start()
    try:
        wait_for(lambda: service.pipeline.stats.consumed["erp.access"] >= 10, 90, "the first half")
        broker.stop()
        time.sleep(1)
        assert broker.start() == bootstrap
        produce(settings, bootstrap, range(10, 20))
        wait_for(lambda: service.pipeline.stats.consumed["erp.access"] >= 20, 180, "the second half after the restart")
    finally:
        service.stop()
        worker.join(60)
    assert not worker.is_alive()
    incidents = IncidentStore(engine).incidents()
    assert sorted(i.actor_ids[0] for i in incidents) == sorted(f"u-intruder-{n}" for n in range(20))
    assert service.pipeline.stats.consumed["erp.access"] == 20


def test_a_broker_the_client_gives_up_on_is_waited_for(bw_settings: Settings, kafka_bootstrap: str) -> None:
    """kafka-python raises a connection error from poll() once it gives up finding the group
    coordinator (seen about 30 s into a broker outage): the service reports it and polls
    again instead of exiting, and nothing is lost."""
    ensure_topics(bw_settings, kafka_bootstrap)
    send_reads(bw_settings, kafka_bootstrap, 12)
    service = Service(bw_settings, kafka_bootstrap, app.build_pipeline(bw_settings, app.database(bw_settings)))
    real_poll = service.consumer.poll
    seen: list[str] = []

    def poll(*args: Any, **kwargs: Any) -> Any:
        seen.append(service.health.detail)
        if len(seen) in (2, 3):
            raise KafkaConnectionError("socket disconnected")
        return real_poll(*args, **kwargs)

    service.consumer.poll = poll  # type: ignore[method-assign]
    stats = service.run(until_caught_up=True)
    assert seen[3].startswith("Kafka unavailable: KafkaConnectionError")  # what /healthz said meanwhile
    assert stats["consumed"]["erp.access"] == 12
    assert service.health.detail == ""


def probe(port: int, path: str = "/readyz") -> tuple[int, dict]:
    """Status code and body of one of the service's health endpoints."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def committed_event_ids(settings: Settings, bootstrap: str) -> set[str]:
    """The event ids of every erp.access message before the group's committed offset."""
    topic = settings.topic("erp.access")
    committed = committed_offsets(settings, bootstrap)
    reader = KafkaConsumer(**client_options(settings, bootstrap), enable_auto_commit=False)
    ids: set[str] = set()
    for p, end in committed.items():
        if not end:
            continue
        tp = TopicPartition(topic, p)
        reader.assign([tp])
        reader.seek(tp, 0)
        while reader.position(tp) < end:
            for m in reader.poll(timeout_ms=1000).get(tp, []):
                if m.offset < end:
                    ids.add(json.loads(m.value)["event_id"])
    reader.close()
    return ids


def stored_evidence(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.scalars(select(EvidenceRow.event_id)))


@pytest.mark.slow
@pytest.mark.kafka
def test_postgres_outage_pauses_commits_only_what_is_stored_and_resumes(
    kafka_bootstrap: str, make_postgres: Callable[[], Any], tmp_path: Path, topic_prefix: str
) -> None:
    """PostgreSQL stopped twice. First while the service is idle and a second consumer joins
    and then leaves: the partitions move twice, and each new owner must restore them from the
    database, which is away. Then in the middle of a batch, while another consumer joins and
    leaves: the service gives up units and takes them back as it waits. Each time /readyz says
    the database is unreachable (the console's too), /healthz that the process is alive, and the
    committed offsets never pass what the database holds; once it is back, everything is
    processed exactly as one uninterrupted run would, nothing twice."""
    postgres = make_postgres()
    port = free_port()
    settings = load_settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topic_prefix,
        group_id=f"{topic_prefix}service",
        db_url=postgres.url,
        outbox_dir=tmp_path / "outbox",
        metrics_port=port,
        checkpoint_interval_s=600,  # an idle consumer leaves the database alone
    )
    ensure_topics(settings, kafka_bootstrap)
    engine = app.database(settings)
    console_engine = app.database(settings)
    produce(settings, kafka_bootstrap, range(20), tenants=True)
    service = Service(settings, kafka_bootstrap, app.build_pipeline(settings, engine))
    other = Service(settings, kafka_bootstrap, app.build_pipeline(settings, app.database(settings)))
    visitor = Service(settings, kafka_bootstrap, app.build_pipeline(settings, app.database(settings)))
    outcome: dict[str, BaseException | None] = {}

    def run(name: str, s: Service) -> None:
        try:
            s.run()
            outcome[name] = None
        except BaseException as exc:  # reported by the assertions below, not lost in a thread
            outcome[name] = exc

    def state() -> str:
        return f"(service: {service.health}, {len(service.consumer.assignment())} partitions; outcome: {outcome})"

    def outage_seen() -> None:
        wait_for(lambda: probe(port)[0] == 503, 60, "/readyz to report the outage", state)
        code, body = probe(port)
        assert code == 503 and body["status"] == "not ready" and "database unreachable" in body["reasons"], body
        assert probe(port, "/healthz") == (200, {"status": "alive"})  # waiting it out: no restart
        with TestClient(create_app(settings, console_engine)) as console:
            assert console.get("/readyz").json() == {"status": "not ready", "reasons": ["database unreachable"]}
        time.sleep(2)  # the service retries meanwhile; a commit would show up now

    def visit(n: int, consumer: Service) -> None:
        """Start a consumer, wait until it holds partitions it cannot restore, stop it."""
        workers[n].start()
        wait_for(lambda: bool(consumer.consumer.assignment()), 60, f"consumer {n} to hold partitions", state)
        wait_for(lambda: consumer.health.status == "degraded", 60, f"consumer {n} to report the outage", state)
        consumer.stop()
        workers[n].join(60)
        assert not workers[n].is_alive(), f"consumer {n} did not stop {state()}"

    workers = [
        threading.Thread(target=run, args=(n, s))
        for n, s in (("service", service), ("other", other), ("visitor", visitor))
    ]
    with app.metrics_server(settings, service):
        workers[0].start()
        try:
            wait_for(
                lambda: committed_total(settings, kafka_bootstrap) == 20, 90, "the first events to be committed", state
            )
            assert probe(port) == (200, {"status": "ready"})

            # Outage 1: a consumer joins and leaves again; no partition can be restored meanwhile.
            stored = stored_evidence(engine)
            postgres.stop()
            # It cannot restore them; the first keeps the units it still holds, and needs no
            # database for that while nothing arrives.
            visit(1, other)
            outage_seen()  # the first consumer cannot restore what comes back to it
            produce(settings, kafka_bootstrap, range(20, 40))
            time.sleep(2)
            assert workers[0].is_alive(), f"the consumer died in the outage: {outcome.get('service')!r}"
            assert committed_event_ids(settings, kafka_bootstrap) <= stored, "committed past what the database holds"
            assert committed_total(settings, kafka_bootstrap) == 20
            postgres.start()
            wait_for(
                lambda: committed_total(settings, kafka_bootstrap) == 40, 90, "the second events to be committed", state
            )
            wait_for(lambda: probe(port) == (200, {"status": "ready"}), 30, "/readyz to say ready again", state)
            assert len(service.consumer.assignment()) == 3 * settings.partitions

            # Outage 2: the database goes while a batch is being written, and a consumer joins
            # and leaves while the first one waits in the middle of that batch.
            stored = stored_evidence(engine)
            postgres.stop()
            produce(settings, kafka_bootstrap, range(40, 60))
            outage_seen()
            visit(2, visitor)
            assert workers[0].is_alive(), f"the consumer died in the outage: {outcome.get('service')!r}"
            assert committed_event_ids(settings, kafka_bootstrap) <= stored, "committed past what the database holds"
            assert committed_total(settings, kafka_bootstrap) == 40
            postgres.start()
            wait_for(lambda: committed_total(settings, kafka_bootstrap) == 60, 90, "everything to be committed", state)
            wait_for(lambda: probe(port) == (200, {"status": "ready"}), 30, "/readyz to say ready again", state)
        finally:
            service.stop()
            other.stop()
            visitor.stop()
            for w in workers:
                if w.is_alive():
                    w.join(60)
    assert outcome == {"service": None, "other": None, "visitor": None}
    assert committed_event_ids(settings, kafka_bootstrap) == stored_evidence(engine)
    incidents = IncidentStore(engine).incidents()
    engine.dispose()

    # The same events, read by another group into a SQLite database, with no outage.
    reference = load_settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topic_prefix,
        group_id=f"{topic_prefix}reference",
        db_url=f"sqlite:///{tmp_path / 'reference.db'}",
        outbox_dir=tmp_path / "reference-outbox",
    )
    reference_engine = app.database(reference)
    Service(reference, kafka_bootstrap, app.build_pipeline(reference, reference_engine)).run(until_caught_up=True)
    uninterrupted = IncidentStore(reference_engine).incidents()

    assert sorted(i.actor_ids[0] for i in incidents) == sorted(f"u-intruder-{n}" for n in range(60))
    assert signature(incidents) == signature(uninterrupted)
