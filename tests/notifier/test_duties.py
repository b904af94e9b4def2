"""Breach-notification duties: rule data, jurisdiction matching, thresholds, deadlines, status."""

from __future__ import annotations

import shutil
import tomllib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from breachwatch.notifier.duties import (
    BRAZIL,
    CONTENT_ELEMENTS,
    DATA_CATEGORIES,
    DEFAULT_RULES_DIR,
    ENTITY_TRAITS,
    SENSITIVITY_CATEGORIES,
    US_FEDERAL,
    ContractualOverride,
    Duty,
    RuleFileError,
    assess,
    br_national_holidays,
    default_rules,
    duties_for,
    easter_sunday,
    load_rules,
    status,
    us_federal_holidays,
    warnings_crossed,
)

VECTORS: list[dict[str, Any]] = tomllib.loads((Path(__file__).parent / "duty_vectors.toml").read_text("utf-8"))[
    "vector"
]
# Wednesday 25 November 2026, the day before US Thanksgiving.
AWARE = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def by_id(duties: list[Duty]) -> dict[str, Duty]:
    return {d.rule_id: d for d in duties}


def run(jurisdiction: str, role: str = "controller", **kw: Any) -> dict[str, Duty]:
    kw.setdefault("affected_subjects", None)
    kw.setdefault("data_categories", {"personal"})
    kw.setdefault("aware_at", AWARE)
    return by_id(duties_for(jurisdiction, role=role, **kw))  # type: ignore[arg-type]


# --- Deadline vectors -----------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_deadline_vector(vector: dict[str, Any]) -> None:
    found = run(
        vector["jurisdiction"],
        vector["role"],
        affected_subjects=vector.get("affected"),
        data_categories=set(vector["categories"]),
        aware_at=vector.get("aware_at", AWARE),
        traits=vector.get("traits", ()),
        clock_starts=vector.get("clock_starts"),
        sent_notices=vector.get("sent"),
        moments=vector.get("moments"),
    )
    assert vector["rule"] in found, f"{vector['rule']} not among {sorted(found)}"
    duty = found[vector["rule"]]
    assert duty.due_at == (None if vector.get("no_due") else vector["due_at"])
    assert duty.target_at == (None if vector.get("no_target") else vector["target_at"])
    for moment in (duty.due_at, duty.target_at):
        assert moment is None or moment.utcoffset() == timedelta(0)


def test_every_rule_has_a_deadline_vector() -> None:
    # A draft bill's rules yield advisories, which have no deadline to pin.
    vectored = {v["rule"] for v in VECTORS}
    missing = [rule.id for regime, rule in default_rules().all_rules() if rule.id not in vectored and not regime.draft]
    assert missing == []


# --- Calendars ------------------------------------------------------------------------------


def test_us_federal_holidays_2027_with_weekend_observance() -> None:
    # 2027: Juneteenth and Christmas fall on Saturdays, Independence Day on a Sunday, and
    # New Year's Day 2028 on a Saturday, so it is observed on Friday 31 December 2027.
    assert list(us_federal_holidays(2027)) == [
        date(2027, 1, 1),
        date(2027, 1, 18),
        date(2027, 2, 15),
        date(2027, 5, 31),
        date(2027, 6, 18),
        date(2027, 7, 5),
        date(2027, 9, 6),
        date(2027, 10, 11),
        date(2027, 11, 11),
        date(2027, 11, 25),
        date(2027, 12, 24),
        date(2027, 12, 31),
    ]
    assert us_federal_holidays(2027)[date(2027, 12, 31)] == "New Year's Day (observed)"


def test_us_thanksgiving_and_juneteenth_start() -> None:
    assert us_federal_holidays(2026)[date(2026, 11, 26)] == "Thanksgiving Day"
    assert not US_FEDERAL.is_business_day(date(2026, 11, 26))
    assert US_FEDERAL.is_business_day(date(2026, 11, 27))
    assert date(2020, 6, 19) not in us_federal_holidays(2020)  # before the 2021 law


@pytest.mark.parametrize(
    ("year", "easter"),
    [(2000, date(2000, 4, 23)), (2019, date(2019, 4, 21)), (2025, date(2025, 4, 20)), (2026, date(2026, 4, 5))],
)
def test_easter(year: int, easter: date) -> None:
    assert easter_sunday(year) == easter


