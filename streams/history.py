"""Read whole topics from their beginning to their current end (training from Kafka).

No consumer group: the reader assigns every partition itself, so it neither joins nor
disturbs the service's group, and stops at the end offsets it saw when it started.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterator

from kafka import KafkaConsumer, TopicPartition

from breachwatch.core.events import EVENT_TOPICS, KEY_FIELD, REFERENCE_TOPICS, Event
from breachwatch.core.reference import ReferenceTables
from breachwatch.core.settings import Settings
from breachwatch.streams.decode import DecodeFailure, decode
from breachwatch.streams.kafka_client import client_options

log = logging.getLogger(__name__)


def _read(settings: Settings, bootstrap: str, topics: tuple[str, ...]) -> Iterator[tuple[str, object]]:
    consumer = KafkaConsumer(
        **client_options(settings, bootstrap),
        group_id=None,
        enable_auto_commit=False,
        max_poll_records=settings.poll_max_records,
    )
    try:
        tps = [
            TopicPartition(settings.topic(t), p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(settings.topic(t)) or ())
        ]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        base = {settings.topic(t): t for t in topics}
        while any(consumer.position(tp) < end[tp] for tp in tps):
            for tp, msgs in consumer.poll(timeout_ms=1000).items():
                for m in msgs:
                    if m.offset >= end[tp]:
                        continue
                    try:
                        yield base[tp.topic], decode(base[tp.topic], m.value, settings.max_message_bytes)
                    except DecodeFailure:
                        continue  # the service dead-letters these; history reading skips them
    finally:
        consumer.close()


def reference_tables(settings: Settings, bootstrap: str) -> ReferenceTables:
    tables = ReferenceTables()
    for topic, value in _read(settings, bootstrap, REFERENCE_TOPICS):
        if value is not None:
            tables.apply(topic, getattr(value, KEY_FIELD[topic]), value)  # type: ignore[arg-type]
    return tables


def events(settings: Settings, bootstrap: str) -> Iterator[Event]:
    """Every decodable event of the event topics, roughly in event-time order.

    Partitions are read in turn, so the order is by partition; training only needs each
    actor's events in order, and an actor's events share a partition.
    """
    per_topic = [
        (value for topic, value in _read(settings, bootstrap, (t,)) if value is not None) for t in EVENT_TOPICS
    ]
    yield from heapq.merge(*per_topic, key=lambda e: e.ts)  # type: ignore[union-attr]
