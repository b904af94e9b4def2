"""Which breach-notification duties apply, to whom, and by when.

The law lives in ``rules/*.toml`` (one file per legal regime, every duty with its sources),
so counsel can review and change it without touching code. This module validates those files,
matches the jurisdictions where the data subjects live, applies thresholds, entity traits,
effective dates and contractual terms, and computes deadlines with
:mod:`notifier.duties.calendars`. It is pure: the only I/O is reading the rule files.

Conventions, as the law reads (also in ``rules/_policy.toml``):

* Clocks start at each duty's own anchor. The caller gives named moments (``detected``,
  ``confirmed``, ``aware``, ``determined``, ``material``, ``assessed``); ``_policy.toml`` says
  which moment each anchor reads and, when that one is missing, which moments may stand in for
  it: the earliest of those is used. Every duty records the moment it used.
* "Within N days after X" ends when the Nth local day after the day of X ends, in the
  jurisdiction's zone (the zone whose day ends first where there are several); the internal
  target is never later than N x 24 h. Hours are elapsed time. Business days are counted on the
  calendar's own local dates and end with the day, or at a cut-off (EDGAR: 17:30 Eastern).
* In-force dates and calendar years are local dates of the jurisdiction.
* Where the law is ambiguous, the earliest defensible deadline is docketed and the duty's text
  or notes say so. A draft bill yields an advisory note, never a duty.
* A duty that cannot be decided for lack of a fact (an entity trait, the data categories, the
  number of people) is reported as undecided, never silently dropped.
* Only what a statute itself provides is relief (:mod:`.provisos`): an encryption safe harbour
  judges the unencrypted data alone and lists the duties it lifts as exempted; a
  law-enforcement request holds back only the duties whose statute allows it, and their clocks
  restart when it ends (:mod:`.delays`, at the end of the delay if the deadline fell inside it);
  substitute notice is offered where the statute allows it, with the facts that decide it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeVar, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from breachwatch.notifier.duties.calendars import (
    BUSINESS_CALENDARS,
    FIXED_UNITS,
    FixedUnit,
    calendar_year,
    due_after_year_end,
    due_time,
    local_date,
    year_end,
)
from breachwatch.notifier.duties.facts import Headcount, TraitFacts, split_by_jurisdiction, utc
from breachwatch.notifier.duties.provisos import (
    DelayTerms,
    Exempted,
    LawEnforcementDelay,
    SafeHarbour,
    SubstituteNotice,
    SubstituteOption,
    substitute_option,
)

DEFAULT_RULES_DIR = Path(__file__).resolve().parent / "rules"
POLICY_FILE = "_policy.toml"
ZONES_FILE = "_zones.toml"
CONTROL_FILES = (POLICY_FILE, ZONES_FILE)
DEFAULT_WARN_FRACTIONS: tuple[float, ...] = (0.5, 0.8)

Role = Literal["processor", "controller"]
Basis = Literal["law", "contract", "draft"]
Status = Literal["ok", "due_soon", "overdue"]
_M = TypeVar("_M", bound=BaseModel)

# --- Vocabularies. Rule files may only use these words, so a typo fails loading instead of
# --- silently matching nothing. The descriptions are what a notice or the console shows.

QUALITATIVE_UNITS: Mapping[str, str] = MappingProxyType(
    {
        "immediately": "Immediately",
        "without_delay": "Without delay",
        "without_undue_delay": "Without undue delay",
        "promptly": "Promptly",
        "as_soon_as_practicable": "As soon as practicable",
        "as_soon_as_feasible": "As soon as feasible",
        "most_expedient": "In the most expedient time possible and without unreasonable delay",
        "not_stated": "No deadline stated",
    }
)

ANCHORS: Mapping[str, str] = MappingProxyType(
    {
        "awareness": "Becoming aware, with a reasonable degree of certainty, that personal data was affected",
        "discovery": "Discovery: the first day the breach is known, or would be with reasonable diligence",
        "noticing": "Noticing the incident, or being told of it",
        "determination": "Determining that a breach occurred",
        "assessment_end": "Completing the assessment that the breach is notifiable",
        "knowledge": "Knowing that the incident affected personal data",
        "reasonable_grounds": "Having reasonable grounds to believe an eligible breach occurred",
        "suspicion": "Having reasonable grounds to suspect a breach",
        "materiality_determination": "Determining that the incident is material",
        "year_end": "The end of the local calendar year in which the breach was discovered",
        "after_notice": "Sending another notice (named in the rule's 'after')",
    }
)
# Anchors that are a moment in the incident; the others are derived from these or from notices.
EVENT_ANCHORS: tuple[str, ...] = tuple(a for a in ANCHORS if a not in ("year_end", "after_notice"))

# The moments of an incident the workflow records. Which one each anchor reads is policy
# (``_policy.toml`` [anchors]), so counsel can change it.
MOMENTS: Mapping[str, str] = MappingProxyType(
    {
        "detected": "The system first noticed the incident",
        "confirmed": "The breach was confirmed: personal data was affected",
        "aware": "A person recorded that the entity became aware of the breach",
        "determined": "A person recorded the determination that a breach occurred",
        "assessed": "A person recorded the end of the assessment that the breach is notifiable",
        "material": "The registrant determined that the incident is material",
    }
)

RECIPIENT_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "controller": "The customer whose data the vendor processes (controller, owner, covered entity)",
        "authority": "A regulator or other public body",
        "data_subjects": "The affected individuals",
        "credit_reporting_agencies": "Nationwide consumer reporting agencies",
        "media": "Prominent media outlets",
        "investors": "Investors, through a public filing",
        "third_parties": "Other organisations that may reduce the risk of harm",
        "internal": "The entity itself: an assessment or record it must complete",
    }
)

CONTENT_ELEMENTS: Mapping[str, str] = MappingProxyType(
    {
        "nature": "Nature of the breach (confidentiality, integrity or availability) and what happened",
        "circumstances": "Circumstances in which the breach occurred",
        "cause": "Cause or root cause",
        "categories": "Categories of personal data and of data subjects concerned",
        "data_elements": "The specific data elements involved",
        "approx_subjects": "Approximate number of data subjects concerned",
        "approx_records": "Approximate number of personal-data records concerned",
        "subjects_by_jurisdiction": "Number of affected residents of the jurisdiction",
        "number_notified": "Number of individuals notified directly",
        "contact": "Name and contact details of the reporting entity",
        "contact_dpo": "Name and contact details of the data protection officer or other contact point",
        "contact_channels": "Toll-free number, email address, website or postal address for questions",
        "breach_date": "Date, estimated date or date range of the breach",
        "discovery_date": "Date the breach was discovered",
        "awareness_time": "Date and time the entity became aware of the breach",
        "timeline": "Sequence of events with dates and times",
        "location": "Where the breach occurred",
        "reasons_for_delay": "Reasons for any delay in notifying",
        "law_enforcement_delay": "Whether notice was delayed at law enforcement's request",
        "law_enforcement_involvement": "Whether law enforcement is investigating",
        "consequences": "Likely consequences and risks for the individuals",
        "secondary_harm": "Secondary harm that has occurred or may occur",
        "measures": "Measures taken or proposed to address the breach, each marked done or planned",
        "mitigation": "Measures to mitigate possible adverse effects",
        "prevention": "Measures to prevent recurrence",
        "remediation": "Remedial action taken",
        "security_measures_in_place": "Technical and security measures that protected the data",
        "services_offered": "Services offered to individuals, such as credit monitoring or identity-theft protection",
        "advice": "Steps individuals can take to protect themselves",
        "credit_bureau_contacts": "Contact details of the major credit reporting agencies",
        "agency_contacts": "Telephone numbers and websites of state and federal consumer-protection agencies",
        "complaint_rights": "How individuals can complain to the regulator",
        "perpetrator_findings": "Findings on who caused the breach",
        "notice_status": "Whether, when, how and to how many individuals notice was or will be given",
        "notice_copy": "A copy or template of the notice sent to individuals",
        "publication": "Whether and how the breach is made public",
        "no_harm_finding": "The written finding that harm is not likely, with its reasons",
        "phased": "Information may be given in phases: mark the notice preliminary, update or final",
        "materiality": "Material aspects of the incident's nature, scope and timing",
        "financial_impact": "Material or reasonably likely impact, including on financial condition",
        "plain_language": "Written in clear and plain language",
        "fixed_headings": "Prescribed title, headings and minimum type size",
        "other_entities": "Other entities involved in the breach",
        "individual_identities": "Identity of each affected individual",
        "malicious_suspected": "Whether the incident is suspected of being caused by unlawful or malicious acts",
        "cross_border_impact": "Whether the incident could have, or had, a cross-border impact",
        "severity": "An assessment of the incident's severity and impact",
        "indicators_of_compromise": "Indicators of compromise, where available",
    }
)

DATA_CATEGORIES: Mapping[str, str] = MappingProxyType(
    {
        "personal": "Ordinary personal data: names, contact details and other identifiers",
        "government_id": "Government identifiers: social security, national ID, passport, driver's licence, tax",
        "financial_account": "Account, credit or debit card number, with any code that permits access",
        "financial": "Other financial information: salaries, bank details, invoices, credit data",
        "credentials": "A username or email address with a password or security answer",
        "health": "Medical or health information",
        "health_insurance": "Health-insurance policy or subscriber identifiers",
        "phi": "Protected health information held by or for a HIPAA covered entity",
        "biometric": "Biometric data",
        "genetic": "Genetic data",
        "special_category": "Sensitive data: racial or ethnic origin, opinions, beliefs, union membership, sex life",
        "children": "Data about children",
        "elderly": "Data about elderly people",
        "secrecy_protected": "Data protected by legal, judicial or professional secrecy",
    }
)

# How the ERP's access-event sensitivity labels map to the categories above.
SENSITIVITY_CATEGORIES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "public": frozenset(),
        "internal": frozenset(),
        "personal": frozenset({"personal"}),
        "financial": frozenset({"financial"}),
        "payment": frozenset({"financial_account"}),
        "credentials": frozenset({"credentials"}),
    }
)

# Facts about the reporting entity (the tenant as controller; the vendor, towards that tenant, as
# processor). A trait not given is unknown: duties that need it are reported as undecided.
ENTITY_TRAITS: Mapping[str, str] = MappingProxyType(
    {
        "sec_registrant": "Files reports with the US Securities and Exchange Commission (Exchange Act registrant)",
        "hipaa_covered_entity": "A HIPAA covered entity: health plan, clearinghouse, or provider billing online",
        "hipaa_business_associate": "A HIPAA business associate of the tenant (holds PHI for a covered entity)",
        "nydfs_covered_entity": "Licensed by the New York Department of Financial Services (23 NYCRR 500.1)",
        "regsp_covered_institution": "A Reg S-P covered institution: broker-dealer, fund, adviser, transfer agent",
        "regsp_service_provider": "A service provider with access to a covered institution's customer information",
        "nis2_entity": "An essential or important entity under the NIS2 Directive (EU 2022/2555, Art 3)",
    }
)

JURISDICTION_RE = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")


def _one_of(vocabulary: Mapping[str, str], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in vocabulary:
            raise ValueError(f"unknown {what} {value!r}; expected one of: {', '.join(vocabulary)}")
        return value

    return check


Unit = Annotated[str, AfterValidator(_one_of({**dict.fromkeys(FIXED_UNITS, ""), **QUALITATIVE_UNITS}, "unit"))]
Anchor = Annotated[str, AfterValidator(_one_of(ANCHORS, "clock-start anchor"))]
RecipientKind = Annotated[str, AfterValidator(_one_of(RECIPIENT_KINDS, "recipient kind"))]
Element = Annotated[str, AfterValidator(_one_of(CONTENT_ELEMENTS, "content element"))]
Category = Annotated[str, AfterValidator(_one_of(DATA_CATEGORIES, "data category"))]
Trait = Annotated[str, AfterValidator(_one_of(ENTITY_TRAITS, "entity trait"))]
Moment = Annotated[str, AfterValidator(_one_of(MOMENTS, "moment"))]
Text = Annotated[str, Field(min_length=1)]
DutyId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*(\.[a-z0-9][a-z0-9-]*)+$")]
JurisdictionPattern = Annotated[str, Field(pattern=r"^(\*|[A-Z]{2}(-[A-Z0-9]{1,3})?)$")]
JurisdictionCode = Annotated[str, Field(pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")]


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {name!r}") from None
    return name


Zone = Annotated[str, AfterValidator(_zone)]


# No notification deadline runs for decades; larger values would only overflow the date
# arithmetic when a breach is assessed, long after the rule file was accepted.
MAX_AMOUNT = 10_000  # of any fixed unit: at most about 40 years of business days
MAX_TARGET_HOURS = 10 * 366 * 24.0


class RuleFileError(ValueError):
    """A rule file is unreadable or invalid; the message names the file and the field."""


class _RuleModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_RuleModel):
    """Where a rule comes from: an id (S1, S2, ... as in the reference list) and its citation."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9.-]*$")]
    citation: Text


