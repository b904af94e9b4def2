"""Delivery receipts on the notice: SendGrid's delivered and bounce events show on the timeline
and in the notice's status, so a bounced notice is visible on the incident."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.channels.file import FileChannel
from breachwatch.channels.sendgrid_events import record_sendgrid_events
from breachwatch.notifier.notices import approve_notice, list_notices, notice_timeline, on_breach_confirmed
from breachwatch.notifier.notices.models import NoticeDeliveryRow
from breachwatch.notifier.outbox import Dispatcher

pytestmark = pytest.mark.usefixtures("no_notice_files")
CONFIRMED_AT = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)


def test_delivered_and_bounced_notices_show_on_the_incident(engine, settings, store_incident, tmp_path) -> None:
    incident_id = store_incident()
    with Session(engine) as session, session.begin():
        [notice_id] = on_breach_confirmed(
            session, incident_id, confirmed_by="responder-ada", confirmed_at=CONFIRMED_AT, settings=settings
        )
        approve_notice(session, notice_id, "approver-bo", now=CONFIRMED_AT)
    Dispatcher(
        engine,
        {"email": FileChannel(tmp_path / "out", "breachwatch@unisen.example")},
        clock=lambda: CONFIRMED_AT + dt.timedelta(minutes=1),
    ).dispatch_due()
    with Session(engine) as session:
        deliveries = {(d.recipient, d.message_type): d.message_id for d in session.scalars(select(NoticeDeliveryRow))}
    events = [
        {"event": "delivered", "sg_event_id": f"ev-{i}", "timestamp": 1795000000 + i, "email": r, "message_id": m}
        for i, ((r, _), m) in enumerate(sorted(deliveries.items()))
    ]
    with Session(engine) as session, session.begin():
        record_sendgrid_events(session, events)
        [notice] = list_notices(session, incident_id)
    assert notice["status"] == "delivered"

    bounced = deliveries[("hans.weber@rhein-logistik.example", "customer_notice")]
    with Session(engine) as session, session.begin():
        record_sendgrid_events(
            session,
            [
                {
                    "event": "bounce",
                    "sg_event_id": "ev-b",
                    "timestamp": 1795000100,
                    "email": "hans.weber@rhein-logistik.example",
                    "message_id": bounced,
                    "reason": "550 5.1.1 mailbox unknown",
                }
            ],
        )
    with Session(engine) as session:
        [notice] = list_notices(session, incident_id)
        timeline = notice_timeline(session, incident_id)
    assert notice["status"] == "bounced"
    [row] = [d for d in notice["deliveries"] if d["message_id"] == bounced]
    assert row["receipts"] == ["delivered", "bounce"]
    receipts = [e for e in timeline if e["action"].startswith("delivery_")]
    assert [e["action"] for e in receipts].count("delivery_delivered") == 4
    assert receipts[-1]["action"] == "delivery_bounce" and "mailbox unknown" in receipts[-1]["detail"]["detail"]
