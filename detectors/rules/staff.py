"""The rule on vendor-staff access: every staff access is justified (``justification``) and kept
for the tenant's transparency log; those no ticket, purpose or approval justifies are findings.

An access that a ticket justifies when it arrives is logged at once. One that nothing justifies
yet is held for ``SETTLE`` of event time and judged then: a ticket may be opened up to
``TICKET_GRACE`` after the engineer started looking, and the live service must have read it by
the time it judges, as a replay (which reads every ticket first) has. The moment of judgement
is fixed by the events (the first event of the unit at or past the access's time plus
``SETTLE``), so the live service, a replay and any batching reach the same verdicts.

Findings come in three kinds, one tally per staff member, tenant, UTC day and kind:
``staff_without_ticket`` (no ticket at all, or an unknown or inactive account),
``staff_ticket_mismatch`` (a ticket exists but does not fit: another tenant's, closed or not
yet open, assigned to others, or a purpose that does not cover exporting data) and
``staff_access_unapproved`` (the tenant requires approval and no approved window covered it).
"""

from __future__ import annotations

import heapq
from datetime import UTC, datetime, timedelta
from typing import Any

from breachwatch.core.events import AccessEvent, AuthEvent
from breachwatch.core.findings import DetectionContext, Severity
from breachwatch.core.justification import STAFF_PROBLEMS, Justification, StaffAccess
from breachwatch.core.reference import TICKET_GRACE
from breachwatch.detectors.rules.access import MAX_NOTES, AccessTally, TallyBook
from breachwatch.detectors.rules.core import (
    DAY,
    Hit,
    Verdict,
    bounded_add,
    day_of,
    listing,
    log_bonus,
    plural,
    rule,
    when,
)
from breachwatch.detectors.rules.justification import describe, justify

# Event time an unjustified access waits for its ticket or the directory to catch up: the
# grace a ticket has plus the 5 minutes the contract lets any event be late.
SETTLE = TICKET_GRACE + timedelta(minutes=5)
MAX_PENDING = 100_000  # per unit; past it, the oldest held access is judged at once
SEEN_HORIZON = 3600.0  # how long a judged access's id is remembered to drop re-deliveries
MAX_SEEN = 200_000
MAX_VISITS = 50_000  # (staff member, tenant) pairs whose last access is remembered, per unit
# A staff member's access to a tenant they have not touched for this long is called a first access.
FIRST_STAFF_GAP = 60 * DAY

WITHOUT_TICKET = "staff_without_ticket"
MISMATCH = "staff_ticket_mismatch"
UNAPPROVED = "staff_access_unapproved"
_NO_TICKET_CODES = frozenset({"no_ticket", "ticket_unknown"})
# Flags a staff_without_ticket tally words itself from (other problems are flagged by code).
_FLAGS = {
    "unknown_staff": "unknown",
    "inactive_staff": "inactive",
    "no_ticket": "unticketed",
    "ticket_unknown": "unticketed",
}
_SAID_BY_FLAG = frozenset({"unknown_staff", "inactive_staff", "no_ticket"})
# Flags saying no ticket fitted the access at all (a fitting ticket of the wrong purpose did).
_UNFIT = frozenset({"unticketed", "ticket_other_tenant", "ticket_outside_window", "ticket_other_assignee"})


def _kind_of(code: str, account_problem: bool) -> str:
    """The finding kind a problem makes; an unknown or inactive account's ticket problems go
    with the account's finding (one finding says it all)."""
    if code == "approval_missing":
        return UNAPPROVED
    if account_problem or code in STAFF_PROBLEMS or code in _NO_TICKET_CODES:
        return WITHOUT_TICKET
    return MISMATCH