class Recipient(_RuleModel):
    """Who must be notified: a kind from the fixed vocabulary and a name for people."""

    kind: RecipientKind
    name: Text


class Deadline(_RuleModel):
    """A legal deadline: a fixed amount of a calendar unit, or a qualitative standard.

    ``text`` keeps the law's own wording; ``target_hours`` is an internal target that, for
    a qualitative standard, replaces the policy default, and for a fixed deadline may bring the
    target forward of the legal due time. ``cutoff`` is a local time of day ("17:30") by which
    a business-day deadline must be met on its last day, where the law or the filing system
    sets one.
    """

    unit: Unit
    amount: Annotated[int, Field(ge=1, le=MAX_AMOUNT)] | None = None
    text: Text
    target_hours: Annotated[float, Field(gt=0, le=MAX_TARGET_HOURS)] | None = None
    cutoff: Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")] | None = None

    @property
    def fixed(self) -> bool:
        return self.unit in FIXED_UNITS

    @property
    def cutoff_time(self) -> time | None:
        return None if self.cutoff is None else time.fromisoformat(self.cutoff)

    @model_validator(mode="after")
    def _amount_matches_unit(self) -> Deadline:
        if self.fixed and self.amount is None:
            raise ValueError(f"unit {self.unit!r} needs an amount")
        if not self.fixed and self.amount is not None:
            raise ValueError(f"unit {self.unit!r} is a standard without an amount; remove amount")
        if self.cutoff is not None and self.unit not in BUSINESS_CALENDARS:
            raise ValueError("a cutoff time applies to business-day deadlines only")
        return self


@dataclass(frozen=True, slots=True)
class Verdict:
    """A trigger applied to the facts: met (True/False/None), the open limbs, the missing facts."""

    met: bool | None
    open_limbs: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()


