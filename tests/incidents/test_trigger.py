"""What fired an incident, charted the way its kind is judged: a bulk export against the
export limit and the tenant's data subjects, failed logins per attacking address and network,
log records by level, an actor's hours against its baseline."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.detectors.rules import exports, logins
from breachwatch.incidents import trigger
from breachwatch.incidents.tables import IncidentRow


def _trigger(engine: Engine, incident_id: str) -> trigger.Trigger:
    with Session(engine) as session:
        incident = session.get(IncidentRow, incident_id)
        assert incident is not None
        return trigger.trigger(session, incident)


def test_the_thresholds_are_the_rules_own() -> None:
    assert trigger.SUBJECT_SHARE == exports.SUBJECT_SHARE
    assert (trigger.STUFFING_MIN_FAILURES, trigger.STUFFING_MIN_ACCOUNTS) == (
        logins.STUFFING_MIN_FAILURES,
        logins.STUFFING_MIN_ACCOUNTS,
    )
    assert trigger.BRUTE_MIN_FAILURES == logins.BRUTE_MIN_FAILURES


def test_a_bulk_export_below_the_limit_that_fired_on_the_tenants_data_subjects(
    sqlite_engine: Engine, ev: SimpleNamespace, record: Any
) -> None:
    exports_ = [ev.access(1, records=6200), ev.access(2, minutes=4, records=14186)]
    facts = {"records": 14186, "limit": 20000, "data_subjects": 32000, "exports_over_limit": 2}
    [iid] = record(sqlite_engine, ev.finding(exports_, facts=facts, kind="bulk_export"))
    t = _trigger(sqlite_engine, iid)
    limit, share = t.gauges
    assert (limit.value, limit.limit, limit.crossed) == (14186, 20000, False)
    assert (round(share.value, 2), share.limit, share.crossed) == (0.44, 0.25, True)
    assert t.headline.startswith("Fired on: one export held 44% of the 32,000 data subjects")
    assert "over the export limit" not in t.headline and "2 exports over the limit" in t.headline
    assert [b.total for b in t.series.buckets] == [6200, 14186]
    assert [(line.value, line.label) for line in t.series.lines] == [
        (20000, "export limit"),
        (8000, "25% of the tenant's data subjects"),
    ]


def test_credential_stuffing_shows_failures_per_address_grouped_by_network(
    sqlite_engine: Engine, ev: SimpleNamespace, record: Any
) -> None:
    ips = ["198.51.100.7", "198.51.100.8", "203.0.113.9"]
    events = [ev.login(i, actor=f"u-{i}", ip=ips[i % 3], minutes=i / 2, outcome="failure") for i in range(30)]
    facts = {"detection_failures": 12, "detection_unrecovered": 6}
    [iid] = record(
        sqlite_engine,
        ev.finding(events, actor=None, detector="rules.credential_stuffing", kind="credential_stuffing", facts=facts),
    )
    t = _trigger(sqlite_engine, iid)
    assert t.series.groups == ["198.51.100.7", "198.51.100.8", "203.0.113.9"]  # the busiest network first
    assert sum(b.total for b in t.series.buckets) == 30 and t.series.step.total_seconds() == 60
    assert "198.51.100.0/24: 20 from 2 addresses" in t.series.note
    assert [(g.value, g.limit, g.crossed) for g in t.gauges] == [(12, 10, True), (6, 5, True)]
    assert t.headline == "Fired on: 30 failed logins from 3 addresses in 2 networks"


def test_a_takeover_charts_the_actor_against_its_baseline(
    sqlite_engine: Engine, ev: SimpleNamespace, record: Any
) -> None:
    big = [ev.access(10, records=9000), ev.access(11, minutes=20, records=3000)]
    facts = {"baseline_hour_p95": 300}
    [iid] = record(sqlite_engine, ev.finding(big, detector="learned", kind="account_takeover", facts=facts))
    t = _trigger(sqlite_engine, iid)
    [gauge] = t.gauges
    assert (gauge.value, gauge.limit) == (12000, 300)
    assert t.headline == "Fired on: 12,000 records in one hour, 40.0x the usual busiest hour (95th percentile)"
    assert [line.value for line in t.series.lines] == [300]