class StaffTally(AccessTally):
    """A staff member's unjustified accesses to one tenant on one day, of one finding kind."""

    __slots__ = ()
    kind = WITHOUT_TICKET

    def who(self) -> str:
        return f"{self.actor_id} ({self.label} team)" if self.label else self.actor_id

    def severity(self) -> tuple[Severity, float]:
        if "unknown" in self.flags or "inactive" in self.flags or self.sensitive_exports or self.high_risk:
            return "critical", 90.0 + log_bonus(self.records, 2.5, 10.0)
        if self.allowed == 0:
            return "medium", 50.0 + log_bonus(self.denied, 8.0, 15.0)
        return "high", 75.0 + log_bonus(self.records, 3.0, 14.0)

    def title(self) -> str:
        if "unknown" in self.flags:
            return f"Unknown staff account {self.actor_id} accessed tenant {self.tenant_id}'s data"
        if "inactive" in self.flags:
            return f"Inactive staff account {self.actor_id} accessed tenant {self.tenant_id}'s data"
        return f"Staff member {self.actor_id} accessed tenant {self.tenant_id}'s data without a ticket"

    def why(self) -> list[str]:
        lines: list[str] = []
        if "unknown" in self.flags:
            lines.append(f"{self.actor_id} is not in the vendor staff directory")
        elif "inactive" in self.flags:
            lines.append(f"{self.actor_id} is marked inactive in the vendor staff directory")
        if "unticketed" in self.flags:
            lines.append(
                f"no ticket for tenant {self.tenant_id} naming {self.actor_id} was open at the time of"
                f" the accesses below"
            )
        return lines

    def verdict(self) -> Verdict:
        severity, score = self.severity()
        reasons = [
            *self.why(),
            f"staff member {self.who()} touched tenant {self.tenant_id}'s data: {self.summary()}",
            *self.breakdown(),
            *self.notes,
        ]
        if self.ips:
            reasons.append(f"requests came from {listing(self.ips)}")
        return Verdict(
            severity=severity,
            score=min(score, 100.0),
            title=self.title(),
            reasons=tuple(reasons),
            tenant_ids=(self.tenant_id,),
            source_ips=tuple(self.ips),
            facts={
                **self.facts(),
                "staff_known": int("unknown" not in self.flags),
                "staff_active": int("unknown" not in self.flags and "inactive" not in self.flags),
                "had_ticket": int(not _UNFIT.intersection(self.flags)),
            },
            kind=self.kind,
        )


class MismatchTally(StaffTally):
    """Accesses under a ticket that exists but does not fit them."""

    __slots__ = ()
    kind = MISMATCH

    def title(self) -> str:
        return f"Staff member {self.actor_id} accessed tenant {self.tenant_id}'s data under a ticket that does not fit"

    def why(self) -> list[str]:
        return []


class UnapprovedTally(StaffTally):
    """Accesses to a tenant that requires approval, outside any window its approver approved."""

    __slots__ = ()
    kind = UNAPPROVED

    def severity(self) -> tuple[Severity, float]:
        # Access outside an approved window breaks the tenant's explicit condition: high at least.
        severity, score = super().severity()
        return ("critical", score) if severity == "critical" else ("high", max(score, 75.0))

    def title(self) -> str:
        return f"Staff member {self.actor_id} accessed tenant {self.tenant_id}'s data without the tenant's approval"

    def why(self) -> list[str]:
        return []


def _first_staff_access(staff_id: str, tenant_id: str, last: float | None, since: float, t: float) -> str | None:
    """The insight of a staff access against that staff member's history with the tenant.

    Per staff member, not "any vendor staff member": the access topic is keyed by actor, so a
    unit sees only the staff members hashed to its partition, and another member's access to
    the same tenant may be on another one. What one member did is all on one partition.
    """
    if last is None:
        days = (t - since) / DAY
        if days < 1.0:
            return None  # watched too briefly to call anything a first
        watched = plural(round(days), "day")
        return f"the first access by {staff_id} to tenant {tenant_id}'s data in the {watched} watched"
    if t - last >= FIRST_STAFF_GAP:
        return (
            f"the first access by {staff_id} to tenant {tenant_id}'s data in "
            f"{plural(round((t - last) / DAY), 'day')} (the last on {when(last)})"
        )
    return None