class Trigger(_RuleModel):
    """When a duty applies: an affected-count range and/or data categories, combined by ``match``.

    A limb the caller's facts cannot decide (count unknown, categories not given or not mapped)
    does not drop the duty; it is returned with that limb as a condition to confirm.
    ``otherwise_if`` is a further limb only a person can judge (e.g. "the leak may have an
    unlawful purpose"). ``count`` says whose number the range is about: the jurisdiction's
    residents (state laws) or everyone affected (HIPAA's 500 for HHS, Japan's 1,000).
    """

    min_affected: Annotated[int, Field(ge=1)] | None = None
    max_affected: Annotated[int, Field(ge=0)] | None = None
    count: Literal["jurisdiction", "total"] = "jurisdiction"
    any_of_categories: tuple[Category, ...] = ()
    match: Literal["all", "any"] = "all"
    otherwise_if: Text | None = None
    text: Text | None = None

    @model_validator(mode="after")
    def _range_is_ordered(self) -> Trigger:
        low, high = self.min_affected, self.max_affected
        if low is not None and high is not None and low > high:
            raise ValueError(f"min_affected {low} exceeds max_affected {high}")
        return self

    def _count_limb(self, heads: Headcount) -> tuple[bool | None, str] | None:
        low, high = self.min_affected, self.max_affected
        if low is None and high is None:
            return None
        if low is not None and high is not None:
            bounds = f"between {low:,} and {high:,}"
        else:
            bounds = f"at least {low:,}" if low is not None else f"at most {high:,}"
        checks = [heads.at_least(low) if low is not None else True, heads.at_most(high) if high is not None else True]
        met = False if False in checks else (True if all(checks) else None)
        whose = "affected individuals in the jurisdiction" if self.count == "jurisdiction" else "affected individuals"
        return met, f"{bounds} {whose}"

    def _category_limb(self, categories: frozenset[str], uncategorised: tuple[str, ...]) -> tuple[bool | None, str]:
        text = f"the breach involves any of: {', '.join(self.any_of_categories)}"
        if categories & set(self.any_of_categories):
            return True, text
        if not categories:
            return None, text
        if uncategorised:
            return None, f"{text} (not known for: {', '.join(uncategorised)})"
        return False, text

    def evaluate(
        self, local: Headcount, total: Headcount, categories: frozenset[str], uncategorised: tuple[str, ...] = ()
    ) -> Verdict:
        """The trigger applied to the facts; an open limb never drops the duty."""
        limbs: list[tuple[bool | None, str, str]] = []
        counted = self._count_limb(local if self.count == "jurisdiction" else total)
        if counted is not None:
            limbs.append((*counted, "the number of affected individuals"))
        if self.any_of_categories:
            limbs.append((*self._category_limb(categories, uncategorised), "the data categories involved"))
        values = [met for met, _, _ in limbs]
        unknown = tuple(text for met, text, _ in limbs if met is None)
        missing = tuple(fact for met, _, fact in limbs if met is None)
        if not limbs:
            return Verdict(True)
        if self.match == "all":
            met = False if False in values else (True if all(values) else None)
        else:
            met = True if True in values else (False if all(v is False for v in values) else None)
        if met is None:
            if self.match == "all":
                return Verdict(None, unknown, missing)
            return Verdict(None, (" or ".join((*unknown, *filter(None, [self.otherwise_if]))),), missing)
        if met is False and self.otherwise_if:
            return Verdict(None, (self.otherwise_if,))
        return Verdict(met)


class DutyRule(_RuleModel):
    """One duty of one regime, as counsel writes it in a rule file."""

    id: DutyId
    title: Text
    roles: Annotated[tuple[Role, ...], Field(min_length=1)]
    provision: Text
    recipient: Recipient
    clock_start: Anchor
    clock_start_text: Text | None = None
    after: DutyId | None = None
    not_before: DutyId | None = None
    deadline: Deadline
    elements: Annotated[tuple[Element, ...], Field(min_length=1)]
    sources: Annotated[tuple[str, ...], Field(min_length=1)]
    trigger: Trigger = Trigger()
    requires_traits: tuple[Trait, ...] = ()
    condition: Text | None = None
    effective_from: date | None = None
    effective_until: date | None = None
    unconfirmed: bool = False
    notes: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> DutyRule:
        if (self.clock_start == "after_notice") != (self.after is not None):
            raise ValueError("clock_start 'after_notice' and 'after' (the earlier duty's id) go together")
        if self.clock_start == "year_end" and self.deadline.unit != "calendar_days":
            raise ValueError("a 'year_end' clock start needs a deadline in calendar_days")
        if self.unconfirmed and not self.notes.strip():
            raise ValueError("an unconfirmed duty needs notes saying what could not be confirmed")
        if self.effective_from and self.effective_until and self.effective_from > self.effective_until:
            raise ValueError("effective_from is after effective_until")
        return self

    def in_force(self, day: date) -> bool:
        """Whether the duty is in force on the local date ``day``."""
        if self.effective_from is not None and day < self.effective_from:
            return False
        return self.effective_until is None or day <= self.effective_until


class RuleFile(_RuleModel):
    """One legal regime: where it applies, its sources and its duties.

    ``draft`` marks a bill that is not law: its rules yield advisory notes, never duties.
    ``requires_traits`` must all be held by the reporting entity; ``traits_implied_by`` lists
    data categories whose presence settles those traits (data that is "PHI" is, by definition,
    held by or for a HIPAA covered entity). ``safe_harbour``, ``law_enforcement_delay`` and
    ``substitute_notice`` are what the statute itself allows beside its duties
    (:mod:`.provisos`).
    """

    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*$")]
    name: Text
    kind: Literal["general", "sector", "default"]
    applies_to: tuple[JurisdictionPattern, ...] = ()
    draft: bool = False
    requires_traits: tuple[Trait, ...] = ()
    traits_implied_by: tuple[Category, ...] = ()
    notes: str = ""
    sources: Annotated[tuple[Source, ...], Field(min_length=1)]
    duties: Annotated[tuple[DutyRule, ...], Field(min_length=1)]
    safe_harbour: SafeHarbour | None = None
    law_enforcement_delay: LawEnforcementDelay | None = None
    substitute_notice: SubstituteNotice | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RuleFile:
        if self.kind == "default" and self.applies_to:
            raise ValueError("the default regime applies where no other does; leave applies_to empty")
        if self.kind != "default" and not self.applies_to:
            raise ValueError("applies_to must list at least one jurisdiction")
        source_ids = [s.id for s in self.sources]
        if len(set(source_ids)) != len(source_ids):
            raise ValueError(f"duplicate source ids in {source_ids}")
        seen: set[str] = set()
        for rule in self.duties:
            if not rule.id.startswith(f"{self.id}."):
                raise ValueError(f"duty id {rule.id!r} must start with the regime id '{self.id}.'")
            if rule.id in seen:
                raise ValueError(f"duplicate duty id {rule.id!r}")
            seen.add(rule.id)
            missing = [s for s in rule.sources if s not in source_ids]
            if missing:
                raise ValueError(f"duty {rule.id!r} cites unknown sources {missing}")
        for name in ("safe_harbour", "law_enforcement_delay", "substitute_notice"):
            proviso = getattr(self, name)
            if proviso is None:
                continue
            unknown = [d for d in proviso.duties if d not in seen]
            if unknown:
                raise ValueError(f"{name} names duties {unknown} that this regime does not define")
            missing = [s for s in proviso.sources if s not in source_ids]
            if missing:
                raise ValueError(f"{name} cites unknown sources {missing}")
        return self

    def covers(self, code: str) -> bool:
        """Whether the regime applies to a jurisdiction code; a country entry covers its subdivisions."""
        return any(p in ("*", code, code[:2]) for p in self.applies_to)

    @property
    def basis(self) -> Basis:
        if self.kind == "default":
            return "contract"
        return "draft" if self.draft else "law"


class AnchorReading(_RuleModel):
    """Which recorded moment starts a clock with this anchor, and which may stand in for it."""

    moment: Moment
    fallback: tuple[Moment, ...] = ()


