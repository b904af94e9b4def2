"""Done-when scenario: a replayed account takeover of a German tenant's personal data,
confirmed by a responder, yields a German draft notice to the tenant's contacts with the GDPR
72-hour clock and the vendor's own "without undue delay" duty visible; after approval it
reaches SendGrid (the local server) once."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.channels.registry import build_channels
from breachwatch.core.clock import utcnow
from breachwatch.core.settings import load_settings
from breachwatch.incidents.tables import FindingRow, IncidentRow
from breachwatch.notifier.blast_radius import DumpHistory
from breachwatch.notifier.notices import (
    approve_notice,
    blast_radius,
    list_notices,
    on_breach_confirmed,
    preview_notice,
    remember_incident_tenants,
)
from breachwatch.notifier.outbox import Dispatcher
from breachwatch.runtime.app import build_pipeline
from breachwatch.runtime.replay import replay

pytestmark = pytest.mark.usefixtures("no_notice_files")
T0 = dt.datetime(2026, 11, 24, 2, 0, tzinfo=dt.UTC)
ATTACKER = "203.0.113.66"
VICTIMS = ["u-anna", "u-ben", "u-carla", "u-dirk", "u-emma", "u-felix"]


def _at(seconds: float) -> str:
    return (T0 + dt.timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def _write_dump(folder: Path) -> None:
    """Credential stuffing from one address across a German tenant's accounts, one of which
    gets in and then exports the customer list and reads invoices."""
    folder.mkdir()
    tenant = {
        "tenant_id": "t-rhein",
        "name": "Rhein Logistik GmbH",
        "jurisdiction": "DE",
        "locale": "de",
        "contacts": [
            {"name": "Hans Weber", "email": "hans.weber@rhein-logistik.example", "role": "owner"},
            {"email": "datenschutz@rhein-logistik.example", "role": "dpo"},
        ],
        "data_subjects": 61000,
    }
    auth: list[dict[str, Any]] = []
    n = 0
    for _ in range(2):
        for victim in VICTIMS:
            n += 1
            auth.append(
                {
                    "event_id": f"l-{n:04d}",
                    "ts": _at(20 * n),
                    "actor_id": victim,
                    "actor_type": "customer_user",
                    "actor_tenant": "t-rhein",
                    "action": "login",
                    "outcome": "failure",
                    "ip": ATTACKER,
                    "country": "NL",
                }
            )
    auth.append(
        {
            "event_id": "l-0100",
            "ts": _at(300),
            "actor_id": "u-lena",
            "actor_type": "customer_user",
            "actor_tenant": "t-rhein",
            "action": "login",
            "outcome": "success",
            "ip": ATTACKER,
            "country": "NL",
        }
    )
    base = {
        "actor_id": "u-lena",
        "actor_type": "customer_user",
        "actor_tenant": "t-rhein",
        "tenant_id": "t-rhein",
        "ip": ATTACKER,
        "country": "NL",
    }
    access = [
        {
            **base,
            "event_id": "a-0001",
            "ts": _at(360),
            "action": "read",
            "resource_type": "invoice",
            "sensitivity": "financial",
            "records": 120,
        },
        {
            **base,
            "event_id": "a-0002",
            "ts": _at(420),
            "action": "export",
            "resource_type": "customer",
            "sensitivity": "personal",
            "records": 48211,
            "bytes": 9123344,
        },
    ]
    for topic, rows in (("erp.tenants", [tenant]), ("erp.auth", auth), ("erp.access", access)):
        (folder / f"{topic}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_replayed_takeover_to_a_german_notice_sent_once(tmp_path, engine, sendgrid_server, sendgrid_key) -> None:
    settings = load_settings(
        db_url=f"sqlite:///{tmp_path / 'notifier.db'}",
        mail_channel="sendgrid",
        sendgrid_api_key=sendgrid_key,
        sendgrid_host=sendgrid_server.url,
        oncall_emails="oncall-security@unisen.example",
        partitions=1,
    )
    dump = tmp_path / "dump"
    _write_dump(dump)
    pipeline = build_pipeline(settings, engine)
    pipeline.store.on_new_incident.append(remember_incident_tenants)
    replay(dump, pipeline, partitions=settings.partitions, max_bytes=settings.max_message_bytes)

    with Session(engine) as session:
        # The stuffing run and the takeover it led to are one incident (the attacking address).
        takeover = session.scalars(select(FindingRow).where(FindingRow.kind == "account_takeover")).one()
        assert takeover.actor_id == "u-lena"
        incident_id = takeover.incident_id
        assert "t-rhein" in session.get(IncidentRow, incident_id).tenant_ids

    # A responder confirms the breach (what the console's confirm action calls).
    confirmed_at = utcnow() - dt.timedelta(minutes=30)
    with Session(engine) as session, session.begin():
        [notice_id] = on_breach_confirmed(
            session,
            incident_id,
            confirmed_by="responder-ada",
            confirmed_at=confirmed_at,
            settings=settings,
            history=DumpHistory(dump),
        )
    with Session(engine) as session:
        [notice] = list_notices(session, incident_id)
        radius = blast_radius(session, incident_id)
        preview = preview_notice(session, notice_id)

    assert (notice["tenant_id"], notice["locale"], notice["status"]) == ("t-rhein", "de", "draft")
    assert notice["recipients"] == ["datenschutz@rhein-logistik.example", "hans.weber@rhein-logistik.example"]
    duties = {d["rule_id"]: d for d in notice["duties"]}
    gdpr = duties["eu.art33-1.authority"]
    assert (gdpr["unit"], gdpr["amount"]) == ("hours", 72)
    assert gdpr["due_at"] == (confirmed_at + dt.timedelta(hours=72)).isoformat()
    own = duties["eu.art33-2.controller"]
    assert (own["owner"], own["unit"], own["status"]) == ("vendor", "without_undue_delay", "ok")
    [impact] = radius["tenants"]
    assert (impact["records"], impact["data_categories"]) == (48331, ["financial", "personal"])
    assert preview["subject"].startswith("Meldung einer Verletzung des Schutzes personenbezogener Daten")
    assert "48.331" in preview["text"] and "unverzüglich" in preview["text"] and "72 Stunden" in preview["text"]
    # The kind ends in a relative clause, so the verb comes before it, not after it without a comma.
    confirmed = "bestätigten wir einen Angriff, der mit geleakten Passwörtern Anmeldungen an Benutzerkonten"
    assert confirmed + " erreicht hat (unser Zeichen" in preview["text"]
    assert sendgrid_server.messages == []  # a draft goes nowhere

    with Session(engine) as session, session.begin():
        approve_notice(session, notice_id, "approver-bo")
    dispatcher = Dispatcher(engine, build_channels(settings))
    dispatcher.dispatch_due()
    assert dispatcher.dispatch_due().attempted == 0

    to_customer = [m for m in sendgrid_server.messages if m.to[0].endswith("@rhein-logistik.example")]
    assert Counter(m.custom_args["message_id"] for m in to_customer) == Counter(
        dict.fromkeys({m.custom_args["message_id"] for m in to_customer}, 1)
    )
    assert sorted((m.to[0], m.subject.split(":")[0]) for m in to_customer) == [
        ("datenschutz@rhein-logistik.example", "Entwurf für Ihre Meldung an die Aufsichtsbehörde"),
        (
            "datenschutz@rhein-logistik.example",
            "Meldung einer Verletzung des Schutzes personenbezogener Daten von unisen.example",
        ),
        ("hans.weber@rhein-logistik.example", "Entwurf für Ihre Meldung an die Aufsichtsbehörde"),
        (
            "hans.weber@rhein-logistik.example",
            "Meldung einer Verletzung des Schutzes personenbezogener Daten von unisen.example",
        ),
    ]
    notice_mail = next(m for m in to_customer if m.subject.startswith("Meldung"))
    assert notice_mail.html is not None and '<html lang="de" dir="ltr">' in notice_mail.html
    assert notice_mail.headers["X-BreachWatch-Notice"] == f"{notice_id}-v1"
    with Session(engine) as session:
        [sent] = list_notices(session, incident_id)
    assert sent["status"] == "sent"
    assert {d["rule_id"]: d["status"] for d in sent["duties"]}["eu.art33-2.controller"] == "met"
