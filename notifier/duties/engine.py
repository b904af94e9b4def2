"""Which breach-notification duties apply, to whom, and by when.

The law lives in ``rules/*.toml`` (one file per legal regime, every duty with its sources),
so counsel can review and change it without touching code. This module validates those files,
matches a tenant's jurisdiction, applies thresholds, effective dates and contractual terms, and
computes deadlines with :mod:`notifier.duties.calendars`. It is pure: the only I/O is reading
the rule files.
"""

from __future__ import annotations

import functools
import math
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeVar, cast

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from breachwatch.notifier.duties.calendars import FIXED_UNITS, FixedUnit, advance

DEFAULT_RULES_DIR = Path(__file__).resolve().parent / "rules"
POLICY_FILE = "_policy.toml"
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
        "not_stated": "No deadline stated",
    }
)

ANCHORS: Mapping[str, str] = MappingProxyType(
    {
        "awareness": "Becoming aware, with a reasonable degree of certainty, that personal data was affected",
        "discovery": "Discovery: the first day the breach is known, or would be with reasonable diligence",
        "determination": "Determining that a breach occurred",
        "assessment_end": "Completing the assessment that the breach is notifiable",
        "knowledge": "Knowing that the incident affected personal data",
        "reasonable_grounds": "Having reasonable grounds to believe an eligible breach occurred",
        "suspicion": "Having reasonable grounds to suspect a breach",
        "materiality_determination": "Determining that the incident is material",
        "year_end": "The end of the calendar year (UTC) in which the breach was discovered",
        "after_notice": "Sending another notice (named in the rule's 'after')",
    }
)
# Anchors that are a moment in the incident; the others are derived from these or from notices.
EVENT_ANCHORS: tuple[str, ...] = tuple(a for a in ANCHORS if a not in ("year_end", "after_notice"))

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