def _judged(ev: AccessEvent, j: Justification, ctx: DetectionContext) -> StaffAccess:
    staff = ctx.tables.staff.get(ev.actor_id)
    return StaffAccess(
        event_id=ev.event_id,
        ts=ev.ts,
        tenant_id=ev.tenant_id,
        staff_id=ev.actor_id,
        staff_name=staff.name if staff else None,
        staff_team=staff.team if staff else None,
        office_country=staff.country if staff else None,
        action=ev.action,
        resource_type=ev.resource_type,
        sensitivity=ev.sensitivity,
        records=ev.records,
        outcome=ev.outcome,
        cited_ticket=ev.ticket_id or None,
        justification=j,
    )


class StaffBook:
    """The staff rule's memory: accesses held until they settle, the day tallies of each finding
    kind, the ids of accesses already judged, the judged accesses not yet taken, and when each
    staff member last touched each tenant's data (ticket or not: a first access is worth saying)."""

    def __init__(self) -> None:
        self.books = {
            WITHOUT_TICKET: TallyBook(StaffTally),
            MISMATCH: TallyBook(MismatchTally),
            UNAPPROVED: TallyBook(UnapprovedTally),
        }
        # Heap by (due, event id) of held accesses, each with what its arrival said of the tenant.
        self.pending: list[tuple[float, str, AccessEvent, str | None]] = []
        self.next_due = datetime.max.replace(tzinfo=UTC)
        self.seen: dict[str, float] = {}
        self.judged: list[StaffAccess] = []
        self.since = -1.0  # when this book started watching (event time)
        self.visits: dict[str, float] = {}

    def visit(self, staff_id: str, tenant_id: str, t: float) -> float | None:
        """Note an access by ``staff_id`` to ``tenant_id`` at ``t``; the previous one's time."""
        if self.since < 0:
            self.since = t
        key = f"{staff_id}|{tenant_id}"
        last = self.visits.pop(key, None)
        if len(self.visits) >= MAX_VISITS:
            del self.visits[next(iter(self.visits))]  # the pair touched longest ago
        self.visits[key] = t if last is None else max(last, t)
        return last

    # --- the stream ----------------------------------------------------------------------------

    def take(self, ev: AccessEvent, ctx: DetectionContext) -> list[Hit]:
        """A new staff access: logged now if justified, else held until it settles."""
        if ev.event_id in self.seen:
            return []  # a re-delivered copy
        t = ev.ts.timestamp()
        if len(self.seen) >= MAX_SEEN:
            del self.seen[next(iter(self.seen))]
        self.seen[ev.event_id] = t
        # In arrival (event) order, so the live service and a replay say the same.
        last = self.visit(ev.actor_id, ev.tenant_id, t)
        first = _first_staff_access(ev.actor_id, ev.tenant_id, last, self.since, t)
        j = justify(ev, ctx.tables)
        if j.justified:
            self.judged.append(_judged(ev, j, ctx))
            return []
        heapq.heappush(self.pending, (t + SETTLE.total_seconds(), ev.event_id, ev, first))
        hits = self.settle(datetime.min.replace(tzinfo=UTC), ctx) if len(self.pending) > MAX_PENDING else []
        self._next()
        return hits

    def settle(self, now: datetime, ctx: DetectionContext) -> list[Hit]:
        """Judge every held access due by ``now`` (and the oldest, past ``MAX_PENDING``)."""
        hits: list[Hit] = []
        limit = now.timestamp()
        while self.pending and (self.pending[0][0] <= limit or len(self.pending) > MAX_PENDING):
            _, _, ev, first = heapq.heappop(self.pending)
            j = justify(ev, ctx.tables)
            self.judged.append(_judged(ev, j, ctx))
            if not j.justified:
                hits.extend(self._tally(ev, j, ctx, first))
        self._next()
        return hits

    def _next(self) -> None:
        self.next_due = (
            datetime.fromtimestamp(self.pending[0][0], UTC) if self.pending else datetime.max.replace(tzinfo=UTC)
        )

    def _tally(self, ev: AccessEvent, j: Justification, ctx: DetectionContext, first: str | None) -> list[Hit]:
        t = ev.ts.timestamp()
        key = f"{ev.tenant_id}|{day_of(t)}"
        staff = ctx.tables.staff.get(ev.actor_id)
        hits = []
        account = any(p.code in STAFF_PROBLEMS for p in j.problems)
        for kind in dict.fromkeys(_kind_of(p.code, account) for p in j.problems):
            # The kind a staff member's day on a tenant always had keeps the key it had.
            k = key if kind == WITHOUT_TICKET else f"{key}|{kind}"
            tally = self.books[kind].tally(f"{ev.actor_id}|{k}", ev, t)
            if staff is not None:
                tally.label = staff.team
            for p in j.problems:
                if _kind_of(p.code, account) != kind:
                    continue
                bounded_add(tally.flags, _FLAGS.get(p.code, p.code), 8)
                if p.code not in _SAID_BY_FLAG:
                    bounded_add(tally.notes, describe(p, ev.ts, ev.tenant_id, ev.actor_id), MAX_NOTES)
            bounded_add(tally.notes, first, MAX_NOTES)
            hits.append(Hit(key=k, actor_id=ev.actor_id, episode=tally, events=(ev,), until=tally.until))
        return hits

    def take_judged(self) -> list[StaffAccess]:
        out, self.judged = self.judged, []
        return out

    # --- memory --------------------------------------------------------------------------------

    def sweep(self, watermark: float) -> None:
        for book in self.books.values():
            book.sweep(watermark)
        horizon = watermark - SEEN_HORIZON
        # An access still held stays known however old it is: a late copy of it must not be
        # held a second time (the two would tie on the heap).
        held = {event_id for _, event_id, _, _ in self.pending}
        self.seen = {k: t for k, t in self.seen.items() if t >= horizon or k in held}

    def to_state(self) -> dict[str, Any]:
        return {
            "books": {name: book.to_state() for name, book in self.books.items()},
            "pending": [
                [due, ev.model_dump_json(exclude_none=True), first] for due, _, ev, first in sorted(self.pending)
            ],
            "seen": [[k, t] for k, t in self.seen.items()],
            "since": self.since,
            "visits": [[k, v] for k, v in self.visits.items()],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        for name, book in self.books.items():
            book.load_state(state.get("books", {}).get(name, {}))
        pending = []
        for due, doc, first in state.get("pending", []):
            ev = AccessEvent.model_validate_json(doc)
            pending.append((float(due), ev.event_id, ev, first))
        heapq.heapify(pending)
        self.pending = pending
        self.seen = {k: float(t) for k, t in state.get("seen", [])}
        self.since = float(state.get("since", -1.0))
        self.visits = {k: float(v) for k, v in state.get("visits", [])}
        if any("|" not in k for k in self.visits):
            # A register of an older version, by tenant alone: it cannot say who was there, so
            # the watch starts again rather than call a staff member's return a first.
            self.visits, self.since = {}, -1.0
        self.judged = []
        self._next()


@rule(
    name="staff_access",
    kind=WITHOUT_TICKET,
    severity="high",
    description="Vendor staff touched a tenant's data with no ticket, purpose or approval that justifies it.",
    playbook=(
        "Ask the staff member's manager whether the access was requested; if no ticket or approval"
        " covers it, suspend the account's admin access, preserve the admin-console logs and treat"
        " the records touched as exposed until shown otherwise."
    ),
    inputs=(AccessEvent, AuthEvent),
    memory=StaffBook,
)
def staff_access(ev: AccessEvent | AuthEvent, book: StaffBook, ctx: DetectionContext) -> list[Hit] | None:
    # Every event of the unit moves its event time on, and with it the held accesses that settle.
    hits = book.settle(ev.ts, ctx) if ev.ts >= book.next_due else None
    if type(ev) is AccessEvent and ev.actor_type == "staff":
        more = book.take(ev, ctx)
        if more:
            hits = [*(hits or ()), *more]
    return hits or None
