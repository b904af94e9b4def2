"""Pinned readings of the law behind the duties engine (review of December 2026).

Each test cites the provision and the words that decide it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from breachwatch.notifier.duties import (
    ENTITY_TRAITS,
    Duty,
    annual_logs,
    assess,
    default_category_map,
    default_rules,
    duties_for,
)

NY, LA, SYD = ZoneInfo("America/New_York"), ZoneInfo("America/Los_Angeles"), ZoneInfo("Australia/Sydney")
NO_TRAITS = dict.fromkeys(ENTITY_TRAITS, False)


def one(jurisdiction: str, rule: str, role: str = "controller", **kw: object) -> Duty:
    kw.setdefault("affected_subjects", None)
    kw.setdefault("data_categories", {"personal"})
    found = {d.rule_id: d for d in duties_for(jurisdiction, role=role, **kw)}  # type: ignore[arg-type]
    assert rule in found, sorted(found)
    return found[rule]


# --- 1. Day counts end with the local day ---------------------------------------------------


def test_california_30_days_before_the_spring_clock_change_end_at_local_midnight() -> None:
    # Cal. Civ. Code 1798.82(a) (SB 446): "within 30 calendar days of discovery"; Cal. Gov. Code
    # 6800: "computed by excluding the first day, and including the last"; 6806: "A day is the
    # period of time between any midnight and the midnight following." Discovery 23:29 on 7 March
    # 2026; clocks spring forward on 8 March; day 30 is 6 April.
    start = datetime(2026, 3, 7, 23, 29, tzinfo=LA)
    duty = one("US-CA", "us-ca.residents", data_categories={"government_id"}, aware_at=start)
    assert duty.due_at == datetime(2026, 4, 7, 0, 0, tzinfo=LA)  # not 00:29, as 30 x 24 h gave
    assert (duty.due_last_day, duty.due_zone) == (date(2026, 4, 6), "America/Los_Angeles")
    assert duty.target_at == duty.due_at


def test_hipaa_business_associate_60_days_end_at_local_midnight_not_31_minutes_later() -> None:
    # 45 CFR 164.410(b)(1): "without unreasonable delay and in no case later than 60 calendar
    # days after discovery of a breach". Discovery 23:31 on 7 March 2026 in New York.
    start = datetime(2026, 3, 7, 23, 31, tzinfo=NY)
    duty = one("US-NY", "us-hipaa.business-associate", "processor", data_categories={"phi"}, aware_at=start)
    assert duty.due_at == datetime(2026, 5, 7, 0, 0, tzinfo=NY)
    assert duty.due_last_day == date(2026, 5, 6)


def test_australia_30_day_assessment_before_the_october_clock_change() -> None:
    # Privacy Act 1988 s26WH(2)(b): "take all reasonable steps to ensure that the assessment is
    # completed within 30 days after the entity becomes aware"; Acts Interpretation Act 1901
    # s36(1) item 6: a period "expressed to begin after a specified day does not include that day".
    # 23:31 on 3 October 2026 in Sydney; daylight time starts on 4 October.
    start = datetime(2026, 10, 3, 23, 31, tzinfo=SYD)
    duty = one("AU", "au.assessment", aware_at=start)
    assert duty.due_at == datetime(2026, 11, 3, 0, 0, tzinfo=SYD)  # end of 2 November, eastern states
    assert duty.target_at == duty.due_at


def test_every_zone_in_the_zone_file_exists() -> None:
    rules = default_rules()
    for code in ("US", "US-TX", "AU", "BR", "FR", "KE"):
        for zone in rules.zones_of(code):
            ZoneInfo(zone)
    assert rules.zones_of("US-WA") == rules.zones_of("US")  # a state not listed: every US zone
    assert rules.zones_of("KE") == ("Pacific/Kiritimati",)  # unknown country: the earliest day end


# --- 3. HIPAA annual log: the local calendar year ---------------------------------------------


def test_hipaa_log_for_a_breach_on_new_years_eve_in_new_york_is_due_1_march() -> None:
    # 45 CFR 164.408(c): breaches of fewer than 500 are reported "not later than 60 days after the
    # end of each calendar year". 23:30 on 31 December 2026 in New York is 2027 in UTC, but the
    # year is New York's: 2026 ends, day 60 of 2027 is 1 March.
    start = datetime(2026, 12, 31, 23, 30, tzinfo=NY)
    duty = one("US-NY", "us-hipaa.hhs-annual-log", affected_subjects=40, data_categories={"phi"}, aware_at=start)
    assert duty.due_at == datetime(2027, 3, 2, 0, 0, tzinfo=NY)
    assert duty.due_last_day == date(2027, 3, 1)


def test_annual_logs_group_every_breach_of_the_local_year() -> None:
    # 164.408(c): one log per calendar year, "for breaches discovered during the preceding calendar year".
    found = [
        datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
        datetime(2027, 1, 1, 3, 0, tzinfo=UTC),  # 22:00 on 31 December 2026 in New York
        datetime(2027, 6, 1, 12, 0, tzinfo=UTC),
    ]
    logs = annual_logs(found, "US-NY")
    assert [(log.year, len(log.breaches)) for log in logs] == [(2026, 2), (2027, 1)]
    assert logs[0].due_at == datetime(2027, 3, 2, 0, 0, tzinfo=NY)
    assert logs[1].due_last_day == date(2028, 2, 29)  # 60th day of leap year 2028


# --- 5. Form 8-K: four business days, by 17:30 Eastern -----------------------------------------


def test_form_8k_is_due_at_1730_eastern_on_the_fourth_business_day() -> None:
    # Form 8-K General Instruction B.1 / Item 1.05: filed "within four business days after the
    # registrant determines" materiality; 17 CFR 232.13(a)(2): a transmission "commencing after
    # 5:30 p.m. Eastern" is "deemed filed as of the next business day". Determined Monday
    # 16 November 2026 at 22:00 in New York (Tuesday in UTC): counting starts from Monday.
    material = datetime(2026, 11, 16, 22, 0, tzinfo=NY)
    duty = one(
        "US-CA",
        "us-sec.form-8k",
        traits=["sec_registrant"],
        moments={"detected": datetime(2026, 11, 10, 9, 0, tzinfo=NY), "material": material},
    )
    assert duty.due_at == datetime(2026, 11, 20, 17, 30, tzinfo=NY)
    assert (duty.moment_used, duty.moment_is_fallback) == ("material", False)


# --- 6. Clock anchors ------------------------------------------------------------------------


MOMENTS = {
    "detected": datetime(2026, 11, 25, 8, 0, tzinfo=UTC),
    "confirmed": datetime(2026, 11, 26, 8, 0, tzinfo=UTC),
}


def test_cert_in_runs_six_hours_from_detection() -> None:
    # CERT-In Directions of 28 April 2022, (ii): report "within 6 hours of noticing such incidents".
    duty = one("IN", "in.cert-in.report", "processor", moments={**MOMENTS, "aware": MOMENTS["confirmed"]})
    assert duty.due_at == datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
    assert (duty.clock_start, duty.moment_used) == ("noticing", "detected")


def test_hipaa_discovery_is_detection() -> None:
    # 45 CFR 164.404(a)(2): treated as discovered "as of the first day on which such breach is
    # known ... or, by exercising reasonable diligence would have been known".
    duty = one("US-NY", "us-hipaa.individuals", data_categories={"phi"}, moments=MOMENTS)
    assert duty.clock_started_at == MOMENTS["detected"]
    assert duty.moment_used == "detected"


def test_gdpr_awareness_uses_the_recorded_moment_or_the_earliest_stand_in() -> None:
    # GDPR Art 33(1): "not later than 72 hours after having become aware of it".
    aware = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
    recorded = one("DE", "eu.art33-1.authority", moments={**MOMENTS, "aware": aware})
    assert (recorded.clock_started_at, recorded.moment_used, recorded.moment_is_fallback) == (aware, "aware", False)
    stand_in = one("DE", "eu.art33-1.authority", moments=MOMENTS)
    assert (stand_in.clock_started_at, stand_in.moment_used, stand_in.moment_is_fallback) == (
        MOMENTS["detected"],
        "detected",
        True,
    )


# --- 7. Missing and corrected duties ---------------------------------------------------------


def test_texas_maintainer_notifies_the_owner_immediately() -> None:
    # Tex. Bus. & Com. Code 521.053(c): a person that maintains data it does not own "shall notify
    # the owner or license holder ... immediately after discovering the breach".
    duty = one("US-TX", "us-tx.maintainer-to-owner", "processor", data_categories={"government_id"}, moments=MOMENTS)
    assert (duty.whom.kind, duty.deadline.unit, duty.due_at) == ("controller", "immediately", None)


def test_new_york_maintainer_notice_is_immediate_not_30_days() -> None:
    # GBL 899-aa(3): notify the owner or licensee "immediately following discovery"; the 30 days
    # of 899-aa(2) (S2659-B, 2024) bind the notice to residents.
    duty = one("US-NY", "us-ny.maintainer-to-owner", "processor", data_categories={"credentials"}, moments=MOMENTS)
    assert duty.due_at is None and duty.deadline.unit == "immediately"
    assert duty.target_at == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def test_california_breach_in_2025_still_has_a_duty() -> None:
    # Cal. Civ. Code 1798.82(a) before SB 446: "in the most expedient time possible and without
    # unreasonable delay"; SB 446's 30 days apply from 1 January 2026.
    at = datetime(2025, 12, 31, 23, 0, tzinfo=LA)  # already 2026 in UTC
    found = {
        d.rule_id
        for d in duties_for(
            "US-CA", role="controller", affected_subjects=10, data_categories={"government_id"}, aware_at=at
        )
    }
    assert "us-ca.residents-before-2026" in found and "us-ca.residents" not in found


def test_australian_holding_entity_has_its_own_duties_unless_the_customer_acts() -> None:
    # Privacy Act s26WK(2): the entity must give the Commissioner a statement "as soon as
    # practicable"; s26WM: if one entity complies, the sections "do not apply" to the others.
    duty = one("AU", "au.holder.oaic", "processor", moments=MOMENTS)
    assert duty.whom.kind == "authority"
    assert "26WM" in (duty.conditions[-1] + duty.provision)


def test_nis2_applies_only_to_essential_or_important_entities() -> None:
    # Directive 2022/2555 Art 23(4)(a): "within 24 hours of becoming aware of the significant
    # incident, an early warning"; Art 23(1): "essential and important entities".
    assert "eu-nis2.early-warning" not in {
        d.rule_id
        for d in duties_for(
            "FR",
            role="controller",
            affected_subjects=None,
            data_categories={"personal"},
            moments=MOMENTS,
            traits=NO_TRAITS,
        )
    }
    duty = one("FR", "eu-nis2.early-warning", moments=MOMENTS, traits=["nis2_entity"])
    assert duty.due_at == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def test_regulation_s_p_applies_from_its_first_compliance_date() -> None:
    # 17 CFR 248.30(a)(4)(iii): notice "as soon as practicable, but not later than 30 days, after
    # becoming aware"; compliance from 3 December 2025 (larger entities; the earlier date used).
    facts = {"affected_subjects": 5, "data_categories": {"financial_account"}, "traits": ["regsp_covered_institution"]}
    early = datetime(2025, 12, 2, 12, 0, tzinfo=NY)
    assert "us-regsp.individuals" not in {
        d.rule_id for d in duties_for("US-NY", role="controller", aware_at=early, **facts)
    }
    duty = one("US-NY", "us-regsp.individuals", aware_at=datetime(2025, 12, 3, 12, 0, tzinfo=NY), **facts)
    assert duty.due_last_day == date(2026, 1, 2)


# --- 8. Traits, data categories, undecided duties ---------------------------------------------


def test_health_data_with_unknown_hipaa_status_is_undecided_not_dropped() -> None:
    # 45 CFR 164.402: "protected health information" is held by a covered entity or its business
    # associate; whether the tenant is one is a fact the engine may not have.
    result = assess("US-NY", role="controller", moments=MOMENTS, data_categories={"health"}, affected_subjects=40)
    undecided = {u.rule_id: u for u in result.undecided()}
    assert "us-hipaa.individuals" in undecided and not undecided["us-hipaa.individuals"].listed
    assert "hipaa_covered_entity" in undecided["us-hipaa.individuals"].missing[0]
    assert "us-hipaa.individuals" not in {d.rule_id for d in result.duties()}
    covered = assess(
        "US-NY",
        role="controller",
        moments=MOMENTS,
        data_categories={"health"},
        affected_subjects=40,
        traits={"hipaa_covered_entity": True},
    )
    assert "us-hipaa.individuals" in {d.rule_id for d in covered.duties()}
    not_covered = assess(
        "US-NY",
        role="controller",
        moments=MOMENTS,
        data_categories={"health"},
        affected_subjects=40,
        traits={"hipaa_covered_entity": False},
    )
    assert "us-hipaa.individuals" not in {u.rule_id for u in not_covered.undecided()}


def test_erp_resource_types_map_to_the_categories_state_laws_name() -> None:
    # Tex. Bus. & Com. Code 521.002(a)(2): sensitive personal information includes a social
    # security number and information on health; HR and leave records carry them.
    classified = default_category_map().classify([("employee", "personal"), ("leave_request", "personal")])
    assert {"government_id", "health"} <= classified.categories
    duty = one("US-TX", "us-tx.individuals", data_categories=classified.categories, moments=MOMENTS)
    assert duty.threshold_met is True


def test_unmapped_resource_type_keeps_the_duty_open_and_reports_it() -> None:
    # 521.053(b) applies only to sensitive personal information: an unmapped record type may hold it.
    classified = default_category_map().classify([("customer", "personal"), ("patient_chart", "personal")])
    assert classified.uncategorised == ("resource type 'patient_chart'",)
    result = assess(
        "US-TX",
        role="controller",
        moments=MOMENTS,
        data_categories=classified.categories,
        uncategorised=classified.uncategorised,
        affected_subjects=300,
        traits=NO_TRAITS,
    )
    duty = {d.rule_id: d for d in result.duties()}["us-tx.individuals"]
    assert duty.threshold_met is None and "patient_chart" in duty.conditions[0]
    assert {u.rule_id for u in result.undecided() if u.listed} >= {"us-tx.individuals", "us-tx.attorney-general"}


# --- 9. Data subjects' jurisdictions -----------------------------------------------------------


def test_duties_for_each_jurisdiction_where_data_subjects_live() -> None:
    # Tex. Bus. & Com. Code 521.053(i): the Attorney General is notified if the breach "involves
    # at least 250 residents of this state"; Cal. Civ. Code 1798.82(f): "more than 500 California
    # residents". A New York tenant holds 1,000 people: 600 in Texas, 300 in California, 100 in
    # New York; all 1,000 were taken, so every jurisdiction's count is exact.
    result = assess(
        "US-NY",
        role="controller",
        moments=MOMENTS,
        data_categories={"government_id"},
        traits=NO_TRAITS,
        affected_subjects=1000,
        data_subjects=1000,
        data_subjects_by_jurisdiction={"US-TX": 600, "US-CA": 300, "US-NY": 100},
    )
    blocks = {b.jurisdiction: b for b in result.jurisdictions}
    assert list(blocks) == ["US-NY", "US-CA", "US-TX"]
    assert (blocks["US-TX"].affected.low, blocks["US-TX"].affected.high) == (600, 600)
    assert "us-tx.attorney-general" in {d.rule_id for d in blocks["US-TX"].duties}
    assert "us-ca.attorney-general" not in {d.rule_id for d in blocks["US-CA"].duties}  # 300 <= 500
    assert "us-ny.residents" in {d.rule_id for d in blocks["US-NY"].duties}


def test_partial_breach_bounds_each_jurisdictions_count() -> None:
    # 521.053(i) again: with 400 of 1,000 affected, Texas (600 living there) has between 0 and
    # 400: the Attorney General duty stays in with its threshold as an open condition.
    result = assess(
        "US-NY",
        role="controller",
        moments=MOMENTS,
        data_categories={"government_id"},
        traits=NO_TRAITS,
        affected_subjects=400,
        data_subjects=1000,
        data_subjects_by_jurisdiction={"US-TX": 600, "US-NY": 400},
    )
    texas = {b.jurisdiction: b for b in result.jurisdictions}["US-TX"]
    assert (texas.affected.low, texas.affected.high) == (0, 400)
    duty = {d.rule_id: d for d in texas.duties}["us-tx.attorney-general"]
    assert duty.threshold_met is None


@pytest.mark.parametrize("jurisdiction", ["DE", "US-CA", "BR", "JP"])
def test_every_duty_records_its_moment(jurisdiction: str) -> None:
    for role in ("controller", "processor"):
        for duty in assess(jurisdiction, role=role, moments=MOMENTS, traits=NO_TRAITS).duties():
            assert duty.moment_used is not None or duty.after is not None