def test_brazil_national_holidays_are_the_statutory_list() -> None:
    # Lei 662/1949 art. 1, as worded by Lei 10.607/2002: "São feriados nacionais os dias 1o de
    # janeiro, 21 de abril, 1o de maio, 7 de setembro, 2 de novembro, 15 de novembro e 25 de
    # dezembro"; Lei 6.802/1980 art. 1: 12 de outubro; Lei 14.759/2023 art. 1: 20 de novembro.
    assert list(br_national_holidays(2025)) == [
        date(2025, 1, 1),
        date(2025, 4, 21),
        date(2025, 5, 1),
        date(2025, 9, 7),
        date(2025, 10, 12),
        date(2025, 11, 2),
        date(2025, 11, 15),
        date(2025, 11, 20),
        date(2025, 12, 25),
    ]
    assert date(2023, 11, 20) not in br_national_holidays(2023)  # Lei 14.759 is of 21 December 2023


@pytest.mark.parametrize(
    "day",
    [date(2025, 3, 3), date(2025, 3, 4), date(2025, 3, 5), date(2025, 4, 18), date(2025, 6, 19)],
    ids=["carnival-monday", "carnival-tuesday", "ash-wednesday", "good-friday", "corpus-christi"],
)
def test_brazil_optional_days_off_are_business_days(day: date) -> None:
    # None is in the statutory list above: Carnival and Corpus Christi are "ponto facultativo"
    # (federal staff only, by yearly ministerial order); Good Friday is a religious holiday that
    # municipal law declares (Lei 9.093/1995 art. 2: "dias de guarda, declarados em lei
    # municipal ... neste incluída a Sexta-Feira da Paixão"). Counting them is the earlier reading.
    assert BRAZIL.is_business_day(day)


@settings(max_examples=200, deadline=None)
@given(
    start=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)),
    days=st.integers(min_value=1, max_value=25),
    calendar=st.sampled_from([US_FEDERAL, BRAZIL]),
)
def test_business_days_land_on_the_nth_business_day_at_the_same_local_time(start, days, calendar) -> None:
    due = calendar.add_business_days(start, days)
    zone = ZoneInfo(calendar.zone)
    local_start, local_due = start.astimezone(zone), due.astimezone(zone)
    assert due > start
    assert local_due.time() == local_start.time()
    assert calendar.is_business_day(local_due.date())
    between = [
        local_start.date() + timedelta(days=i) for i in range(1, (local_due.date() - local_start.date()).days + 1)
    ]
    assert sum(calendar.is_business_day(d) for d in between) == days


def test_naive_clock_start_is_rejected() -> None:
    with pytest.raises(ValueError, match="aware"):
        US_FEDERAL.add_business_days(datetime(2026, 11, 25, 10, 0), 4)
    with pytest.raises(ValueError, match="aware_at"):
        run("DE", aware_at=datetime(2026, 11, 25, 10, 0))


# --- Jurisdiction matching and roles --------------------------------------------------------


@pytest.mark.parametrize("code", ["DE", "FR", "NL", "IE", "GR", "NO", "DE-BY", "de"])
def test_eu_and_eea_codes_map_to_gdpr(code: str) -> None:
    assert {"eu.art33-1.authority", "eu.art34.data-subjects"} <= set(run(code))


def test_gb_maps_to_uk_gdpr_not_eu() -> None:
    found = run("GB")
    assert "uk.art33-1.ico" in found
    assert not any(rule.startswith("eu.") for rule in found)


def test_ca_is_canada_and_us_ca_is_california() -> None:
    assert set(run("CA")) == {"ca.opc", "ca.individuals", "ca.organisations"}
    california = run("US-CA", data_categories={"government_id"})
    assert "us-ca.residents" in california
    assert not any(rule.startswith("ca.") for rule in california)


def test_processor_gets_only_duties_owed_to_the_customer() -> None:
    found = run("DE", "processor")
    assert list(found) == ["eu.art33-2.controller"]
    assert found["eu.art33-2.controller"].whom.kind == "controller"


