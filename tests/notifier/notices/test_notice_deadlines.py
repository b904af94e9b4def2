"""Deadline escalation: a page per threshold crossed, on every on-call channel, never twice;
overdue pages repeat and show on the banner; a sent notice stops the clock."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.channels.file import FileChannel
from breachwatch.core.settings import load_settings
from breachwatch.notifier.notices import approve_notice, check_deadlines, on_breach_confirmed, overdue_duties
from breachwatch.notifier.outbox import Dispatcher, OutboxRow

pytestmark = pytest.mark.usefixtures("no_notice_files")
CONFIRMED_AT = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
RULE = "eu.art33-2.controller"  # without undue delay; internal target 24 h


@pytest.fixture
def confirmed(engine, settings, store_incident) -> str:
    incident_id = store_incident()
    with Session(engine) as session, session.begin():
        [notice_id] = on_breach_confirmed(
            session, incident_id, confirmed_by="responder-ada", confirmed_at=CONFIRMED_AT, settings=settings
        )
    return notice_id


def _check(engine, settings, at: dt.datetime):
    with Session(engine) as session, session.begin():
        return check_deadlines(session, settings, at)


def _pages(engine) -> list[OutboxRow]:
    with Session(engine) as session:
        rows = list(
            session.scalars(
                select(OutboxRow).where(OutboxRow.message_type == "oncall_deadline").order_by(OutboxRow.created_at)
            )
        )
        session.expunge_all()
        return rows


def test_each_threshold_pages_once(engine, settings, confirmed) -> None:
    assert _check(engine, settings, CONFIRMED_AT + 11 * HOUR) == []  # under half the window

    [page] = _check(engine, settings, CONFIRMED_AT + 12 * HOUR)
    assert (page.notice_id, page.rule_id, page.threshold, page.level) == (confirmed, RULE, "50%", "warning")
    assert len(page.message_ids) == 1
    assert _check(engine, settings, CONFIRMED_AT + 13 * HOUR) == []  # nothing new crossed
    [urgent] = _check(engine, settings, CONFIRMED_AT + 20 * HOUR)
    assert urgent.threshold == "80%"
    [overdue] = _check(engine, settings, CONFIRMED_AT + 25 * HOUR)
    assert (overdue.threshold, overdue.level) == ("overdue", "overdue")

    pages = _pages(engine)
    assert [p.recipient for p in pages] == ["oncall-security@unisen.example"] * 3
    assert pages[-1].subject.startswith("[BreachWatch] OVERDUE: notice to Rhein Logistik GmbH (GDPR Art 33(2))")
    assert pages[-1].headers["X-BreachWatch-Severity"] == "critical"
    assert "A BREACH-NOTIFICATION DEADLINE HAS PASSED (overdue by 1 h 00 min)" in pages[-1].body_text
    assert f"breachwatch notices approve {confirmed}" in pages[-1].body_text


def test_a_late_check_pages_only_the_latest_threshold(engine, settings, confirmed) -> None:
    [page] = _check(engine, settings, CONFIRMED_AT + 30 * HOUR)
    assert (page.threshold, page.skipped) == ("overdue", ["50%", "80%"])
    assert len(_pages(engine)) == 1
    assert _check(engine, settings, CONFIRMED_AT + 31 * HOUR) == []  # the skipped ones never page later


def test_overdue_pages_repeat_and_show_on_the_banner(engine, settings, confirmed) -> None:
    _check(engine, settings, CONFIRMED_AT + 25 * HOUR)
    [again] = _check(engine, settings, CONFIRMED_AT + 37 * HOUR)
    assert again.threshold == "overdue+12h"
    with Session(engine) as session:
        [banner] = overdue_duties(session, CONFIRMED_AT + 37 * HOUR)
    assert (banner["notice_id"], banner["rule_id"], banner["overdue_by_s"]) == (confirmed, RULE, 13 * 3600)


def test_pages_go_to_every_configured_oncall_channel(engine, confirmed, tmp_path: Path) -> None:
    paging = load_settings(
        db_url=f"sqlite:///{tmp_path / 'x.db'}",
        oncall_emails="oncall-security@unisen.example, duty-manager@unisen.example",
        pagerduty_routing_key="R0UT1NGKEY0FICTIONAL00000000000",
        slack_webhook_url="https://hooks.slack.example/services/T000/B000/fictional",
        webhook_url="https://hooks.unisen.example/breachwatch",
        webhook_secret="whsec_ZmljdGlvbmFsLXdlYmhvb2stc2VjcmV0LWtleS0wMDA=",
    )
    [page] = _check(engine, paging, CONFIRMED_AT + 12 * HOUR)
    assert len(page.message_ids) == 5
    channels = sorted((p.channel, p.recipient) for p in _pages(engine))
    assert channels == [
        ("email", "duty-manager@unisen.example"),
        ("email", "oncall-security@unisen.example"),
        ("pagerduty", "oncall-security@unisen.example"),
        ("slack", "oncall-security@unisen.example"),
        ("webhook", "oncall-security@unisen.example"),
    ]
    assert _check(engine, paging, CONFIRMED_AT + 12 * HOUR) == []


def test_a_sent_notice_stops_the_clock(engine, settings, confirmed, tmp_path: Path) -> None:
    with Session(engine) as session, session.begin():
        approve_notice(session, confirmed, "approver-bo", now=CONFIRMED_AT + 2 * HOUR)
    sent_at = CONFIRMED_AT + 3 * HOUR
    Dispatcher(
        engine, {"email": FileChannel(tmp_path / "sent", "breachwatch@unisen.example")}, clock=lambda: sent_at
    ).dispatch_due()

    assert _check(engine, settings, CONFIRMED_AT + 30 * HOUR) == []
    assert _pages(engine) == []
    with Session(engine) as session:
        assert overdue_duties(session, CONFIRMED_AT + 30 * HOUR) == []


def test_check_deadlines_needs_an_aware_time(engine, settings) -> None:
    with Session(engine) as session, pytest.raises(ValueError, match="aware"):
        check_deadlines(session, settings, dt.datetime(2026, 11, 24, 9, 0))
