"""Clocks as the law starts them, through the whole workflow: an incident stored as the store
keeps it, a breach confirmed later, the notices drafted. Each duty's clock starts at its own
anchor (detection, confirmation, awareness, a determination a person records), the notice and
the stored duty say which moment started it and whether it stood in, and the deadlines are the
ones the engine's pinned tests give (tests/notifier/duties/test_duties_law.py). Each test cites
its provision."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.core.settings import ConfigError
from breachwatch.notifier.notices import (
    NoticeError,
    list_notices,
    load_notice_config,
    on_breach_confirmed,
    preview_notice,
    remember_tenants,
)
from breachwatch.notifier.notices.decisions import record_moment
from breachwatch.notifier.notices.models import NoticeDutyRow, NoticeVersionRow
from breachwatch.notifier.notices.records import MomentRow

pytestmark = pytest.mark.usefixtures("no_notice_files")
UTC = dt.UTC
NY, LA = ZoneInfo("America/New_York"), ZoneInfo("America/Los_Angeles")
HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)


def as_tenant(make: Callable[..., Any], tenant_id: str, base: str, **fields: Any) -> Any:
    """A directory entry like ``base``'s in ``TENANTS`` under another tenant id."""
    return make(base, **fields).model_copy(update={"tenant_id": tenant_id})


@pytest.fixture
def store(engine, takeover) -> Callable[..., str]:
    """Stores an incident of ``entry``'s tenant whose first finding was judged at ``detected``."""

    def run(entry, *, detected: dt.datetime, incident_id: str = "inc-clock", **kw: Any) -> str:
        incident, findings, evidence = takeover(entry.tenant_id, incident_id=incident_id, **kw)
        findings[0].detected_at = detected
        with Session(engine) as session, session.begin():
            session.add(incident)
            session.flush()
            session.add_all(findings)
            session.add_all(evidence)
            remember_tenants(session, [entry])
        return incident_id

    return run


def _confirm(engine, settings, incident_id: str, at: dt.datetime) -> str:
    with Session(engine) as session, session.begin():
        [notice_id] = on_breach_confirmed(
            session, incident_id, confirmed_by="approver-bo", confirmed_at=at, settings=settings, now=at
        )
    return notice_id


def _duties(engine, notice_id: str) -> dict[str, NoticeDutyRow]:
    with Session(engine) as session:
        rows = session.scalars(
            select(NoticeDutyRow).where(NoticeDutyRow.notice_id == notice_id, NoticeDutyRow.active.is_(True))
        ).all()
        session.expunge_all()
    return {r.rule_id: r for r in rows}


def _notices_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    (tmp_path / "notices.toml").write_text(text, encoding="utf-8")
    monkeypatch.setenv("BREACHWATCH_NOTICES_FILE", str(tmp_path / "notices.toml"))


def test_confirmation_records_detection_confirmation_and_awareness(engine, settings, store, directory_entry) -> None:
    detected = dt.datetime(2026, 11, 24, 2, 41, tzinfo=UTC)
    confirmed = dt.datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    incident_id = store(directory_entry("t-rhein"), detected=detected)
    _confirm(engine, settings, incident_id, confirmed)
    with Session(engine) as session:
        recorded = {r.moment: (r.at, r.source) for r in session.scalars(select(MomentRow))}
    assert recorded == {
        "detected": (detected, "system"),
        "confirmed": (confirmed, "system"),
        "aware": (confirmed, "person"),
    }


