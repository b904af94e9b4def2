"""The incident lifecycle: who, when and why for every change; refused changes; merge and
split; breach confirmation; what new evidence does to a closed incident."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.core.findings import Finding
from breachwatch.core.settings import ConfigError, Settings, load_settings
from breachwatch.incidents import lifecycle
from breachwatch.incidents.lifecycle import ClosedIncidentPolicy, IncidentLinkRow, IncidentNotFound, LifecycleError
from breachwatch.incidents.store import IncidentStore
from breachwatch.incidents.tables import EvidenceRow, FindingRow, IncidentRow
from breachwatch.notifier.outbox import OutboxRow
from breachwatch.runtime.app import closed_incident_policy, incident_store
from breachwatch.runtime.schema import init_db
from breachwatch.storage import audit
from breachwatch.storage.db import make_engine

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
    # Without a notice hook the confirmation still stands on its own.
    with (
        caplog.at_level(logging.INFO, logger="breachwatch.incidents.lifecycle"),
        Session(sqlite_engine) as session,
        session.begin(),
    ):
        lifecycle.confirm_breach(session, iid, "grace", "records left the tenant", at=NOW)
    assert "no notice hook is wired" in caplog.text
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


def test_confirm_breach_runs_its_hooks_in_the_same_transaction(
    sqlite_engine: Engine, ev: SimpleNamespace, record: Any
) -> None:
    [iid] = record(sqlite_engine, ev.finding([ev.access(1)]))
    seen: list[tuple[str, str, datetime, bool]] = []

    def hook(session: Session, incident_id: str, by: str, at: datetime) -> None:
        seen.append((incident_id, by, at, lifecycle.breach(session, incident_id) is not None))

    with Session(sqlite_engine) as session, session.begin():
        lifecycle.confirm_breach(session, iid, "grace", "records left the tenant", at=NOW, on_confirmed=[hook])
    assert seen == [(iid, "grace", NOW, True)]  # the hook sees the confirmation it belongs to

    def failing(session: Session, incident_id: str, by: str, at: datetime) -> None:
        raise RuntimeError("notice drafting failed")

    [other] = record(sqlite_engine, ev.finding([ev.access(9, actor="u-ines")], actor="u-ines"))
    with pytest.raises(RuntimeError), Session(sqlite_engine) as session, session.begin():
        lifecycle.confirm_breach(session, other, "grace", "records left", at=NOW, on_confirmed=[failing])
    with Session(sqlite_engine) as session:
        assert lifecycle.breach(session, other) is None  # rolled back with the failed hook


# --- new evidence on closed incidents -----------------------------------------------------------


def _policy_store(engine: Engine, policy: ClosedIncidentPolicy) -> IncidentStore:
    """The incident store with a closed-incident policy and no paging hook."""
    return IncidentStore(engine, window=timedelta(hours=6), closed_policy=policy)


def _later(ev: SimpleNamespace, n: int, minutes: float) -> Finding:
    return ev.finding([ev.access(n, minutes=minutes)], detector="learned", kind="slow_exfiltration", severity="high")


def test_evidence_soon_after_resolution_reopens_the_incident(engine: Engine, ev: SimpleNamespace) -> None:
    store = _policy_store(engine, ClosedIncidentPolicy(reopen_within=timedelta(days=7)))
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
    store = _policy_store(engine, ClosedIncidentPolicy())
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
    store = _policy_store(sqlite_engine, ClosedIncidentPolicy(reopen_within=timedelta(days=7)))
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


# --- a false positive suppresses the same pattern -------------------------------------------------

DAY = 24 * 60  # minutes
MARKED_MIN = int((NOW - datetime(2026, 11, 24, 2, 0, tzinfo=UTC)).total_seconds() // 60)  # NOW, as ev minutes


def _pages(engine: Engine) -> int:
    """Pages queued (the outbox also holds each incident change for the OCSF topic)."""
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(OutboxRow).where(OutboxRow.channel == "email")) or 0


def _incident_ids(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return sorted(session.scalars(select(IncidentRow.incident_id)))


def _paged_store(engine: Engine, tmp_path: Path, days: int = 14) -> IncidentStore:
    """The store exactly as ``run`` and ``replay`` build it: real paging hook, real policy."""
    return incident_store(Settings(outbox_dir=tmp_path / "outbox", false_positive_suppress_days=days), engine)


def _judged(engine: Engine, store: IncidentStore, ev: SimpleNamespace) -> str:
    """An incident opened (and paged) for u-hans's bulk export, then marked a false positive at NOW."""
    [first] = store.record([ev.finding([ev.access(1)])]).opened
    assert _pages(engine) == 1
    _act(engine, first, "false_positive", "ada", "the tenant's nightly export to its own warehouse", NOW)
    return first


