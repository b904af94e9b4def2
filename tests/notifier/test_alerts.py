"""On-call alerts: queued in the incident's transaction, once per incident and address,
delivered as readable emails; and the channel set built from settings."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import functools
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.channels.file import FileChannel
from breachwatch.channels.registry import build_channels
from breachwatch.channels.sendgrid_api import SendGridChannel
from breachwatch.channels.smtp import SmtpChannel
from breachwatch.core.ids import stable_id
from breachwatch.core.settings import ConfigError, Settings
from breachwatch.incidents.store import IncidentStore
from breachwatch.notifier.alerts import enqueue_incident_alert
from breachwatch.notifier.message import EMAIL
from breachwatch.notifier.outbox import Dispatcher, OutboxRow
from breachwatch.runtime.app import directory_hooks, incident_hooks
from tests.fixtures.incident_db import finding, login

ONCALL = ("oncall-security@unisen.example", "secops-lead@unisen.example")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(oncall_emails=ONCALL, mail_channel="file", outbox_dir=tmp_path / "outbox")


def _store_and_alert(engine, settings, incident_factory, tenants, **kw) -> int:
    incident, findings, evidence = incident_factory(**kw)
    with Session(engine) as session, session.begin():
        session.add(incident)
        session.flush()
        session.add_all([*findings, *evidence])
        return enqueue_incident_alert(
            session, incident, findings, evidence, tenants, settings, console_url="https://console.unisen.example"
        )


def test_alert_is_queued_once_per_oncall_address(engine, settings, incident_factory, rhein_tenant) -> None:
    tenants = {"t-rhein": rhein_tenant}
    assert _store_and_alert(engine, settings, incident_factory, tenants) == 2

    with Session(engine) as session:
        rows = session.scalars(select(OutboxRow).order_by(OutboxRow.recipient)).all()
        assert [r.recipient for r in rows] == sorted(ONCALL)
        for r in rows:
            assert r.message_id == stable_id("oncall_alert", "inc-7f3a9c21e4b05d18", r.recipient)
            assert (r.channel, r.message_type, r.incident_id, r.status) == (
                EMAIL,
                "oncall_alert",
                "inc-7f3a9c21e4b05d18",
                "pending",
            )
            assert r.subject.startswith("[BreachWatch] HIGH bulk_export")
            assert "Rhein Logistik GmbH" in r.body_text and r.body_html and "Rhein Logistik GmbH" in r.body_html
            assert r.headers == {"X-BreachWatch-Incident": "inc-7f3a9c21e4b05d18", "X-BreachWatch-Severity": "high"}


def test_reprocessed_batch_queues_nothing_more(engine, settings, incident_factory) -> None:
    incident, findings, evidence = incident_factory()
    hook = functools.partial(enqueue_incident_alert, settings=settings)  # as the incident store calls it
    with Session(engine) as session, session.begin():
        assert hook(session, incident, findings, evidence, {}) == 2
    with Session(engine) as session, session.begin():
        assert hook(session, incident, findings, evidence, {}) == 0
    with Session(engine) as session:
        assert len(session.scalars(select(OutboxRow)).all()) == 2


def test_alerts_arrive_as_readable_emails(engine, settings, incident_factory, rhein_tenant, clock) -> None:
    _store_and_alert(engine, settings, incident_factory, {"t-rhein": rhein_tenant})
    with Session(engine) as session, session.begin():
        for row in session.scalars(select(OutboxRow)):
            row.next_attempt_at = clock()  # queued on the wall clock; dispatch on the test clock
    report = Dispatcher(engine, build_channels(settings), clock=clock).dispatch_due()
    assert report.sent == 2

    files = sorted(settings.outbox_dir.glob("*.eml"))
    assert len(files) == 2
    parsed = [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]
    assert sorted(p["To"] for p in parsed) == sorted(ONCALL)
    msg = parsed[0]
    assert msg["From"] == settings.mail_from
    assert msg["X-BreachWatch-Incident"] == "inc-7f3a9c21e4b05d18"
    text = msg.get_body(("plain",)).get_content()
    assert "185.220.101.5" in text and "u-hans" in text and "48211" in text
    assert "https://console.unisen.example/incidents/inc-7f3a9c21e4b05d18" in text


def test_injection_in_event_fields_stays_inert_end_to_end(engine, settings, incident_factory) -> None:
    title = "Export <script>x</script>\r\nBcc: victim@evil.example {{ 7*7 }}"
    _store_and_alert(engine, settings, incident_factory, {}, title=title)
    with Session(engine) as session:
        row = session.scalars(select(OutboxRow)).first()
        assert row is not None
        assert "\n" not in row.subject and "\r" not in row.subject
        assert "{{ 7*7 }}" in row.subject
        assert row.body_html is not None and "<script>" not in row.body_html


def test_an_alert_still_goes_out_when_the_template_cannot_render(engine, settings, incident_factory) -> None:
    # A score the template cannot format stands for any template failure on odd data.
    incident, findings, evidence = incident_factory(score=None)
    with Session(engine) as session, session.begin():
        assert enqueue_incident_alert(session, incident, findings, evidence, {}, settings) == 2
    with Session(engine) as session:
        rows = session.scalars(select(OutboxRow)).all()
    assert len(rows) == 2
    assert rows[0].subject == "[BreachWatch] HIGH incident inc-7f3a9c21e4b05d18"
    assert "could not be rendered" in rows[0].body_text


def test_an_unusable_oncall_address_does_not_stop_the_others(engine, tmp_path, incident_factory) -> None:
    settings = Settings(oncall_emails=("oncall@unisen.example", "a,b@unisen.example"), outbox_dir=tmp_path)
    assert _store_and_alert(engine, settings, incident_factory, {}) == 1


def test_build_channels_file(settings) -> None:
    channels = build_channels(settings)
    assert list(channels) == [EMAIL]
    assert isinstance(channels[EMAIL], FileChannel)
    assert channels[EMAIL].directory == settings.outbox_dir


def test_build_channels_sendgrid_needs_a_key(sendgrid_key) -> None:
    with pytest.raises(ConfigError, match="BREACHWATCH_SENDGRID_API_KEY"):
        build_channels(Settings(mail_channel="sendgrid"))
    channel = build_channels(
        Settings(mail_channel="sendgrid", sendgrid_api_key=sendgrid_key, sendgrid_host="http://127.0.0.1:9")
    )[EMAIL]
    assert isinstance(channel, SendGridChannel)
    assert channel.host == "http://127.0.0.1:9"
    assert sendgrid_key not in repr(channel)


def test_build_channels_smtp(smtp_credentials) -> None:
    user, password = smtp_credentials
    channel = build_channels(
        Settings(
            mail_channel="smtp",
            smtp_host="127.0.0.1",
            smtp_port=2525,
            smtp_username=user,
            smtp_password=password,
            smtp_starttls=True,
        )
    )[EMAIL]
    assert isinstance(channel, SmtpChannel)
    assert (channel.host, channel.port, channel.username, channel.starttls) == ("127.0.0.1", 2525, user, True)
    assert password not in repr(channel)


def test_a_run_reported_by_several_partitions_is_counted_whole(engine, settings) -> None:
    """Each partition reports its share of an address's run (the accounts it watches) under one
    finding id; the page counts the whole run from the evidence, not the last share's figures."""
    shares = []
    for part in range(3):
        fails = [
            login(i, actor=f"u-share{part}-{i % 4}", ip=f"203.0.113.{9 + i % 2}", minutes=part + i * 0.1)
            for i in range(12)
        ]
        share = finding(fails, detector="rules.credential_stuffing", actor=None, kind="credential_stuffing")
        shares.append(dataclasses.replace(share, dedup_key="203.0.113.9|2026-11-24"))
    shares[2] = dataclasses.replace(
        shares[2],
        events=(*shares[2].events, login(99, actor="u-share2-0", ip="203.0.113.9", minutes=9, outcome="success")),
    )
    store = IncidentStore(engine, on_new_incident=incident_hooks(settings), on_incident_stored=directory_hooks())
    [iid] = store.record(shares).opened
    with Session(engine) as session:
        bodies = session.scalars(select(OutboxRow.body_text).where(OutboxRow.incident_id == iid)).all()
    logins = "Logins: 36 failed, against 12 accounts from 2 addresses; 1 successful."
    assert bodies and all(logins in b and "37 events from" in b for b in bodies)