ENTITY_TRAITS: Mapping[str, str] = MappingProxyType(
    {"sec_registrant": "The reporting entity files reports with the US Securities and Exchange Commission"}
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
Text = Annotated[str, Field(min_length=1)]
DutyId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*(\.[a-z0-9][a-z0-9-]*)+$")]
JurisdictionPattern = Annotated[str, Field(pattern=r"^(\*|[A-Z]{2}(-[A-Z0-9]{1,3})?)$")]


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
    target forward of the legal due time.
    """

    unit: Unit
    amount: Annotated[int, Field(ge=1, le=MAX_AMOUNT)] | None = None
    text: Text
    target_hours: Annotated[float, Field(gt=0, le=MAX_TARGET_HOURS)] | None = None

    @property
    def fixed(self) -> bool:
        return self.unit in FIXED_UNITS

    @model_validator(mode="after")
    def _amount_matches_unit(self) -> Deadline:
        if self.fixed and self.amount is None:
            raise ValueError(f"unit {self.unit!r} needs an amount")
        if not self.fixed and self.amount is not None:
            raise ValueError(f"unit {self.unit!r} is a standard without an amount; remove amount")
        return self


class Trigger(_RuleModel):
    """When a duty applies: an affected-count range and/or data categories, combined by ``match``.

    A limb the caller's facts cannot decide (count unknown, categories not given) does not drop
    the duty; it is returned with that limb as a condition to confirm. ``otherwise_if`` is a
    further limb only a person can judge (e.g. "the leak may have an unlawful purpose").
    """

    min_affected: Annotated[int, Field(ge=1)] | None = None
    max_affected: Annotated[int, Field(ge=0)] | None = None
    any_of_categories: tuple[Category, ...] = ()
    match: Literal["all", "any"] = "all"
    otherwise_if: Text | None = None
    text: Text | None = None

    @model_validator(mode="after")
    def _range_is_ordered(self) -> Trigger:
        low, high = self.min_affected, self.max_affected
        if low is not None and high is not None and low > high:
            raise ValueError(f"min_affected {low} exceeds max_affected {high}")
        if self.otherwise_if is not None and self.match != "any":
            raise ValueError("otherwise_if is an alternative limb, so it needs match = 'any'")
        return self

    def evaluate(self, affected: int | None, categories: frozenset[str]) -> tuple[bool | None, tuple[str, ...]]:
        """(True, ()) applies; (False, ()) does not; (None, conditions) applies if the conditions hold."""
        limbs: list[tuple[bool | None, str]] = []
        low, high = self.min_affected, self.max_affected
        if low is not None or high is not None:
            if low is not None and high is not None:
                bounds = f"between {low:,} and {high:,}"
            else:
                bounds = f"at least {low:,}" if low is not None else f"at most {high:,}"
            met = None if affected is None else (low is None or affected >= low) and (high is None or affected <= high)
            limbs.append((met, f"{bounds} affected individuals in the jurisdiction"))
        if self.any_of_categories:
            hit = None if not categories else bool(categories & set(self.any_of_categories))
            limbs.append((hit, f"the breach involves any of: {', '.join(self.any_of_categories)}"))
        values = [met for met, _ in limbs]
        unknown = tuple(text for met, text in limbs if met is None)
        if not limbs:
            verdict: bool | None = True
        elif self.match == "all":
            verdict = False if False in values else (True if all(values) else None)
        else:
            verdict = True if True in values else (False if all(v is False for v in values) else None)
        if verdict is None:
            if self.match == "all":
                return None, unknown
            return None, (" or ".join((*unknown, *filter(None, [self.otherwise_if]))),)
        if verdict is False and self.otherwise_if:
            return None, (self.otherwise_if,)
        return verdict, ()


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
    condition: Text | None = None
    effective_from: date | None = None
    effective_until: date | None = None
    unconfirmed: bool = False
    notes: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> DutyRule:
        if (self.clock_start == "after_notice") != (self.after is not None):
            raise ValueError("clock_start 'after_notice' and 'after' (the earlier duty's id) go together")
        if self.clock_start == "year_end" and not self.deadline.fixed:
            raise ValueError("a 'year_end' clock start needs a fixed deadline")
        if self.unconfirmed and not self.notes.strip():
            raise ValueError("an unconfirmed duty needs notes saying what could not be confirmed")
        if self.effective_from and self.effective_until and self.effective_from > self.effective_until:
            raise ValueError("effective_from is after effective_until")
        return self

    def in_force(self, day: date) -> bool:
        """Whether the duty is in force on ``day``."""
        if self.effective_from is not None and day < self.effective_from:
            return False
        return self.effective_until is None or day <= self.effective_until


class RuleFile(_RuleModel):
    """One legal regime: where it applies, its sources and its duties."""

    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*$")]
    name: Text
    kind: Literal["general", "sector", "default"]
    applies_to: tuple[JurisdictionPattern, ...] = ()
    draft: bool = False
    requires_traits: tuple[Trait, ...] = ()
    notes: str = ""
    sources: Annotated[tuple[Source, ...], Field(min_length=1)]
    duties: Annotated[tuple[DutyRule, ...], Field(min_length=1)]

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
        return self

    def covers(self, code: str) -> bool:
        """Whether the regime applies to a jurisdiction code; a country entry covers its subdivisions."""
        return any(p in ("*", code, code[:2]) for p in self.applies_to)

    @property
    def basis(self) -> Basis:
        if self.kind == "default":
            return "contract"
        return "draft" if self.draft else "law"


class Policy(_RuleModel):
    """Internal policy (not law): counting conventions and targets for qualitative deadlines."""

    day_convention: Literal["elapsed_utc"]
    business_day_convention: Literal["same_local_time"]
    target_hours: Mapping[str, Annotated[float, Field(gt=0, le=MAX_TARGET_HOURS)]]

    @model_validator(mode="after")
    def _targets_cover_standards(self) -> Policy:
        unknown = sorted(set(self.target_hours) - set(QUALITATIVE_UNITS))
        missing = sorted(set(QUALITATIVE_UNITS) - set(self.target_hours))
        if unknown or missing:
            raise ValueError(f"target_hours: unknown standards {unknown}, missing standards {missing}")
        return self


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
    clock_start: str
    clock_start_text: str | None  # the law's wording of the clock start, where it says more
    clock_started_at: datetime | None  # None until the notice it follows has been sent
    due_at: datetime | None  # the legal deadline in UTC; None for a qualitative standard
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


@dataclass(frozen=True)
class RuleSet:
    """All regimes, the contractual default and the policy, validated together."""

    regimes: tuple[RuleFile, ...]
    default: RuleFile
    policy: Policy

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
        """The regimes that cover a jurisdiction (and the entity's traits), excluding the default."""
        code = _jurisdiction(jurisdiction)
        have = _traits(traits)
        return [r for r in self.regimes if r.covers(code) and set(r.requires_traits) <= have]

    def duties_for(
        self,
        jurisdiction: str,
        *,
        affected_subjects: int | None,
        data_categories: Iterable[str],
        role: Role,
        aware_at: datetime,
        tenant_overrides: Sequence[ContractualOverride] = (),
        on: date | None = None,
        clock_starts: Mapping[str, datetime] | None = None,
        sent_notices: Mapping[str, datetime] | None = None,
        traits: Iterable[str] = (),
    ) -> list[Duty]:
        """The duties owed in ``role`` for a breach affecting residents of ``jurisdiction``.

        ``affected_subjects`` counts the jurisdiction's affected residents (None: not known yet);
        an empty ``data_categories`` means not known yet. Both leave threshold duties in, with
        the open limb as a condition. Every clock starts at ``aware_at`` (the earliest, hence
        safest, reading) unless ``clock_starts`` gives a later moment for an anchor, e.g. when
        a Singapore assessment ended. ``sent_notices`` (duty id -> sent time) anchors duties
        that run from an earlier notice. ``on`` picks the law in force (default: the aware date).
        Duties are ordered by target time.
        """
        code = _jurisdiction(jurisdiction)
        if role not in ("processor", "controller"):
            raise ValueError(f"role must be 'processor' or 'controller', got {role!r}")
        if affected_subjects is not None and affected_subjects < 0:
            raise ValueError(f"affected_subjects cannot be negative, got {affected_subjects}")
        categories = frozenset(data_categories)
        unknown = sorted(categories - set(DATA_CATEGORIES))
        if unknown:
            raise ValueError(f"unknown data categories {unknown}; expected some of: {', '.join(DATA_CATEGORIES)}")
        aware = _utc(aware_at, "aware_at")
        starts: dict[str, datetime] = dict.fromkeys(EVENT_ANCHORS, aware)
        for anchor, moment in (clock_starts or {}).items():
            if anchor not in EVENT_ANCHORS:
                raise ValueError(f"clock_starts: {anchor!r} is not an incident anchor ({', '.join(EVENT_ANCHORS)})")
            starts[anchor] = _utc(moment, f"clock_starts[{anchor!r}]")
        starts["year_end"] = datetime(starts["discovery"].year + 1, 1, 1, tzinfo=UTC)
        sent = {k: _utc(v, f"sent_notices[{k!r}]") for k, v in (sent_notices or {}).items()}
        day = on or aware.date()
        context = _Context(code, role, starts, sent)

        duties: list[Duty] = []
        for regime in self.regimes_for(code, traits=traits):
            for rule in regime.duties:
                if role not in rule.roles or not rule.in_force(day):
                    continue
                verdict, open_limbs = rule.trigger.evaluate(affected_subjects, categories)
                if verdict is False:
                    continue
                duties.append(self._duty(regime, rule, context, verdict, open_limbs))

        if role == "processor":
            if tenant_overrides:
                duties.extend(self._contract_duty(term, i, context) for i, term in enumerate(tenant_overrides, 1))
            elif not any(d.whom.kind == "controller" and d.basis == "law" for d in duties):
                # No statutory duty to tell the customer is encoded here: the contract still requires it.
                for rule in self.default.duties:
                    if role in rule.roles and rule.in_force(day):
                        duties.append(self._duty(self.default, rule, context, True, ()))
        far = datetime.max.replace(tzinfo=UTC)
        return sorted(duties, key=lambda d: (d.target_at or d.due_at or far, d.rule_id))

    def _duty(
        self,
        regime: RuleFile,
        rule: DutyRule,
        ctx: _Context,
        verdict: bool | None,
        open_limbs: tuple[str, ...],
    ) -> Duty:
        start = ctx.sent.get(rule.after) if rule.after else ctx.starts[rule.clock_start]
        due, target = self._times(rule.deadline, start)
        conditions = open_limbs + ((rule.condition,) if rule.condition else ())
        cited = {s.id: s for s in regime.sources}
        return Duty(
            rule_id=rule.id,
            regime=regime.id,
            regime_name=regime.name,
            jurisdiction=ctx.code,
            title=rule.title,
            role=ctx.role,
            whom=rule.recipient,
            provision=rule.provision,
            basis=regime.basis,
            draft=regime.draft,
            unconfirmed=rule.unconfirmed,
            clock_start=rule.clock_start,
            clock_start_text=rule.clock_start_text,
            clock_started_at=start,
            due_at=due,
            target_at=target,
            deadline=rule.deadline,
            required_elements=rule.elements,
            sources=tuple(cited[s] for s in rule.sources),
            conditions=conditions,
            threshold_met=verdict,
            threshold=rule.trigger.text,
            after=rule.after,
            not_before=rule.not_before,
            notes=rule.notes,
        )

    def _contract_duty(self, term: ContractualOverride, index: int, ctx: _Context) -> Duty:
        template = self.default.duties[0]
        deadline = Deadline(unit=term.unit, amount=term.amount, text=term.reference)
        start = ctx.starts[term.clock_start]
        due, target = self._times(deadline, start)
        return Duty(
            rule_id=f"{self.default.id}.tenant-term-{index}",
            regime=self.default.id,
            regime_name=self.default.name,
            jurisdiction=ctx.code,
            title="Notify the customer within the contractual deadline",
            role=ctx.role,
            whom=Recipient(kind="controller", name=term.recipient),
            provision=term.reference,
            basis="contract",
            draft=False,
            unconfirmed=False,
            clock_start=term.clock_start,
            clock_start_text=None,
            clock_started_at=start,
            due_at=due,
            target_at=target,
            deadline=deadline,
            required_elements=template.elements,
            sources=(Source(id="contract", citation=term.reference),),
            conditions=(),
            threshold_met=True,
            notes="A term of this tenant's contract.",
        )

    def _times(self, deadline: Deadline, start: datetime | None) -> tuple[datetime | None, datetime | None]:
        """(legal due time, internal target time) for a deadline counted from ``start``."""
        if start is None:
            return None, None
        if deadline.fixed:
            assert deadline.amount is not None  # guaranteed by Deadline's validator
            due = advance(start, deadline.amount, cast(FixedUnit, deadline.unit))
            if deadline.target_hours is None:
                return due, due
            return due, min(due, start + timedelta(hours=deadline.target_hours))
        hours = deadline.target_hours or self.policy.target_hours[deadline.unit]
        return None, start + timedelta(hours=hours)


@dataclass(frozen=True, slots=True)
class _Context:
    code: str
    role: Role
    starts: Mapping[str, datetime]
    sent: Mapping[str, datetime]


def _jurisdiction(value: str) -> str:
    code = value.strip().upper()
    if not JURISDICTION_RE.match(code):
        raise ValueError(f"jurisdiction must be ISO 3166 like 'DE' or 'US-CA', got {value!r}")
    return code


def _traits(values: Iterable[str]) -> frozenset[str]:
    have = frozenset(values)
    unknown = sorted(have - set(ENTITY_TRAITS))
    if unknown:
        raise ValueError(f"unknown entity traits {unknown}; expected some of: {', '.join(ENTITY_TRAITS)}")
    return have


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be time-zone aware, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


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

    regimes: list[RuleFile] = []
    defaults: list[RuleFile] = []
    owner: dict[str, str] = {}
    for path in sorted(folder.glob("*.toml")):
        if path.name == POLICY_FILE:
            continue
        if path.name.startswith("_"):
            raise RuleFileError(f"{path.name}: unknown control file (only {POLICY_FILE} is recognised)")
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
    return RuleSet(regimes=tuple(regimes), default=defaults[0], policy=policy)


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
    aware_at: datetime,
    tenant_overrides: Sequence[ContractualOverride] = (),
    on: date | None = None,
    clock_starts: Mapping[str, datetime] | None = None,
    sent_notices: Mapping[str, datetime] | None = None,
    traits: Iterable[str] = (),
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
    )


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
