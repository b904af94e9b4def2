"""The monthly summary to a tenant's security contact, in English, German and Urdu: what it must
say (counts, purposes, staff, data categories, each unjustified access, approvals) and must not
(another month's accesses, markup from a ticket's summary), once per tenant and month."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.core.justification import Problem
from breachwatch.notifier.outbox import OutboxRow
from breachwatch.privacy import approvals, transparency
from breachwatch.privacy.staff_mail import Month, month_due, queue_month, queue_summary, summary_recipients
from breachwatch.storage import audit
from tests.fixtures.staff_access import T0, justified, remember, staff_access, staff_settings, tenant, unjustified

NOVEMBER = Month(2026, 11)
WORDS = {
    # locale: (subject start, totals, a purpose, a problem, a category, direction)
    "en": (
        "Staff access to Rhein Example GmbH's data in November 2026",
        "accessed your organisation's data 4 times, touching 1,213 records",
        "support your organisation asked for",
        "the ticket is assigned to someone else",
        "ordinary personal data (names, contact details, identifiers)",
        'dir="ltr"',
    ),
    "de": (
        "Zugriffe unserer Mitarbeitenden auf die Daten von Rhein Example GmbH im November 2026",
        "4-mal auf die Daten Ihrer Organisation zugegriffen und dabei 1.213 Datensätze berührt",
        "von Ihrer Organisation angefragter Support",
        "das Ticket ist jemand anderem zugewiesen",
        "allgemeine personenbezogene Daten (Namen, Kontaktdaten, Kennungen)",
        'dir="ltr"',
    ),
    "ur": (
        "نومبر 2026 میں Rhein Example GmbH کے ڈیٹا تک ہمارے عملے کی رسائی",
        "4 بار رسائی کی اور 1,213 ریکارڈز کو چھوا",
        "آپ کی تنظیم کی درخواست پر معاونت",
        "ٹکٹ کسی اور کے ذمے ہے",
        "عام ذاتی ڈیٹا",
        'dir="rtl"',
    ),
}


def _month_of_access(engine: Engine, locale: str = "en") -> None:
    assignee = Problem("ticket_other_assignee", {"ticket_id": "SUP-9000", "assignees": ["st-sara"]})
    accesses = [
        staff_access(1, justified(ticket_summary="<b>Invoice</b> rounding"), action="export", records=1200),
        staff_access(2, justified(purpose="troubleshooting"), minutes=60, records=5),
        staff_access(
            3, unjustified(assignee, ticket="SUP-9000"), minutes=90, records=7, staff="st-nadia", name="Nadia"
        ),
        staff_access(4, justified(), minutes=60 * 24 * 5, records=1, resource_type="invoice", sensitivity="financial"),
        staff_access(5, justified(), start=datetime(2026, 12, 1, 0, 0, tzinfo=UTC), records=99),  # December
        staff_access(6, justified(), start=datetime(2026, 10, 31, 23, 59, tzinfo=UTC), records=99),  # October
    ]
    with Session(engine) as session, session.begin():
        transparency.record_staff_accesses(session, accesses)
        remember(session, tenant("t-rhein", locale=locale))


def _mail(engine: Engine) -> OutboxRow:
    with Session(engine) as session:
        [m] = session.scalars(select(OutboxRow).where(OutboxRow.message_type == "transparency_summary"))
        session.expunge(m)
        return m


def _words(page: str) -> str:
    """What a reader of the HTML body sees: no tags, entities decoded, one line per paragraph."""
    return html.unescape(re.sub(r"<[^>]+>", "", page))


@pytest.mark.parametrize("locale", ["en", "de", "ur"])
def test_the_summary_in_three_languages(engine: Engine, tmp_path: Path, locale: str) -> None:
    _month_of_access(engine, locale)
    with Session(engine) as session, session.begin():
        queued = queue_summary(session, "t-rhein", NOVEMBER, staff_settings(tmp_path), now=T0 + timedelta(days=8))
    assert len(queued) == 1
    m = _mail(engine)
    subject, totals, purpose, problem, category, direction = WORDS[locale]
    assert m.recipient == "security@t-rhein.example"
    assert m.subject.startswith(subject)
    for body in (m.body_text, _words(m.body_html or "")):
        assert totals in body and purpose in body and problem in body and category in body
        assert "Nadia" in body  # who did the unjustified access
        assert "99" not in body  # neither October's nor December's accesses
    assert f'lang="{locale}" {direction}' in (m.body_html or "")
    # The staff member's office country by its name in the customer's language, not its code.
    office = {"en": "office in Pakistan", "de": "Büro in Pakistan", "ur": "دفتر پاکستان میں"}[locale]
    assert office in m.body_text and office in _words(m.body_html or "")
    assert " PK" not in m.body_text


def test_a_month_without_staff_access_says_so_and_one_without_problems_too(engine: Engine, tmp_path: Path) -> None:
    with Session(engine) as session, session.begin():
        remember(session, tenant("t-rhein"))
        transparency.record_staff_accesses(session, [staff_access(1, justified())])
        queue_summary(session, "t-rhein", NOVEMBER, staff_settings(tmp_path))
        queue_summary(session, "t-rhein", Month(2026, 9), staff_settings(tmp_path))
        texts = {m.message_id.split(":")[2]: m.body_text for m in session.scalars(select(OutboxRow))}
    assert "Every access was justified." in texts["2026-11"] and "not justified" not in texts["2026-11"]
    assert "No member of our staff accessed your organisation's data" in texts["2026-09"]


def test_values_from_the_erp_cannot_become_markup(engine: Engine, tmp_path: Path) -> None:
    with Session(engine) as session, session.begin():
        remember(session, tenant("t-rhein"))
        a = staff_access(1, unjustified(), name='<img src=x onerror="alert(1)">')
        transparency.record_staff_accesses(session, [a])
        queue_summary(session, "t-rhein", NOVEMBER, staff_settings(tmp_path))
    html = _mail(engine).body_html or ""
    assert "<img" not in html and "&lt;img src=x" in html


def test_once_per_tenant_and_month_to_the_security_contact(engine: Engine, tmp_path: Path) -> None:
    _month_of_access(engine)
    settings = staff_settings(tmp_path)
    with Session(engine) as session, session.begin():
        assert queue_month(session, NOVEMBER, settings) == {"t-rhein": 1}
        assert queue_month(session, NOVEMBER, settings) == {"t-rhein": 0}
        n = len(list(session.scalars(select(OutboxRow))))
        [row] = [r.detail for r in audit.for_subject(session, "tenant:t-rhein") if r.action == "transparency.summary"]
    assert n == 1 and row["accesses"] == 4


def test_who_receives_it() -> None:
    no_security = tenant(
        contacts=[{"email": "dpo@x.example", "role": "dpo"}, {"email": "o@x.example", "role": "owner"}]
    )
    assert summary_recipients(no_security) == [("dpo@x.example", "en")]
    assert summary_recipients(tenant()) == [("security@t-rhein.example", "en")]
    assert summary_recipients(None) == []


def test_a_tenant_requiring_approval_is_told_about_its_decisions(engine: Engine, tmp_path: Path) -> None:
    _month_of_access(engine)
    with Session(engine) as session, session.begin():
        approvals.require_approval(session, "t-rhein", ["ciso@rhein.example"], "cli", now=T0 - timedelta(days=1))
        queue_summary(session, "t-rhein", NOVEMBER, staff_settings(tmp_path))
    text = _mail(engine).body_text
    assert "justified by a ticket and your approval" in text
    assert "Your approvals this month: 0 approved, 0 denied, 0 expired unanswered, 0 revoked." in text


def test_the_service_sends_last_months_summaries_from_the_second_day() -> None:
    assert month_due(datetime(2026, 12, 1, 23, 0, tzinfo=UTC)) is None
    assert month_due(datetime(2026, 12, 2, 0, 0, tzinfo=UTC)) == NOVEMBER
    assert month_due(datetime(2027, 1, 15, tzinfo=UTC)) == Month(2026, 12)
    assert (NOVEMBER.start, NOVEMBER.end) == (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))


ONE_ACCESS = {
    # locale: (must say, must not say): one access to one invoice record, unjustified
    "en": (
        [
            "1 access, 1 not justified",
            "accessed your organisation's data 1 time, touching 1 record.",
            "Of these, 0 were justified by a ticket; 1 was not.",
            ": 1 access, 1 record",
            "1 invoice record;",
        ],
        ["1 accesses", "1 records", "1 times", "1 were"],
    ),
    "de": (
        [
            "1 Zugriff, 1 nicht",
            "und dabei 1 Datensatz berührt",
            ": 1 Zugriff, 1 Datensatz",
            "1 Datensatz vom Typ invoice",
        ],
        ["1 Zugriffe", "1 Datensätze"],
    ),
    "ur": (
        ["1 رسائی، 1 بلا جواز", "1 ریکارڈ کو چھوا", ": 1 رسائی، 1 ریکارڈ", "invoice کے 1 ریکارڈ "],
        ["1 رسائیاں", "1 ریکارڈز"],
    ),
}


@pytest.mark.parametrize("locale", ["en", "de", "ur"])
def test_one_access_is_counted_in_the_singular(engine: Engine, tmp_path: Path, locale: str) -> None:
    with Session(engine) as session, session.begin():
        remember(session, tenant("t-rhein", locale=locale))
        access = staff_access(1, unjustified(), records=1, resource_type="invoice", sensitivity="financial")
        transparency.record_staff_accesses(session, [access])
        queue_summary(session, "t-rhein", NOVEMBER, staff_settings(tmp_path))
    m = _mail(engine)
    subject, *says = ONE_ACCESS[locale][0]
    never = ONE_ACCESS[locale][1]
    assert subject in m.subject and not [w for w in never if w in m.subject]
    for body in (m.body_text, _words(m.body_html or "")):
        assert [w for w in says if w not in body] == []
        assert [w for w in never if w in body] == []
