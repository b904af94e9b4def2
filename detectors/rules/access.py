"""Rules on who touched whose data: cross-tenant access and vendor staff without a ticket.

Both keep one tally per actor, tenant and UTC day, so a user who reads another tenant's
records a hundred times in a day makes one finding whose numbers grow, not a hundred.
"""

from __future__ import annotations

from typing import Any, ClassVar

from breachwatch.core.batch import ACTOR_TYPES, K_ACCESS
from breachwatch.core.events import SENSITIVE, AccessEvent
from breachwatch.core.findings import DetectionContext, Severity
from breachwatch.detectors.rules.books import Book
from breachwatch.detectors.rules.core import (
    DAY,
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
    when,
)

MAX_GROUPS = 24  # distinct (action, resource, sensitivity, outcome) groups kept per tally
MAX_IPS = 10
MAX_NOTES = 5
# A staff access to a tenant no staff member touched for this long is called a first access.
FIRST_STAFF_GAP = 60 * DAY
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
    wants=lambda b: b.column("foreign") & (b.column("actor_type") != ACTOR_TYPES["staff"]),
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


# --- vendor staff without a ticket -------------------------------------------------------------


class StaffTally(AccessTally):
    """A vendor staff member's accesses to one tenant that no ticket justifies."""

    __slots__ = ()

    def verdict(self) -> Verdict:
        who = f"{self.actor_id} ({self.label} team)" if self.label else self.actor_id
        reasons: list[str] = []
        if "unknown" in self.flags:
            title = f"Unknown staff account {self.actor_id} accessed tenant {self.tenant_id}'s data"
            reasons.append(f"{self.actor_id} is not in the vendor staff directory")
        elif "inactive" in self.flags:
            title = f"Inactive staff account {self.actor_id} accessed tenant {self.tenant_id}'s data"
            reasons.append(f"{self.actor_id} is marked inactive in the vendor staff directory")
        else:
            title = f"Staff member {self.actor_id} accessed tenant {self.tenant_id}'s data without a ticket"
        if "unticketed" in self.flags:
            reasons.append(
                f"no ticket for tenant {self.tenant_id} naming {self.actor_id} was open at the time of"
                f" the accesses below"
            )
        reasons.append(f"staff member {who} touched tenant {self.tenant_id}'s data: {self.summary()}")
        reasons.extend(self.breakdown())
        reasons.extend(self.notes)
        if self.ips:
            reasons.append(f"requests came from {listing(self.ips)}")
        severity: Severity
        if "unknown" in self.flags or "inactive" in self.flags or self.sensitive_exports or self.high_risk:
            severity = "critical"
            score = 90.0 + log_bonus(self.records, 2.5, 10.0)
        elif self.allowed == 0:
            severity = "medium"
            score = 50.0 + log_bonus(self.denied, 8.0, 15.0)
        else:
            severity = "high"
            score = 75.0 + log_bonus(self.records, 3.0, 14.0)
        return Verdict(
            severity=severity,
            score=min(score, 100.0),
            title=title,
            reasons=tuple(reasons),
            tenant_ids=(self.tenant_id,),
            source_ips=tuple(self.ips),
            facts={
                **self.facts(),
                "staff_known": int("unknown" not in self.flags),
                "staff_active": int("unknown" not in self.flags and "inactive" not in self.flags),
                "had_ticket": int("unticketed" not in self.flags),
            },
        )


def _cited_ticket_problem(ev: AccessEvent, ctx: DetectionContext) -> str | None:
    """Why the ticket an unjustified access cites does not justify it (it never does here)."""
    tid = ev.ticket_id
    if not tid:
        return None
    ticket = ctx.tables.tickets.get(tid)
    if ticket is None:
        return f"the access cited ticket {tid}, which is not in the ticket directory"
    if ticket.tenant_id != ev.tenant_id:
        return f"the access cited ticket {tid}, which is for tenant {ticket.tenant_id}, not {ev.tenant_id}"
    if ev.actor_id not in ticket.staff_ids:
        return f"the access cited ticket {tid}, which does not name {ev.actor_id}"
    closed = when(ticket.closed_at.timestamp()) if ticket.closed_at else "now"
    return (
        f"the access cited ticket {tid}, which was open from {when(ticket.opened_at.timestamp())}"
        f" to {closed}, not at {when(ev.ts.timestamp())}"
    )