class Policy(_RuleModel):
    """Internal policy (not law): counting conventions, anchor readings, qualitative targets."""

    day_convention: Literal["end_of_local_day"]
    business_day_convention: Literal["end_of_local_business_day"]
    anchors: Mapping[str, AnchorReading]
    target_hours: Mapping[str, Annotated[float, Field(gt=0, le=MAX_TARGET_HOURS)]]

    @model_validator(mode="after")
    def _complete(self) -> Policy:
        unknown = sorted(set(self.target_hours) - set(QUALITATIVE_UNITS))
        missing = sorted(set(QUALITATIVE_UNITS) - set(self.target_hours))
        if unknown or missing:
            raise ValueError(f"target_hours: unknown standards {unknown}, missing standards {missing}")
        unknown = sorted(set(self.anchors) - set(EVENT_ANCHORS))
        missing = sorted(set(EVENT_ANCHORS) - set(self.anchors))
        if unknown or missing:
            raise ValueError(f"anchors: unknown anchors {unknown}, missing anchors {missing}")
        return self


class Zones(_RuleModel):
    """Where each jurisdiction keeps its days: IANA zones, the first to end a day governing."""

    fallback: Annotated[tuple[Zone, ...], Field(min_length=1)]
    zones: Mapping[JurisdictionCode, Annotated[tuple[Zone, ...], Field(min_length=1)]]

    def of(self, code: str) -> tuple[str, ...]:
        """The zones of a jurisdiction; a subdivision not listed takes its country's."""
        return self.zones.get(code) or self.zones.get(code[:2]) or self.fallback


