"""Who touched whose data: the day tally of one actor's accesses to one tenant, and the rule on
a tenant's users or keys reaching another tenant (vendor staff are judged in ``staff``).

A tally is kept per actor, tenant and UTC day, so a user who reads another tenant's records a
hundred times in a day makes one finding whose numbers grow, not a hundred.
"""

from __future__ import annotations

from typing import Any, ClassVar

from breachwatch.core.events import SENSITIVE, AccessEvent
from breachwatch.core.findings import DetectionContext, Severity
from breachwatch.detectors.rules.books import Book
from breachwatch.detectors.rules.core import (
    VERB_PAST,
    Hit,
    Verdict,
    bounded_add,
    day_end,
    day_of,
    listing,
    log_bonus,
    num,
    plural,
    rule,
    span,
)

MAX_GROUPS = 24  # distinct (action, resource, sensitivity, outcome) groups kept per tally
MAX_IPS = 10
MAX_NOTES = 5
MAX_TALLIES = 50_000  # per rule and partition; the oldest day-tallies go first
GROUP_LINES = 5  # breakdown lines shown in a finding
HIGH_RISK = frozenset({"payment", "credentials"})


class AccessTally:
    """Running totals of one actor's accesses to one tenant's data on one UTC day."""

    __slots__ = (
        "accesses",
        "actor_id",
        "actor_tenant",
        "actor_type",
        "allowed",
        "day",
        "denied",
        "first",
        "flags",
        "groups",
        "high_risk",
        "ips",
        "label",
        "last",
        "notes",
        "records",
        "sensitive_exports",
        "sensitive_records",
        "tenant_id",
        "until",
    )
    # Field order of the checkpoint form; a list is about half the size of a dict in JSON.
    FIELDS: ClassVar[tuple[str, ...]] = (
        "actor_id",
        "actor_type",
        "actor_tenant",
        "tenant_id",
        "day",
        "until",
        "first",
        "last",
        "accesses",
        "allowed",
        "denied",
        "records",
        "sensitive_records",
        "sensitive_exports",
        "high_risk",
        "groups",
        "ips",
        "notes",
        "flags",
        "label",
    )

    def __init__(self, ev: AccessEvent, t: float) -> None:
        self.actor_id = ev.actor_id
        self.actor_type = ev.actor_type
        self.actor_tenant = ev.actor_tenant
        self.tenant_id = ev.tenant_id
        self.day = day_of(t)
        self.until = day_end(t)
        self.first = t
        self.last = t
        self.accesses = 0
        self.allowed = 0
        self.denied = 0
        self.records = 0
        self.sensitive_records = 0
        self.sensitive_exports = 0
        self.high_risk = 0
        self.groups: dict[str, list[int]] = {}
        self.ips: list[str] = []
        self.notes: list[str] = []
        self.flags: list[str] = []
        self.label = ""

    def add(self, ev: AccessEvent, t: float) -> None:
        self.accesses += 1
        if t < self.first:
            self.first = t
        if t > self.last:
            self.last = t
        n = ev.records
        key = f"{ev.action}|{ev.resource_type}|{ev.sensitivity}|{ev.outcome}"
        g = self.groups.get(key)
        if g is None:
            if len(self.groups) >= MAX_GROUPS:
                key = "other|other|other|" + ev.outcome
                g = self.groups.get(key)
            if g is None:
                g = self.groups[key] = [0, 0]
        g[0] += 1
        g[1] += n
        if ev.outcome == "success":
            self.allowed += 1
            self.records += n
            if ev.sensitivity in SENSITIVE:
                self.sensitive_records += n
                if ev.action == "export":
                    self.sensitive_exports += 1
            if ev.sensitivity in HIGH_RISK:
                self.high_risk += 1
        else:
            self.denied += 1
        bounded_add(self.ips, ev.ip, MAX_IPS)

    def breakdown(self, owner_note: str = "") -> list[str]:
        """What was done, largest groups first; ``owner_note`` follows the first allowed line."""
        lines: list[str] = []
        order = sorted(self.groups.items(), key=lambda kv: (kv[0].endswith("|denied"), -kv[1][1], kv[0]))
        for key, (count, records) in order[:GROUP_LINES]:
            action, resource, sensitivity, outcome = key.split("|", 3)
            if outcome == "success":
                verb = VERB_PAST.get(action, action)
                line = (
                    f"{verb} {num(records)} {resource} {'record' if records == 1 else 'records'}"
                    f" ({sensitivity} data) of tenant {self.tenant_id}"
                    f" in {plural(count, 'access', 'accesses')}"
                )
                if owner_note:
                    line += owner_note
                    owner_note = ""
            else:
                line = (
                    f"was denied {plural(count, 'attempt')} to {action} {resource} records"
                    f" ({sensitivity} data) of tenant {self.tenant_id}"
                )
            lines.append(line)
        if len(order) > GROUP_LINES:
            lines.append(f"and {plural(len(order) - GROUP_LINES, 'other kind')} of access")
        return lines

    def summary(self) -> str:
        return (
            f"{plural(self.accesses, 'access', 'accesses')} {span(self.first, self.last)}:"
            f" {num(self.allowed)} allowed, {num(self.denied)} denied, {plural(self.records, 'record')} touched"
        )

    def facts(self) -> dict[str, Any]:
        return {
            "accesses": self.accesses,
            "allowed": self.allowed,
            "denied": self.denied,
            "records": self.records,
            "sensitive_records": self.sensitive_records,
            "sensitive_exports": self.sensitive_exports,
        }

    def dump(self) -> list[Any]:
        return [getattr(self, f) for f in self.FIELDS]

    @classmethod
    def restore(cls, row: list[Any]) -> AccessTally:
        obj = cls.__new__(cls)
        for f, v in zip(cls.FIELDS, row, strict=True):
            setattr(obj, f, v)
        return obj

    def verdict(self) -> Verdict:  # pragma: no cover - every tally kind words itself
        raise NotImplementedError


