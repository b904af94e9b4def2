"""Record and decide: the breach register (every confirmed breach, notified or not), risk-of-harm
assessments and no-notify decisions, retention per regime, HIPAA's annual log, the encryption
safe harbour, law-enforcement delays that hold exactly the clocks their statute lets them, and
substitute notice. Each test cites the provision it pins."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from breachwatch.channels.file import FileChannel
from breachwatch.notifier.notices import NoticeError, approve_notice, check_deadlines, list_notices, preview_notice
from breachwatch.notifier.notices.decisions import (
    decide_safe_harbour,
    lift_delay,
    record_assessment,
    record_contact_gap,
    record_delay,
)
from breachwatch.notifier.notices.models import NoticeVersionRow
from breachwatch.notifier.notices.records import MomentRow
from breachwatch.notifier.outbox import Dispatcher
from breachwatch.notifier.register import entries, export
from breachwatch.privacy.data_rights import erase_tenant
from breachwatch.storage import audit
from tests.notifier.register.conftest import CONFIRMED, DETECTED, directory

NY = ZoneInfo("America/New_York")
HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)
RISK = {"sensitivity": "low", "acquired": {"level": "low", "note": "the export was stopped before download"}}


def _notice(engine, incident_id: str, now: dt.datetime = CONFIRMED + HOUR) -> dict:
    with Session(engine) as session:
        [n] = list_notices(session, incident_id, now=now)
    return n


def _duties(engine, incident_id: str, now: dt.datetime = CONFIRMED + HOUR) -> dict[str, dict]:
    return {d["rule_id"]: d for d in _notice(engine, incident_id, now)["duties"]}


def _entry(engine, incident_id: str) -> dict:
    with Session(engine) as session:
        return entries.entry(session, incident_id)


# --- the register ------------------------------------------------------------------------------


def test_every_confirmed_breach_is_in_the_register_notified_or_not(engine, settings, breach, tmp_path) -> None:
    # GDPR Art 33(5): the controller documents "any personal data breaches", not only those notified.
    incident_id = breach(directory("t-rhein"))
    with Session(engine) as session:
        [only] = entries.entries(session)
        assert entries.entries(session, notified=True) == []
    assert (only["incident_id"], only["notified"], only["confirmed_by"]) == (incident_id, False, "approver-bo")
    assert {m["moment"]: m["at"] for m in only["moments"]}["detected"] == DETECTED.isoformat()
    [tenant] = only["tenants"]
    assert (tenant["tenant_id"], tenant["records"], tenant["data_categories"]) == ("t-rhein", 48211, ["personal"])
    assert tenant["jurisdictions"][0]["code"] == "DE"

    # Sent: now it is a notified breach.
    with Session(engine) as session, session.begin():
        approve_notice(session, tenant["notice_id"], "approver-cy", now=CONFIRMED + HOUR)
    sender = {"email": FileChannel(tmp_path / "sent", "breachwatch@unisen.example")}
    Dispatcher(engine, sender, clock=lambda: CONFIRMED + 2 * HOUR).dispatch_due()
    with Session(engine) as session:
        [sent] = entries.entries(session, notified=True)
    assert sent["tenants"][0]["notified_at"] == (CONFIRMED + 2 * HOUR).isoformat()


def test_the_register_keeps_facts_effects_and_remedial_action_and_audits_them(engine, breach) -> None:
    incident_id = breach(directory("t-rhein"))
    with Session(engine) as session, session.begin():
        entries.write(
            session,
            incident_id,
            by="approver-bo",
            facts="A guessed password let an attacker export the customer list.",
            effects="48,211 customers' contact details exposed; phishing risk.",
            remedial_action="Sessions revoked, password reset, export blocked.",
        )
    written = _entry(engine, incident_id)
    assert written["effects"].startswith("48,211") and written["written_by"] == "approver-bo"
    with Session(engine) as session:
        assert [r.action for r in audit.recent(session, action="register_written")] == ["register_written"]
        with pytest.raises(NoticeError, match="nothing to write"):
            entries.write(session, incident_id, by="approver-bo")


def test_retention_per_regime(engine, breach) -> None:
    # ANPD Resolution 15/2024 art. 10: five years from the record; PIPEDA regulations s6:
    # 24 months after the determination; GDPR Art 33(5): no period (kept until a person decides).
    br = _entry(engine, breach(directory("t-sao", jurisdiction="BR", locale="en"), incident_id="inc-br"))
    assert {r["regime"]: r["keep_until"] for r in br["retention"]} == {"br": "2031-11-24T09:00:00+00:00"}
    assert (br["keep_until"], br["keep_until_decided_by_person"]) == ("2031-11-24T09:00:00+00:00", False)
    ca = _entry(engine, breach(directory("t-maple", jurisdiction="CA", locale="en"), incident_id="inc-ca"))
    assert {r["regime"]: r["keep_until"] for r in ca["retention"]} == {"ca": "2028-11-24T09:00:00+00:00"}
    de = _entry(engine, breach(directory("t-rhein"), incident_id="inc-de"))
    assert [r["regime"] for r in de["retention"]] == ["eu"] and de["keep_until_decided_by_person"] is True


def test_hipaa_annual_log_aggregates_the_local_year(engine, breach, notices_file) -> None:
    # 45 CFR 164.408(c): breaches of fewer than 500 are logged and reported "not later than 60
    # days after the end of each calendar year". 23:30 on 31 December 2026 in New York is 2027
    # in UTC but belongs to 2026; its log is due by the end of 1 March 2027.
    notices_file(
        "[tenants.t-hudson]\ntraits = { hipaa_covered_entity = true }\n"
        'resource_types = { patient_visit = ["personal", "health", "phi"] }\n'
    )
    clinic = directory("t-hudson", jurisdiction="US-NY", locale="en")
    kw = {"resource_type": "patient_visit", "records": 40}
    nye = dt.datetime(2026, 12, 31, 23, 30, tzinfo=NY)
    breach(
        clinic,
        incident_id="inc-1",
        detected=dt.datetime(2026, 6, 2, 12, 0, tzinfo=dt.UTC),
        confirmed=dt.datetime(2026, 6, 3, tzinfo=dt.UTC),
        **kw,
    )
    breach(clinic, incident_id="inc-2", detected=nye, confirmed=nye + DAY, **kw)
    breach(
        clinic,
        incident_id="inc-3",
        detected=dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC),
        confirmed=dt.datetime(2027, 3, 2, tzinfo=dt.UTC),
        **kw,
    )
    with Session(engine) as session:
        logs = entries.hipaa_annual_logs(session)
    assert [(log["year"], log["incidents"], log["due_last_day"]) for log in logs] == [
        (2026, ["inc-1", "inc-2"], "2027-03-01"),
        (2027, ["inc-3"], "2028-02-29"),
    ]


# --- risk-of-harm assessments --------------------------------------------------------------------


def test_a_no_notify_decision_documents_factors_who_when_and_reasons(engine, settings, breach) -> None:
    # GDPR Art 33(1): notify "unless the personal data breach is unlikely to result in a risk";
    # Art 33(5): the documentation lets the authority verify the decision.
    incident_id = breach(directory("t-rhein"))
    with Session(engine) as session, session.begin():
        result = record_assessment(
            session,
            incident_id,
            "t-rhein",
            "DE",
            owner="customer",
            factors=RISK,
            decision="no_notify",
            reasons="The export was stopped before any download; no data left the tenant.",
            by="approver-bo",
            settings=settings,
            now=CONFIRMED + 3 * HOUR,
        )
    assert result["waived"] == ["eu.art33-1.authority", "eu.art34.data-subjects"]
    duties = _duties(engine, incident_id, CONFIRMED + 4 * HOUR)
    assert duties["eu.art33-1.authority"]["status"] == "waived"
    assert duties["eu.art33-2.controller"]["status"] != "waived"  # no risk threshold: never waived
    assessed = _entry(engine, incident_id)["tenants"][0]["jurisdictions"][0]["assessments"]["customer"]["factors"]
    assert assessed["acquired"] == {"level": "low", "note": "the export was stopped before download"}
    record = _entry(engine, incident_id)["assessments"][0]
    assert (record["decision"], record["assessed_by"], record["assessed_at"]) == (
        "no_notify",
        "approver-bo",
        (CONFIRMED + 3 * HOUR).isoformat(),
    )
    with Session(engine) as session:
        text = preview_notice(session, _notice(engine, incident_id)["notice_id"])["text"]
        assert session.scalar(select(NoticeVersionRow.version).order_by(NoticeVersionRow.version.desc())) == 2
    assert "NACH RISIKOBEWERTUNG NICHT GEMELDET" in text and "no data left the tenant" in text  # in German


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"decision": "no_notify", "reasons": ""}, "the reasons is required"),
        ({"factors": {"vibes": "low"}}, "unknown factor 'vibes'"),
        ({"factors": {"misuse": "tiny"}}, "level must be one of low, medium, high"),
        ({"waive": ["eu.art33-2.controller"], "owner": "vendor"}, "cannot be waived here"),
        ({"jurisdiction": "FR"}, "not known to live in 'FR'"),
        ({"owner": "regulator"}, "owner must be one of vendor, customer"),
    ],
)
def test_an_assessment_that_cannot_stand_is_refused(engine, settings, breach, kw: dict, message: str) -> None:
    incident_id = breach(directory("t-rhein"))
    args = {"owner": "customer", "factors": RISK, "decision": "no_notify", "reasons": "stopped in time", **kw}
    jurisdiction = args.pop("jurisdiction", "DE")
    with Session(engine) as session, pytest.raises(NoticeError, match=message):
        record_assessment(session, incident_id, "t-rhein", jurisdiction, by="bo", settings=settings, **args)


# --- law-enforcement delays ----------------------------------------------------------------------


def test_a_delay_holds_exactly_the_clocks_the_statute_lets_it_and_restarts_them(engine, settings, breach) -> None:
    # Cal. Civ. Code 1798.82(c): notice "shall be delayed" while a law enforcement agency says it
    # would impede a criminal investigation. GDPR has no such delay: a German tenant's clocks run.
    sierra = breach(
        directory("t-sierra", jurisdiction="US-CA", locale="en"), incident_id="inc-ca", resource_type="employee"
    )
    rhein = breach(directory("t-rhein"), incident_id="inc-de")
    asked = CONFIRMED + 2 * HOUR
    with Session(engine) as session, session.begin():
        held = record_delay(
            session,
            sierra,
            requested_by="law_enforcement",
            agency="Fictional County Sheriff",
            official="Det. R. Example",
            form="written",
            requested_at=asked,
            until=None,
            reference="case 2026-118",
            by="approver-bo",
            settings=settings,
            now=asked,
        )
        not_held = record_delay(
            session,
            rhein,
            requested_by="law_enforcement",
            agency="Fictional Landeskriminalamt",
            official="KHK Example",
            form="written",
            requested_at=asked,
            until=asked + 30 * DAY,
            by="approver-bo",
            settings=settings,
            now=asked,
        )
    assert {h["rule_id"] for h in held["holds"]} == {"us-ca.residents", "us-ca.maintainer-to-owner"}
    assert {h["provision"] for h in held["holds"]} == {"Cal. Civ. Code 1798.82(c)"}
    assert not_held["holds"] == []
    residents = _duties(engine, sierra, asked + DAY)["us-ca.residents"]
    assert (residents["status"], residents["due_at"], residents["target_at"]) == ("paused", None, None)
    with Session(engine) as session, session.begin():
        pages = check_deadlines(session, settings, asked + 60 * DAY)
    assert not {p.rule_id for p in pages} & {"us-ca.residents", "us-ca.maintainer-to-owner"}

    lifted = asked + 40 * DAY  # after the 30 days would have ended: due when the delay ends
    with Session(engine) as session, session.begin():
        restarted = lift_delay(session, held["delay_id"], at=lifted, by="approver-bo", settings=settings, now=lifted)
    assert {h["rule_id"] for h in restarted["restarted"]} == {"us-ca.residents", "us-ca.maintainer-to-owner"}
    residents = _duties(engine, sierra, lifted + HOUR)["us-ca.residents"]
    assert residents["due_at"] == lifted.isoformat() and residents["status"] == "overdue"
    with Session(engine) as session:
        [delay] = entries.entry(session, sierra)["delays"]
    assert (delay["official"], delay["lifted_by"], delay["reference"]) == (
        "Det. R. Example",
        "approver-bo",
        "case 2026-118",
    )


def test_a_delay_must_say_who_asked_and_be_in_the_past(engine, settings, breach) -> None:
    incident_id = breach(directory("t-rhein"))
    base = {
        "requested_by": "law_enforcement",
        "agency": "Fictional Police",
        "official": "Sgt Example",
        "form": "oral",
        "requested_at": CONFIRMED,
        "until": None,
    }
    now = CONFIRMED + HOUR
    for change, message in (
        ({"official": " "}, "who asked"),
        ({"requested_by": "mayor"}, "requested_by must be one of"),
        ({"form": "telepathy"}, "form must be one of"),
        ({"requested_at": now + DAY}, "in the future"),
        ({"until": CONFIRMED - HOUR}, "until must be after"),
    ):
        with Session(engine) as session, pytest.raises(NoticeError, match=message):
            record_delay(session, incident_id, **(base | change), by="bo", settings=settings, now=now)


# --- safe harbour and substitute notice -----------------------------------------------------------


def test_an_encrypted_resource_type_lifts_the_state_duty_until_a_person_says_the_key_was_taken(
    engine, settings, breach, notices_file
) -> None:
    # Cal. Civ. Code 1798.82(a): "unencrypted personal information, or encrypted personal
    # information ... [with] the encryption key". Card numbers leave the ERP encrypted.
    notices_file('[tenants.t-sierra]\nencrypted_resource_types = ["payment_card"]\n')
    incident_id = breach(
        directory("t-sierra", jurisdiction="US-CA", locale="en"), resource_type="payment_card", records=80
    )
    assert "us-ca.residents" not in _duties(engine, incident_id)
    law = _notice(engine, incident_id)["law"]
    lifted = {e["rule_id"]: e["provision"] for e in law["exempted"]}
    assert lifted["us-ca.residents"] == "Cal. Civ. Code 1798.82(a), (h)"
    with Session(engine) as session:
        assert (
            "NOT REQUIRED BECAUSE THE DATA WAS ENCRYPTED"
            in preview_notice(session, _notice(engine, incident_id)["notice_id"])["text"]
        )
    with Session(engine) as session, session.begin():
        result = decide_safe_harbour(
            session,
            incident_id,
            "t-sierra",
            applies=False,
            encrypted_resource_types=None,
            reason="the key store was read in the same session",
            by="approver-bo",
            settings=settings,
        )
    assert result["redrafted"]
    assert "us-ca.residents" in _duties(engine, incident_id)
    assert _entry(engine, incident_id)["safe_harbour"][0]["reason"] == "the key store was read in the same session"


def test_substitute_notice_once_contact_details_are_known_to_be_missing(engine, settings, breach, notices_file) -> None:
    # 45 CFR 164.404(d)(2): substitute notice where contact information is insufficient.
    notices_file(
        "[tenants.t-hudson]\ntraits = { hipaa_covered_entity = true }\n"
        'resource_types = { patient_visit = ["personal", "health", "phi"] }\n'
    )
    incident_id = breach(
        directory("t-hudson", jurisdiction="US-NY", locale="en"), resource_type="patient_visit", records=40
    )
    assert _duties(engine, incident_id)["us-hipaa.individuals"]["substitute"]["allowed"] is None
    with Session(engine) as session, session.begin():
        record_contact_gap(session, incident_id, "t-hudson", 14, note="no address on file", by="bo", settings=settings)
    option = _duties(engine, incident_id)["us-hipaa.individuals"]["substitute"]
    assert option["allowed"] is True and option["provision"] == "45 CFR 164.404(d)(2)"
    with Session(engine) as session, pytest.raises(NoticeError, match="whole number"):
        record_contact_gap(session, incident_id, "t-hudson", -1, by="bo", settings=settings)


# --- export ---------------------------------------------------------------------------------------


def test_export_as_json_and_csv_one_row_per_jurisdiction(engine, settings, breach) -> None:
    incident_id = breach(
        directory(
            "t-empire",
            jurisdiction="US-NY",
            locale="en",
            data_subjects=1000,
            data_subjects_by_jurisdiction={"US-TX": 600, "US-NY": 400},
        ),
        resource_type="employee",
        records=5000,
    )
    with Session(engine) as session, session.begin():
        entries.write(session, incident_id, by="bo", facts='=HYPERLINK("http://evil.example")')
        found = entries.entries(session)
    data = json.loads(export.to_json(found))
    assert data["entries"][0]["incident_id"] == incident_id
    rows = list(csv.DictReader(io.StringIO(export.to_csv(found))))
    assert [(r["jurisdiction"], r["affected_low"], r["own_jurisdiction"]) for r in rows] == [
        ("US-NY", "400", "yes"),
        ("US-TX", "600", "no"),
    ]
    assert "us-tx.attorney-general" in rows[1]["duties"].split()
    assert rows[0]["facts"].startswith("'=")  # never a formula in a spreadsheet
    assert rows[0]["notified"] == "no"


def test_erasing_a_tenant_follows_its_breach_records(engine, settings, breach) -> None:
    # A data-rights erasure removes the tenant's incidents and everything that refers to them
    # (no foreign key left dangling); the register entry the law requires kept stays, frozen
    # (GDPR Art. 17(3)(b)), with what was written in it.
    incident_id = breach(directory("t-sierra", jurisdiction="US-CA", locale="en"), resource_type="employee")
    with Session(engine) as session, session.begin():
        entries.write(session, incident_id, by="bo", facts="exported HR records")
        record_delay(
            session,
            incident_id,
            requested_by="law_enforcement",
            agency="Fictional Police",
            official="Sgt Example",
            form="written",
            requested_at=CONFIRMED,
            until=None,
            by="bo",
            settings=settings,
            now=CONFIRMED + HOUR,
        )
    with Session(engine) as session, session.begin():
        erased = erase_tenant(session, "t-sierra", "admin-cy")
    assert erased.rows_deleted["breach_register"] == 1 and erased.rows_deleted["notice_delays"] == 1
    assert erased.register_entries_kept == 1
    with Session(engine) as session:
        [kept] = entries.entries(session)
    assert kept["incident_id"] == incident_id and kept["archived"] is True
    assert kept["facts"] == "exported HR records"


def test_a_breach_confirmed_before_moments_were_recorded_gets_them_from_its_confirmation(
    engine, settings, breach
) -> None:
    # Databases migrated to revision 0009 hold breaches confirmed without moments: the first
    # decision that works their duties out again records them from the confirmation.
    incident_id = breach(directory("t-rhein"))
    with Session(engine) as session, session.begin():
        session.execute(delete(MomentRow))
    with Session(engine) as session, session.begin():
        record_contact_gap(session, incident_id, "t-rhein", 3, by="bo", settings=settings)
    with Session(engine) as session:
        recorded = {r.moment: r.at for r in session.scalars(select(MomentRow))}
    assert recorded == {"detected": DETECTED, "confirmed": CONFIRMED, "aware": CONFIRMED}
    assert _duties(engine, incident_id)["eu.art33-1.authority"]["moment_used"] == "aware"
