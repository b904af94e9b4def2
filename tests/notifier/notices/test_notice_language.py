"""What a drafted notice says, in the customer's language: legal references in local form, no
English rule text, Urdu phrases whole (oblique case where a postposition follows), no measure
promised that nobody chose, and event fields escaped in the regulator draft's HTML too."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.orm import Session

from breachwatch.notifier.notices import on_breach_confirmed, preview_notice, revise_notice
from breachwatch.notifier.notices.content import notice_renderer

pytestmark = pytest.mark.usefixtures("no_notice_files")
CONFIRMED_AT = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)
SVG = "<svg onload=alert(1)>"


def _draft(engine, settings, store_incident, tenant: str = "t-rhein", **kw) -> str:
    incident_id = store_incident(tenant, tenants=(tenant,), **kw)
    with Session(engine) as session, session.begin():
        [notice_id] = on_breach_confirmed(
            session, incident_id, confirmed_by="responder-ada", confirmed_at=CONFIRMED_AT, settings=settings
        )
    return notice_id


def _preview(engine, notice_id: str, locale: str | None = None) -> dict:
    with Session(engine) as session:
        return preview_notice(session, notice_id, locale=locale)


def test_a_german_notice_cites_the_dsgvo_in_german(engine, settings, store_incident) -> None:
    p = _preview(engine, _draft(engine, settings, store_incident))
    for part in (p["text"], p["html"], p["regulator_draft"]["text"], p["regulator_draft"]["html"]):
        assert "Art. 33 Abs. 2 DSGVO" in part or "Art. 33 Abs. 1, 3 und 4 DSGVO" in part
        assert "GDPR" not in part and "Notify the" not in part and "Not required if" not in part
    assert "== Meldung an die Aufsichtsbehörde (Art. 33 Abs. 1, 3 und 4 DSGVO) ==" in p["regulator_draft"]["text"]


def test_urdu_duty_lines_are_whole_phrases(engine, settings, store_incident, directory_entry) -> None:
    # An EU customer whose security contact reads Urdu: the duties name the supervisory authority.
    notice_id = _draft(engine, settings, store_incident)
    with Session(engine) as session, session.begin():
        version = revise_notice(
            session,
            notice_id,
            editor="approver-bo",
            reason="the security contact reads Urdu",
            settings=settings,
            changes={"recipients": {"datenschutz@rhein-logistik.example": "ur"}},
        )
    assert version == 2
    text = _preview(engine, notice_id, "ur")["text"]
    assert "نگران ادارے کو اطلاع دینے کی آپ کی ذمہ داری" in text
    assert "ادارہ کو" not in text and "ادارہ کے" not in text
    assert "جی ڈی پی آر، آرٹیکل 33(1)، (3) اور (4)" in text


def test_an_unedited_draft_promises_no_measure(engine, settings, store_incident) -> None:
    notice_id = _draft(engine, settings, store_incident)
    p = _preview(engine, notice_id)
    assert "geplant" not in p["text"].lower() and "Geplant" not in p["html"]
    assert "Wir haben den Vorfall erkannt, bestätigt und untersuchen sein gesamtes Ausmaß." in p["text"]
    with Session(engine) as session, session.begin():
        revise_notice(
            session,
            notice_id,
            editor="approver-bo",
            reason="measures decided",
            settings=settings,
            changes={"measures": [{"key": "revoke_sessions", "text": "", "done": False}]},
        )
    chosen = _preview(engine, notice_id)["text"]
    assert "[geplant] Alle aktiven Sitzungen der betroffenen Konten beenden." in chosen


def test_event_fields_are_escaped_in_the_regulator_draft_html(engine, settings, store_incident) -> None:
    p = _preview(engine, _draft(engine, settings, store_incident, resource_type=SVG))
    for html in (p["html"], p["regulator_draft"]["html"]):
        assert "&lt;svg onload=alert(1)&gt;" in html
        assert "<svg" not in html


@pytest.mark.parametrize(
    ("locale", "n", "says"),
    [
        ("en", 1, "1 record"),
        ("en", 0, "0 records"),
        ("en", 1000, "1,000 records"),
        ("de", 1, "1 record"),
        ("de", 1000, "1.000 records"),
        ("fr", 0, "0 record"),  # CLDR: French counts 0 like 1 (singular), unlike English
        ("pl", 3, "3 few-form"),  # Polish has four categories: 3 takes "few", 5 "many"
        ("pl", 5, "5 many-form"),
        ("pl", 22, "22 few-form"),
        ("de-AT", 1, "1 record"),
        ("xx", 1, "1 record"),  # an unknown language falls back to English rules, not an error
    ],
)
def test_counts_take_the_plural_form_of_the_language(locale: str, n: int, says: str) -> None:
    template = notice_renderer().env.from_string('{{ n|count("record", "records", few="few-form", many="many-form") }}')
    assert template.render(n=n, locale=locale) == says
