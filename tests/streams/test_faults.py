"""The service survives a database outage and a broker restart without losing or doubling anything."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from traffic import TENANTS, cross_tenant

from breachwatch import app
from breachwatch.settings import Settings, load_settings
from incidents.store import IncidentStore
from streams.consumer import Service
from streams.kafka_client import client_options, ensure_topics
from streams.local_kafka import LocalKafka


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


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def committed_total(settings: Settings, bootstrap: str) -> int:
    consumer = KafkaConsumer(**client_options(settings, bootstrap), group_id=settings.group_id)
    topic = settings.topic("erp.access")
    total = sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in consumer.partitions_for_topic(topic))
    consumer.close()
    return total


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
