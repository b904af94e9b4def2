"""The local Apache Kafka broker, exercised with real clients: kafka-python and kcat."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from breachwatch.core.events import ALL_TOPICS, EVENT_TOPICS, REFERENCE_TOPICS, TICKETS
from breachwatch.core.settings import Settings
from breachwatch.devkit.local_kafka import LocalKafka, LocalKafkaError
from breachwatch.streams.kafka_client import client_options, dlq_topic, ensure_topics

pytestmark = pytest.mark.kafka


def _create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics({name: {"num_partitions": partitions, "replication_factor": 1}}, wait_for_metadata=True)
    finally:
        admin.close()


def _consume(bootstrap: str, topic: str, count: int, group: str | None = None) -> list[tuple[bytes, bytes]]:
    """Read ``count`` messages from the start of ``topic`` (committing them if ``group`` is set)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20_000,
    )
    try:
        got = []
        for message in consumer:
            got.append((message.key, message.value))
            if len(got) == count:
                break
        if group is not None:
            consumer.commit()
        return got
    finally:
        consumer.close()


def test_kafka_python_round_trip(kafka_bootstrap: str, topic_prefix: str) -> None:
    topic = f"{topic_prefix}roundtrip"
    _create_topic(kafka_bootstrap, topic, partitions=2)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    sent = [(f"actor-{i % 3}".encode(), f'{{"n": {i}}}'.encode()) for i in range(20)]
    for key, value in sent:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()

    got = _consume(kafka_bootstrap, topic, len(sent), group=f"{topic_prefix}group")

    assert sorted(got) == sorted(sent)
    # One key always lands on one partition, so each actor's events keep their order.
    for actor in (b"actor-0", b"actor-1", b"actor-2"):
        assert [v for k, v in got if k == actor] == [v for k, v in sent if k == actor]


def test_message_from_kcat_is_read_by_kafka_python(kafka_bootstrap: str, topic_prefix: str) -> None:
    if shutil.which("kcat") is None:
        # CI must run the foreign-client check; a developer without kcat can skip it.
        (pytest.fail if os.environ.get("CI") else pytest.skip)("kcat (Debian package) is not installed")
    topic = f"{topic_prefix}foreign"
    _create_topic(kafka_bootstrap, topic)
    value = '{"event_id":"ev-1","tenant_id":"tenant-fjord.example"}'
    subprocess.run(
        ["kcat", "-b", kafka_bootstrap, "-t", topic, "-P", "-K", "|"],
        input=f"acct-7|{value}\n",
        text=True,
        check=True,
        timeout=30,
        capture_output=True,
    )

    assert _consume(kafka_bootstrap, topic, 1) == [(b"acct-7", value.encode())]


def test_ensure_topics_creates_every_topic_once(kafka_bootstrap: str, bw_settings: Settings) -> None:
    ensure_topics(bw_settings, partitions=3)
    ensure_topics(bw_settings, partitions=5)  # again: existing topics are left as they are

    expected = [bw_settings.topic(t) for t in ALL_TOPICS] + [dlq_topic(bw_settings.topic(t)) for t in ALL_TOPICS]
    admin = KafkaAdminClient(**client_options(bw_settings))
    try:
        described = {t["name"]: t for t in admin.describe_topics(expected)}
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, ["cleanup.policy"]) for name in expected],
            config_filter="ALL",
        )["topic"]
    finally:
        admin.close()

    assert sorted(described) == sorted(expected)
    assert {len(t["partitions"]) for t in described.values()} == {3}
    policy = {name: configs[name]["cleanup.policy"]["value"] for name in expected}
    for name in REFERENCE_TOPICS:
        assert policy[bw_settings.topic(name)] == "compact"
    for name in EVENT_TOPICS:
        assert policy[bw_settings.topic(name)] == "delete"
    # Dead letters may lack a key, which a compacted topic would refuse.
    assert policy[dlq_topic(bw_settings.topic(TICKETS))] == "delete"


def test_broker_restart_keeps_messages_and_committed_offsets(
    make_local_kafka: Callable[..., LocalKafka],
) -> None:
    broker = make_local_kafka()
    bootstrap = broker.start()
    _create_topic(bootstrap, "erp.access")
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(3):
        producer.send("erp.access", key=b"actor-1", value=f"event-{i}".encode())
    producer.flush()
    producer.close()
    assert len(_consume(bootstrap, "erp.access", 2, group="detectors")) == 2  # commits offset 2
    first_pid = broker.pid

    broker.stop()
    broker.stop()  # stopping twice is harmless
    assert not broker.running and broker.pid is None
    assert broker.start() == bootstrap

    assert broker.pid not in (None, first_pid)
    assert _consume(bootstrap, "erp.access", 3) == [(b"actor-1", f"event-{i}".encode()) for i in range(3)]
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id="detectors", enable_auto_commit=False)
    try:
        assert consumer.committed(TopicPartition("erp.access", 0)) == 2
    finally:
        consumer.close()


def test_broker_that_cannot_start_reports_its_log(make_local_kafka: Callable[..., LocalKafka]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))  # bound, not listening: the broker cannot bind it
        broker = make_local_kafka(port=squatter.getsockname()[1])
        with pytest.raises(LocalKafkaError, match="Address already in use"):
            broker.start(timeout=60)
    assert not broker.running


def test_a_port_taken_before_the_broker_binds_it_is_chosen_again(make_local_kafka: Callable[..., LocalKafka]) -> None:
    # Free ports are ephemeral ones: an outgoing connection may take the one the broker chose
    # before it binds it. The broker then chooses others instead of failing.
    broker = make_local_kafka()
    broker._choose_ports()  # the ports it would bind, chosen now so one can be taken first
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", broker.port))
        taken = broker.port
        bootstrap = broker.start(timeout=90)
    assert broker.running and broker.port != taken and bootstrap == f"127.0.0.1:{broker.port}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        assert admin.describe_cluster()["brokers"][0]["port"] == broker.port  # it serves there
    finally:
        admin.close()


def test_fetch_is_cached_and_needs_no_maven_afterwards(
    make_local_kafka: Callable[..., LocalKafka], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broker = make_local_kafka()
    libs = broker.fetch()
    monkeypatch.setenv("PATH", str(tmp_path))  # neither mvn nor java can be found now

    assert broker.fetch() == libs
    assert (libs / f"kafka_2.13-{broker.version}.jar").is_file()
    with pytest.raises(LocalKafkaError, match="`mvn` is not on PATH"):
        LocalKafka(tmp_path / "empty-cache", broker.version).fetch()