def _export(ev: SimpleNamespace, n: int, minutes: float, **kw: Any) -> Finding:
    """A later bulk export by u-hans (a new finding id), from another detector than the first."""
    return ev.finding([ev.access(n, minutes=minutes), ev.access(n + 1, minutes=minutes + 2)], detector="learned", **kw)


def test_a_false_positive_takes_in_the_same_actor_and_kind_and_nobody_is_paged(
    engine: Engine, ev: SimpleNamespace, tmp_path: Path
) -> None:
    store = _paged_store(engine, tmp_path)
    first = _judged(engine, store, ev)
    later = _export(ev, 2, MARKED_MIN + 3 * DAY, score=91)

    result = store.record([later])
    assert result.opened == [] and result.updated == [] and result.suppressed == [later.finding_id]
    assert _incident_ids(engine) == [first] and _pages(engine) == 1
    row = _incident(engine, first)
    assert row.status == "false_positive" and row.evidence_count == 3 and row.score == 91
    with Session(engine) as session:
        kept = session.get(FindingRow, later.finding_id)
        assert kept is not None and kept.incident_id == first and kept.suppressed
        state = lifecycle.suppression_state(session, row, timedelta(days=14))
        assert (state.suppressed_findings, state.marked_at, state.until) == (1, NOW, NOW + timedelta(days=14))
        last = lifecycle.history(session, first)[-1]
        assert (last.action, last.actor, last.from_status, last.to_status) == (
            "suppressed_findings",
            "breachwatch",
            None,
            None,
        )
        assert "nobody was paged" in last.reason and "2026-12-09 08:30" in last.reason
        assert last.detail["findings"] == [later.finding_id] and last.detail["kinds"] == ["bulk_export"]
        trail = [r.action for r in audit.for_subject(session, f"incident:{first}")]
        assert trail[-2:] == ["incident.false_positive", "incident.suppressed_findings"]
        assert audit.verify(session).ok
        notes = len(lifecycle.history(session, first))

    # The same batch delivered again counts nothing twice.
    again = store.record([later])
    assert again.suppressed == [] and again.duplicate_findings == 1 and _pages(engine) == 1
    with Session(engine) as session:
        assert lifecycle.suppression_state(session, row, timedelta(days=14)).suppressed_findings == 1
        assert len(lifecycle.history(session, first)) == notes


@pytest.mark.parametrize(("days", "new_pages"), [(14, 0), (0, 1)])
def test_suppression_is_what_removes_the_page(
    sqlite_engine: Engine, ev: SimpleNamespace, tmp_path: Path, days: int, new_pages: int
) -> None:
    store = _paged_store(sqlite_engine, tmp_path, days=days)
    _judged(sqlite_engine, store, ev)
    store.record([_export(ev, 2, MARKED_MIN + DAY)])
    assert _pages(sqlite_engine) == 1 + new_pages
    assert len(_incident_ids(sqlite_engine)) == 1 + new_pages