def test_cert_in_counts_six_hours_from_detection_not_from_confirmation(
    engine, settings, store, directory_entry
) -> None:
    # CERT-In Directions of 28 April 2022, (ii): report "within 6 hours of noticing such incidents
    # or being brought to notice". The vendor and its Indian customer both owe it.
    detected = dt.datetime(2026, 11, 24, 2, 41, tzinfo=UTC)
    entry = as_tenant(directory_entry, "t-deccan", "t-indus", name="Deccan Tools Pvt Ltd", jurisdiction="IN")
    incident_id = store(entry, detected=detected)
    notice_id = _confirm(engine, settings, incident_id, dt.datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
    duties = _duties(engine, notice_id)
    for key in ("in.cert-in.report", "in.cert-in.report:customer"):
        duty = duties[key]
        assert (duty.clock_start, duty.moment_used, duty.moment_is_fallback) == ("noticing", "detected", False)
        assert duty.due_at == detected + 6 * HOUR  # 08:41, before the breach was even confirmed
    assert (duties["in.cert-in.report"].owner, duties["in.cert-in.report:customer"].owner) == ("vendor", "customer")
    with Session(engine) as session:
        text = preview_notice(session, notice_id)["text"]
    assert "noticing the incident; started when our monitoring detected it, 24 Nov 2026, 02:41 UTC" in text


def test_gdpr_awareness_is_the_confirmation(engine, settings, store, directory_entry) -> None:
    # GDPR Art 33(1): "not later than 72 hours after having become aware of it"; awareness is a
    # reasonable degree of certainty that personal data was affected: the confirmation.
    confirmed = dt.datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    incident_id = store(directory_entry("t-rhein"), detected=dt.datetime(2026, 11, 24, 2, 41, tzinfo=UTC))
    notice_id = _confirm(engine, settings, incident_id, confirmed)
    authority = _duties(engine, notice_id)["eu.art33-1.authority"]
    assert (authority.moment_used, authority.moment_is_fallback, authority.due_at) == (
        "aware",
        False,
        confirmed + 72 * HOUR,
    )


def test_hipaa_discovery_is_detection_and_60_days_end_with_the_local_day(
    engine, settings, store, directory_entry, tmp_path, monkeypatch
) -> None:
    # 45 CFR 164.404(a)(2): discovered on the first day the breach is known or "by exercising
    # reasonable diligence would have been known"; 164.404(b) and 164.410(b): "in no case later
    # than 60 calendar days after discovery". Detected 23:31 on 7 March 2026 in New York; day 60
    # is 6 May (not 31 minutes into 7 May, as 60 x 24 h across the clock change gave).
    _notices_file(
        tmp_path,
        monkeypatch,
        """
[tenants.t-hudson]
traits = { hipaa_covered_entity = true }
vendor_traits = { hipaa_business_associate = true }
resource_types = { patient_visit = ["personal", "health", "phi"] }
""",
    )
    entry = as_tenant(
        directory_entry, "t-hudson", "t-rhein", name="Hudson Clinic LLC", jurisdiction="US-NY", locale="en"
    )
    detected = dt.datetime(2026, 3, 7, 23, 31, tzinfo=NY)
    incident_id = store(entry, detected=detected, resource_type="patient_visit", records=120)
    notice_id = _confirm(engine, settings, incident_id, dt.datetime(2026, 3, 9, 15, 0, tzinfo=UTC))
    duties = _duties(engine, notice_id)
    for rule_id in ("us-hipaa.individuals", "us-hipaa.business-associate"):
        duty = duties[rule_id]
        assert (duty.clock_start, duty.moment_used) == ("discovery", "detected")
        assert duty.due_at == dt.datetime(2026, 5, 7, 0, 0, tzinfo=NY)
        assert (duty.due_last_day, duty.due_zone) == (dt.date(2026, 5, 6), "America/New_York")
    with Session(engine) as session:
        text = preview_notice(session, notice_id)["text"]
    assert "due by the end of 2026-05-06 (America/New_York)" in text


def test_california_30_days_before_the_spring_clock_change(engine, settings, store, directory_entry) -> None:
    # Cal. Civ. Code 1798.82(a) (SB 446): "within 30 calendar days of discovery"; Gov. Code 6800
    # and 6806: the first day excluded, a day runs midnight to midnight. HR records hold social
    # security numbers (categories.toml: employee -> government_id).
    entry = as_tenant(
        directory_entry, "t-sierra", "t-rhein", name="Sierra Foods Inc", jurisdiction="US-CA", locale="en"
    )
    detected = dt.datetime(2026, 3, 7, 23, 29, tzinfo=LA)
    incident_id = store(entry, detected=detected, resource_type="employee", records=40)
    notice_id = _confirm(engine, settings, incident_id, dt.datetime(2026, 3, 10, 17, 0, tzinfo=UTC))
    duty = _duties(engine, notice_id)["us-ca.residents"]
    assert duty.due_at == dt.datetime(2026, 4, 7, 0, 0, tzinfo=LA)
    assert (duty.moment_used, duty.due_last_day) == ("detected", dt.date(2026, 4, 6))


def test_texas_determination_stands_in_until_a_person_records_it(engine, settings, store, directory_entry) -> None:
    # Tex. Bus. & Com. Code 521.053(b): "not later than the 60th day after the date on which the
    # person determines that the breach occurred". Until the determination is recorded the
    # earliest recorded moment stands in (the earliest defensible deadline), marked as such.
    entry = as_tenant(directory_entry, "t-alamo", "t-rhein", name="Alamo Parts LLC", jurisdiction="US-TX", locale="en")
    detected = dt.datetime(2026, 11, 24, 2, 41, tzinfo=UTC)
    incident_id = store(entry, detected=detected, resource_type="employee", records=400)
    notice_id = _confirm(engine, settings, incident_id, dt.datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
    before = _duties(engine, notice_id)["us-tx.individuals"]
    assert (before.moment_used, before.moment_is_fallback, before.clock_started_at) == ("detected", True, detected)
    with Session(engine) as session:
        text = preview_notice(session, notice_id)["text"]
    assert "that moment is not recorded yet; the earliest recorded one stands in" in text

    determined = dt.datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
    with Session(engine) as session, session.begin():
        result = record_moment(
            session,
            incident_id,
            "determined",
            determined,
            by="approver-bo",
            note="counsel determined",
            settings=settings,
            now=determined + HOUR,
        )
    assert result["redrafted"] == [notice_id]
    after = _duties(engine, notice_id)["us-tx.individuals"]
    assert (after.moment_used, after.moment_is_fallback, after.clock_started_at) == ("determined", False, determined)
    assert after.due_last_day == dt.date(2027, 1, 25)  # 60 days after 26 November, Central time
    with Session(engine) as session:
        assert session.scalar(select(NoticeVersionRow.version).order_by(NoticeVersionRow.version.desc())) == 2


def test_form_8k_runs_from_the_recorded_materiality_determination(
    engine, settings, store, directory_entry, tmp_path, monkeypatch
) -> None:
    # Form 8-K Item 1.05: "within four business days after the registrant determines" that the
    # incident is material; 17 CFR 232.13(a)(2): filed by 17:30 Eastern. Determined Monday
    # 16 November 2026 at 22:00 in New York.
    _notices_file(tmp_path, monkeypatch, "[tenants.t-sierra]\ntraits = { sec_registrant = true }\n")
    entry = as_tenant(
        directory_entry, "t-sierra", "t-rhein", name="Sierra Foods Inc", jurisdiction="US-CA", locale="en"
    )
    incident_id = store(entry, detected=dt.datetime(2026, 11, 10, 14, 0, tzinfo=UTC))
    notice_id = _confirm(engine, settings, incident_id, dt.datetime(2026, 11, 12, 9, 0, tzinfo=UTC))
    before = _duties(engine, notice_id)["us-sec.form-8k"]
    assert (before.moment_used, before.moment_is_fallback) == ("detected", True)
    material = dt.datetime(2026, 11, 16, 22, 0, tzinfo=NY)
    with Session(engine) as session, session.begin():
        record_moment(session, incident_id, "material", material, by="approver-bo", settings=settings)
    after = _duties(engine, notice_id)["us-sec.form-8k"]
    assert (after.moment_used, after.moment_is_fallback) == ("material", False)
    assert after.due_at == dt.datetime(2026, 11, 20, 17, 30, tzinfo=NY)


def test_dpdp_duties_start_on_the_indian_date(engine, settings, store, directory_entry) -> None:
    # DPDP Rules 2025, r7 in force on 13 May 2027 (India): confirmed at 21:00 UTC on 12 May, which
    # is 02:30 on 13 May in India.
    entry = as_tenant(directory_entry, "t-deccan", "t-indus", name="Deccan Tools Pvt Ltd", jurisdiction="IN")
    incident_id = store(entry, detected=dt.datetime(2027, 5, 12, 20, 0, tzinfo=UTC))
    notice_id = _confirm(engine, settings, incident_id, dt.datetime(2027, 5, 12, 21, 0, tzinfo=UTC))
    assert "in.dpdp-r7.board-report" in _duties(engine, notice_id)


def test_brazil_counts_carnival_as_business_days(engine, settings, store, directory_entry) -> None:
    # Resolution CD/ANPD 15/2024 art. 6: three business days from knowledge of the incident;
    # Lei 662/1949 (as worded by Lei 10.607/2002), Lei 6.802/1980 and Lei 14.759/2023 list the
    # national holidays, and Carnival (8-9 February 2027) is not one of them: confirmed on Friday
    # 5 February, the third business day is Wednesday 10 February, Brasilia time.
    sao = ZoneInfo("America/Sao_Paulo")
    entry = as_tenant(directory_entry, "t-ipiranga", "t-rhein", name="Ipiranga Ltda", jurisdiction="BR", locale="en")
    confirmed = dt.datetime(2027, 2, 5, 12, 0, tzinfo=sao)
    incident_id = store(entry, detected=confirmed - 3 * HOUR)
    notice_id = _confirm(engine, settings, incident_id, confirmed)
    duty = _duties(engine, notice_id)["br.anpd"]
    assert (duty.moment_used, duty.due_last_day, duty.due_zone) == ("aware", dt.date(2027, 2, 10), "America/Sao_Paulo")
    assert duty.due_at == dt.datetime(2027, 2, 11, 0, 0, tzinfo=sao)


def test_a_moment_cannot_be_the_systems_or_in_the_future(engine, settings, store, directory_entry) -> None:
    incident_id = store(directory_entry("t-rhein"), detected=dt.datetime(2026, 11, 24, 2, 41, tzinfo=UTC))
    now = dt.datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    _confirm(engine, settings, incident_id, now)
    with Session(engine) as session:
        with pytest.raises(NoticeError, match="the system records detection"):
            record_moment(session, incident_id, "detected", now, by="a", settings=settings, now=now)
        with pytest.raises(NoticeError, match="in the future"):
            record_moment(session, incident_id, "aware", now + DAY, by="a", settings=settings, now=now)
        with pytest.raises(NoticeError, match="time zone"):
            record_moment(session, incident_id, "aware", now.replace(tzinfo=None), by="a", settings=settings, now=now)


# --- duties get what they need -----------------------------------------------------------------


def test_jurisdictions_where_data_subjects_live_each_get_their_duties_and_counts(
    engine, settings, store, directory_entry
) -> None:
    # Tex. Bus. & Com. Code 521.053(i): the Attorney General is notified of a breach involving at
    # least 250 Texans; Cal. Civ. Code 1798.82(f): more than 500 Californians. The tenant's
    # directory entry (contract 1.1) says where its 1,000 data subjects live; all were taken.
    entry = as_tenant(
        directory_entry,
        "t-empire",
        "t-rhein",
        name="Empire Staffing Inc",
        jurisdiction="US-NY",
        locale="en",
        data_subjects=1000,
        data_subjects_by_jurisdiction={"US-TX": 600, "US-CA": 300, "US-NY": 100},
    )
    incident_id = store(
        entry, resource_type="employee", records=5000, detected=dt.datetime(2026, 11, 24, 2, 41, tzinfo=UTC)
    )
    notice_id = _confirm(engine, settings, incident_id, dt.datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
    duties = _duties(engine, notice_id)
    assert duties["us-tx.attorney-general"].jurisdictions == ["US-TX"]
    assert "us-ca.attorney-general" not in duties  # 300 Californians: not more than 500
    assert duties["us-ny.residents"].jurisdictions == ["US-NY"]
    with Session(engine) as session:
        text = preview_notice(session, notice_id)["text"]
    assert "US-NY (your jurisdiction): 100 affected" in text and "US-TX: 600 affected" in text


def test_data_subjects_jurisdictions_from_configuration_when_the_directory_has_none(
    engine, settings, store, directory_entry, tmp_path, monkeypatch
) -> None:
    _notices_file(
        tmp_path, monkeypatch, "[tenants.t-rhein]\ndata_subjects_by_jurisdiction = { DE = 50000, AT = 11000 }\n"
    )
    incident_id = store(directory_entry("t-rhein"), detected=dt.datetime(2026, 11, 24, 2, 41, tzinfo=UTC))
    _confirm(engine, settings, incident_id, dt.datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
    with Session(engine) as session:
        [n] = list_notices(session, incident_id)
    assert [j["code"] for j in n["jurisdictions"]] == ["DE", "AT"]
    assert {d["rule_id"]: d["jurisdictions"] for d in n["duties"]}["eu.art33-1.authority"] == ["DE", "AT"]


def test_a_notice_lists_every_duty_it_could_not_decide_and_the_missing_fact(
    engine, settings, store, directory_entry
) -> None:
    # 45 CFR 164.402: PHI is held by a covered entity; whether this tenant is one is not known.
    entry = as_tenant(
        directory_entry, "t-hudson", "t-rhein", name="Hudson Clinic LLC", jurisdiction="US-NY", locale="en"
    )
    incident_id = store(
        entry, resource_type="leave_request", records=30, detected=dt.datetime(2026, 11, 24, 2, 41, tzinfo=UTC)
    )
    notice_id = _confirm(engine, settings, incident_id, dt.datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
    assert "us-hipaa.individuals" not in _duties(engine, notice_id)
    with Session(engine) as session:
        preview = preview_notice(session, notice_id)
        [n] = list_notices(session, incident_id)
    assert "DUTIES WE COULD NOT DECIDE" in preview["text"]
    assert (
        "us-hipaa.individuals (your duty; the affected individuals; US-NY): it depends on whether the entity is a"
        " HIPAA covered entity" in preview["text"]
    )
    assert "Duties we could not decide" in preview["html"]
    undecided = {u["rule_id"]: u for u in n["law"]["undecided"]}
    assert undecided["us-hipaa.individuals"]["missing_keys"] == ["trait:hipaa_covered_entity"]


def test_a_draft_bill_is_advice_never_a_duty(engine, settings, store, directory_entry) -> None:
    # Pakistan's Personal Data Protection Bill is not law: information for the customer only.
    incident_id = store(directory_entry("t-indus"), detected=dt.datetime(2026, 11, 24, 2, 41, tzinfo=UTC))
    notice_id = _confirm(engine, settings, incident_id, dt.datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
    assert not [r for r in _duties(engine, notice_id) if r.startswith("pk.")]
    with Session(engine) as session:
        preview = preview_notice(session, notice_id)
    assert "DRAFT LAWS (FOR INFORMATION ONLY, NOT A DUTY)" in preview["text"]
    assert "Personal Data Protection Bill 2023 (draft)" in preview["text"]
    assert preview["regulator_draft"] is None  # no authority to report to under a bill


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tenants.t-x]\ntraits = ['sec_filer']\n", "tenants.t-x.traits: unknown trait 'sec_filer'"),
        ("[tenants.t-x]\ndata_subjects_by_jurisdiction = { Texas = 5 }\n", "'Texas' is not a jurisdiction code"),
        ("[tenants.t-x]\nresource_types = { visit = ['medical'] }\n", "unknown data categories ['medical']"),
        ("[all_tenants]\nencrypted = 'yes'\n", "all_tenants.encrypted: true or false"),
        ("[tenants.t-x]\nphi = true\n", "unknown keys ['phi']"),
    ],
)
def test_a_wrong_tenant_fact_names_itself(settings, tmp_path, monkeypatch, text: str, message: str) -> None:
    _notices_file(tmp_path, monkeypatch, text)
    with pytest.raises(ConfigError) as caught:
        load_notice_config(settings)
    assert message in str(caught.value) and "BREACHWATCH_NOTICES_FILE" in str(caught.value)
