"""The chart's numbers: an actor's records (or events) per hour from the evidence store,
the incident's hours marked, and the best baseline the detectors reported."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.incidents.activity import actor_activity
from breachwatch.incidents.queries import IncidentFilter, list_incidents
from breachwatch.incidents.tables import IncidentRow


def _activity(engine: Engine, incident_id: str) -> Any:
    with Session(engine) as session:
        incident = session.get(IncidentRow, incident_id)
        assert incident is not None
        return actor_activity(session, incident)


def test_records_per_hour_include_the_actors_earlier_evidence(
    sqlite_engine: Engine, ev: SimpleNamespace, record: Any
) -> None:
    [earlier] = record(sqlite_engine, ev.finding([ev.access(1, minutes=-600, records=120)]))
    assert earlier
    big = [ev.access(10, records=9000), ev.access(11, minutes=20, records=3000), ev.access(12, minutes=75, records=40)]
    facts = {"baseline_hour_p95": 310, "limit": 20000}
    [iid] = record(sqlite_engine, ev.finding(big, detector="learned", facts=facts), window=timedelta(minutes=30))
    a = _activity(sqlite_engine, iid)

    assert (a.subject, a.metric) == ("u-hans", "records")
    assert (a.baseline, a.baseline_label) == (310.0, "usual busiest hour (95th percentile)")
    by_hour = {h.start.strftime("%d %H"): (h.value, h.in_incident) for h in a.hours if h.value}
    assert by_hour == {"23 16": (120, False), "24 02": (12000, True), "24 03": (40, True)}
    assert (a.peak, a.total) == (12000, 12040)
    assert a.hours[0].start == a.incident_start - timedelta(hours=24)


def test_an_address_incident_counts_events_and_failures(
    sqlite_engine: Engine, ev: SimpleNamespace, record: Any
) -> None:
    events = [ev.login(i, actor=f"u-{i}", ip="203.0.113.66", minutes=i) for i in range(5)]
    [iid] = record(
        sqlite_engine,
        ev.finding(events, actor=None, detector="rules.credential_stuffing", kind="credential_stuffing"),
    )
    a = _activity(sqlite_engine, iid)
    assert (a.subject, a.metric, a.baseline) == ("address 203.0.113.66", "events", None)
    [busy] = [h for h in a.hours if h.value]
    assert (busy.value, busy.failures, busy.in_incident) == (5, 5, True)


def test_the_list_filters_and_counts(sqlite_engine: Engine, ev: SimpleNamespace, record: Any) -> None:
    record(
        sqlite_engine,
        ev.finding([ev.access(1)], severity="medium"),
        ev.finding([ev.access(1, actor="u-ines", tenant="t-fjord")], actor="u-ines", tenants=("t-fjord",)),
        ev.finding([ev.access(1, actor="u-olga", ip="203.0.113.5")], actor="u-olga", severity="critical"),
    )
    with Session(sqlite_engine) as session:
        page = list_incidents(session, IncidentFilter())
        assert [i.severity for i in page.items] == ["critical", "high", "medium"]  # most severe first
        assert page.by_status["open"] == 3 and page.by_severity == {"critical": 1, "high": 1, "medium": 1, "low": 0}
        assert [i.actor_ids for i in list_incidents(session, IncidentFilter(tenant="t-fjord")).items] == [["u-ines"]]
        assert list_incidents(session, IncidentFilter(q="203.0.113.5")).total == 1
        assert list_incidents(session, IncidentFilter(status="resolved")).total == 0
        assert list_incidents(session, IncidentFilter(status="bogus")).total == 3  # unknown filter: active