def test_another_kind_for_the_same_actor_opens_a_linked_incident_and_pages(
    engine: Engine, ev: SimpleNamespace, tmp_path: Path
) -> None:
    store = _paged_store(engine, tmp_path)
    first = _judged(engine, store, ev)
    takeover = ev.finding(
        [ev.login(1, actor="u-hans", ip="203.0.113.50", outcome="success", minutes=MARKED_MIN + DAY)],
        detector="rules.login_anomaly",
        kind="account_takeover",
    )
    result = store.record([takeover])
    assert result.suppressed == [] and len(result.opened) == 1
    assert _pages(engine) == 2
    with Session(engine) as session:
        assert session.get(IncidentLinkRow, (result.opened[0], first, "follows")) is not None


def test_once_the_suppression_expires_a_new_incident_follows_the_false_positive(
    engine: Engine, ev: SimpleNamespace, tmp_path: Path
) -> None:
    store = _paged_store(engine, tmp_path)
    first = _judged(engine, store, ev)
    end = MARKED_MIN + 14 * DAY  # event time at which the judgement stops suppressing
    assert store.record([_export(ev, 2, end - 3)]).suppressed != []
    result = store.record([_export(ev, 4, end)])
    assert result.suppressed == [] and len(result.opened) == 1 and _pages(engine) == 2
    with Session(engine) as session:
        assert [(x.incident_id, x.related_id, x.kind) for x in lifecycle.links(session, result.opened[0])] == [
            (result.opened[0], first, "follows")
        ]
    assert _incident(engine, first).status == "false_positive"


def test_reopening_ends_the_suppression_and_marking_again_restarts_it(
    engine: Engine, ev: SimpleNamespace, tmp_path: Path
) -> None:
    store = _paged_store(engine, tmp_path)
    first = _judged(engine, store, ev)
    assert store.record([_export(ev, 2, MARKED_MIN + 60)]).suppressed != []
    _act(engine, first, "reopen", "grace", "the warehouse export never runs at 2am", NOW + timedelta(hours=2))

    result = store.record([_export(ev, 4, MARKED_MIN + 2 * DAY)])
    assert result.suppressed == [] and len(result.opened) == 1 and _pages(engine) == 2
    with Session(engine) as session:
        state = lifecycle.suppression_state(session, _incident(engine, first), timedelta(days=14))
        assert (state.until, state.suppressed_findings) == (None, 1)  # what it took in stays on record

    # Judged a false positive again: the 14 days count from the new judgement.
    _act(engine, first, "false_positive", "grace", "it was the warehouse after all", NOW + timedelta(days=10))
    assert store.record([_export(ev, 6, MARKED_MIN + 20 * DAY)]).suppressed != []
    assert _pages(engine) == 2


def test_an_attacking_address_judged_harmless_is_suppressed_by_address(
    engine: Engine, ev: SimpleNamespace, tmp_path: Path
) -> None:
    judged, other = "203.0.113.9", "192.0.2.44"

    def stuffing(ip: str, minutes: float, first_n: int) -> Finding:
        fails = [ev.login(first_n + i, actor=f"u-{first_n + i}", ip=ip, minutes=minutes + i / 10) for i in range(12)]
        return ev.finding(fails, detector="rules.credential_stuffing", actor=None, kind="credential_stuffing")

    store = _paged_store(engine, tmp_path)
    [first] = store.record([stuffing(judged, 0, 0)]).opened
    _act(engine, first, "false_positive", "ada", "the tenant's own load test from its office", NOW)

    again = stuffing(judged, MARKED_MIN + DAY, 100)
    elsewhere = stuffing(other, MARKED_MIN + DAY, 200)
    result = store.record([again, elsewhere])
    assert result.suppressed == [again.finding_id] and len(result.opened) == 1
    assert _pages(engine) == 2
    assert _incident(engine, first).evidence_count == 24