class StaffBook(TallyBook):
    """The staff rule's tallies, and when vendor staff last touched each tenant's data (ticket
    or not, bounded): the first access of any staff member to a tenant is worth saying."""

    def __init__(self) -> None:
        super().__init__(StaffTally)
        self.since = -1.0  # when this book started watching (event time)
        self.visits: dict[str, float] = {}

    def visit(self, tenant_id: str, t: float) -> float | None:
        """Note a staff access to ``tenant_id`` at ``t``; the previous one's time, if any."""
        if self.since < 0:
            self.since = t
        last = self.visits.pop(tenant_id, None)
        if len(self.visits) >= MAX_TALLIES:
            del self.visits[next(iter(self.visits))]  # the tenant staff touched longest ago
        self.visits[tenant_id] = t if last is None else max(last, t)
        return last

    def to_state(self) -> dict[str, Any]:
        return {**super().to_state(), "since": self.since, "visits": [[k, v] for k, v in self.visits.items()]}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.since = float(state.get("since", -1.0))
        self.visits = {k: float(v) for k, v in state.get("visits", [])}


def _first_staff_access(tenant_id: str, last: float | None, since: float, t: float) -> str | None:
    """The insight of a staff access against the tenant's history of staff accesses."""
    if last is None:
        days = (t - since) / DAY
        if days < 1.0:
            return None  # watched too briefly to call anything a first
        return (
            f"the first access by any vendor staff member to tenant {tenant_id}'s data in the {days:.0f} days watched"
        )
    if t - last >= FIRST_STAFF_GAP:
        return (
            f"the first access by any vendor staff member to tenant {tenant_id}'s data in "
            f"{(t - last) / DAY:.0f} days (the last on {when(last)})"
        )
    return None


@rule(
    name="staff_without_ticket",
    kind="staff_without_ticket",
    severity="high",
    description=(
        "Vendor staff touched a tenant's data with no open ticket naming them, or from an unknown or inactive account."
    ),
    playbook=(
        "Ask the staff member's manager whether the access was requested; if no ticket exists,"
        " suspend the account's admin access, preserve the admin-console logs and treat the"
        " records touched as exposed until shown otherwise."
    ),
    inputs=(AccessEvent,),
    memory=StaffBook,
    wants=lambda b: (b.column("kinds") == K_ACCESS) & (b.column("actor_type") == ACTOR_TYPES["staff"]),
)
def staff_without_ticket(ev: AccessEvent, book: StaffBook, ctx: DetectionContext) -> Hit | None:
    if ev.actor_type != "staff":
        return None
    t = ev.ts.timestamp()
    first = _first_staff_access(ev.tenant_id, book.visit(ev.tenant_id, t), book.since, t)
    tables = ctx.tables
    staff = tables.staff.get(ev.actor_id)
    covered = tables.covering_ticket(ev.actor_id, ev.tenant_id, ev.ts) is not None
    if covered and staff is not None and staff.active:
        return None
    day = day_of(t)
    key = f"{ev.tenant_id}|{day}"
    tally = book.tally(f"{ev.actor_id}|{key}", ev, t)
    bounded_add(tally.notes, first, MAX_NOTES)
    # An unknown or inactive account is an incident even with a ticket; the flags say which.
    if staff is None:
        bounded_add(tally.flags, "unknown", 4)
    else:
        tally.label = staff.team
        if not staff.active:
            bounded_add(tally.flags, "inactive", 4)
    if not covered:
        bounded_add(tally.flags, "unticketed", 4)
        bounded_add(tally.notes, _cited_ticket_problem(ev, ctx), MAX_NOTES)
    return Hit(key=key, actor_id=ev.actor_id, episode=tally, events=(ev,), until=tally.until)
