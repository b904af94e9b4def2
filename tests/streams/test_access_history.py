"""The blast radius re-reads an actor's (or an address's) access history from the real
``erp.access`` topic on the local Kafka broker."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from breachwatch.streams.access_history import KafkaHistory
from breachwatch.streams.kafka_client import ensure_topics
from breachwatch.streams.produce import produce_dump

T0 = dt.datetime(2026, 11, 24, 2, 0, tzinfo=dt.UTC)


def _event(event_id: str, minute: int, actor: str, ip: str = "203.0.113.66", records: int = 5) -> dict:
    return {
        "event_id": event_id,
        "ts": (T0 + dt.timedelta(minutes=minute)).isoformat(),
        "actor_id": actor,
        "actor_type": "customer_user",
        "tenant_id": "t-rhein",
        "action": "read",
        "resource_type": "customer",
        "sensitivity": "personal",
        "records": records,
        "ip": ip,
    }


def test_history_is_read_back_from_the_topic(bw_settings, kafka_bootstrap, tmp_path: Path) -> None:
    ensure_topics(bw_settings, kafka_bootstrap, partitions=3)
    dump = tmp_path / "dump"
    dump.mkdir()
    events = [
        _event("a-1", 5, "u-lena"),
        _event("a-2", 50, "u-lena", ip="198.51.100.7"),
        _event("a-3", 200, "u-lena"),  # after the window
        _event("a-4", 6, "u-other"),  # another account, from the attacking address
        _event("a-5", 7, "u-third", ip="198.51.100.9"),
    ]
    lines = [json.dumps(e) for e in events] + ["{not json"]
    (dump / "erp.access.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    produce_dump(bw_settings, kafka_bootstrap, dump)

    history = KafkaHistory(bw_settings, bootstrap=kafka_bootstrap, timeout_s=30)
    window = {"start": T0, "end": T0 + dt.timedelta(hours=1)}
    by_actor = history.access_events(actor_ids=["u-lena"], source_ips=[], **window)
    assert sorted(e.event_id for e in by_actor) == ["a-1", "a-2"]
    by_address = history.access_events(actor_ids=["u-lena"], source_ips=["203.0.113.66"], **window)
    assert sorted(e.event_id for e in by_address) == ["a-1", "a-2", "a-4"]