class TallyBook(Book[AccessTally]):
    """One rule's day-keyed tallies, bounded in number and forgotten after their day."""

    state_key = "tallies"

    def __init__(self, kind: type[AccessTally], cap: int = MAX_TALLIES) -> None:
        super().__init__(kind, cap)
        self.kind = kind

    def tally(self, key: str, ev: AccessEvent, t: float) -> AccessTally:
        tally = self.get_or_add(key, lambda: self.kind(ev, t))
        tally.add(ev, t)
        return tally

    def expired(self, entry: AccessTally, watermark: float) -> bool:
        return entry.until < watermark


# --- cross-tenant access ----------------------------------------------------------------------


class CrossTenantTally(AccessTally):
    """A tenant's user or service account touching another tenant's data."""

    __slots__ = ()

    def verdict(self) -> Verdict:
        noun = "customer user" if self.actor_type == "customer_user" else "service account"
        owner = "user" if self.actor_type == "customer_user" else "account"
        severity: Severity
        if self.allowed == 0:
            severity = "medium"
            score = 50.0 + log_bonus(self.denied, 8.0, 15.0)
            title = f"{self.actor_id} (tenant {self.actor_tenant}) tried to reach tenant {self.tenant_id}'s data"
        elif self.sensitive_records > 0 or self.sensitive_exports > 0:
            severity = "critical"
            score = 90.0 + log_bonus(self.sensitive_records, 2.5, 10.0)
            title = f"{self.actor_id} (tenant {self.actor_tenant}) read sensitive data of tenant {self.tenant_id}"
        else:
            severity = "high"
            score = 75.0 + log_bonus(self.records, 3.0, 14.0)
            title = f"{self.actor_id} (tenant {self.actor_tenant}) accessed tenant {self.tenant_id}'s data"
        reasons = [
            f"{noun} {self.actor_id} belongs to tenant {self.actor_tenant} but its requests named tenant"
            f" {self.tenant_id}: {self.summary()}",
            *self.breakdown(f", which is not this {owner}'s tenant {self.actor_tenant}"),
        ]
        if self.sensitive_records:
            reasons.append(
                f"{plural(self.sensitive_records, 'record')} of personal, financial, payment or"
                f" credential data were returned"
            )
        if self.ips:
            reasons.append(f"requests came from {listing(self.ips)}")
        return Verdict(
            severity=severity,
            score=min(score, 100.0),
            title=title,
            reasons=tuple(reasons),
            # Only the tenant whose data was touched is affected; the actor's own is named in words.
            tenant_ids=(self.tenant_id,),
            source_ips=tuple(self.ips),
            facts=self.facts(),
        )


@rule(
    name="cross_tenant_access",
    kind="cross_tenant_access",
    severity="high",
    description="A tenant's user or service account read or changed another tenant's data.",
    playbook=(
        "Confirm the request reached the other tenant's rows (API logs, session); disable the"
        " account's sessions, open an engineering bug for the tenant-isolation check that let it"
        " through, and list the other tenant's records it returned for the breach assessment."
    ),
    inputs=(AccessEvent,),
    memory=lambda: TallyBook(CrossTenantTally),
)
def cross_tenant_access(ev: AccessEvent, book: TallyBook, ctx: DetectionContext) -> Hit | None:
    home = ev.actor_tenant
    if home is None or home == ev.tenant_id or ev.actor_type == "staff":
        return None
    t = ev.ts.timestamp()
    day = day_of(t)
    key = f"{ev.tenant_id}|{day}"
    tally = book.tally(f"{ev.actor_id}|{key}", ev, t)
    return Hit(key=key, actor_id=ev.actor_id, episode=tally, events=(ev,), until=tally.until)
