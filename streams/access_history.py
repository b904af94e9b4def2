"""The ``erp.access`` topic read back by time: the blast radius's best history source
(``notifier.blast_radius.AccessHistory``), wired in by the composition root when the
deployment has a cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

from kafka import KafkaConsumer, TopicPartition

from breachwatch.core.events import ACCESS, AccessEvent
from breachwatch.core.settings import Settings
from breachwatch.notifier.blast_radius import concerns, parse_access
from breachwatch.streams.kafka_client import client_options
from breachwatch.streams.partitions import partition_for


class KafkaHistory:
    """The ``erp.access`` topic itself, read back by time as far as its retention reaches.

    Events are keyed by actor, so following accounts reads only their partitions; following
    an address reads them all. Reading starts at the first offset stamped ``LATE`` before the
    window (the contract allows events that late) and stops at the end of each partition as
    it was when the read began.
    """

    name = "kafka topic"
    LATE = timedelta(minutes=5)

    def __init__(
        self,
        settings: Settings,
        *,
        bootstrap: str | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s

    def access_events(
        self, *, actor_ids: Sequence[str], source_ips: Sequence[str], start: datetime, end: datetime
    ) -> Iterator[AccessEvent]:
        topic = self.settings.topic(ACCESS)
        consumer = KafkaConsumer(
            **client_options(self.settings, self.bootstrap),
            group_id=None,
            enable_auto_commit=False,
            bootstrap_timeout_ms=int(self.connect_timeout_s * 1000),
            max_partition_fetch_bytes=max(self.settings.max_message_bytes, 1_048_576),
        )
        try:
            partitions = sorted(consumer.partitions_for_topic(topic) or ())
            if not partitions:
                return
            if source_ips:
                wanted = partitions
            else:
                wanted = sorted({partition_for(a.encode("utf-8"), len(partitions)) for a in actor_ids})
            tps = [TopicPartition(topic, p) for p in wanted]
            consumer.assign(tps)
            since = int((start - self.LATE).timestamp() * 1000)
            firsts = consumer.offsets_for_times(dict.fromkeys(tps, since))
            ends = consumer.end_offsets(tps)
            open_tps = set()
            for tp in tps:
                first = firsts.get(tp)
                if first is not None and first.offset < ends[tp]:
                    consumer.seek(tp, first.offset)
                    open_tps.add(tp)
            keys = {a.encode("utf-8") for a in actor_ids}
            deadline = time.monotonic() + self.timeout_s
            while open_tps and time.monotonic() < deadline:
                for tp, records in consumer.poll(timeout_ms=500).items():
                    for record in records:
                        if record.offset >= ends[tp]:
                            break
                        # The key is the actor: a cheap test before parsing, unless following addresses.
                        if source_ips or record.key in keys:
                            event = parse_access(record.value)
                            if (
                                event is not None
                                and start <= event.ts <= end
                                and concerns(event, actor_ids, source_ips)
                            ):
                                yield event
                    if consumer.position(tp) >= ends[tp]:
                        open_tps.discard(tp)
            if open_tps:
                raise TimeoutError(f"reading {topic} back took longer than {self.timeout_s:.0f}s")
        finally:
            consumer.close()
