"""Load a dump into the topics, keyed as the contract says (``breachwatch produce``).

Lines are sent as they are, bytes untouched, malformed ones included: the point of a dump
is to reproduce what the ERP emitted, and the consumer's dead-letter path is part of that.
Each goes on the partition Kafka's default partitioner gives its key, worked out here once per
key; a key that reads plainly from the bytes (``streams.dump._plain_field``) is taken as it is,
so a malformed line that still names its actor is keyed by it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from kafka import KafkaProducer

from breachwatch.core.events import EVENT_TOPICS, KEY_FIELD, REFERENCE_TOPICS
from breachwatch.core.settings import Settings
from breachwatch.streams.dump import _plain_field, dump_file, message_key, read_lines
from breachwatch.streams.kafka_client import client_options
from breachwatch.streams.partitions import Partitioner


class Placer:
    """The partition Kafka's default partitioner gives a message's key on a topic, worked out
    once per key (``Partitioner``): the client's own murmur2, in Python, would run for every
    message."""

    def __init__(self, producer: KafkaProducer) -> None:
        self.producer = producer
        self._topics: dict[str, Partitioner] = {}

    def __call__(self, topic: str, key: bytes | None) -> int | None:
        """The partition for ``key`` on ``topic`` (its full name); None (the client picks) unkeyed."""
        if key is None:
            return None
        partitioner = self._topics.get(topic)
        if partitioner is None:
            partitioner = self._topics[topic] = Partitioner(len(self.producer.partitions_for(topic)))
        return partitioner(key)


def produce_dump(
    settings: Settings,
    bootstrap: str,
    dump: Path,
    *,
    progress: Callable[[int], None] | None = None,
    progress_every: int = 50_000,
) -> dict[str, int]:
    """Send every line of every ``<topic>.jsonl`` in the dump; returns counts per topic.

    Reference topics go first, so a consumer started afterwards has its tables complete.
    """
    producer = KafkaProducer(
        **(client_options(settings, bootstrap)),
        acks="all",
        linger_ms=20,
        batch_size=512 * 1024,
        max_request_size=max(settings.max_message_bytes * 2, 1_048_576),
    )
    place = Placer(producer)
    counts: dict[str, int] = {}
    total = 0
    try:
        for topic in REFERENCE_TOPICS + EVENT_TOPICS:
            full = settings.topic(topic)
            tag = f'"{KEY_FIELD[topic]}":"'.encode()
            n = 0
            for _, raw in read_lines(dump_file(dump, topic)):
                plain = _plain_field(raw, tag)
                key = plain if plain is not None else message_key(topic, raw)
                producer.send(full, key=key, value=raw, partition=place(full, key))
                n += 1
                total += 1
                if progress and total % progress_every == 0:
                    progress(total)
            if n:
                counts[topic] = n
        producer.flush()
    finally:
        producer.close()
    if progress:
        progress(total)
    return counts


class Rate:
    """Progress line for long runs: count, events/s, and ETA when the total is known."""

    def __init__(self, label: str, total: int | None = None, echo: Callable[[str], None] = print) -> None:
        self.label, self.total, self.echo = label, total, echo
        self.started = time.perf_counter()
        self._last = 0.0

    def __call__(self, done: int) -> None:
        now = time.perf_counter()
        if now - self._last < 1.0 and done != self.total:
            return
        self._last = now
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        eta = ""
        if self.total and rate > 0:
            eta = f", ETA {max(self.total - done, 0) / rate:.0f}s"
        self.echo(f"{self.label}: {done:,} events, {rate:,.0f}/s{eta}")
