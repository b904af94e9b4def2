"""Escalation: the chain from configuration, re-pages of unacknowledged incidents, moves up
the chain, one page per severity rise, silences, reopened incidents, and no duplicates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.core.ids import stable_id
from breachwatch.core.settings import ConfigError, Settings
from breachwatch.incidents import lifecycle
from breachwatch.incidents.store import IncidentStore
from breachwatch.notifier.outbox import OutboxRow
from breachwatch.notifier.paging import escalation, silences
from breachwatch.notifier.paging.escalation import EscalationPolicy, Level
from breachwatch.runtime.app import directory_hooks, incident_hooks
from breachwatch.storage import audit

ONCALL = "oncall-security@unisen.example"
LEAD = "secops-lead@unisen.example"
CHAIN = f"""
repage_after_minutes = 15
repeat_interval_minutes = 60

[[level]]
name = "on-call"
emails = ["{ONCALL}"]

[[level]]
name = "security lead"
after_minutes = 30
emails = ["{LEAD}"]
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(oncall_emails=(ONCALL,), outbox_dir=tmp_path / "outbox")


@pytest.fixture
def policy(tmp_path: Path, settings: Settings) -> EscalationPolicy:
    path = tmp_path / "escalation.toml"
    path.write_text(CHAIN, encoding="utf-8")
    return escalation.load_policy(path, settings)


def _open_paged(engine: Engine, settings: Settings, ev: SimpleNamespace, **kw: object) -> tuple[str, datetime]:
    """An incident opened by the real store with the real paging hook; its id and page time."""
    store = IncidentStore(engine, on_new_incident=incident_hooks(settings), on_incident_stored=directory_hooks())
    [iid] = store.record([ev.finding([ev.access(1)], **kw)]).opened
    with Session(engine) as session:
        queued = session.scalar(select(func.min(OutboxRow.created_at)).where(OutboxRow.incident_id == iid))
    assert queued is not None
    return iid, queued


def _pages(engine: Engine, iid: str) -> list[tuple[str, str]]:
    with Session(engine) as session:
        rows = session.scalars(
            select(OutboxRow).where(OutboxRow.incident_id == iid).order_by(OutboxRow.created_at, OutboxRow.recipient)
        ).all()
        return [(r.message_type, r.recipient) for r in rows]


def test_the_chain_is_read_from_toml_with_a_rotation(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "chain.toml"
    path.write_text(
        CHAIN.replace(
            'emails = ["oncall-security@unisen.example"]',
            'rotation = ["amara.okafor@unisen.example", "jonas.lindqvist@unisen.example"]\n'
            "rotation_start = 2026-11-23T09:00:00Z\nrotation_hours = 168",
        ),
        encoding="utf-8",
    )
    policy = escalation.load_policy(path, settings)
    first = policy.levels[0]
    assert first.recipients(datetime(2026, 11, 25, tzinfo=UTC)) == ("amara.okafor@unisen.example",)
    assert first.recipients(datetime(2026, 12, 1, 10, tzinfo=UTC)) == ("jonas.lindqvist@unisen.example",)
    assert first.recipients(datetime(2026, 12, 8, 10, tzinfo=UTC)) == ("amara.okafor@unisen.example",)
    assert [(s.key, s.offset.total_seconds() / 60, s.reason) for s in policy.steps()] == [
        ("L0", 0, "initial"),
        ("L0r", 15, "repage"),
        ("L1", 30, "escalation"),
        ("L1r", 45, "repage"),
    ]
    assert escalation.load_policy(None, settings).levels == (Level("on-call", emails=(ONCALL,)),)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("pager = 1", "unknown key(s) pager"),
        ('[[level]]\nemails = ["not an address"]', "emails must be a list of plain email addresses"),
        (f'[[level]]\nemails = ["{ONCALL}"]\n[[level]]\nemails = ["{LEAD}"]', "after_minutes must grow"),
        ("repage_after_minutes = 0", "must be more than 0"),
        ("[[level]", "not valid TOML"),
    ],
)
def test_a_wrong_chain_names_the_file_and_the_key(tmp_path: Path, settings: Settings, toml: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError, match="BREACHWATCH_ESCALATION_FILE") as err:
        escalation.load_policy(path, settings)
    assert message in str(err.value)


def test_an_unacknowledged_page_repages_then_escalates_until_acknowledged(
    engine: Engine, settings: Settings, policy: EscalationPolicy, ev: SimpleNamespace
) -> None:
    iid, t0 = _open_paged(engine, settings, ev)
    run = lambda minutes: escalation.run_once(engine, settings, policy, now=t0 + timedelta(minutes=minutes))  # noqa: E731

    assert run(10).pages == 0
    assert run(16).paged == {"repage": 1}
    assert run(17).pages == 0  # the same step is never paged twice
    assert run(31).paged == {"escalation": 1}
    assert _pages(engine, iid) == [("oncall_alert", ONCALL), ("oncall_page", ONCALL), ("oncall_page", LEAD)]
    with Session(engine) as session:
        lead = session.get(OutboxRow, stable_id("oncall_page", iid, "0", "L1", LEAD))
        assert lead is not None and lead.subject.startswith("[Escalated: security lead]")
        assert "nobody acknowledged this incident within 30 minutes" in lead.body_text
        [page] = [e for e in lifecycle.history(session, iid) if e.action == "paged" and e.detail["step"] == "L1"]
        assert page.detail["recipients"] == [LEAD]

    with Session(engine) as session, session.begin():
        lifecycle.transition(session, iid, "acknowledge", "ada", at=t0 + timedelta(minutes=32))
    assert run(50).pages == 0 and run(500).pages == 0
    with Session(engine) as session:
        assert audit.verify(session).ok


