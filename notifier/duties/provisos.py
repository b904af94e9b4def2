"""What a statute allows beside its duties, as rule-file data: an encryption safe harbour, a
law-enforcement delay, substitute notice.

Each is a table of a regime's rule file (``[safe_harbour]``, ``[law_enforcement_delay]``,
``[substitute_notice]``) naming the duties it covers (none named: every duty of the regime),
the provision and its sources. Only what the statute itself provides is encoded: a regime
without the table has no such relief, and the engine never infers one.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from breachwatch.notifier.duties.facts import Headcount

Text = Annotated[str, Field(min_length=1)]
DutyId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*(\.[a-z0-9][a-z0-9-]*)+$")]
Requester = Literal["law_enforcement", "attorney_general"]
RequestForm = Literal["written", "oral"]
REQUESTERS: dict[str, str] = {
    "law_enforcement": "A law enforcement agency or official",
    "attorney_general": "The US Attorney General",
}


class _Proviso(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    provision: Text
    duties: tuple[DutyId, ...] = ()  # none: every duty of the regime
    sources: Annotated[tuple[str, ...], Field(min_length=1)]
    unconfirmed: bool = False
    notes: str = ""

    @model_validator(mode="after")
    def _unconfirmed_says_why(self) -> _Proviso:
        if self.unconfirmed and not self.notes.strip():
            raise ValueError("an unconfirmed proviso needs notes saying what could not be confirmed")
        return self

    def covers(self, rule_id: str) -> bool:
        return not self.duties or rule_id in self.duties


class SafeHarbour(_Proviso):
    """Encrypted data (its key not taken) does not count for these duties."""

    text: Text  # the statute's words


class LawEnforcementDelay(_Proviso):
    """Who may ask for notice to be held back, in what form, for how long at most."""

    text: Text
    requested_by: Annotated[tuple[Requester, ...], Field(min_length=1)] = ("law_enforcement",)
    forms: Annotated[tuple[RequestForm, ...], Field(min_length=1)] = ("written", "oral")
    oral_max_days: Annotated[int, Field(ge=1, le=366)] | None = None  # an oral request holds at most this long
    max_days: Annotated[int, Field(ge=1, le=366)] | None = None  # any request, without a renewal


class SubstituteNotice(_Proviso):
    """When notice to individuals may be given another way (website, media), and how."""

    methods: Text
    min_affected: Annotated[int, Field(ge=1)] | None = None  # at least this many affected in the jurisdiction
    contacts_missing: bool = False  # allowed where contact details are insufficient
    min_missing: Annotated[int, Field(ge=1)] = 1  # ... for at least this many people
    otherwise: Text | None = None  # a further limb only a person can judge (cost, effort)

    @model_validator(mode="after")
    def _has_a_limb(self) -> SubstituteNotice:
        if self.min_affected is None and not self.contacts_missing and self.otherwise is None:
            raise ValueError("substitute notice needs min_affected, contacts_missing or otherwise")
        return self


class Exempted(BaseModel):
    """A duty the encryption safe harbour lifts for this breach, with the provision that does."""

    model_config = ConfigDict(frozen=True)

    rule_id: str
    regime: str
    jurisdiction: str
    title: str
    role: str
    provision: str
    text: str


class DelayTerms(BaseModel):
    """How a law-enforcement request may hold back one duty (copied from its regime's rule file)."""

    model_config = ConfigDict(frozen=True)

    provision: str
    text: str
    requested_by: tuple[str, ...]
    forms: tuple[str, ...]
    oral_max_days: int | None = None
    max_days: int | None = None
    unconfirmed: bool = False

    @classmethod
    def of(cls, rule: LawEnforcementDelay) -> DelayTerms:
        return cls(
            provision=rule.provision,
            text=rule.text,
            requested_by=rule.requested_by,
            forms=rule.forms,
            oral_max_days=rule.oral_max_days,
            max_days=rule.max_days,
            unconfirmed=rule.unconfirmed,
        )


class SubstituteOption(BaseModel):
    """Whether substitute notice is allowed for one duty: True, False or None (a person decides)."""

    model_config = ConfigDict(frozen=True)

    provision: str
    methods: str
    allowed: bool | None
    reasons: tuple[str, ...]  # why it is allowed (or what would allow it)
    otherwise: str | None = None
    unconfirmed: bool = False


def substitute_option(rule: SubstituteNotice, local: Headcount, contacts_missing: int | None) -> SubstituteOption:
    """Substitute notice for one jurisdiction's affected people and the contacts known to be missing."""
    met: list[str] = []
    open_: list[str] = []
    if rule.min_affected is not None:
        limb = f"at least {rule.min_affected:,} affected individuals in the jurisdiction"
        verdict = local.at_least(rule.min_affected)
        (met if verdict else open_ if verdict is None else []).append(limb)
    if rule.contacts_missing:
        who = "someone" if rule.min_missing == 1 else f"{rule.min_missing:,} or more individuals"
        limb = f"contact details are insufficient for {who}"
        if contacts_missing is None:
            open_.append(limb)
        elif contacts_missing >= rule.min_missing:
            met.append(f"{limb} ({contacts_missing:,} recorded)")
    if rule.otherwise:
        open_.append(rule.otherwise)
    allowed = True if met else (None if open_ else False)
    return SubstituteOption(
        provision=rule.provision,
        methods=rule.methods,
        allowed=allowed,
        reasons=tuple(met or open_),
        otherwise=rule.otherwise,
        unconfirmed=rule.unconfirmed,
    )