class ContractualOverride(BaseModel):
    """A tenant's contract term, e.g. "notify us within 24 hours of becoming aware".

    It adds a duty owed by the vendor as processor and replaces the contractual default; a
    statutory processor duty still stands beside it, since a contract cannot shorten the law
    away.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    reference: Text  # where the term is, e.g. "DPA clause 7.2"
    amount: Annotated[int, Field(ge=1, le=MAX_AMOUNT)]
    unit: FixedUnit = "hours"
    clock_start: Anchor = "awareness"
    recipient: Text = "The customer (controller): its security and privacy contacts"

    @model_validator(mode="after")
    def _event_anchor(self) -> ContractualOverride:
        if self.clock_start not in EVENT_ANCHORS:
            raise ValueError(f"a contract term must start from an incident moment, not {self.clock_start!r}")
        return self


class Duty(BaseModel):
    """One duty that applies to one breach: whom to notify, by when, with what, and why."""

    model_config = ConfigDict(frozen=True)

    rule_id: str
    regime: str
    regime_name: str
    jurisdiction: str
    title: str
    role: Role
    whom: Recipient
    provision: str
    basis: Basis
    draft: bool
    unconfirmed: bool
    clock_start: str  # the anchor the law names
    clock_start_text: str | None  # the law's wording of the clock start, where it says more
    clock_started_at: datetime | None  # None until the notice it follows has been sent
    moment_used: str | None = None  # which recorded moment started the clock (see MOMENTS)
    moment_is_fallback: bool = False  # True: the anchor's own moment was not recorded
    due_at: datetime | None  # the legal deadline in UTC; None for a qualitative standard
    due_last_day: date | None = None  # the last local day allowed, for day-based deadlines
    due_zone: str | None = None  # the zone whose local day that is
    target_at: datetime | None  # the internal target, never later than due_at
    deadline: Deadline
    required_elements: tuple[str, ...]
    sources: tuple[Source, ...]
    conditions: tuple[str, ...]  # what a person must confirm before the duty is certain
    threshold_met: bool | None  # None: facts missing, see conditions
    threshold: str | None = None  # the trigger in the law's words
    after: str | None = None
    not_before: str | None = None
    notes: str = ""
    delay_terms: DelayTerms | None = None  # how law enforcement may hold it back, where the statute lets it
    substitute: SubstituteOption | None = None  # substitute notice to individuals, where the statute allows it


class Undecided(BaseModel):
    """A duty the engine could not decide for lack of a fact; ``listed``: it is among the duties."""

    model_config = ConfigDict(frozen=True)

    rule_id: str
    regime: str
    jurisdiction: str
    title: str
    role: Role
    missing: tuple[str, ...]  # the facts that would decide it
    listed: bool


class Advisory(BaseModel):
    """What a draft bill would require: information for the customer, never a duty or a deadline."""

    model_config = ConfigDict(frozen=True)

    rule_id: str
    regime: str
    regime_name: str
    jurisdiction: str
    title: str
    provision: str
    text: str
    sources: tuple[Source, ...]


class JurisdictionDuties(BaseModel):
    """Everything the rules say for the data subjects of one jurisdiction."""

    model_config = ConfigDict(frozen=True)

    jurisdiction: str
    affected: Headcount
    duties: tuple[Duty, ...]
    undecided: tuple[Undecided, ...]
    advisories: tuple[Advisory, ...]
    exempted: tuple[Exempted, ...] = ()  # lifted by an encryption safe harbour


class Assessment(BaseModel):
    """The duties of one role, per jurisdiction where affected data subjects live."""

    model_config = ConfigDict(frozen=True)

    role: Role
    jurisdictions: tuple[JurisdictionDuties, ...]

    def duties(self) -> list[Duty]:
        """Every duty once (a regime covering several jurisdictions: the earliest target), by target."""
        best: dict[str, Duty] = {}
        for block in self.jurisdictions:
            for duty in block.duties:
                kept = best.get(duty.rule_id)
                if kept is None or _order(duty) < _order(kept):
                    best[duty.rule_id] = duty
        return sorted(best.values(), key=_order)

    def undecided(self) -> list[Undecided]:
        return [u for block in self.jurisdictions for u in block.undecided]

    def advisories(self) -> list[Advisory]:
        return [a for block in self.jurisdictions for a in block.advisories]

    def exempted(self) -> list[Exempted]:
        return [e for block in self.jurisdictions for e in block.exempted]


_FAR = datetime.max.replace(tzinfo=UTC)


def _order(duty: Duty) -> tuple[datetime, str]:
    return duty.target_at or duty.due_at or _FAR, duty.rule_id


@dataclass(frozen=True, slots=True)
class Clock:
    """Where a clock starts: the moment, which recorded moment it is, and whether it stands in."""

    at: datetime | None
    moment: str | None
    fallback: bool = False
    year: int | None = None  # for a year_end clock: the local calendar year that ends


@dataclass(frozen=True, slots=True)
class BreachFacts:
    """The facts of one breach for one role, as validated by :meth:`RuleSet.assess`."""

    role: Role
    moments: Mapping[str, datetime]
    clock_starts: Mapping[str, datetime]
    sent: Mapping[str, datetime]
    categories: frozenset[str]
    uncategorised: tuple[str, ...]
    total: Headcount
    traits: TraitFacts
    overrides: tuple[ContractualOverride, ...]
    on: date | None
    # The categories of the data that was NOT encrypted (None: no safe harbour is claimed).
    unencrypted: frozenset[str] | None = None
    unencrypted_uncategorised: tuple[str, ...] = ()
    contacts_missing: int | None = None  # people whose contact details are insufficient


@dataclass(frozen=True, slots=True)
class _Context:
    code: str
    zones: tuple[str, ...]
    local: Headcount
    facts: BreachFacts


@dataclass(frozen=True)
class RuleSet:
    """All regimes, the contractual default, the policy and the zones, validated together."""

    regimes: tuple[RuleFile, ...]
    default: RuleFile
    policy: Policy
    zones: Zones

    @functools.cached_property
    def _by_id(self) -> Mapping[str, tuple[RuleFile, DutyRule]]:
        return {rule.id: (regime, rule) for regime in (*self.regimes, self.default) for rule in regime.duties}

    def rule(self, duty_id: str) -> DutyRule:
        """The duty rule with this id (KeyError if none)."""
        return self._by_id[duty_id][1]

    def all_rules(self) -> list[tuple[RuleFile, DutyRule]]:
        """Every (regime, duty rule) pair, the default last."""
        return list(self._by_id.values())

    def regimes_for(self, jurisdiction: str, *, traits: Iterable[str] = ()) -> list[RuleFile]:
        """The regimes that cover a jurisdiction and whose required traits are all held."""
        code = _jurisdiction(jurisdiction)
        have = _traits(traits).held
        return [r for r in self.regimes if r.covers(code) and set(r.requires_traits) <= have]

    def zones_of(self, jurisdiction: str) -> tuple[str, ...]:
        """The IANA zones whose local days count for a jurisdiction."""
        return self.zones.of(_jurisdiction(jurisdiction))

    def assess(
        self,
        jurisdiction: str,
        *,
        role: Role,
        moments: Mapping[str, datetime],
        data_categories: Iterable[str] = (),
        uncategorised: Sequence[str] = (),
        affected_subjects: int | None = None,
        data_subjects: int | None = None,
        data_subjects_by_jurisdiction: Mapping[str, int] | None = None,
        affected_by_jurisdiction: Mapping[str, int] | None = None,
        traits: Iterable[str] | Mapping[str, bool] = (),
        tenant_overrides: Sequence[ContractualOverride] = (),
        clock_starts: Mapping[str, datetime] | None = None,
        sent_notices: Mapping[str, datetime] | None = None,
        on: date | None = None,
        unencrypted_categories: Iterable[str] | None = None,
        unencrypted_uncategorised: Sequence[str] | None = None,
        contacts_missing: int | None = None,
    ) -> Assessment:
        """The duties owed in ``role`` for one breach, per jurisdiction where data subjects live.

        ``jurisdiction`` is the tenant's own; ``data_subjects_by_jurisdiction`` (tenant contract
        1.1) adds every jurisdiction with data subjects, each with its own bounds on the number
        affected (``affected_by_jurisdiction`` gives exact numbers where known). ``moments``
        are the recorded moments (see :data:`MOMENTS`): each duty's clock reads its anchor's
        moment, or the earliest moment that may stand in for it. ``uncategorised`` names data
        whose legal categories are unknown (e.g. unmapped resource types). ``traits`` lists the
        traits held, or maps traits to held / not held; any other trait is unknown.

        ``unencrypted_categories`` (and ``unencrypted_uncategorised``) describe the part of the
        data that was not encrypted, or whose key was taken too: a regime with an encryption
        safe harbour judges only that part, and a duty it lifts is listed as exempted. None
        claims no safe harbour. ``contacts_missing`` is how many affected people have no usable
        contact details (None: not known), for substitute notice.
        """
        facts = self._facts(
            role,
            moments,
            data_categories,
            uncategorised,
            affected_subjects,
            traits,
            tenant_overrides,
            clock_starts,
            sent_notices,
            on,
        )
        facts = self._with_provisos(facts, unencrypted_categories, unencrypted_uncategorised, contacts_missing)
        heads = self._headcounts(
            _jurisdiction(jurisdiction),
            affected_subjects,
            data_subjects,
            data_subjects_by_jurisdiction or {},
            affected_by_jurisdiction or {},
        )
        return Assessment(role=role, jurisdictions=tuple(self._assess_one(c, h, facts) for c, h in heads.items()))

    def duties_for(
        self,
        jurisdiction: str,
        *,
        affected_subjects: int | None,
        data_categories: Iterable[str],
        role: Role,
        aware_at: datetime | None = None,
        tenant_overrides: Sequence[ContractualOverride] = (),
        on: date | None = None,
        clock_starts: Mapping[str, datetime] | None = None,
        sent_notices: Mapping[str, datetime] | None = None,
        traits: Iterable[str] | Mapping[str, bool] = (),
        moments: Mapping[str, datetime] | None = None,
        uncategorised: Sequence[str] = (),
    ) -> list[Duty]:
        """The duties owed in ``role`` for a breach affecting residents of ``jurisdiction`` only.

        ``affected_subjects`` counts the jurisdiction's affected residents (None: not known yet);
        an empty ``data_categories`` means not known yet. Both leave threshold duties in, with
        the open limb as a condition. ``aware_at`` (kept for existing callers) stands for both
        the ``detected`` and ``aware`` moments unless ``moments`` gives them. Undecided duties
        and advisories are only in :meth:`assess`. Duties are ordered by target time.
        """
        return self.assess(
            jurisdiction,
            role=role,
            moments=_moments(aware_at, moments),
            data_categories=data_categories,
            uncategorised=uncategorised,
            affected_subjects=affected_subjects,
            traits=traits,
            tenant_overrides=tenant_overrides,
            clock_starts=clock_starts,
            sent_notices=sent_notices,
            on=on,
        ).duties()

    def annual_logs(self, discovered: Iterable[datetime], jurisdiction: str, *, days: int = 60) -> list[AnnualLog]:
        """Breaches grouped by the local calendar year of discovery, with each year's report due.

        For the HIPAA log of breaches under 500 (45 CFR 164.408(c): within 60 days after the end
        of each calendar year). Where zones disagree at New Year, a breach goes in the earlier year.
        """
        zones = self.zones_of(jurisdiction)
        years: dict[int, list[datetime]] = {}
        for moment in discovered:
            at = utc(moment, "discovered")
            years.setdefault(calendar_year(at, zones), []).append(at)
        logs = []
        for year, moments in sorted(years.items()):
            due = due_after_year_end(year, days, zones)
            logs.append(
                AnnualLog(
                    year=year,
                    due_at=due.due,
                    due_last_day=due.last_day,
                    due_zone=due.zone,
                    breaches=tuple(sorted(moments)),
                )
            )
        return logs

    # --- one jurisdiction -------------------------------------------------------------------

    def _assess_one(self, code: str, local: Headcount, facts: BreachFacts) -> JurisdictionDuties:
        ctx = _Context(code, self.zones.of(code), local, facts)
        duties: list[Duty] = []
        undecided: list[Undecided] = []
        advisories: list[Advisory] = []
        exempted: list[Exempted] = []
        for regime in self.regimes:
            if not regime.covers(code):
                continue
            for rule in regime.duties:
                outcome = self._apply(regime, rule, ctx)
                if isinstance(outcome, Duty):
                    duties.append(outcome)
                elif isinstance(outcome, Advisory):
                    advisories.append(outcome)
                elif isinstance(outcome, Exempted):
                    exempted.append(outcome)
                if isinstance(outcome, Undecided) or (isinstance(outcome, Duty) and outcome.threshold_met is None):
                    undecided.append(self._undecided(regime, rule, ctx, outcome))
        duties.extend(self._contract_duties(ctx, duties))
        return JurisdictionDuties(
            jurisdiction=code,
            affected=local,
            duties=tuple(sorted(duties, key=_order)),
            undecided=tuple(u for u in undecided if u.missing),
            advisories=tuple(advisories),
            exempted=tuple(exempted),
        )

    def _apply(self, regime: RuleFile, rule: DutyRule, ctx: _Context) -> Duty | Advisory | Undecided | Exempted | None:
        """A rule applied to one jurisdiction's facts: a duty, an advisory, undecided, exempted, or nothing."""
        facts = ctx.facts
        if facts.role not in rule.roles or not self._in_force(rule, ctx):
            return None
        verdict = rule.trigger.evaluate(ctx.local, facts.total, facts.categories, facts.uncategorised)
        if verdict.met is False:
            return None
        traits = self._trait_gaps(regime, rule, facts)
        if traits is False:
            return None
        harbour = self._safe_harbour(regime, rule, ctx, verdict)
        if isinstance(harbour, Exempted):
            return harbour
        verdict = harbour
        if traits:
            return Undecided(
                rule_id=rule.id,
                regime=regime.id,
                jurisdiction=ctx.code,
                title=rule.title,
                role=facts.role,
                missing=(*traits, *verdict.missing),
                listed=False,
            )
        if regime.draft:
            return _advisory(regime, rule, ctx.code)
        return self._duty(regime, rule, ctx, verdict)

    @staticmethod
    def _safe_harbour(regime: RuleFile, rule: DutyRule, ctx: _Context, verdict: Verdict) -> Verdict | Exempted:
        """The verdict on the unencrypted data alone where the regime has a safe harbour for this
        duty; the exemption when that data no longer meets the trigger (or there is none)."""
        harbour, facts = regime.safe_harbour, ctx.facts
        if harbour is None or facts.unencrypted is None or not harbour.covers(rule.id):
            return verdict
        plain, plain_unknown = facts.unencrypted, facts.unencrypted_uncategorised
        # Every record reached was encrypted: nothing is left that the statute counts. (An empty
        # category set would otherwise read as "not known yet".)
        lifted = bool(facts.categories or facts.uncategorised) and not (plain or plain_unknown)
        judged = verdict
        if not lifted and rule.trigger.any_of_categories:
            judged = rule.trigger.evaluate(ctx.local, facts.total, plain, plain_unknown)
            lifted = judged.met is False
        if not lifted:
            return judged
        return Exempted(
            rule_id=rule.id,
            regime=regime.id,
            jurisdiction=ctx.code,
            title=rule.title,
            role=facts.role,
            provision=harbour.provision,
            text=harbour.text,
        )

    def _undecided(self, regime: RuleFile, rule: DutyRule, ctx: _Context, outcome: Duty | Undecided) -> Undecided:
        if isinstance(outcome, Undecided):
            return outcome
        verdict = rule.trigger.evaluate(ctx.local, ctx.facts.total, ctx.facts.categories, ctx.facts.uncategorised)
        judged = self._safe_harbour(regime, rule, ctx, verdict)
        verdict = judged if isinstance(judged, Verdict) else verdict
        return Undecided(
            rule_id=rule.id,
            regime=regime.id,
            jurisdiction=ctx.code,
            title=rule.title,
            role=ctx.facts.role,
            missing=verdict.missing,
            listed=True,
        )

    def _in_force(self, rule: DutyRule, ctx: _Context) -> bool:
        """In force on the local date of the duty's anchor moment in any of the jurisdiction's zones."""
        if ctx.facts.on is not None:
            return rule.in_force(ctx.facts.on)
        anchor = "discovery" if rule.clock_start in ("year_end", "after_notice") else rule.clock_start
        at = self._clock(anchor, ctx.facts).at
        assert at is not None  # an incident anchor always resolves
        return any(rule.in_force(local_date(at, zone)) for zone in ctx.zones)

    @staticmethod
    def _trait_gaps(regime: RuleFile, rule: DutyRule, facts: BreachFacts) -> tuple[str, ...] | bool:
        """False if a required trait is lacked; else the unknown traits (implied ones are held)."""
        required = (*regime.requires_traits, *rule.requires_traits)
        if facts.categories & set(regime.traits_implied_by):
            return ()
        states = {t: facts.traits.state(t) for t in required}
        if False in states.values():
            return False
        return tuple(f"whether the entity is: {ENTITY_TRAITS[t]} (trait {t})" for t, s in states.items() if s is None)

    def _clock(self, anchor: str, facts: BreachFacts) -> Clock:
        """Where an incident anchor's clock starts, from the recorded moments."""
        if anchor in facts.clock_starts:
            return Clock(facts.clock_starts[anchor], "clock_starts")
        reading = self.policy.anchors[anchor]
        if reading.moment in facts.moments:
            return Clock(facts.moments[reading.moment], reading.moment)
        stand_ins = [(facts.moments[m], m) for m in reading.fallback if m in facts.moments]
        at, name = min(stand_ins or [(t, m) for m, t in facts.moments.items()])
        return Clock(at, name, fallback=True)

    def _start(self, rule: DutyRule, ctx: _Context) -> Clock:
        if rule.after:
            sent = ctx.facts.sent.get(rule.after)
            return Clock(sent, None if sent is None else f"sent:{rule.after}")
        if rule.clock_start == "year_end":
            discovery = self._clock("discovery", ctx.facts)
            assert discovery.at is not None
            year = calendar_year(discovery.at, ctx.zones)
            return Clock(year_end(year, ctx.zones), discovery.moment, discovery.fallback, year)
        return self._clock(rule.clock_start, ctx.facts)

    def _duty(self, regime: RuleFile, rule: DutyRule, ctx: _Context, verdict: Verdict) -> Duty:
        clock = self._start(rule, ctx)
        times = self._times(rule.deadline, clock.at, ctx.zones, year=clock.year)
        cited = {s.id: s for s in regime.sources}
        return Duty(
            rule_id=rule.id,
            regime=regime.id,
            regime_name=regime.name,
            jurisdiction=ctx.code,
            title=rule.title,
            role=ctx.facts.role,
            whom=rule.recipient,
            provision=rule.provision,
            basis=regime.basis,
            draft=regime.draft,
            unconfirmed=rule.unconfirmed,
            clock_start=rule.clock_start,
            clock_start_text=rule.clock_start_text,
            clock_started_at=clock.at,
            moment_used=clock.moment,
            moment_is_fallback=clock.fallback,
            due_at=times.due,
            due_last_day=times.last_day,
            due_zone=times.zone,
            target_at=times.target,
            deadline=rule.deadline,
            required_elements=rule.elements,
            sources=tuple(cited[s] for s in rule.sources),
            conditions=verdict.open_limbs + ((rule.condition,) if rule.condition else ()),
            threshold_met=verdict.met,
            threshold=rule.trigger.text,
            after=rule.after,
            not_before=rule.not_before,
            notes=rule.notes,
            delay_terms=self._delay_terms(regime, rule),
            substitute=self._substitute(regime, rule, ctx),
        )

    @staticmethod
    def _delay_terms(regime: RuleFile, rule: DutyRule) -> DelayTerms | None:
        delay = regime.law_enforcement_delay
        return DelayTerms.of(delay) if delay is not None and delay.covers(rule.id) else None

    @staticmethod
    def _substitute(regime: RuleFile, rule: DutyRule, ctx: _Context) -> SubstituteOption | None:
        proviso = regime.substitute_notice
        if proviso is None or not proviso.covers(rule.id):
            return None
        return substitute_option(proviso, ctx.local, ctx.facts.contacts_missing)

    def _contract_duties(self, ctx: _Context, duties: Sequence[Duty]) -> list[Duty]:
        """The vendor's contractual duties to its customer, as processor."""
        facts = ctx.facts
        if facts.role != "processor":
            return []
        if facts.overrides:
            return [self._contract_duty(term, i, ctx) for i, term in enumerate(facts.overrides, 1)]
        if any(d.whom.kind == "controller" and d.basis == "law" for d in duties):
            return []
        # No statutory duty to tell the customer is encoded here: the contract still requires it.
        return [
            self._duty(self.default, rule, ctx, Verdict(True))
            for rule in self.default.duties
            if facts.role in rule.roles and self._in_force(rule, ctx)
        ]

    def _contract_duty(self, term: ContractualOverride, index: int, ctx: _Context) -> Duty:
        template = self.default.duties[0]
        deadline = Deadline(unit=term.unit, amount=term.amount, text=term.reference)
        clock = self._clock(term.clock_start, ctx.facts)
        times = self._times(deadline, clock.at, ctx.zones)
        return Duty(
            rule_id=f"{self.default.id}.tenant-term-{index}",
            regime=self.default.id,
            regime_name=self.default.name,
            jurisdiction=ctx.code,
            title="Notify the customer within the contractual deadline",
            role=ctx.facts.role,
            whom=Recipient(kind="controller", name=term.recipient),
            provision=term.reference,
            basis="contract",
            draft=False,
            unconfirmed=False,
            clock_start=term.clock_start,
            clock_start_text=None,
            clock_started_at=clock.at,
            moment_used=clock.moment,
            moment_is_fallback=clock.fallback,
            due_at=times.due,
            due_last_day=times.last_day,
            due_zone=times.zone,
            target_at=times.target,
            deadline=deadline,
            required_elements=template.elements,
            sources=(Source(id="contract", citation=term.reference),),
            conditions=(),
            threshold_met=True,
            notes="A term of this tenant's contract.",
        )

    def _times(
        self, deadline: Deadline, start: datetime | None, zones: Sequence[str], *, year: int | None = None
    ) -> _Times:
        """Legal due time, internal target and last local day for a deadline counted from ``start``."""
        if start is None:
            return _Times(None, None)
        if not deadline.fixed:
            hours = deadline.target_hours or self.policy.target_hours[deadline.unit]
            return _Times(None, start + timedelta(hours=hours))
        assert deadline.amount is not None  # guaranteed by Deadline's validator
        if year is not None:
            due = due_after_year_end(year, deadline.amount, zones)
        else:
            due = due_time(start, deadline.amount, cast(FixedUnit, deadline.unit), zones, deadline.cutoff_time)
        target = due.target
        if deadline.target_hours is not None:
            target = min(target, start + timedelta(hours=deadline.target_hours))
        return _Times(due.due, target, due.last_day, due.zone)

    # --- facts ------------------------------------------------------------------------------

    def _facts(
        self,
        role: Role,
        moments: Mapping[str, datetime],
        data_categories: Iterable[str],
        uncategorised: Sequence[str],
        affected_subjects: int | None,
        traits: Iterable[str] | Mapping[str, bool],
        tenant_overrides: Sequence[ContractualOverride],
        clock_starts: Mapping[str, datetime] | None,
        sent_notices: Mapping[str, datetime] | None,
        on: date | None,
    ) -> BreachFacts:
        if role not in ("processor", "controller"):
            raise ValueError(f"role must be 'processor' or 'controller', got {role!r}")
        categories = frozenset(data_categories)
        unknown = sorted(categories - set(DATA_CATEGORIES))
        if unknown:
            raise ValueError(f"unknown data categories {unknown}; expected some of: {', '.join(DATA_CATEGORIES)}")
        return BreachFacts(
            role=role,
            moments=_checked_moments(moments),
            clock_starts=_checked_clock_starts(clock_starts or {}),
            sent={k: utc(v, f"sent_notices[{k!r}]") for k, v in (sent_notices or {}).items()},
            categories=categories,
            uncategorised=tuple(uncategorised),
            total=Headcount.of(affected_subjects),
            traits=_traits(traits),
            overrides=tuple(tenant_overrides),
            on=on,
        )

    @staticmethod
    def _with_provisos(
        facts: BreachFacts,
        unencrypted: Iterable[str] | None,
        unencrypted_uncategorised: Sequence[str] | None,
        contacts_missing: int | None,
    ) -> BreachFacts:
        if contacts_missing is not None and contacts_missing < 0:
            raise ValueError(f"contacts_missing cannot be negative, got {contacts_missing}")
        if unencrypted is None:
            return dataclasses.replace(facts, contacts_missing=contacts_missing)
        plain = frozenset(unencrypted)
        unknown = sorted(plain - set(DATA_CATEGORIES))
        if unknown:
            expected = ", ".join(DATA_CATEGORIES)
            raise ValueError(f"unknown unencrypted categories {unknown}; expected some of: {expected}")
        return dataclasses.replace(
            facts,
            unencrypted=plain,
            unencrypted_uncategorised=tuple(
                facts.uncategorised if unencrypted_uncategorised is None else unencrypted_uncategorised
            ),
            contacts_missing=contacts_missing,
        )

    @staticmethod
    def _headcounts(
        own: str,
        affected: int | None,
        data_subjects: int | None,
        population: Mapping[str, int],
        exact: Mapping[str, int],
    ) -> dict[str, Headcount]:
        """Each jurisdiction with data subjects (the tenant's own first) and its head count."""
        population = {_jurisdiction(k): v for k, v in population.items() if v > 0}
        exact = {_jurisdiction(k): v for k, v in exact.items()}
        heads = split_by_jurisdiction(affected, population, data_subjects)
        if own not in heads:
            # Without a split, every affected person is taken to live in the tenant's jurisdiction.
            heads[own] = Headcount.of(affected) if not population else Headcount(high=affected)
        heads.update({code: Headcount.of(n) for code, n in exact.items()})
        return {own: heads[own], **{c: h for c, h in sorted(heads.items()) if c != own}}