def test_after_a_gap_only_the_latest_due_step_is_paged(
    sqlite_engine: Engine, settings: Settings, policy: EscalationPolicy, ev: SimpleNamespace
) -> None:
    iid, t0 = _open_paged(sqlite_engine, settings, ev)
    report = escalation.run_once(sqlite_engine, settings, policy, now=t0 + timedelta(minutes=50))
    assert report.paged == {"repage": 1}
    with Session(sqlite_engine) as session:
        assert [p.step for p in escalation.pages(session, iid)] == ["L0", "L1r"]


def test_a_severity_rise_repages_once_after_the_repeat_interval(
    engine: Engine, settings: Settings, policy: EscalationPolicy, ev: SimpleNamespace
) -> None:
    iid, t0 = _open_paged(engine, settings, ev, severity="medium", score=50)
    with Session(engine) as session, session.begin():
        lifecycle.transition(session, iid, "acknowledge", "ada", at=t0 + timedelta(minutes=2))
    worse = ev.finding([ev.access(2, minutes=20)], detector="learned", severity="critical", score=97)
    IncidentStore(engine, on_new_incident=incident_hooks(settings), on_incident_stored=directory_hooks()).record(
        [worse]
    )

    assert escalation.run_once(engine, settings, policy, now=t0 + timedelta(minutes=30)).pages == 0  # too soon
    report = escalation.run_once(engine, settings, policy, now=t0 + timedelta(minutes=61))
    assert report.paged == {"severity_rise": 1}
    assert escalation.run_once(engine, settings, policy, now=t0 + timedelta(hours=5)).pages == 0
    with Session(engine) as session:
        page = session.get(OutboxRow, stable_id("oncall_page", iid, "0", "sev:critical", ONCALL))
        assert page is not None and page.subject.startswith("[Now CRITICAL]")


def test_silenced_incidents_are_not_paged_and_reopened_ones_are(
    sqlite_engine: Engine, settings: Settings, policy: EscalationPolicy, ev: SimpleNamespace
) -> None:
    iid, t0 = _open_paged(sqlite_engine, settings, ev)
    with Session(sqlite_engine) as session, session.begin():
        silences.add(session, "ada", "pentest", t0 + timedelta(hours=1), actor_id="u-hans", now=t0)
    report = escalation.run_once(sqlite_engine, settings, policy, now=t0 + timedelta(minutes=20))
    assert (report.pages, report.silenced) == (0, 1)

    with Session(sqlite_engine) as session, session.begin():
        lifecycle.transition(session, iid, "resolve", "ada", "pentest finding", at=t0 + timedelta(hours=2))
        lifecycle.transition(session, iid, "reopen", "ada", "not the pentest after all", at=t0 + timedelta(hours=3))
    report = escalation.run_once(sqlite_engine, settings, policy, now=t0 + timedelta(hours=3, minutes=1))
    assert report.paged == {"reopened": 1}
    with Session(sqlite_engine) as session:
        assert session.get(OutboxRow, stable_id("oncall_page", iid, "1", "L0", ONCALL)) is not None
        assert [(p.step, p.reason) for p in escalation.pages(session, iid) if p.cycle == 1] == [("L0", "reopened")]


def test_an_incident_nobody_was_paged_for_is_paged_by_the_pass(
    sqlite_engine: Engine, settings: Settings, policy: EscalationPolicy, ev: SimpleNamespace, record: object
) -> None:
    [iid] = IncidentStore(sqlite_engine).record([ev.finding([ev.access(1)])]).opened  # no paging hook
    now = datetime.now(UTC)
    assert escalation.run_once(sqlite_engine, settings, policy, now=now).paged == {"initial": 1}
    assert escalation.run_once(sqlite_engine, settings, policy, now=now + timedelta(minutes=1)).pages == 0
    assert _pages(sqlite_engine, iid) == [("oncall_page", ONCALL)]


def test_the_new_incident_hook_with_silences_and_the_first_page_recorded(
    sqlite_engine: Engine, settings: Settings, policy: EscalationPolicy, ev: SimpleNamespace
) -> None:
    """The paging hook as proposed for notifier/alerts.py: a silenced incident is stored but not
    paged (and that is audited); a paged one has its first page on record for escalation."""
    from breachwatch.notifier.alerts import enqueue_incident_alert

    def page(session: Session, incident: object, findings: object, evidence: object, tenants: object) -> None:
        if silences.suppress_page(session, incident) is not None:  # type: ignore[arg-type]
            return
        if enqueue_incident_alert(session, incident, findings, evidence, tenants, settings):  # type: ignore[arg-type]
            escalation.first_page_queued(session, incident, list(settings.oncall_emails))  # type: ignore[arg-type]

    with Session(sqlite_engine) as session, session.begin():
        silences.add(session, "ada", "pentest", datetime.now(UTC) + timedelta(hours=1), actor_id="u-quiet")
    store = IncidentStore(sqlite_engine, on_new_incident=[page])
    loud, quiet = ev.finding([ev.access(1)]), ev.finding([ev.access(1, actor="u-quiet")], actor="u-quiet")
    opened = store.record([loud, quiet]).opened
    assert len(opened) == 2
    with Session(sqlite_engine) as session:
        paged = {p.incident_id for p in session.scalars(select(escalation.PageRow))}
        assert len(paged) == 1
        [loud_id] = paged
        [quiet_id] = [i for i in opened if i != loud_id]
        assert _pages(sqlite_engine, quiet_id) == []
        assert [r.action for r in audit.for_subject(session, f"incident:{quiet_id}")] == ["page.suppressed"]
        assert [r.action for r in audit.for_subject(session, f"incident:{loud_id}")] == ["page.queued"]
        assert audit.verify(session).ok
