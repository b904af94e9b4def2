"""The notice workflow: drafts on confirmation, per tenant and language, with the duties'
clocks; approval as the only way out; versions for every correction; the audit trail."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from breachwatch.channels.file import FileChannel
from breachwatch.notifier.notices import (
    ApprovalRefused,
    NoticeError,
    approve_notice,
    blast_radius,
    correct_blast_radius,
    delivery_message_id,
    list_notices,
    notice_timeline,
    on_breach_confirmed,
    preview_notice,
    revise_notice,
)
from breachwatch.notifier.notices.models import (
    BlastRadiusRow,
    ImmutableVersionError,
    NoticeRenditionRow,
    NoticeRow,
    NoticeVersionRow,
)
from breachwatch.notifier.outbox import Dispatcher, OutboxRow

pytestmark = pytest.mark.usefixtures("no_notice_files")
CONFIRMED_AT = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
SENDER = "breachwatch@unisen.example"


def _confirm(engine, settings, incident_id: str, **kw) -> list[str]:
    with Session(engine) as session, session.begin():
        return on_breach_confirmed(
            session,
            incident_id,
            confirmed_by="responder-ada",
            confirmed_at=CONFIRMED_AT,
            settings=settings,
            now=CONFIRMED_AT,
            **kw,
        )


def _notices(engine, incident_id: str, now: dt.datetime = CONFIRMED_AT) -> list[dict]:
    with Session(engine) as session:
        return list_notices(session, incident_id, now=now)


def _approve(engine, notice_id: str, approver: str = "approver-bo", at: dt.datetime = CONFIRMED_AT + HOUR) -> dict:
    with Session(engine) as session, session.begin():
        return approve_notice(session, notice_id, approver, now=at)


def _outbox(engine) -> list[OutboxRow]:
    with Session(engine) as session:
        rows = list(session.scalars(select(OutboxRow).order_by(OutboxRow.message_id)))
        session.expunge_all()
        return rows


def _send_all(engine, tmp_path: Path, at: dt.datetime) -> None:
    Dispatcher(engine, {"email": FileChannel(tmp_path / "sent", SENDER)}, clock=lambda: at).dispatch_due()


def test_confirmation_drafts_a_german_notice_with_the_vendor_and_gdpr_clocks(engine, settings, store_incident) -> None:
    incident_id = store_incident()
    [notice_id] = _confirm(engine, settings, incident_id)

    [n] = _notices(engine, incident_id, now=CONFIRMED_AT + 13 * HOUR)
    assert (n["tenant_id"], n["jurisdiction"], n["locale"], n["status"], n["version"]) == (
        "t-rhein",
        "DE",
        "de",
        "draft",
        1,
    )
    # The DPO and the owner, never the billing contact.
    assert n["recipients"] == ["datenschutz@rhein-logistik.example", "hans.weber@rhein-logistik.example"]
    duties = {d["rule_id"]: d for d in n["duties"]}
    vendor = duties["eu.art33-2.controller"]
    assert (vendor["owner"], vendor["due_at"], vendor["target_at"]) == ("vendor", None, "2026-11-25T09:00:00+00:00")
    assert vendor["status"] == "due_soon"  # 13 of the 24 target hours used
    authority = duties["eu.art33-1.authority"]
    assert (authority["owner"], authority["due_at"]) == ("customer", "2026-11-27T09:00:00+00:00")  # 72 h
    assert authority["status"] == "ok"

    with Session(engine) as session:
        preview = preview_notice(session, notice_id)
    assert preview["subject"].startswith("Meldung einer Verletzung des Schutzes personenbezogener Daten")
    assert "48.211" in preview["text"] and "unverzüglich" in preview["text"]
    assert "innerhalb von 72 Stunden" in preview["text"] and "27.11.2026, 09:00 UTC" in preview["text"]
    assert '<html lang="de" dir="ltr">' in preview["html"]
    assert preview["regulator_draft"]["subject"].startswith("Entwurf für Ihre Meldung an die Aufsichtsbehörde")


def test_nothing_leaves_before_approval_and_confirming_again_changes_nothing(engine, settings, store_incident) -> None:
    incident_id = store_incident()
    first = _confirm(engine, settings, incident_id)
    with Session(engine) as session, session.begin():
        again = on_breach_confirmed(
            session, incident_id, confirmed_by="someone-else", confirmed_at=CONFIRMED_AT + 5 * HOUR, settings=settings
        )
    assert again == first
    assert _outbox(engine) == []
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(NoticeVersionRow)) == 1
        assert session.scalar(select(func.count()).select_from(BlastRadiusRow)) == 1
    [n] = _notices(engine, incident_id)
    # The clock still runs from the first confirmation.
    assert {d["rule_id"]: d["due_at"] for d in n["duties"]}["eu.art33-1.authority"] == "2026-11-27T09:00:00+00:00"


def test_approval_queues_one_message_per_recipient_under_stable_ids(engine, settings, store_incident) -> None:
    [notice_id] = _confirm(engine, settings, store_incident())
    result = _approve(engine, notice_id)

    assert (result["status"], result["approvals"], result["queued"]) == ("approved", ["approver-bo"], 4)
    recipients = ["datenschutz@rhein-logistik.example", "hans.weber@rhein-logistik.example"]
    expected = sorted(
        delivery_message_id(notice_id, 1, r, t) for r in recipients for t in ("customer_notice", "regulator_draft")
    )
    rows = _outbox(engine)
    assert [r.message_id for r in rows] == expected
    assert {r.status for r in rows} == {"pending"}
    assert {r.recipient for r in rows} == set(recipients)
    with pytest.raises(ApprovalRefused, match="already approved"):
        _approve(engine, notice_id, "approver-cy")
    assert len(_outbox(engine)) == 4


def test_a_second_approver_is_needed_when_configured(engine, settings, store_incident, tmp_path, monkeypatch) -> None:
    (tmp_path / "notices.toml").write_text("approvals = 2\n")
    monkeypatch.setenv("BREACHWATCH_NOTICES_FILE", str(tmp_path / "notices.toml"))
    [notice_id] = _confirm(engine, settings, store_incident())

    first = _approve(engine, notice_id, "approver-bo")
    assert (first["status"], first["queued"], first["required_approvals"]) == ("draft", 0, 2)
    assert _outbox(engine) == []
    with pytest.raises(ApprovalRefused, match="another approver"):
        _approve(engine, notice_id, "approver-bo")
    second = _approve(engine, notice_id, "approver-cy")
    assert (second["status"], second["approvals"], second["queued"]) == ("approved", ["approver-bo", "approver-cy"], 4)


def test_an_approved_version_cannot_be_changed(engine, settings, store_incident) -> None:
    [notice_id] = _confirm(engine, settings, store_incident())
    _approve(engine, notice_id)
    with Session(engine) as session, pytest.raises(ImmutableVersionError):
        version = session.get(NoticeVersionRow, (notice_id, 1))
        version.facts = {**version.facts, "summary": "edited afterwards"}
        session.flush()
    with Session(engine) as session, pytest.raises(ImmutableVersionError):
        rendition = session.scalars(select(NoticeRenditionRow).where(NoticeRenditionRow.notice_id == notice_id)).first()
        rendition.body_text = "something else"
        session.flush()


def test_a_correction_of_the_blast_radius_is_a_new_audited_version(engine, settings, store_incident) -> None:
    incident_id = store_incident()
    [notice_id] = _confirm(engine, settings, incident_id)
    with Session(engine) as session, session.begin():
        out = correct_blast_radius(
            session,
            incident_id,
            {"tenants": [{"tenant_id": "t-rhein", "records": 60000, "subjects": 52000}]},
            actor="approver-bo",
            reason="the export file held 60,000 rows",
            settings=settings,
            now=CONFIRMED_AT + HOUR,
        )
    assert (out["version"], out["redrafted"]) == (2, [notice_id])

    with Session(engine) as session:
        radius = blast_radius(session, incident_id)
        assert radius["version"] == 2
        [impact] = radius["tenants"]
        assert (impact["records"], impact["subjects"], impact["corrected"]) == (60000, 52000, True)
        assert "approver-bo" in radius["corrections"][-1]
        v1 = session.get(NoticeVersionRow, (notice_id, 1))
        assert v1.status == "superseded"
        preview = preview_notice(session, notice_id)
        assert preview["version"] == 2 and "ungefähr 60.000" in preview["text"] and "52.000" in preview["text"]
        assert "geprüft und korrigiert" in preview["text"]
        old = preview_notice(session, notice_id, version=1)
        assert "48.211" in old["text"]  # the earlier version is kept as it was
        timeline = notice_timeline(session, incident_id)
    corrected = [e for e in timeline if e["action"] == "blast_radius_corrected"]
    assert corrected and corrected[0]["actor"] == "approver-bo"
    assert corrected[0]["detail"]["reason"] == "the export file held 60,000 rows"
    audit = pytest.importorskip("breachwatch.storage.audit")
    with Session(engine) as session:
        trail = [(r.actor, r.action) for r in audit.for_subject(session, f"incident:{incident_id}")]
    assert ("approver-bo", "blast_radius_corrected") in trail and ("responder-ada", "breach_confirmed") in trail
    [n] = _notices(engine, incident_id)
    assert (n["version"], n["status"]) == (2, "draft")


def test_a_correction_needs_a_reason_and_known_categories(engine, settings, store_incident) -> None:
    incident_id = store_incident()
    _confirm(engine, settings, incident_id)
    with Session(engine) as session, pytest.raises(NoticeError, match="reason"):
        correct_blast_radius(session, incident_id, {"tenants": []}, actor="a", reason=" ", settings=settings)
    with Session(engine) as session, pytest.raises(NoticeError, match="unknown data categories"):
        correct_blast_radius(
            session,
            incident_id,
            {"tenants": [{"tenant_id": "t-rhein", "data_categories": ["gossip"]}]},
            actor="a",
            reason="r",
            settings=settings,
        )


def test_a_correction_after_sending_becomes_a_follow_up(engine, settings, store_incident, tmp_path) -> None:
    incident_id = store_incident()
    [notice_id] = _confirm(engine, settings, incident_id)
    _approve(engine, notice_id)
    _send_all(engine, tmp_path, CONFIRMED_AT + 2 * HOUR)
    [sent] = _notices(engine, incident_id, now=CONFIRMED_AT + 3 * HOUR)
    assert sent["status"] == "sent"
    assert {d["rule_id"]: d["status"] for d in sent["duties"]}["eu.art33-2.controller"] == "met"

    with Session(engine) as session, session.begin():
        version = revise_notice(
            session,
            notice_id,
            editor="approver-bo",
            reason="root cause found",
            settings=settings,
            changes={"cause": "a password reused from another service", "phase": "final"},
            now=CONFIRMED_AT + 30 * HOUR,
        )
    assert version == 2
    with Session(engine) as session:
        preview = preview_notice(session, notice_id)
    assert preview["message_type"] == "followup"
    assert preview["subject"].startswith("Aktualisierung unserer Meldung")
    assert "a password reused from another service" in preview["text"]
    assert "abschließende Meldung" in preview["text"]
    assert "Version 1, gesendet 24.11.2026, 11:00 UTC" in preview["text"]
    assert _approve(engine, notice_id, at=CONFIRMED_AT + 31 * HOUR)["queued"] == 4
    ids = {r.message_id: r.status for r in _outbox(engine)}
    assert sum(1 for i in ids if ".v2" in i) == 4 and sum(1 for i, s in ids.items() if ".v1" in i and s == "sent") == 4


def test_a_new_version_before_sending_holds_the_old_messages(engine, settings, store_incident, tmp_path) -> None:
    incident_id = store_incident()
    [notice_id] = _confirm(engine, settings, incident_id)
    _approve(engine, notice_id)
    with Session(engine) as session, session.begin():
        revise_notice(
            session,
            notice_id,
            editor="approver-bo",
            reason="typo in the summary",
            settings=settings,
            changes={"summary": "An attacker exported the customer list."},
        )
    assert {r.status for r in _outbox(engine)} == {"held"}
    with Session(engine) as session:
        assert preview_notice(session, notice_id)["message_type"] == "customer_notice"  # nothing went out yet
    _approve(engine, notice_id, at=CONFIRMED_AT + 2 * HOUR)
    _send_all(engine, tmp_path, CONFIRMED_AT + 3 * HOUR)
    sent = sorted(p.name for p in (tmp_path / "sent").iterdir())
    assert len(sent) == 4 and all(".v2." in name for name in sent)


def test_ruling_a_tenant_out_withdraws_its_unsent_notice(engine, settings, store_incident) -> None:
    incident_id = store_incident()
    [notice_id] = _confirm(engine, settings, incident_id)
    _approve(engine, notice_id)
    with Session(engine) as session, session.begin():
        out = correct_blast_radius(
            session,
            incident_id,
            {"tenants": [{"tenant_id": "t-rhein", "excluded": True}]},
            actor="approver-bo",
            reason="the export was the tenant's own, confirmed by its owner",
            settings=settings,
        )
    assert out["withdrawn"] == [notice_id]
    [n] = _notices(engine, incident_id)
    assert n["status"] == "withdrawn"
    assert {r.status for r in _outbox(engine)} == {"held"}
    with pytest.raises(ApprovalRefused, match="withdrawn"):
        _approve(engine, notice_id, "approver-cy")


def test_a_tenant_added_by_correction_gets_its_own_notice(engine, settings, store_incident) -> None:
    incident_id = store_incident(tenants=("t-rhein", "t-indus"))
    _confirm(engine, settings, incident_id)
    with Session(engine) as session, session.begin():
        out = correct_blast_radius(
            session,
            incident_id,
            {"tenants": [{"tenant_id": "t-indus", "records": 300, "subjects": 300, "data_categories": ["personal"]}]},
            actor="approver-bo",
            reason="the same account also read t-indus contacts",
            settings=settings,
        )
    assert len(out["drafted"]) == 1
    notices = {n["tenant_id"]: n for n in _notices(engine, incident_id)}
    assert set(notices) == {"t-rhein", "t-indus"}
    # Pakistan's bill is a draft: the tenant's notice carries the vendor's contract duty, and the
    # draft only as advice (never as a duty of its own).
    assert {d["rule_id"] for d in notices["t-indus"]["duties"]} >= {"contract.customer"}
    assert "pk.commission" not in {d["rule_id"] for d in notices["t-indus"]["duties"]}


def test_each_contact_gets_the_notice_in_their_own_language(engine, settings, store_incident) -> None:
    incident_id = store_incident("t-indus", tenants=("t-indus",))
    [notice_id] = _confirm(engine, settings, incident_id)
    with Session(engine) as session:
        english = preview_notice(session, notice_id)
        urdu = preview_notice(session, notice_id, locale="ur")
    assert english["locale"] == "en" and english["recipients"] == {
        "security@indus-textiles.example": "ur",
        "ayesha@indus-textiles.example": "en",
    }
    assert '<html lang="ur" dir="rtl">' in urdu["html"]
    assert "ذاتی ڈیٹا کی خلاف ورزی" in urdu["subject"]
    _approve(engine, notice_id)
    rows = {r.recipient: r for r in _outbox(engine) if r.message_type == "customer_notice"}
    assert "ذاتی ڈیٹا" in rows["security@indus-textiles.example"].subject
    assert rows["ayesha@indus-textiles.example"].subject.startswith("Personal data breach notice")


def test_a_tenant_missing_from_the_directory_is_flagged_and_cannot_be_sent(engine, settings, store_incident) -> None:
    incident_id = store_incident(tenants=())
    [notice_id] = _confirm(engine, settings, incident_id)
    [n] = _notices(engine, incident_id)
    assert (n["jurisdiction"], n["locale"], n["recipients"]) == ("ZZ", "en", [])
    assert any("no usable contact address" in p for p in n["problems"])
    assert [d["rule_id"] for d in n["duties"]] == ["contract.customer"]
    with pytest.raises(ApprovalRefused, match="no recipient"):
        _approve(engine, notice_id)
    with Session(engine) as session, session.begin():
        with pytest.raises(NoticeError, match="not plain email"):
            revise_notice(
                session,
                notice_id,
                editor="a",
                reason="r",
                settings=settings,
                changes={"recipients": {"x@y.example\r\nBcc: z@evil.example": "en"}},
            )
        revise_notice(
            session,
            notice_id,
            editor="approver-bo",
            reason="contact from the account manager",
            settings=settings,
            changes={"recipients": {"it@rhein-logistik.example": "de"}},
        )
    assert _approve(engine, notice_id)["queued"] == 1  # no authority duty known, so no regulator draft


def test_a_contract_term_adds_its_own_clock(engine, settings, store_incident, tmp_path, monkeypatch) -> None:
    (tmp_path / "contracts.toml").write_text('t-rhein = { hours = 12, reference = "DPA clause 7.2" }\n')
    monkeypatch.setenv("BREACHWATCH_CONTRACTS_FILE", str(tmp_path / "contracts.toml"))
    incident_id = store_incident()
    _confirm(engine, settings, incident_id)
    [n] = _notices(engine, incident_id, now=CONFIRMED_AT + 13 * HOUR)
    duties = {d["rule_id"]: d for d in n["duties"]}
    term = duties["contract.tenant-term-1"]
    assert (term["owner"], term["due_at"], term["status"]) == ("vendor", "2026-11-24T21:00:00+00:00", "overdue")
    assert "DPA clause 7.2" in term["provision"]
    assert "eu.art33-2.controller" in duties  # the law still applies beside the contract


def test_revision_rejects_what_it_does_not_know(engine, settings, store_incident) -> None:
    [notice_id] = _confirm(engine, settings, store_incident())
    with Session(engine) as session:
        with pytest.raises(NoticeError, match="cannot change"):
            revise_notice(session, notice_id, editor="a", reason="r", settings=settings, changes={"subject": "x"})
        with pytest.raises(NoticeError, match="phase"):
            revise_notice(session, notice_id, editor="a", reason="r", settings=settings, changes={"phase": "done"})


def test_one_notice_per_affected_tenant(engine, settings, store_incident) -> None:
    incident_id = store_incident(tenants=("t-rhein", "t-indus"), extra_tenants=("t-indus",))
    ids = _confirm(engine, settings, incident_id)
    notices = _notices(engine, incident_id)
    assert len(ids) == 2 and {n["tenant_id"] for n in notices} == {"t-rhein", "t-indus"}
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(NoticeRow)) == 2


def test_an_unreadable_history_source_falls_back_to_the_next(engine, store_incident, tmp_path) -> None:
    from breachwatch.core.settings import load_settings
    from breachwatch.notifier.blast_radius import StoreHistory
    from breachwatch.streams.access_history import KafkaHistory

    with_kafka = load_settings(db_url=f"sqlite:///{tmp_path / 'notifier.db'}", kafka_bootstrap="127.0.0.1:1")
    incident_id = store_incident()
    with Session(engine) as session, session.begin():
        sources = [KafkaHistory(with_kafka, connect_timeout_s=0.5), StoreHistory(session)]
        assert on_breach_confirmed(
            session,
            incident_id,
            confirmed_by="responder-ada",
            confirmed_at=CONFIRMED_AT,
            settings=with_kafka,
            history=sources,
        )
        radius = blast_radius(session, incident_id)
    assert radius["history_source"] == "incident store evidence"
    assert any("kafka topic could not be read" in limit for limit in radius["limits"])
    assert radius["tenants"][0]["records"] == 48211
