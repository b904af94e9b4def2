"""Injection-proof: HTML, template syntax, CR/LF header injection and very long strings in
event fields, the tenant's name and a responder's text reach the customer as inert text, in
every rendered message (notice, regulator draft, follow-up, deadline page) and every header."""

from __future__ import annotations

import datetime as dt
import email
import email.policy

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.channels.mime import build_email
from breachwatch.channels.registry import build_channels
from breachwatch.core.clock import utcnow
from breachwatch.core.settings import load_settings
from breachwatch.notifier.notices import (
    approve_notice,
    check_deadlines,
    on_breach_confirmed,
    remember_tenants,
    revise_notice,
)
from breachwatch.notifier.outbox import Dispatcher, OutboxRow
from breachwatch.notifier.render import VALUE_MAX

pytestmark = pytest.mark.usefixtures("no_notice_files")
HTML = '<script>alert("x")</script><img src=x onerror=alert(1)>'
JINJA = "{{ 7*'7' }}{% for x in range(3) %}LOOP{% endfor %}{{ self.__init__.__globals__ }}"
CRLF = "Rhein\r\nBcc: victim@evil.example\r\nX-Injected: yes"
LONG = "A" * 100_000
ALLOWED_HEADERS = {
    "X-BreachWatch-Incident",
    "X-BreachWatch-Notice",
    "X-BreachWatch-Severity",
    "X-BreachWatch-Message-Id",
}


def _inert(text: str, *, html: bool) -> None:
    assert (
        "7777777" not in text
        and "LOOPLOOP" not in text
        and "__globals__" not in text.replace("self.__init__.__globals__", "")
    )
    assert "victim@evil.example\r" not in text and "\nBcc:" not in text
    if html:
        assert "<script" not in text and "<img" not in text and "onerror=alert(1)>" not in text
        assert "&lt;script&gt;" in text or "&lt;img" in text or HTML not in text


def test_hostile_fields_stay_inert_in_every_message_and_header(
    tmp_path, engine, store_incident, directory_entry, sendgrid_server, sendgrid_key
) -> None:
    settings = load_settings(
        db_url=f"sqlite:///{tmp_path / 'notifier.db'}",
        mail_channel="sendgrid",
        sendgrid_api_key=sendgrid_key,
        sendgrid_host=sendgrid_server.url,
        oncall_emails="oncall-security@unisen.example",
    )
    incident_id = store_incident(resource_type="<b>cust</b>{{ 7*'7' }}\r\nBcc: x@evil.example"[:64], actor=JINJA[:128])
    hostile = directory_entry(
        "t-rhein",
        name=(CRLF + HTML)[:256],
        contacts=[
            {"email": "evil<script>@rhein-logistik.example", "role": "dpo"},
            {"email": "hans.weber@rhein-logistik.example", "role": "owner", "name": HTML},
        ],
    )
    confirmed_at = utcnow() - dt.timedelta(hours=30)
    with Session(engine) as session, session.begin():
        remember_tenants(session, [hostile])
        [notice_id] = on_breach_confirmed(
            session, incident_id, confirmed_by="responder-ada", confirmed_at=confirmed_at, settings=settings
        )
        revise_notice(
            session,
            notice_id,
            editor="responder-ada",
            reason=CRLF,
            settings=settings,
            changes={
                "summary": LONG + HTML,
                "cause": JINJA,
                "consequences_note": HTML,
                "measures": [{"key": "x", "text": CRLF + JINJA, "done": True}],
            },
        )
        approve_notice(session, notice_id, "approver-bo")
        check_deadlines(session, settings, utcnow())  # the vendor's 24 h target has passed: a page
    Dispatcher(engine, build_channels(settings)).dispatch_due()

    with Session(engine) as session:
        rows = list(session.scalars(select(OutboxRow)))
        session.expunge_all()
    types = {r.message_type for r in rows}
    assert types >= {"customer_notice", "regulator_draft", "oncall_deadline"}
    # The contact whose address could smuggle markup or a second recipient is never written to.
    assert {r.recipient for r in rows} == {"hans.weber@rhein-logistik.example", "oncall-security@unisen.example"}
    mails = sendgrid_server.messages
    assert len(mails) == len(rows) and {r.status for r in rows} == {"sent"}
    for mail in mails:
        assert "\r" not in mail.subject and "\n" not in mail.subject and len(mail.subject) <= 200
        assert set(mail.headers) <= ALLOWED_HEADERS
        assert all("\r" not in v and "\n" not in v for v in mail.headers.values())
        assert mail.to in (["hans.weber@rhein-logistik.example"], ["oncall-security@unisen.example"])
        _inert(mail.text or "", html=False)
        if mail.html is not None:
            _inert(mail.html, html=True)
        assert len(mail.text or "") < 20 * VALUE_MAX  # a 100k field does not bloat a message
    notice_mail = next(
        m
        for m in mails
        if m.custom_args["message_id"].startswith(notice_id) and ".r." not in m.custom_args["message_id"]
    )
    assert "{{ 7*'7' }}" in notice_mail.text  # shown as the text it is
    assert "&lt;script&gt;" in notice_mail.html
    assert "A" * (VALUE_MAX - 1) + "…" in notice_mail.text and "A" * VALUE_MAX + "A" not in notice_mail.text
    assert "Rhein Bcc: victim@evil.example X-Injected: yes" in notice_mail.subject
    for row in rows:
        parsed = email.message_from_bytes(
            build_email(row.to_message(), "breachwatch@unisen.example", utcnow()).as_bytes(),
            policy=email.policy.default,
        )
        assert parsed["Bcc"] is None and parsed["X-Injected"] is None
        assert parsed["To"] == row.recipient