def test_unknown_jurisdiction_gives_only_the_contractual_duty_to_the_customer() -> None:
    found = run("KE", "processor")
    assert list(found) == ["contract.customer"]
    duty = found["contract.customer"]
    assert (duty.basis, duty.whom.kind, duty.due_at) == ("contract", "controller", None)
    assert run("KE", "controller") == {}


def test_country_without_state_gets_no_state_law() -> None:
    assert list(run("US", "processor")) == ["contract.customer"]


@pytest.mark.parametrize("bad", ["Germany", "D", "US_CA", ""])
def test_malformed_jurisdiction_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="jurisdiction"):
        run(bad)


def test_sec_applies_only_to_registrants_anywhere() -> None:
    assert "us-sec.form-8k" not in run("US-NY")
    assert "us-sec.form-8k" in run("JP", traits=["sec_registrant"])
    with pytest.raises(ValueError, match="traits"):
        run("US-NY", traits=["listed"])


def test_hipaa_needs_phi() -> None:
    assert not any(
        r.startswith("us-hipaa") for r in run("US-FL", data_categories={"credentials"}, affected_subjects=900)
    )
    found = run("US-FL", data_categories={"phi"}, affected_subjects=900)
    assert {"us-hipaa.individuals", "us-hipaa.hhs", "us-hipaa.media"} <= set(found)
    assert "us-hipaa.hhs-annual-log" not in found


# --- Thresholds -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jurisdiction", "rule", "categories", "below", "at"),
    [
        ("US-TX", "us-tx.attorney-general", {"government_id"}, 249, 250),
        ("US-TX", "us-tx.credit-reporting-agencies", {"government_id"}, 10000, 10001),
        ("US-CA", "us-ca.attorney-general", {"financial_account"}, 500, 501),
        ("US-NY", "us-ny.credit-reporting-agencies", {"credentials"}, 5000, 5001),
        ("US-FL", "us-fl.department-of-legal-affairs", {"health"}, 499, 500),
        ("US-FL", "us-fl.credit-reporting-agencies", {"health"}, 1000, 1001),
        ("US-FL", "us-hipaa.media", {"phi"}, 500, 501),
        ("SG", "sg.pdpc", {"personal"}, 499, 500),
    ],
)
def test_threshold_below_and_at(jurisdiction: str, rule: str, categories: set[str], below: int, at: int) -> None:
    assert rule not in run(jurisdiction, affected_subjects=below, data_categories=categories)
    duty = run(jurisdiction, affected_subjects=at, data_categories=categories)[rule]
    assert duty.threshold_met is True


def test_hipaa_hhs_route_switches_at_500() -> None:
    small = run("US-TX", affected_subjects=499, data_categories={"phi"})
    large = run("US-TX", affected_subjects=500, data_categories={"phi"})
    assert "us-hipaa.hhs-annual-log" in small and "us-hipaa.hhs" not in small
    assert "us-hipaa.hhs" in large and "us-hipaa.hhs-annual-log" not in large


def test_singapore_harm_limb_applies_below_500() -> None:
    duty = run("SG", affected_subjects=3, data_categories={"health"})["sg.pdpc"]
    assert duty.threshold_met is True


def test_data_categories_outside_the_statute_drop_the_duty() -> None:
    found = run("US-TX", affected_subjects=300, data_categories={"personal"})
    assert not any(rule.startswith("us-tx.") for rule in found)


def test_unknown_count_keeps_the_duty_with_the_threshold_as_a_condition() -> None:
    duty = run("US-TX", affected_subjects=None, data_categories={"government_id"})["us-tx.attorney-general"]
    assert duty.threshold_met is None
    assert duty.conditions == ("at least 250 affected individuals in the jurisdiction",)


def test_unknown_categories_keep_the_duty_with_the_categories_as_a_condition() -> None:
    duty = run("US-TX", affected_subjects=300, data_categories=set())["us-tx.individuals"]
    assert duty.threshold_met is None
    assert "government_id" in duty.conditions[0]


