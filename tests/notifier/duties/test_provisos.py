"""What statutes allow beside their duties: encryption safe harbours, law-enforcement delays and
substitute notice. Each test cites the provision that decides it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from breachwatch.notifier.duties import (
    DelayRequest,
    Duty,
    RuleFileError,
    assess,
    hold,
    load_rules,
)
from breachwatch.notifier.duties.engine import DEFAULT_RULES_DIR

DETECTED = datetime(2026, 11, 24, 2, 40, tzinfo=UTC)
CONFIRMED = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
MOMENTS = {"detected": DETECTED, "confirmed": CONFIRMED, "aware": CONFIRMED}
DAY = timedelta(days=1)


def duties(jurisdiction: str, role: str = "controller", **kw: object) -> dict[str, Duty]:
    found = assess(jurisdiction, role=role, moments=MOMENTS, **kw)  # type: ignore[arg-type]
    return {d.rule_id: d for d in found.duties()}


def exempted(jurisdiction: str, role: str = "controller", **kw: object) -> dict[str, str]:
    found = assess(jurisdiction, role=role, moments=MOMENTS, **kw)  # type: ignore[arg-type]
    return {e.rule_id: e.provision for e in found.exempted()}


# --- encryption safe harbour ------------------------------------------------------------------


def test_california_counts_only_unencrypted_personal_information() -> None:
    # Cal. Civ. Code 1798.82(a): "unencrypted personal information, or encrypted personal
    # information [with its key]". Card numbers encrypted, key safe: no resident notice.
    kw = {"data_categories": {"personal", "financial_account"}, "affected_subjects": 900}
    assert "us-ca.residents" in duties("US-CA", **kw)
    lifted = {"unencrypted_categories": {"personal"}}
    assert "us-ca.residents" not in duties("US-CA", **kw, **lifted)
    assert exempted("US-CA", **kw, **lifted)["us-ca.residents"] == "Cal. Civ. Code 1798.82(a), (h)"
    # The vendor's own duty to the owner is lifted the same way (the same section).
    assert exempted("US-CA", "processor", **kw, **lifted)["us-ca.maintainer-to-owner"].startswith("Cal. Civ. Code")
    # Social security numbers in the clear still count.
    plain_ids = {"unencrypted_categories": {"personal", "government_id"}}
    assert "us-ca.residents" in duties("US-CA", **kw | {"data_categories": {"personal", "government_id"}}, **plain_ids)


def test_gdpr_lifts_only_the_communication_to_individuals() -> None:
    # GDPR Art 34(3)(a): no communication to individuals if the data were made unintelligible,
    # e.g. encrypted. Art 33 has no such exception: the supervisory authority is still notified.
    kw = {"data_categories": {"personal", "health"}, "affected_subjects": 400, "unencrypted_categories": ()}
    found = duties("DE", **kw)
    assert "eu.art33-1.authority" in found and "eu.art34.data-subjects" not in found
    assert exempted("DE", **kw) == {"eu.art34.data-subjects": "GDPR Art 34(3)(a)"}
    # The processor still tells the controller (Art 33(2) has no exception).
    assert "eu.art33-2.controller" in duties("DE", "processor", **kw)
    # Part of the data in the clear: no exemption.
    assert "eu.art34.data-subjects" in duties("DE", **kw | {"unencrypted_categories": {"personal"}})


def test_hipaa_secured_phi_needs_no_notice_at_all() -> None:
    # 45 CFR 164.402: the rule covers "unsecured protected health information"; PHI encrypted as
    # the Secretary's guidance specifies is secured. Covered entity and business associate alike.
    kw = {"data_categories": {"phi"}, "affected_subjects": 800, "unencrypted_categories": ()}
    assert not {r for r in duties("US-NY", **kw) if r.startswith("us-hipaa")}
    assert set(exempted("US-NY", **kw)) >= {"us-hipaa.individuals", "us-hipaa.hhs", "us-hipaa.media"}
    assert "us-hipaa.business-associate" in exempted("US-NY", "processor", **kw)


def test_no_safe_harbour_is_claimed_unless_the_caller_says_what_was_encrypted() -> None:
    kw = {"data_categories": {"personal", "financial_account"}, "affected_subjects": 900}
    assert exempted("US-CA", **kw) == {}


def test_a_regime_without_a_safe_harbour_ignores_encryption() -> None:
    # PIPEDA weighs encryption in the real-risk-of-significant-harm test; it is no exemption.
    kw = {"data_categories": {"personal"}, "affected_subjects": 50, "unencrypted_categories": ()}
    assert "ca.individuals" in duties("CA", **kw) and exempted("CA", **kw) == {}


# --- law-enforcement delays -------------------------------------------------------------------


def _request(**kw: object) -> DelayRequest:
    base: dict[str, object] = {
        "ref": "d1",
        "requested_by": "law_enforcement",
        "form": "written",
        "requested_at": CONFIRMED + DAY,
    }
    return DelayRequest(**(base | kw))  # type: ignore[arg-type]


def test_hipaa_oral_request_holds_for_30_days_at_most() -> None:
    # 45 CFR 164.412(b): an oral statement delays notice "temporarily and no longer than 30 days
    # from the date of the oral statement, unless a written statement ... is submitted".
    duty = duties("US-NY", data_categories={"phi"}, affected_subjects=800)["us-hipaa.individuals"]
    assert duty.due_at is not None and duty.moment_used == "detected"  # discovery = detection
    at = duty.clock_started_at + 50 * DAY  # type: ignore[operator]
    held, [h] = hold(duty, [_request(form="oral", requested_at=at)])
    assert h.capped and h.end == at + 30 * DAY and h.provision == "45 CFR 164.412"
    assert held.due_at == at + 30 * DAY > duty.due_at  # due when the delay ends
    # In writing for 10 days: the 60 days (still running after it) stand unchanged.
    held, [h] = hold(duty, [_request(requested_at=at - 40 * DAY, until=at - 30 * DAY)])
    assert not h.capped and held.due_at == duty.due_at


def test_california_request_until_the_agency_says_pauses_the_clock_with_no_due_time() -> None:
    # Cal. Civ. Code 1798.82(c): notice "shall be delayed" while the agency says it impedes the
    # investigation and is made "promptly after" it says it no longer does.
    duty = duties("US-CA", data_categories={"government_id"}, affected_subjects=40)["us-ca.residents"]
    held, [h] = hold(duty, [_request()])
    assert h.end is None and h.paused(CONFIRMED + 90 * DAY)
    assert held.due_at is None and held.target_at is None  # no pages while paused
    lifted_at = duty.due_at + 5 * DAY  # type: ignore[operator]
    held, [h] = hold(duty, [_request(lifted_at=lifted_at)])
    assert not h.paused(lifted_at) and held.due_at == lifted_at and held.target_at == lifted_at


def test_only_the_attorney_general_delays_a_form_8k() -> None:
    # Form 8-K Item 1.05(c): the US Attorney General's written determination of a substantial
    # risk to national security or public safety; up to 30 days unless extended.
    duty = duties("US-CA", traits=["sec_registrant"], data_categories={"personal"})["us-sec.form-8k"]
    police = _request(requested_at=duty.clock_started_at, until=duty.clock_started_at + 10 * DAY)
    assert hold(duty, [police])[1] == ()
    ag = _request(requested_by="attorney_general", requested_at=duty.clock_started_at + timedelta(hours=1))
    held, [h] = hold(duty, [ag])
    assert h.capped and h.end == ag.requested_at + 30 * DAY == held.due_at


def test_florida_holds_only_the_notice_to_individuals_and_only_in_writing() -> None:
    # Fla. Stat. 501.171(4)(b): delay of the notice to individuals on a written request; the
    # Department of Legal Affairs' 30 days keep running.
    found = duties("US-FL", data_categories={"government_id"}, affected_subjects=900)
    request = _request(until=CONFIRMED + 60 * DAY)
    assert hold(found["us-fl.individuals"], [request])[1]
    assert hold(found["us-fl.department-of-legal-affairs"], [request])[1] == ()
    assert hold(found["us-fl.individuals"], [_request(form="oral", until=CONFIRMED + 60 * DAY)])[1] == ()


def test_gdpr_clocks_are_never_held_by_law_enforcement() -> None:
    # GDPR Art 33 has no law-enforcement delay (recital 88 only asks that the investigation's
    # interests be taken into account).
    found = duties("DE", data_categories={"personal"}, affected_subjects=400)
    request = _request(until=CONFIRMED + 30 * DAY)
    assert all(hold(d, [request])[1] == () for d in found.values())


def test_a_request_after_the_deadline_moves_nothing() -> None:
    duty = duties("US-NY", data_categories={"phi"}, affected_subjects=800)["us-hipaa.individuals"]
    late = _request(requested_at=duty.due_at + DAY, until=duty.due_at + 40 * DAY)  # type: ignore[operator]
    assert hold(duty, [late]) == (duty, ())


# --- substitute notice ------------------------------------------------------------------------


def test_california_allows_substitute_notice_above_500000_residents() -> None:
    # Cal. Civ. Code 1798.82(j)(3): substitute notice where the affected class exceeds 500,000
    # persons (or the cost exceeds $250,000, or contact information is insufficient).
    many = duties("US-CA", data_categories={"government_id"}, affected_subjects=600_000)["us-ca.residents"]
    assert many.substitute is not None and many.substitute.allowed is True
    few = duties("US-CA", data_categories={"government_id"}, affected_subjects=300)["us-ca.residents"]
    assert few.substitute is not None and few.substitute.allowed is None  # contacts and cost not known
    assert "the cost of notice would exceed $250,000" in few.substitute.reasons


def test_hipaa_substitute_notice_when_contact_details_are_missing() -> None:
    # 45 CFR 164.404(d)(2): substitute notice where contact information is insufficient.
    kw = {"data_categories": {"phi"}, "affected_subjects": 800}
    unknown = duties("US-NY", **kw)["us-hipaa.individuals"].substitute
    assert unknown is not None and unknown.allowed is None
    missing = duties("US-NY", **kw, contacts_missing=12)["us-hipaa.individuals"].substitute
    assert missing is not None and missing.allowed is True and "12 recorded" in missing.reasons[0]
    none_missing = duties("US-NY", **kw, contacts_missing=0)["us-hipaa.individuals"].substitute
    assert none_missing is not None and none_missing.allowed is False
    # The notice to HHS has no substitute: it is not notice to individuals.
    assert duties("US-NY", **kw)["us-hipaa.hhs"].substitute is None


def test_gdpr_substitute_is_a_judgement_of_disproportionate_effort() -> None:
    # GDPR Art 34(3)(c): a public communication where individual communication would involve
    # disproportionate effort; only a person can judge that.
    found = duties("FR", data_categories={"personal"}, affected_subjects=2_000_000, contacts_missing=900)
    option = found["eu.art34.data-subjects"].substitute
    assert option is not None and option.allowed is None and option.provision == "GDPR Art 34(3)(c)"


# --- rule files ------------------------------------------------------------------------------


def _copy_rules(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    for path in DEFAULT_RULES_DIR.glob("*.toml"):
        (folder / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            '[law_enforcement_delay]\nprovision = "x"\ntext = "x"\nduties = ["us-tx.nothing"]\nsources = ["S20"]\n',
            "law_enforcement_delay names duties ['us-tx.nothing']",
        ),
        ('[safe_harbour]\nprovision = "x"\ntext = "x"\nsources = ["NOPE"]\n', "safe_harbour cites unknown sources"),
        (
            '[substitute_notice]\nprovision = "x"\nmethods = "x"\nsources = ["S20"]\n',
            "substitute notice needs min_affected",
        ),
    ],
)
def test_a_proviso_that_names_nothing_real_fails_loading(tmp_path: Path, table: str, message: str) -> None:
    folder = _copy_rules(tmp_path)
    path = folder / "us-tx.toml"
    text = path.read_text(encoding="utf-8")
    text = text[: text.index("# --- What the statute allows")]
    path.write_text(text + table, encoding="utf-8")
    with pytest.raises(RuleFileError, match=r"us-tx\.toml") as caught:
        load_rules(folder)
    assert message in str(caught.value)