def test_a_campaign_that_joined_a_takeover_incident_is_still_judged_by_its_network(
    engine: Engine, ev: SimpleNamespace, tmp_path: Path
) -> None:
    """The takeover's finding reached the store first, so the campaign joined its incident
    (keyed on the account). Judged a false positive, it still holds back the network's next
    campaign; and once resolved, the next one links back to it."""
    ip = "203.0.113.9"

    def stuffing(minutes: float, first_n: int, address: str = ip) -> Finding:
        fails = [
            ev.login(first_n + i, actor=f"u-{first_n + i}", ip=address, minutes=minutes + i / 10) for i in range(12)
        ]
        return ev.finding(fails, detector="rules.credential_stuffing", actor=None, kind="credential_stuffing")

    takeover = ev.finding(
        [ev.access(1, actor="u-3", ip="203.0.113.77", minutes=3)], actor="u-3", detector="learned", kind="ato"
    )
    store = _paged_store(engine, tmp_path)
    [first] = store.record([takeover]).opened
    assert store.record([stuffing(0, 0)]).updated == [first]
    _act(engine, first, "false_positive", "ada", "the tenant's own load test from its office", NOW)

    again = stuffing(MARKED_MIN + DAY, 100, "203.0.113.10")  # another address in the network
    assert store.record([again]).suppressed == [again.finding_id]

    _act(engine, first, "reopen", "ada", "it was not a test after all", NOW)
    _act(engine, first, "resolve", "ada", "accounts reset", NOW - timedelta(days=30))
    [later] = store.record([stuffing(MARKED_MIN + 2 * DAY, 200)]).opened
    with Session(engine) as session:
        assert [(x.related_id, x.kind) for x in lifecycle.links(session, later)] == [(first, "follows")]


def test_batching_and_arrival_order_do_not_change_what_is_suppressed(ev: SimpleNamespace, tmp_path: Path) -> None:
    """``replay`` stores a day in a few large batches, ``run`` in many small ones: same outcome."""
    later = [
        _export(ev, 2, MARKED_MIN + DAY),
        ev.finding(
            [ev.login(1, actor="u-hans", ip="203.0.113.50", outcome="success", minutes=MARKED_MIN + DAY + 30)],
            detector="rules.login_anomaly",
            kind="account_takeover",
        ),
        _export(ev, 4, MARKED_MIN + 3 * DAY),
        _export(ev, 6, MARKED_MIN + 15 * DAY),
    ]
    outcomes = []
    for name, batches in (("one", [later]), ("each", [[f] for f in reversed(later)])):
        (tmp_path / name).mkdir()
        engine = make_engine(f"sqlite:///{tmp_path / name / 'bw.db'}")
        init_db(engine)
        store = _paged_store(engine, tmp_path / name)
        _judged(engine, store, ev)
        for batch in batches:
            store.record(batch)
        with Session(engine) as session:
            outcomes.append(
                (
                    sorted(
                        session.execute(select(FindingRow.finding_id, FindingRow.incident_id, FindingRow.suppressed))
                    ),
                    sorted(session.execute(select(IncidentRow.incident_id, IncidentRow.status))),
                    sorted(
                        session.execute(
                            select(IncidentLinkRow.incident_id, IncidentLinkRow.related_id, IncidentLinkRow.kind)
                        )
                    ),
                    _pages(engine),
                )
            )
        engine.dispose()
    assert outcomes[0] == outcomes[1]
    findings, incidents, _, pages = outcomes[0]
    assert sum(1 for *_, suppressed in findings if suppressed) == 2
    assert len(incidents) == 3 and pages == 3


def test_the_suppression_span_is_a_validated_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert closed_incident_policy(Settings(false_positive_suppress_days=3)).suppress_false_positives == timedelta(
        days=3
    )
    assert load_settings().false_positive_suppress_days == 14
    monkeypatch.setenv("BREACHWATCH_FALSE_POSITIVE_SUPPRESS_DAYS", "-1")
    with pytest.raises(ConfigError, match="BREACHWATCH_FALSE_POSITIVE_SUPPRESS_DAYS"):
        load_settings()
    monkeypatch.setenv("BREACHWATCH_FALSE_POSITIVE_SUPPRESS_DAYS", "two weeks")
    with pytest.raises(ConfigError, match="BREACHWATCH_FALSE_POSITIVE_SUPPRESS_DAYS"):
        load_settings()