def test_human_judged_limb_is_returned_as_a_condition() -> None:
    # 1,000 people with ordinary data: only the unlawful-purpose limb could still apply.
    at_1000 = run("JP", affected_subjects=1000)["jp.ppc-final"]
    assert at_1000.threshold_met is None
    assert at_1000.conditions == ("the leak may have been caused for an unlawful purpose",)
    assert run("JP", affected_subjects=1001)["jp.ppc-final"].threshold_met is True
    brazil = run("BR", affected_subjects=100)["br.anpd"]
    assert brazil.conditions[0] == "the incident is of large scale"
    assert brazil.conditions[1].startswith("The incident may significantly affect")


def test_unknown_data_category_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown data categories"):
        run("DE", data_categories={"ssn"})


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="role"):
        run("DE", "vendor")
    with pytest.raises(ValueError, match="negative"):
        run("DE", affected_subjects=-1)
    with pytest.raises(ValueError, match="incident anchor"):
        run("DE", clock_starts={"year_end": AWARE})


# --- Draft law, effective dates, unconfirmed facts ------------------------------------------


def test_pakistan_draft_bill_yields_advisories_not_duties() -> None:
    # The Personal Data Protection Bill 2023 is a bill, not law; PECA 2016 has offences (s16) but
    # no duty to notify; the commission the bill proposes does not exist. So: no duty, no
    # deadline, nothing to file with a regulator, only an advisory note.
    assert run("PK", affected_subjects=5200) == {}
    no_traits = dict.fromkeys(ENTITY_TRAITS, False)
    result = assess("PK", role="controller", moments={"detected": AWARE}, affected_subjects=5200, traits=no_traits)
    (block,) = result.jurisdictions
    assert block.duties == () and block.undecided == ()
    assert {a.rule_id for a in block.advisories} == {"pk.commission", "pk.data-subjects"}
    for advisory in block.advisories:
        assert "not law" in advisory.title
        assert not hasattr(advisory, "due_at") and not hasattr(advisory, "whom")
    # The vendor's duty to the customer rests on the contract.
    assert list(run("PK", "processor")) == ["contract.customer"]


def test_dpdp_duties_start_on_13_may_2027_in_india() -> None:
    # DPDP Rules 2025: Rule 7 comes into force on 13 May 2027, a date in India (IST, UTC+5:30).
    # 18:30 UTC on 12 May is already 00:00 on 13 May in India.
    dpdp = {"in.dpdp-r7.board-intimation", "in.dpdp-r7.board-report", "in.dpdp-r7.data-principals"}
    before = run("IN", aware_at=datetime(2027, 5, 12, 18, 29, tzinfo=UTC))
    after = run("IN", aware_at=datetime(2027, 5, 12, 18, 30, tzinfo=UTC))
    assert set(before) == {"in.cert-in.report"}
    assert set(after) == dpdp | {"in.cert-in.report"}
    # The law in force on another date can be asked for explicitly.
    assert dpdp <= set(run("IN", on=date(2027, 5, 13)))


def test_facts_the_reference_could_not_confirm_are_flagged() -> None:
    rules = default_rules()
    for rule_id in [
        "pk.commission",
        "pk.data-subjects",
        "sg.pdpc",
        "sg.individuals",
        "ca.individuals",
        "ae.data-office",
        "ae.processor-to-controller",
        "in.cert-in.report",
        "jp.individuals",
    ]:
        rule = rules.rule(rule_id)
        assert rule.unconfirmed, rule_id
        assert rule.notes.strip(), rule_id
    assert not rules.rule("eu.art33-1.authority").unconfirmed


def test_every_duty_cites_its_sources() -> None:
    duty = run("DE")["eu.art33-1.authority"]
    assert [s.id for s in duty.sources] == ["S1", "S3", "S4", "S5"]
    assert duty.sources[0].citation.startswith("gdprhub.eu")
    assert duty.required_elements[:2] == ("nature", "categories")
    for _regime, rule in default_rules().all_rules():
        assert set(rule.elements) <= set(CONTENT_ELEMENTS)


# --- Contractual overrides ------------------------------------------------------------------


def test_tenant_override_of_24_hours_adds_a_contract_duty() -> None:
    term = ContractualOverride(reference="DPA clause 7.2: notify within 24 hours", amount=24)
    found = run("DE", "processor", tenant_overrides=[term])
    assert set(found) == {"eu.art33-2.controller", "contract.tenant-term-1"}
    duty = found["contract.tenant-term-1"]
    assert duty.due_at == datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
    assert (duty.basis, duty.whom.kind, duty.provision) == ("contract", "controller", term.reference)
    assert duty.sources[0].citation == term.reference


