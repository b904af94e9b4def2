"""Carried evidence kept as one blob per actor gives back the very events that went in."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

from breachwatch.core.events import AccessEvent, AuthEvent, Event
from breachwatch.detectors.learned import carried

WHO = {"actor_id": "user-0042", "actor_type": "customer_user", "actor_tenant": "tenant-07", "ip": "198.51.100.7"}


def _events() -> list[Event]:
    """A failed login, a role change with roles, and reads, decoded from JSON as the stream's
    decoder does: times with microseconds and offsets, fields left out (None), a tuple."""
    return [
        AuthEvent.model_validate_json(
            '{"event_id":"e-1","ts":"2026-11-03T09:15:02.123456+01:00","actor_id":"user-0042",'
            '"actor_type":"customer_user","action":"login","outcome":"failure","ip":"198.51.100.7",'
            '"country":"NL"}'
        ),
        AuthEvent.model_validate_json(
            json.dumps(
                {
                    **WHO,
                    "event_id": "e-2",
                    "ts": "2026-11-03T08:16:00.000001Z",
                    "action": "role_change",
                    "outcome": "success",
                    "roles": ["billing_admin", "viewer"],
                }
            )
        ),
        *(
            AccessEvent.model_validate_json(
                json.dumps(
                    {
                        **WHO,
                        "event_id": f"e-{k}",
                        "ts": f"2026-11-03T08:2{k}:00.5Z",
                        "tenant_id": "tenant-07",
                        "action": "export" if k == 4 else "read",
                        "resource_type": "invoice",
                        "sensitivity": "financial",
                        "records": 10 * k,
                        "session_id": "session-9",
                    }
                )
            )
            for k in range(3, 6)
        ),
    ]


def test_events_come_back_identical_from_a_blob() -> None:
    events = _events()
    blob = carried.to_blob([carried.carried(e, e.ts.timestamp()) for e in events])
    back = [carried.event(c) for c in carried.from_blob(blob)]
    assert back == events
    assert [e.model_dump_json(exclude_none=True) for e in back] == [
        e.model_dump_json(exclude_none=True) for e in events
    ]
    assert [type(e) for e in back] == [type(e) for e in events]
    assert all(e.ts.tzinfo is UTC for e in back)
    assert carried.last_time(blob) == events[-1].ts.timestamp()


def test_an_idle_actors_blob_is_squeezed_and_restored() -> None:
    events = _events()
    blob = carried.to_blob([carried.carried(e, e.ts.timestamp()) for e in events])
    small = carried.squeezed(blob)
    # zlib alone makes about 290 bytes of these 455; seeded with a typical actor's blob, less.
    assert len(small) < 250
    assert carried.last_time(small) == carried.last_time(blob)
    assert carried.unsqueezed(small) == blob


def test_a_blob_costs_less_than_the_events_it_holds() -> None:
    events = _events()
    blob = carried.to_blob([carried.carried(e, e.ts.timestamp()) for e in events])
    assert len(blob) < 150 * len(events)
    assert carried.from_blob(None) == []


def test_a_blobs_time_is_its_last_events_even_a_late_one() -> None:
    late = datetime(2026, 11, 3, 7, 0, tzinfo=UTC)
    events = _events()
    events.append(events[0].model_copy(update={"event_id": "e-late", "ts": late}))
    blob = carried.to_blob([carried.carried(e, e.ts.timestamp()) for e in events])
    # The blob's time is its last event's, as the detector appends them (it expires by it).
    assert carried.last_time(blob) == late.timestamp()
    assert carried.event(carried.from_blob(blob)[-1]).event_id == "e-late"


def test_appending_keeps_the_last_hour_and_the_cap_as_a_rewrite_would() -> None:
    """Batch after batch, with late events among them: the blob holds exactly what filtering
    everything carried by the newest time and capping would keep."""
    rng = random.Random(5)
    template = _events()
    span, cap = 3600.0, 12
    blob: bytes | None = None
    expected: list[carried.Carried] = []
    t = template[0].ts.timestamp()
    for batch in range(60):
        new = []
        for _ in range(rng.randint(1, 6)):
            t += rng.choice([5.0, 60.0, 900.0, 2400.0])
            late = rng.random() < 0.1
            e = rng.choice(template)
            new.append(carried.carried(e, t - 3000.0 if late else t))
        last = new[-1][0]
        blob = carried.appended(blob, new, last, span, cap)
        expected = ([c for c in expected if last - c[0] <= span] + new)[-cap:]
        assert carried.from_blob(blob) == expected, batch
        assert carried.last_time(blob) == last


def test_appending_without_expiry_adds_a_chunk_and_rewrites_nothing() -> None:
    events = _events()
    first = [carried.carried(e, e.ts.timestamp()) for e in events[:2]]
    blob = carried.to_blob(first)
    more = [carried.carried(e, e.ts.timestamp()) for e in events[2:]]
    grown = carried.appended(blob, more, more[-1][0], 3600.0, 50)
    head = carried._HEAD.size
    assert grown[head:].startswith(blob[head:])  # what was carried, byte for byte
    assert carried.from_blob(grown) == first + more
