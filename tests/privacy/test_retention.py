"""Retention (privacy policy 5): evidence past the retention period loses every personal
identifier (or is purged); evidence of incidents still being worked is held; runs are
idempotent and audited."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.incidents import lifecycle
from breachwatch.incidents.tables import CorrelationKeyRow, EvidenceRow, FindingRow, IncidentRow
from breachwatch.notifier.message import OutboxMessage
from breachwatch.notifier.outbox import OutboxRow, enqueue
from breachwatch.privacy import retention
from breachwatch.storage import audit

KEY = b"fictional-pseudonym-key-0123456789"
LATER = datetime(2028, 1, 10, tzinfo=UTC)  # more than a year after the events


def _setup(engine: Engine, ev: SimpleNamespace, record: Any) -> dict[str, str]:
    [old_closed] = record(
        engine,
        ev.finding(
            [
                ev.access(1, user_agent="Mozilla/5.0 (X11)", session_id="s-7f3a"),
                ev.access(2, minutes=1, ip="2001:db8::17"),
                ev.log(
                    1,
                    minutes=2,
                    message="export by u-hans (hans.weber@rhein-logistik.example) from 198.51.100.7 denied",
                    attrs={"bw_anonymised": "2020-01-01", "client": "203.0.113.4"},
                ),
            ]
        ),
    )
    [old_open] = record(engine, ev.finding([ev.access(1, actor="u-ines")], actor="u-ines"))
    [recent] = record(
        engine, ev.finding([ev.access(1, actor="u-olga", start=LATER - timedelta(days=3))], actor="u-olga")
    )
    with Session(engine) as session, session.begin():
        for iid in (old_closed, recent):
            lifecycle.transition(session, iid, "resolve", "ada", "handled", at=datetime(2026, 11, 26, tzinfo=UTC))
        enqueue(
            session,
            OutboxMessage(
                message_id="page-1",
                channel="email",
                recipient="oncall@unisen.example",
                subject="[BreachWatch] HIGH bulk_export by u-hans",
                body_text="u-hans exported from 198.51.100.7",
                incident_id=old_closed,
            ),
        )
        session.execute(OutboxRow.__table__.update().values(status="sent"))
    return {"old_closed": old_closed, "old_open": old_open, "recent": recent}


def _events(engine: Engine, incident_id: str) -> list[dict[str, Any]]:
    with Session(engine) as session:
        rows = session.scalars(
            select(EvidenceRow).where(EvidenceRow.incident_id == incident_id).order_by(EvidenceRow.event_id)
        )
        return [json.loads(r.event_json) for r in rows]


def test_old_evidence_of_closed_incidents_is_anonymised(engine: Engine, ev: SimpleNamespace, record: Any) -> None:
    ids = _setup(engine, ev, record)
    before_open, before_recent = _events(engine, ids["old_open"]), _events(engine, ids["recent"])
    report = retention.apply(engine, retention_days=365, key=KEY, now=LATER)

    assert (report.events_anonymised, report.incidents_anonymised, report.messages_scrubbed) == (3, 1, 1)
    assert report.held_open == [ids["old_open"]]
    events = _events(engine, ids["old_closed"])
    # (event ids are keys and stay; these test ids happen to contain the actor)
    text = json.dumps([{k: v for k, v in e.items() if k != "event_id"} for e in events])
    for personal in ("u-hans", "198.51.100.7", "2001:db8::17", "hans.weber@", "203.0.113.4", "s-7f3a", "Mozilla"):
        assert personal not in text, personal
    actors = {e["actor_id"] for e in events}
    assert len(actors) == 1 and actors.pop().startswith("anon-")  # one person, one pseudonym
    access = next(e for e in events if e["event_id"] == "a-u-hans-1")
    assert access["tenant_id"] == "t-rhein" and access["records"] == 500 and access["country"] == "NL"
    log_event = next(e for e in events if e["event_id"] == "g-1")
    assert log_event["message"].startswith("export by anon-") and "denied" in log_event["message"]
    assert all(e[retention.MARKER] == "2028-01-10" for e in events)
    # Still being worked, or still young: untouched.
    assert _events(engine, ids["old_open"]) == before_open
    assert _events(engine, ids["recent"]) == before_recent

    with Session(engine) as session:
        incident = session.get(IncidentRow, ids["old_closed"])
        assert incident is not None
        assert incident.actor_ids[0].startswith("anon-") and "u-hans" not in incident.title
        assert all(ip.startswith("anon-") for ip in incident.source_ips)
        f = session.scalars(select(FindingRow).where(FindingRow.incident_id == ids["old_closed"])).one()
        assert f.actor_id == incident.actor_ids[0] and "u-hans" not in f.title
        # Its correlation keys (actor, networks) are gone; the open incident's are kept.
        keyed = set(
            session.scalars(
                select(FindingRow.incident_id).join(
                    CorrelationKeyRow, CorrelationKeyRow.finding_id == FindingRow.finding_id
                )
            )
        )
        assert ids["old_closed"] not in keyed and ids["old_open"] in keyed
        page = session.get(OutboxRow, "page-1")
        assert page is not None and "u-hans" not in page.subject + page.body_text
        assert "198.51.100.7" not in page.body_text
        actions = [r.action for r in audit.recent(session)]
        assert "retention.anonymise" in actions and "retention.anonymise_incidents" in actions
        assert audit.verify(session).ok

    again = retention.apply(engine, retention_days=365, key=KEY, now=LATER + timedelta(days=1))
    assert (again.events_anonymised, again.incidents_anonymised) == (0, 0)
    assert _events(engine, ids["old_closed"]) == events


def test_purging_deletes_old_evidence_and_a_dry_run_changes_nothing(
    sqlite_engine: Engine, ev: SimpleNamespace, record: Any
) -> None:
    ids = _setup(sqlite_engine, ev, record)
    dry = retention.apply(sqlite_engine, retention_days=365, mode="purge", now=LATER, dry_run=True)
    assert (dry.events_purged, dry.incidents_anonymised, dry.dry_run) == (3, 1, True)
    assert len(_events(sqlite_engine, ids["old_closed"])) == 3
    report = retention.apply(sqlite_engine, retention_days=365, mode="purge", now=LATER)
    assert report.events_purged == 3
    assert _events(sqlite_engine, ids["old_closed"]) == []
    assert len(_events(sqlite_engine, ids["old_open"])) == 1
    with Session(sqlite_engine) as session:
        incident = session.get(IncidentRow, ids["old_closed"])
        assert incident is not None and incident.evidence_count == 3  # what was collected, for the record
        assert "u-hans" not in incident.title


def test_anonymising_needs_the_key(sqlite_engine: Engine) -> None:
    with pytest.raises(ValueError, match="pseudonym key"):
        retention.apply(sqlite_engine, retention_days=30, mode="anonymise", key=None)


def test_pseudonyms_are_keyed_and_stable() -> None:
    a, b = retention.Pseudonymiser(KEY), retention.Pseudonymiser(KEY[::-1])
    assert a.token("actor", "u-hans") == a.token("actor", "u-hans") != b.token("actor", "u-hans")
    assert a.token("actor", "u-hans") != a.token("ip", "u-hans")
    assert a.token("actor", a.token("actor", "u-hans")) == a.token("actor", "u-hans")