@dataclass(frozen=True, slots=True)
class _Times:
    due: datetime | None
    target: datetime | None
    last_day: date | None = None
    zone: str | None = None


class AnnualLog(BaseModel):
    """One calendar year's log of small breaches and when its report is due."""

    model_config = ConfigDict(frozen=True)

    year: int
    due_at: datetime
    due_last_day: date | None
    due_zone: str | None
    breaches: tuple[datetime, ...]  # the discovery moments logged for that year, in UTC


def _advisory(regime: RuleFile, rule: DutyRule, code: str) -> Advisory:
    cited = {s.id: s for s in regime.sources}
    return Advisory(
        rule_id=rule.id,
        regime=regime.id,
        regime_name=regime.name,
        jurisdiction=code,
        title=rule.title,
        provision=rule.provision,
        text=" ".join(filter(None, [rule.deadline.text + ".", rule.notes])),
        sources=tuple(cited[s] for s in rule.sources),
    )


def _moments(aware_at: datetime | None, moments: Mapping[str, datetime] | None) -> dict[str, datetime]:
    """The recorded moments; a legacy ``aware_at`` stands for detection and awareness."""
    given = dict(moments or {})
    if aware_at is not None:
        given.setdefault("detected", aware_at)
        given.setdefault("aware", aware_at)
    return given


