"""Small hand-written ERP traffic shared by the broker tests: two tenants and cross-tenant reads."""

from __future__ import annotations

import json
from typing import Any

from kafka import KafkaProducer

from breachwatch.core.settings import Settings
from breachwatch.streams.kafka_client import client_options

TENANTS: list[dict[str, Any]] = [
    {
        "tenant_id": "t-indus",
        "name": "Indus Textiles",
        "jurisdiction": "PK",
        "contacts": [{"email": "sec@indus.example", "role": "security"}],
    },
    {
        "tenant_id": "t-rhein",
        "name": "Rhein Logistik",
        "jurisdiction": "DE",
        "locale": "de",
        "contacts": [{"email": "dpo@rhein.example", "role": "dpo"}],
    },
]


def cross_tenant(n: int, actor: str, records: int = 40) -> dict[str, Any]:
    """A customer user of t-indus reading personal data of t-rhein: the cross-tenant rule fires."""
    return {
        "event_id": f"x-{actor}-{n}",
        "ts": f"2026-11-24T10:{n % 60:02d}:00Z",
        "actor_id": actor,
        "actor_type": "customer_user",
        "actor_tenant": "t-indus",
        "tenant_id": "t-rhein",
        "action": "read",
        "resource_type": "customer",
        "sensitivity": "personal",
        "records": records,
        "ip": "198.51.100.23",
        "country": "PK",
    }


def send_reads(settings: Settings, bootstrap: str, count: int, actor: str = "u-mallory") -> None:
    """``count`` cross-tenant reads by ``actor`` on erp.access (one partition: the actor's)."""
    producer = KafkaProducer(**client_options(settings, bootstrap))
    for n in range(count):
        producer.send(
            settings.topic("erp.access"), key=actor.encode(), value=json.dumps(cross_tenant(n, actor)).encode()
        )
    producer.flush()
    producer.close()
