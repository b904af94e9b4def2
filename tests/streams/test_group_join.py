"""The join watch against a real broker: a group leader whose topic gains a partition rejoins,
and kafka-python 3.0.12 drops that join when ``poll()`` returns before the answer arrives. The
member then stays rebalancing, heartbeats off, until its session times out and every commit
fails; with the watch it joins again and holds the new partition."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewPartitions, NewTopic
from kafka.structs import MemberState

from breachwatch.streams.group_join import JoinWatch

pytestmark = pytest.mark.slow


@pytest.fixture
def topic(kafka_bootstrap: str, topic_prefix: str) -> Iterator[str]:
    name = f"{topic_prefix}joins"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(name, 1, 1)])
    try:
        yield name
    finally:
        admin.delete_topics([name])
        admin.close()


def _joined(kafka_bootstrap: str, topic: str) -> KafkaConsumer:
    """A consumer that has joined its own group and holds the topic's one partition."""
    consumer = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        group_id=f"g-{topic}",
        metadata_max_age_ms=300,  # sees the new partition soon
        heartbeat_interval_ms=300,
    )
    consumer.subscribe([topic])
    deadline = time.monotonic() + 30
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(timeout_ms=200)
    assert consumer.assignment(), "the consumer never joined"
    return consumer


def _add_partition(kafka_bootstrap: str, topic: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_partitions({topic: NewPartitions(total_count=2)})
    finally:
        admin.close()


def _stuck(consumer: KafkaConsumer) -> bool:
    """Rebalancing with no join the client is driving (the state the watch looks for)."""
    state = consumer.group_metadata().state
    return state == MemberState.REBALANCING and not consumer._coordinator.need_rejoin()


def test_a_dropped_join_is_noticed_and_the_member_joins_again(kafka_bootstrap: str, topic: str) -> None:
    consumer = _joined(kafka_bootstrap, topic)
    try:
        watch = JoinWatch(consumer, stuck_after_s=1.0)
        _add_partition(kafka_bootstrap, topic)
        seen_stuck, rejoined, deadline = False, False, time.monotonic() + 30
        while time.monotonic() < deadline:
            consumer.poll(timeout_ms=1)  # returns before a join's answer, as a busy service's poll does
            seen_stuck |= _stuck(consumer)
            rejoined |= watch.check()
            if len(consumer.assignment()) == 2 and consumer.group_metadata().state == MemberState.STABLE:
                break
            time.sleep(0.01)
        assert seen_stuck, "kafka-python no longer drops this join: the watch may be retired"
        assert rejoined, "the watch did not step in"
        assert consumer.group_metadata().state == MemberState.STABLE
        assert {tp.partition for tp in consumer.assignment()} == {0, 1}
    finally:
        consumer.close()


def test_the_watch_leaves_a_settled_member_alone(kafka_bootstrap: str, topic: str) -> None:
    consumer = _joined(kafka_bootstrap, topic)
    try:
        watch = JoinWatch(consumer, stuck_after_s=0.2)
        generation = consumer.group_metadata().generation_id
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            consumer.poll(timeout_ms=50)
            assert not watch.check()
        assert consumer.group_metadata().generation_id == generation  # no needless rebalance
    finally:
        consumer.close()
