"""The incident lifecycle: who, when and why for every change; refused changes; merge and
split; breach confirmation; what new evidence does to a closed incident."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from detectors.base import Finding
from incidents import audit, lifecycle
from incidents.db import EvidenceRow, FindingRow, IncidentRow
from incidents.lifecycle import ClosedIncidentPolicy, IncidentLinkRow, IncidentNotFound, LifecycleError
from incidents.store import IncidentStore

NOW = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)


def _act(engine: Engine, incident_id: str, action: str, actor: str, reason: str | None, at: datetime) -> str:
    with Session(engine) as session, session.begin():
        return lifecycle.transition(session, incident_id, action, actor, reason, at=at).status


def _incident(engine: Engine, incident_id: str) -> IncidentRow:
    with Session(engine, expire_on_commit=False) as session:
        row = session.get(IncidentRow, incident_id)
        assert row is not None
        return row


def test_each_change_records_who_when_and_why(engine: Engine, ev: SimpleNamespace, record: Any) -> None:
    [iid] = record(engine, ev.finding([ev.access(1), ev.access(2, minutes=1)]))
    steps = [
        ("acknowledge", "ada", None, "acknowledged"),
        ("investigate", "ada", "export size is 40x the tenant's usual", "investigating"),
        ("contain", "grace", "sessions revoked, API key rotated", "contained"),
        ("resolve", "grace", "tenant confirmed the export was theirs after all", "resolved"),
    ]
    for i, (action, actor, reason, status) in enumerate(steps):
        assert _act(engine, iid, action, actor, reason, NOW + timedelta(minutes=i)) == status

    with Session(engine) as session:
        history = lifecycle.history(session, iid)
        assert [(e.action, e.actor, e.from_status, e.to_status) for e in history] == [
            ("acknowledge", "ada", "open", "acknowledged"),
            ("investigate", "ada", "acknowledged", "investigating"),
            ("contain", "grace", "investigating", "contained"),
            ("resolve", "grace", "contained", "resolved"),
        ]
        assert [e.at for e in history] == [NOW + timedelta(minutes=i) for i in range(4)]
        assert history[0].reason == "page acknowledged"
        assert history[3].reason == "tenant confirmed the export was theirs after all"
        assert lifecycle.handled_by(session, iid) == ("grace", NOW + timedelta(minutes=2))
        trail = audit.for_subject(session, f"incident:{iid}")
        assert [r.action for r in trail] == [
            "incident.acknowledge",
            "incident.investigate",
            "incident.contain",
            "incident.resolve",
        ]
        assert trail[3].actor == "grace" and trail[3].detail["reason"].startswith("tenant confirmed")
        assert audit.verify(session).ok
    assert _incident(engine, iid).status == "resolved"


def test_changes_the_state_does_not_allow_are_refused(sqlite_engine: Engine, ev: SimpleNamespace, record: Any) -> None:
    [iid] = record(sqlite_engine, ev.finding([ev.access(1)]))
    _act(sqlite_engine, iid, "acknowledge", "ada", None, NOW)
    with pytest.raises(LifecycleError, match="cannot acknowledge an incident that is acknowledged"):
        _act(sqlite_engine, iid, "acknowledge", "bob", None, NOW)
    with pytest.raises(LifecycleError, match="needs a reason"):
        _act(sqlite_engine, iid, "resolve", "ada", "   ", NOW)
    with pytest.raises(LifecycleError, match="cannot reopen"):
        _act(sqlite_engine, iid, "reopen", "ada", "why not", NOW)
    with pytest.raises(LifecycleError, match="unknown action"):
        _act(sqlite_engine, iid, "delete", "ada", "gone", NOW)
    with pytest.raises(IncidentNotFound):
        _act(sqlite_engine, "no-such-incident", "acknowledge", "ada", None, NOW)
    _act(sqlite_engine, iid, "false_positive", "ada", "the tenant's own nightly sync", NOW)
    with pytest.raises(LifecycleError, match="cannot resolve an incident that is false positive"):
        _act(sqlite_engine, iid, "resolve", "ada", "done", NOW)
    assert _act(sqlite_engine, iid, "reopen", "bob", "the sync never runs at 3am", NOW) == "open"
    with Session(sqlite_engine) as session:
        # Refused changes leave no trace; the three that happened do.
        assert [e.action for e in lifecycle.history(session, iid)] == ["acknowledge", "false_positive", "reopen"]
        assert len(audit.recent(session)) == 3


def test_merge_moves_findings_and_evidence_and_closes_the_source(
    engine: Engine, ev: SimpleNamespace, record: Any
) -> None:
    [a] = record(engine, ev.finding([ev.access(1), ev.access(2, minutes=1)], severity="medium", score=55))
    [b] = record(
        engine,
        ev.finding(
            [ev.access(1, actor="u-ines", ip="203.0.113.9", tenant="t-fjord"), ev.access(2, minutes=2)],
            actor="u-ines",
            detector="rules.cross_tenant_access",
            kind="cross_tenant_access",
            severity="critical",
            score=96,
            tenants=("t-fjord",),
        ),
    )
    with Session(engine) as session, session.begin():
        lifecycle.merge(session, a, [b], "ada", "the same attacker used both accounts", at=NOW)

    target, source = _incident(engine, a), _incident(engine, b)
    assert target.severity == "critical" and target.score == 96
    assert target.actor_ids == ["u-hans", "u-ines"]
    assert set(target.tenant_ids) == {"t-rhein", "t-fjord"}
    assert set(target.source_ips) == {"198.51.100.7", "203.0.113.9"}
    assert target.detectors == ["rules.bulk_export", "rules.cross_tenant_access"]
    # a-u-hans-2 was evidence of both: it is held once.
    assert target.evidence_count == 3
    assert source.status == "resolved" and source.evidence_count == 0
    with Session(engine) as session:
        assert set(session.scalars(select(FindingRow.incident_id))) == {a}
        assert session.scalar(select(func.count()).select_from(EvidenceRow).where(EvidenceRow.incident_id == b)) == 0
        assert [(x.incident_id, x.related_id, x.kind) for x in lifecycle.links(session, a)] == [(b, a, "merged_into")]
        assert [e.action for e in lifecycle.history(session, b)] == ["merged_into"]
        assert lifecycle.history(session, a)[0].detail == {"merged": [b]}
        assert audit.verify(session).ok
    with Session(engine) as session, session.begin(), pytest.raises(LifecycleError, match="itself"):
        lifecycle.merge(session, a, [a], "ada", "oops")


def test_split_moves_chosen_findings_to_a_linked_incident(engine: Engine, ev: SimpleNamespace, record: Any) -> None:
    first = ev.finding([ev.access(1), ev.access(2, minutes=1)], severity="medium", score=50)
    second = ev.finding(
        [ev.login(1, actor="u-hans", ip="203.0.113.50", minutes=5)],
        detector="rules.login_anomaly",
        kind="account_takeover",
        severity="critical",
        score=93,
    )
    [iid] = record(engine, first, second)
    assert _incident(engine, iid).severity == "critical"
    with Session(engine) as session, session.begin():
        new = lifecycle.split(session, iid, [second.finding_id], "ada", "the login is a separate takeover", at=NOW)
        new_id = new.incident_id

    original, split_off = _incident(engine, iid), _incident(engine, new_id)
    assert (original.severity, original.score, original.evidence_count) == ("medium", 50, 2)
    assert original.detectors == ["rules.bulk_export"]
    assert (split_off.severity, split_off.kind, split_off.evidence_count) == ("critical", "account_takeover", 1)
    assert split_off.source_ips == ["203.0.113.50"] and split_off.tenant_ids == ["t-rhein"]
    assert split_off.status == original.status == "open"
    with Session(engine) as session:
        assert session.get(FindingRow, second.finding_id).incident_id == new_id  # type: ignore[union-attr]
        assert [(x.incident_id, x.kind) for x in lifecycle.links(session, iid)] == [(new_id, "split_from")]
    with (
        Session(engine) as session,
        session.begin(),
        pytest.raises(LifecycleError, match="at least one finding must stay"),
    ):
        lifecycle.split(session, new_id, [second.finding_id], "ada", "everything")
    with Session(engine) as session, session.begin(), pytest.raises(LifecycleError, match="only findings of this"):
        lifecycle.split(session, iid, ["not-a-finding"], "ada", "typo")


def test_confirm_breach_records_awareness_once(
    sqlite_engine: Engine, ev: SimpleNamespace, record: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    [iid] = record(sqlite_engine, ev.finding([ev.access(1)]))
    # Without the customer-notices module the confirmation still stands on its own.
    monkeypatch.setitem(sys.modules, "notifier.notices", None)
    with (
        caplog.at_level(logging.INFO, logger="incidents.lifecycle"),
        Session(sqlite_engine) as session,
        session.begin(),
    ):
        lifecycle.confirm_breach(session, iid, "grace", "records left the tenant", at=NOW)
    assert "notices are not installed" in caplog.text
    with Session(sqlite_engine) as session:
        row = lifecycle.breach(session, iid)
        assert row is not None and (row.confirmed_by, row.confirmed_at) == ("grace", NOW)
        assert [r.action for r in audit.for_subject(session, f"incident:{iid}")] == ["incident.confirm_breach"]
    with Session(sqlite_engine) as session, session.begin(), pytest.raises(LifecycleError, match="already confirmed"):
        lifecycle.confirm_breach(session, iid, "bob", "again", at=NOW + timedelta(hours=1))
    [other] = record(sqlite_engine, ev.finding([ev.access(9, actor="u-ines")], actor="u-ines"))
    _act(sqlite_engine, other, "false_positive", "ada", "test account", NOW)
    with Session(sqlite_engine) as session, session.begin(), pytest.raises(LifecycleError, match="false positive"):
        lifecycle.confirm_breach(session, other, "grace", "sure?", at=NOW)


def test_confirm_breach_starts_customer_notices_when_installed(
    sqlite_engine: Engine, ev: SimpleNamespace, record: Any, tmp_path: Any
) -> None:
    notices = lifecycle.optional_notices("on_breach_confirmed", "list_notices")
    if notices is None:
        pytest.skip("notifier.notices is not installed")
    from breachwatch.settings import Settings

    [iid] = record(sqlite_engine, ev.finding([ev.access(1), ev.access(2, minutes=1)]))
    settings = Settings(outbox_dir=tmp_path / "outbox")
    with Session(sqlite_engine) as session, session.begin():
        lifecycle.confirm_breach(session, iid, "grace", "records left the tenant", at=NOW, settings=settings)
    with Session(sqlite_engine) as session:
        listed = notices.list_notices(session, iid)
    assert [n["tenant_id"] for n in listed] == ["t-rhein"]


# --- new evidence on closed incidents -----------------------------------------------------------


class PolicyStore(IncidentStore):
    """The incident store with the closed-incident hook wired in exactly as proposed for
    ``incidents/store.py``: consulted when no open incident matches, told of new incidents."""

    def __init__(self, engine: Engine, policy: ClosedIncidentPolicy) -> None:
        super().__init__(engine, window=timedelta(hours=6))
        self.closed_policy = policy

    def _match(self, session: Session, f: Finding) -> IncidentRow | None:
        found = super()._match(session, f)
        if found is None:
            found = self.closed_policy.match(session, self._candidate_keys(f), f.ts)
        return found

    def _open(self, session: Session, f: Finding) -> IncidentRow:
        incident = super()._open(session, f)
        self.closed_policy.opened(session, incident, self._candidate_keys(f))
        return incident


def _later(ev: SimpleNamespace, n: int, minutes: float) -> Finding:
    return ev.finding([ev.access(n, minutes=minutes)], detector="learned", kind="slow_exfiltration", severity="high")


def test_evidence_soon_after_resolution_reopens_the_incident(engine: Engine, ev: SimpleNamespace) -> None:
    store = PolicyStore(engine, ClosedIncidentPolicy(reopen_within=timedelta(days=7)))
    [iid] = store.record([ev.finding([ev.access(1)])]).opened
    _act(engine, iid, "resolve", "ada", "sessions revoked", datetime.now(UTC) - timedelta(days=2))

    result = store.record([_later(ev, 2, minutes=120)])
    assert result.opened == [] and result.updated == [iid]
    row = _incident(engine, iid)
    assert row.status == "open" and row.evidence_count == 2
    with Session(engine) as session:
        last = lifecycle.history(session, iid)[-1]
        assert (last.action, last.actor, last.from_status, last.to_status) == (
            "reopen",
            "breachwatch",
            "resolved",
            "open",
        )
        assert "within 7 days" in last.reason
        assert [r.action for r in audit.for_subject(session, f"incident:{iid}")][-1] == "incident.reopen"
        assert audit.verify(session).ok


def test_evidence_after_a_false_positive_opens_a_linked_incident(engine: Engine, ev: SimpleNamespace) -> None:
    store = PolicyStore(engine, ClosedIncidentPolicy())
    [first] = store.record([ev.finding([ev.access(1)])]).opened
    _act(engine, first, "false_positive", "ada", "the tenant's own migration", datetime.now(UTC))

    [second] = store.record([_later(ev, 2, minutes=120)]).opened
    assert second != first
    assert _incident(engine, first).status == "false_positive"
    with Session(engine) as session:
        assert [(x.incident_id, x.related_id, x.kind) for x in lifecycle.links(session, second)] == [
            (second, first, "follows")
        ]
        follows = lifecycle.history(session, second)[0]
        assert follows.action == "follows" and "false positive" in follows.reason
        assert lifecycle.history(session, first)[-1].action == "followed_by"


def test_evidence_long_after_resolution_opens_a_linked_incident(sqlite_engine: Engine, ev: SimpleNamespace) -> None:
    store = PolicyStore(sqlite_engine, ClosedIncidentPolicy(reopen_within=timedelta(days=7)))
    [first] = store.record([ev.finding([ev.access(1)])]).opened
    _act(sqlite_engine, first, "resolve", "ada", "done", datetime.now(UTC) - timedelta(days=30))
    [second] = store.record([_later(ev, 2, minutes=180)]).opened
    assert _incident(sqlite_engine, first).status == "resolved"
    with Session(sqlite_engine) as session:
        assert session.get(IncidentLinkRow, (second, first, "follows")) is not None


def test_evidence_added_to_a_closed_incidents_finding(sqlite_engine: Engine, ev: SimpleNamespace, record: Any) -> None:
    policy = ClosedIncidentPolicy(reopen_within=timedelta(days=7))
    [recent, old] = record(
        sqlite_engine, ev.finding([ev.access(1)]), ev.finding([ev.access(1, actor="u-ines")], actor="u-ines")
    )
    now = datetime.now(UTC)
    _act(sqlite_engine, recent, "resolve", "ada", "done", now - timedelta(days=1))
    _act(sqlite_engine, old, "false_positive", "ada", "test user", now - timedelta(days=1))
    with Session(sqlite_engine) as session, session.begin():
        for iid in (recent, old):
            incident = session.get(IncidentRow, iid)
            assert incident is not None
            policy.evidence_added(session, incident, 3, now=now)
    assert _incident(sqlite_engine, recent).status == "open"
    assert _incident(sqlite_engine, old).status == "false_positive"
    with Session(sqlite_engine) as session:
        assert lifecycle.history(session, old)[-1].action == "evidence_after_close"


def test_incidents_sharing_an_attacking_address_are_related(
    sqlite_engine: Engine, ev: SimpleNamespace, record: Any
) -> None:
    ids = record(
        sqlite_engine,
        ev.finding([ev.access(1, ip="203.0.113.66")]),
        ev.finding([ev.access(1, actor="u-ines", ip="203.0.113.66", minutes=30)], actor="u-ines"),
        ev.finding([ev.access(1, actor="u-olga", ip="192.0.2.10", minutes=40)], actor="u-olga"),
    )
    with Session(sqlite_engine) as session:
        incident = session.get(IncidentRow, ids[0])
        assert incident is not None
        assert [r.incident_id for r in lifecycle.related_by_address(session, incident)] == [ids[1]]