def _checked_moments(moments: Mapping[str, datetime]) -> dict[str, datetime]:
    unknown = sorted(set(moments) - set(MOMENTS))
    if unknown:
        raise ValueError(f"unknown moments {unknown}; expected some of: {', '.join(MOMENTS)}")
    if not moments:
        raise ValueError("at least one moment is needed (e.g. 'detected'); aware_at or moments")
    return {
        name: utc(at, "aware_at" if name in ("detected", "aware") else f"moments[{name!r}]")
        for name, at in moments.items()
    }


def _checked_clock_starts(clock_starts: Mapping[str, datetime]) -> dict[str, datetime]:
    for anchor in clock_starts:
        if anchor not in EVENT_ANCHORS:
            raise ValueError(f"clock_starts: {anchor!r} is not an incident anchor ({', '.join(EVENT_ANCHORS)})")
    return {a: utc(m, f"clock_starts[{a!r}]") for a, m in clock_starts.items()}


def _jurisdiction(value: str) -> str:
    code = value.strip().upper()
    if not JURISDICTION_RE.match(code):
        raise ValueError(f"jurisdiction must be ISO 3166 like 'DE' or 'US-CA', got {value!r}")
    return code


def _traits(values: Iterable[str] | Mapping[str, bool]) -> TraitFacts:
    facts = TraitFacts.of(values)
    unknown = sorted(facts.named - set(ENTITY_TRAITS))
    if unknown:
        raise ValueError(f"unknown entity traits {unknown}; expected some of: {', '.join(ENTITY_TRAITS)}")
    return facts


