"""The notice's section on clocks and jurisdictions, in every language: what it must show (each
duty's anchor and moment, stand-ins, the last local day, jurisdictions with head counts,
undecided duties with the missing fact, draft-law advice, exemptions, holds, substitute notice,
no-notify decisions) and what it must not (sections with nothing in them, another language's
headings, markup from text a person typed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from breachwatch.notifier.blast_radius import BlastRadius, TenantImpact
from breachwatch.notifier.duties import default_rules, duties_for
from breachwatch.notifier.lint_language import english_words, visible_text
from breachwatch.notifier.notices.config import Vendor
from breachwatch.notifier.notices.content import (
    CUSTOMER_NOTICE,
    FOLLOWUP,
    duty_context,
    notice_context,
    notice_renderer,
)

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
DETECTED = T0 - timedelta(hours=6)
HEADINGS = {
    "en": ("WHEN EACH CLOCK STARTS", "WHERE THE PEOPLE CONCERNED LIVE", "DUTIES WE COULD NOT DECIDE", "DRAFT LAWS"),
    "de": (
        "WANN DIE FRISTEN BEGINNEN",
        "WO DIE BETROFFENEN PERSONEN LEBEN",
        "PFLICHTEN, DIE WIR NICHT",
        "GESETZESENTWÜRFE",
    ),
    "ur": (
        "ہر مدت کب سے شروع ہوتی ہے",
        "متاثرہ افراد کہاں رہتے ہیں",
        "وہ ذمہ داریاں جن کا ہم فیصلہ نہیں کر سکے",
        "مسودہ قوانین",
    ),
}
LAW: dict[str, Any] = {
    "jurisdictions": [
        {"code": "US-NY", "own": True, "affected_low": 100, "affected_high": 100, "duties": ["us-ny.residents"]},
        {"code": "US-TX", "own": False, "affected_low": 0, "affected_high": 400, "duties": ["us-tx.individuals"]},
    ],
    "undecided": [
        {
            "rule_id": "us-hipaa.individuals",
            "role": "controller",
            "whom_kind": "data_subjects",
            "jurisdictions": ["US-NY"],
            "missing_keys": ["trait:hipaa_covered_entity", "count"],
        }
    ],
    "advisories": [
        {"rule_id": "pk.commission", "provision": "Personal Data Protection Bill 2023 (draft)", "text": "A bill."}
    ],
    "exempted": [
        {"rule_id": "us-ca.residents", "whom_kind": "data_subjects", "provision": "Cal. Civ. Code 1798.82(a), (h)"}
    ],
    "holds": [
        {
            "rule_id": "us-ny.residents",
            "whom_kind": "data_subjects",
            "provision": "N.Y. Gen. Bus. Law 899-aa(4)",
            "start": (T0 + timedelta(days=1)).isoformat(),
            "end": None,
            "capped": False,
        }
    ],
    "substitute": [
        {
            "rule_id": "us-tx.individuals",
            "allowed": True,
            "provision": "Tex. Bus. & Com. Code 521.053(f)",
            "methods": "A website posting.",
            "reasons": ["more than 500,000"],
        }
    ],
    "waived": [
        {
            "rule_id": "us-tx.attorney-general",
            "whom_kind": "authority",
            "by": "approver-bo",
            "at": T0.isoformat(),
            "reasons": "<script>alert(1)</script> stopped in time",
        }
    ],
}


def _render(locale: str, law: dict[str, Any] | None, message_type: str = CUSTOMER_NOTICE) -> Any:
    moments = {"detected": DETECTED, "confirmed": T0, "aware": T0}
    vendor = duties_for(
        "US-TX", role="processor", affected_subjects=400, data_categories={"government_id"}, moments=moments
    )
    customer = duties_for(
        "US-TX", role="controller", affected_subjects=400, data_categories={"government_id"}, moments=moments
    )
    impact = TenantImpact(tenant_id="t-alamo", records=400, subjects=400, data_categories=("government_id", "personal"))
    radius = BlastRadius(incident_id="inc-1", window_start=DETECTED, window_end=T0, tenants=(impact,))
    context = notice_context(
        notice_id="n-1",
        version=2 if message_type == FOLLOWUP else 1,
        kind="followup" if message_type == FOLLOWUP else "initial",
        locale=locale,
        tenant_id="t-alamo",
        tenant_name="Alamo Parts LLC",
        jurisdiction="US-TX",
        incident_id="inc-1",
        incident_kind="bulk_export",
        impact=impact,
        radius=radius,
        vendor=Vendor(name="Unisen Cloud ERP", contact_email="privacy@unisen.example").as_context(),
        facts={},
        vendor_duties=[duty_context(d) for d in vendor],
        customer_duties=[duty_context(d) for d in customer],
        confirmed_at=T0,
        detected_at=DETECTED,
        issued_at=T0 + timedelta(hours=1),
        law=law,
    )
    return notice_renderer().render(message_type, locale, context)


@pytest.mark.parametrize("locale", ["en", "de", "ur"])
@pytest.mark.parametrize("message_type", [CUSTOMER_NOTICE, FOLLOWUP])
def test_every_law_section_is_shown_in_the_notices_language(locale: str, message_type: str) -> None:
    rendered = _render(locale, LAW, message_type)
    for heading in HEADINGS[locale]:
        assert heading in rendered.text, heading
    for other in HEADINGS:
        if other != locale:
            assert not any(h in rendered.text for h in HEADINGS[other]), f"{other} headings in a {locale} notice"
    for code in ("us-hipaa.individuals", "US-TX", "Cal. Civ. Code 1798.82(a), (h)", "N.Y. Gen. Bus. Law 899-aa(4)"):
        assert code in rendered.text and code in (rendered.html or "")
    assert "stopped in time" in rendered.text
    assert "<script>" not in (rendered.html or "") and "&lt;script&gt;" in (rendered.html or "")


def test_each_duty_says_where_its_clock_starts_and_whether_it_stood_in() -> None:
    # Tex. Bus. & Com. Code 521.053(b): 60 days from the determination, not yet recorded here.
    text = _render("en", LAW).text
    assert (
        "Tex. Bus. & Com. Code 521.053(c) (you, our customer): the law counts from discovering the breach;"
        " started when our monitoring detected it, 24 Nov 2026, 03:00 UTC" in text
    )
    assert "the law counts from determining that a breach occurred; started when our monitoring detected it" in text
    assert "that moment is not recorded yet; the earliest recorded one stands in" in text
    assert "due by the end of 2027-01-22 (America/Chicago)" in text
    assert "US-TX: 0 to 400 affected" in text and "US-NY (your jurisdiction): 100 affected" in text
    assert "it depends on whether the entity is a HIPAA covered entity and the number of affected individuals" in text


@pytest.mark.parametrize("locale", ["en", "de", "ur"])
def test_nothing_to_say_shows_no_empty_section(locale: str) -> None:
    rendered = _render(locale, None)
    assert HEADINGS[locale][0] in rendered.text  # every notice says when its clocks start
    for heading in HEADINGS[locale][1:]:
        assert heading not in rendered.text


@pytest.mark.parametrize("locale", ["de", "ur"])
def test_no_english_in_the_section_but_the_original_citation_of_a_foreign_statute(locale: str) -> None:
    rendered = _render(locale, LAW)
    start = HEADINGS[locale][0]
    citations = [rule.provision for _, rule in default_rules().all_rules()]
    citations += [e["provision"] for key in ("advisories", "exempted", "holds", "substitute") for e in LAW[key]]
    text = rendered.text[rendered.text.index(start) :]
    assert english_words(text, allowed=citations) == []
    html = visible_text(rendered.html or "")
    assert english_words(html[html.index(start if locale == "ur" else "Wann die Fristen beginnen") :], citations) == []