def test_tenant_override_replaces_the_contractual_default() -> None:
    term = ContractualOverride(reference="MSA 12.1", amount=2, unit="us_business_days")
    found = run("KE", "processor", tenant_overrides=[term])
    assert list(found) == ["contract.tenant-term-1"]
    # Wednesday before Thanksgiving + 2 US business days -> Monday 30 November: due when that
    # day ends in New York, aimed at 10:00 New York (the clock start's time of day).
    assert found["contract.tenant-term-1"].due_at == datetime(2026, 12, 1, 5, 0, tzinfo=UTC)
    assert found["contract.tenant-term-1"].target_at == datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    assert run("DE", "controller", tenant_overrides=[term]) == run("DE", "controller")


def test_tenant_override_must_start_from_an_incident_moment() -> None:
    with pytest.raises(ValueError, match="incident moment"):
        ContractualOverride(reference="x", amount=1, clock_start="year_end")


# --- Status ---------------------------------------------------------------------------------


def test_status_through_a_72_hour_window() -> None:
    duty = run("DE")["eu.art33-1.authority"]
    assert status(duty, AWARE + timedelta(hours=10)) == "ok"
    assert status(duty, AWARE + timedelta(hours=36)) == "due_soon"  # 50 % used
    assert status(duty, AWARE + timedelta(hours=72)) == "due_soon"  # due, not yet late
    assert status(duty, AWARE + timedelta(hours=72, seconds=1)) == "overdue"
    assert status(duty, AWARE + timedelta(hours=50), warn_fractions=(0.8,)) == "ok"
    assert warnings_crossed(duty, AWARE + timedelta(hours=60)) == (0.5, 0.8)
    assert warnings_crossed(duty, AWARE - timedelta(hours=1)) == ()


def test_status_of_a_qualitative_duty_uses_the_internal_target() -> None:
    duty = run("DE", "processor")["eu.art33-2.controller"]
    assert status(duty, AWARE + timedelta(hours=11)) == "ok"
    assert status(duty, AWARE + timedelta(hours=20)) == "due_soon"
    assert status(duty, AWARE + timedelta(hours=25)) == "overdue"


def test_status_of_a_duty_whose_clock_has_not_started() -> None:
    duty = run("US-CA", affected_subjects=900, data_categories={"government_id"})["us-ca.attorney-general"]
    assert status(duty, AWARE + timedelta(days=400)) == "ok"


def test_status_rejects_bad_fractions_and_naive_now() -> None:
    duty = run("DE")["eu.art33-1.authority"]
    with pytest.raises(ValueError, match="warn_fractions"):
        status(duty, AWARE, warn_fractions=(1.5,))
    with pytest.raises(ValueError, match="now"):
        status(duty, datetime(2026, 11, 26, 12, 0))


# --- Rule loading ---------------------------------------------------------------------------


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    shutil.copytree(DEFAULT_RULES_DIR, folder)
    return folder


def _edit(folder: Path, name: str, old: str, new: str) -> None:
    path = folder / name
    text = path.read_text("utf-8")
    assert old in text, f"{old!r} not in {name}"
    path.write_text(text.replace(old, new, 1), "utf-8")