def _utc(moment: datetime, name: str) -> datetime:
    return utc(moment, name)


# --- Loading -------------------------------------------------------------------------------


def _field_path(loc: tuple[int | str, ...], raw: Mapping[str, Any]) -> str:
    """'duties[2] (eu.art33).deadline.amount' from a pydantic error location."""
    parts: list[str] = []
    node: Any = raw
    for item in loc:
        if isinstance(item, int):
            parts[-1] = f"{parts[-1]}[{item}]" if parts else f"[{item}]"
            node = node[item] if isinstance(node, list) and item < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("id"), str):
                parts[-1] += f" ({node['id']})"
        else:
            parts.append(item)
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "(file)"


def _parse(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise RuleFileError(f"{path.name}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise RuleFileError(f"{path.name}: not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise RuleFileError(f"{path.name}: nested too deeply") from None
    except OSError as exc:
        raise RuleFileError(f"{path.name}: cannot be read: {exc.strerror}") from exc


def _validate(model: type[_M], path: Path, raw: dict[str, Any]) -> _M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{_field_path(e['loc'], raw)}: {e['msg']}" for e in exc.errors())
        raise RuleFileError(f"{path.name}: {problems}") from None


def load_rules(directory: str | Path | None = None, *, target_hours: Mapping[str, float] | None = None) -> RuleSet:
    """Read and validate every rule file in ``directory`` (default: the bundled rules).

    ``target_hours`` overrides the policy's internal targets for qualitative deadlines. A
    malformed file raises :class:`RuleFileError` naming the file and the field.
    """
    folder = Path(directory) if directory is not None else DEFAULT_RULES_DIR
    if not folder.is_dir():
        raise RuleFileError(f"{folder}: rule directory not found")
    policy_path = folder / POLICY_FILE
    if not policy_path.is_file():
        raise RuleFileError(f"{POLICY_FILE}: missing from {folder}")
    raw_policy = _parse(policy_path)
    if target_hours:
        raw_policy["target_hours"] = {**raw_policy.get("target_hours", {}), **target_hours}
    policy = _validate(Policy, policy_path, raw_policy)
    zones_path = folder / ZONES_FILE
    if not zones_path.is_file():
        raise RuleFileError(f"{ZONES_FILE}: missing from {folder}")
    zones = _validate(Zones, zones_path, _parse(zones_path))

    regimes: list[RuleFile] = []
    defaults: list[RuleFile] = []
    owner: dict[str, str] = {}
    for path in sorted(folder.glob("*.toml")):
        if path.name in CONTROL_FILES:
            continue
        if path.name.startswith("_"):
            raise RuleFileError(f"{path.name}: unknown control file (only {', '.join(CONTROL_FILES)} are recognised)")
        regime = _validate(RuleFile, path, _parse(path))
        if regime.id != path.stem:
            raise RuleFileError(f"{path.name}: id: {regime.id!r} must match the file name {path.stem!r}")
        for rule in regime.duties:
            if rule.id in owner:
                raise RuleFileError(f"{path.name}: duties: id {rule.id!r} is also defined in {owner[rule.id]}")
            owner[rule.id] = path.name
        (defaults if regime.kind == "default" else regimes).append(regime)

    if len(defaults) != 1:
        names = ", ".join(f"{d.id}.toml" for d in defaults) or "none"
        raise RuleFileError(f"{folder.name}: exactly one rule file must have kind = 'default' (found {names})")
    for regime in (*regimes, *defaults):
        for rule in regime.duties:
            for field_name in ("after", "not_before"):
                ref = getattr(rule, field_name)
                if ref is not None and ref not in owner:
                    raise RuleFileError(f"{regime.id}.toml: duties ({rule.id}).{field_name}: no duty has id {ref!r}")
    return RuleSet(regimes=tuple(regimes), default=defaults[0], policy=policy, zones=zones)


@functools.lru_cache(maxsize=1)
def default_rules() -> RuleSet:
    """The bundled rule set, loaded once."""
    return load_rules()


def duties_for(
    jurisdiction: str,
    *,
    affected_subjects: int | None,
    data_categories: Iterable[str],
    role: Role,
    aware_at: datetime | None = None,
    tenant_overrides: Sequence[ContractualOverride] = (),
    on: date | None = None,
    clock_starts: Mapping[str, datetime] | None = None,
    sent_notices: Mapping[str, datetime] | None = None,
    traits: Iterable[str] | Mapping[str, bool] = (),
    moments: Mapping[str, datetime] | None = None,
    uncategorised: Sequence[str] = (),
    rules: RuleSet | None = None,
) -> list[Duty]:
    """:meth:`RuleSet.duties_for` on ``rules`` (default: the bundled rule set)."""
    return (rules or default_rules()).duties_for(
        jurisdiction,
        affected_subjects=affected_subjects,
        data_categories=data_categories,
        role=role,
        aware_at=aware_at,
        tenant_overrides=tenant_overrides,
        on=on,
        clock_starts=clock_starts,
        sent_notices=sent_notices,
        traits=traits,
        moments=moments,
        uncategorised=uncategorised,
    )


def assess(
    jurisdiction: str, *, role: Role, moments: Mapping[str, datetime], rules: RuleSet | None = None, **facts: Any
) -> Assessment:
    """:meth:`RuleSet.assess` on ``rules`` (default: the bundled rule set)."""
    return (rules or default_rules()).assess(jurisdiction, role=role, moments=moments, **facts)


def annual_logs(
    discovered: Iterable[datetime], jurisdiction: str, *, days: int = 60, rules: RuleSet | None = None
) -> list[AnnualLog]:
    """:meth:`RuleSet.annual_logs` on ``rules`` (default: the bundled rule set)."""
    return (rules or default_rules()).annual_logs(discovered, jurisdiction, days=days)


# --- Clock status ---------------------------------------------------------------------------


def window_used(duty: Duty, now: datetime) -> float | None:
    """Fraction of the time from clock start to target that has passed (None: no clock yet)."""
    start, end = duty.clock_started_at, duty.target_at
    if start is None or end is None:
        return None
    elapsed = (_utc(now, "now") - start).total_seconds()
    window = (end - start).total_seconds()
    if window <= 0:
        return math.inf if elapsed > 0 else 0.0
    return max(0.0, elapsed / window)


def _fractions(warn_fractions: Sequence[float]) -> list[float]:
    if not warn_fractions or not all(0 < f < 1 for f in warn_fractions):
        raise ValueError(f"warn_fractions must be non-empty, each between 0 and 1, got {list(warn_fractions)}")
    return sorted(warn_fractions)


def warnings_crossed(
    duty: Duty, now: datetime, *, warn_fractions: Sequence[float] = DEFAULT_WARN_FRACTIONS
) -> tuple[float, ...]:
    """The warning fractions of the window already used, so a caller can remind once per crossing."""
    fractions = _fractions(warn_fractions)
    used = window_used(duty, now)
    return () if used is None else tuple(f for f in fractions if used >= f)


def status(duty: Duty, now: datetime, *, warn_fractions: Sequence[float] = DEFAULT_WARN_FRACTIONS) -> Status:
    """'overdue' once past the target, 'due_soon' once the first warning fraction is used, else 'ok'.

    The target is the legal deadline unless the rules set an earlier internal one; for a
    qualitative standard ("without undue delay") it is the policy's target.
    """
    fractions = _fractions(warn_fractions)
    used = window_used(duty, now)
    if used is None or duty.target_at is None:
        return "ok"
    if _utc(now, "now") > duty.target_at:
        return "overdue"
    return "due_soon" if used >= fractions[0] else "ok"