@pytest.mark.parametrize(
    ("name", "old", "new", "message"),
    [
        ("eu.toml", 'unit = "hours"', 'unit = "fortnights"', r"eu\.toml: .*\(eu\.art33-1\.authority\)\.deadline\.unit"),
        ("eu.toml", "amount = 72\n", "", r"eu\.toml: .*\(eu\.art33-1\.authority\)\.deadline: .*needs an amount"),
        ("uk.toml", '"nature", "categories"', '"nature", "categorys"', r"uk\.toml: .*elements.*content element"),
        ("sg.toml", 'sources = ["S34", "S36"]', 'sources = ["S34", "S99"]', r"sg\.toml: .*unknown sources \['S99'\]"),
        ("us-ca.toml", 'after = "us-ca.residents"', 'after = "us-ca.resident"', r"us-ca\.toml: .*no duty has id"),
        (
            "br.toml",
            'match = "any"\nany_of',
            'match = "any"\nmin_affected = 9\nmax_affected = 3\nany_of',
            r"br\.toml: .*trigger: .*exceeds max_affected",
        ),
        ("jp.toml", "[duties.deadline]", "[duties.deadlin]", r"jp\.toml: .*deadlin: Extra inputs"),
        ("au.toml", 'id = "au"', 'id = "australia"', r"au\.toml: .*must start with the regime id"),
        ("cn.toml", "kind = ", "kind = = ", r"cn\.toml: not valid TOML"),
        (
            "pk.toml",
            "unconfirmed = true\nnotes = ",
            "unconfirmed = true\nremarks = ",
            r"pk\.toml: .*remarks: Extra inputs",
        ),
        ("ae.toml", 'notes = "The law says', 'notes = "" # The law says', r"ae\.toml: .*unconfirmed duty needs notes"),
        (
            "_policy.toml",
            'day_convention = "end_of_local_day"',
            'day_convention = "elapsed_utc"',
            r"_policy\.toml: day_",
        ),
    ],
)
def test_malformed_rule_file_names_file_and_field(
    rules_copy: Path, name: str, old: str, new: str, message: str
) -> None:
    _edit(rules_copy, name, old, new)
    with pytest.raises(RuleFileError, match=message):
        load_rules(rules_copy)


def test_duplicate_duty_id_across_files_is_rejected(rules_copy: Path) -> None:
    text = (rules_copy / "uk.toml").read_text("utf-8").replace('id = "uk"', 'id = "uk2"', 1)
    (rules_copy / "uk2.toml").write_text(text.replace("uk.art", "uk2.art"), "utf-8")
    load_rules(rules_copy)  # a well-formed new regime loads
    (rules_copy / "uk3.toml").write_text(text.replace('id = "uk2"', 'id = "uk3"', 1), "utf-8")
    with pytest.raises(RuleFileError, match=r"uk3\.toml: .*must start with the regime id"):
        load_rules(rules_copy)


def test_missing_default_and_policy_are_rejected(rules_copy: Path) -> None:
    (rules_copy / "contract.toml").unlink()
    with pytest.raises(RuleFileError, match="kind = 'default'"):
        load_rules(rules_copy)
    (rules_copy / "_policy.toml").unlink()
    with pytest.raises(RuleFileError, match=r"_policy\.toml: missing"):
        load_rules(rules_copy)


def test_counsel_can_change_a_deadline_without_code(rules_copy: Path) -> None:
    _edit(rules_copy, "sa.toml", "amount = 72", "amount = 48")
    edited = load_rules(rules_copy)
    duty = by_id(
        duties_for(
            "SA", affected_subjects=1, data_categories={"personal"}, role="controller", aware_at=AWARE, rules=edited
        )
    )["sa.sdaia"]
    assert duty.due_at == AWARE + timedelta(hours=48)


def test_internal_targets_are_configurable() -> None:
    rules = load_rules(target_hours={"without_undue_delay": 12})
    duty = by_id(
        rules.duties_for("DE", affected_subjects=None, data_categories={"personal"}, role="controller", aware_at=AWARE)
    )["eu.art34.data-subjects"]
    assert duty.target_at == AWARE + timedelta(hours=12)
    with pytest.raises(RuleFileError, match="unknown standards"):
        load_rules(target_hours={"soonish": 5})


# --- Shape for the rest of the notifier -----------------------------------------------------


def test_duties_are_ordered_by_target_and_serialise_to_json() -> None:
    duties = duties_for("DE", affected_subjects=None, data_categories={"personal"}, role="controller", aware_at=AWARE)
    assert [d.rule_id for d in duties] == ["eu.art34.data-subjects", "eu.art33-1.authority"]
    payload = duties[1].model_dump(mode="json")
    assert payload["due_at"] == "2026-11-28T15:00:00Z"
    assert payload["whom"]["kind"] == "authority"


def test_sensitivity_labels_map_to_known_categories() -> None:
    for categories in SENSITIVITY_CATEGORIES.values():
        assert categories <= set(DATA_CATEGORIES)
