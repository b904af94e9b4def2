"""What justifies a vendor-staff access to a tenant's data, and what a tenant's approvals say.

The privacy policy (section 6.1) lets the vendor's personnel touch customer data only to
troubleshoot, to give support the customer asked for, for maintenance, or for security. A staff
access is judged against the ticket that justifies it (``erp.tickets``) and, for a tenant that
requires approval before staff access, against the access requests its approver decided
(``AccessGrants``, which BreachWatch itself records). The outcome is a ``Justification``; each
access with its justification is a ``StaffAccess``, the row of the tenant's transparency log.

Every look-up is "as of" the access's own time: a ticket's validity interval, a request's filing,
decision and revocation times. What a table says about a past moment never changes once that
moment's facts are in it, so the live service and a replay judge an access alike whenever the
ticket or the decision reached them, provided it reached them before the access was judged.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

# The purposes the policy names (6.1). Which one a ticket serves follows from its kind and
# who opened it; see ``detectors.rules.justification.PURPOSE_OF``.
Purpose = Literal["troubleshooting", "support_on_request", "maintenance", "security"]
PURPOSES: tuple[str, ...] = ("troubleshooting", "support_on_request", "maintenance", "security")

# What may be wrong with a staff access, in the order a finding names them.
PROBLEM_CODES: tuple[str, ...] = (
    "unknown_staff",  # not in the vendor's staff directory
    "inactive_staff",  # marked inactive there
    "no_ticket",  # no ticket for the tenant names them, and the access cites none that exists
    "ticket_unknown",  # the cited ticket is not in the ticket directory
    "ticket_other_tenant",  # the cited ticket is for another tenant
    "ticket_outside_window",  # a ticket for the tenant names them, but was not open at the time
    "ticket_other_assignee",  # a ticket for the tenant was open, but is assigned to others
    "purpose_excludes_export",  # the ticket fits, but its purpose does not cover exporting data
    "approval_missing",  # the tenant requires approval and no approved window covered the time
)
TICKET_PROBLEMS = frozenset(PROBLEM_CODES[2:8])
STAFF_PROBLEMS = frozenset(PROBLEM_CODES[:2])

RequestState = Literal["pending", "approved", "denied", "expired", "revoked"]
REQUEST_STATES: tuple[str, ...] = ("pending", "approved", "denied", "expired", "revoked")


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a staff access is not justified: a code and the facts that word it."""

    code: str
    facts: dict[str, Any] = field(default_factory=dict)  # JSON-able: ids, ISO times, names

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, **self.facts}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Problem:
        facts = {k: v for k, v in doc.items() if k != "code"}
        return cls(str(doc["code"]), facts)


@dataclass(frozen=True, slots=True)
class Justification:
    """The verdict on one staff access: the ticket and approval that justify it, or the problems."""

    ticket_id: str | None  # the fitting ticket, or else the one the access cited or came closest
    ticket_kind: str | None
    requested_by: str | None  # customer | vendor | None (not recorded on the ticket)
    purpose: str | None  # one of PURPOSES, when a ticket fits
    ticket_summary: str | None  # what the ticket says it is about (contract 1.1)
    approval_required: bool
    request_id: str | None  # the approved request whose window covered the access
    problems: tuple[Problem, ...] = ()

    @property
    def justified(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class StaffAccess:
    """One vendor-staff access to a tenant's data and its justification: a transparency-log row.

    The staff member is held as the directory had them when the access was judged; what the
    tenant is shown of them (name or pseudonym) is chosen when the log is read. Nothing here
    depends on when the verdict was reached (at once, or once the access settled), so the
    live service and a replay write the same row.
    """

    event_id: str
    ts: datetime
    tenant_id: str
    staff_id: str
    staff_name: str | None
    staff_team: str | None
    office_country: str | None  # the staff member's office (contract 1.1), if the directory says
    action: str
    resource_type: str
    sensitivity: str
    records: int
    outcome: str
    cited_ticket: str | None
    justification: Justification


# --- approvals --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApprovalPolicy:
    """A tenant's choice to require approval before staff access, from ``since`` (until ``until``)."""

    tenant_id: str
    since: datetime
    until: datetime | None = None

    def in_force(self, ts: datetime) -> bool:
        return self.since <= ts and (self.until is None or ts < self.until)


@dataclass(frozen=True, slots=True)
class Grant:
    """One access request and what became of it, with the time of every change.

    ``state_at`` reads the state at any moment from those times, so a request decided after
    an access never justifies it, and one revoked after it still does.
    """

    request_id: str
    tenant_id: str
    staff_ids: tuple[str, ...]
    ticket_id: str | None
    purpose: str
    starts_at: datetime
    ends_at: datetime
    filed_at: datetime
    expires_at: datetime  # a pending request lapses then
    state: str  # as stored now
    decided_at: datetime | None = None  # approved or denied at
    decided_by: str | None = None
    revoked_at: datetime | None = None

    def state_at(self, ts: datetime) -> str | None:
        """The request's state at ``ts`` (None: not filed yet)."""
        if ts < self.filed_at:
            return None
        if self.revoked_at is not None and self.revoked_at <= ts:
            return "revoked"
        if self.decided_at is not None and self.decided_at <= ts and self.state in ("approved", "revoked", "denied"):
            return "denied" if self.state == "denied" else "approved"
        if self.expires_at <= ts:
            return "expired"
        return "pending"

    def covers(self, staff_id: str, ts: datetime) -> bool:
        """Whether this request let ``staff_id`` in at ``ts``: approved by then, not revoked, in its window."""
        return staff_id in self.staff_ids and self.starts_at <= ts <= self.ends_at and self.state_at(ts) == "approved"


class AccessGrants:
    """Tenants that require approval and their access requests, for judging staff accesses.

    Filled from the database by the runtime (``privacy.approvals.load_grants``) and replaced
    whole when it changes; detectors only read it.
    """

    def __init__(self, policies: Iterable[ApprovalPolicy] = (), grants: Iterable[Grant] = ()) -> None:
        self.policies: dict[str, list[ApprovalPolicy]] = defaultdict(list)
        self.by_tenant: dict[str, list[Grant]] = defaultdict(list)
        self.replace(policies, grants)

    def replace(self, policies: Iterable[ApprovalPolicy], grants: Iterable[Grant]) -> None:
        policies_by: dict[str, list[ApprovalPolicy]] = defaultdict(list)
        grants_by: dict[str, list[Grant]] = defaultdict(list)
        for p in policies:
            policies_by[p.tenant_id].append(p)
        for g in grants:
            grants_by[g.tenant_id].append(g)
        for lst in grants_by.values():
            lst.sort(key=lambda g: (g.starts_at, g.request_id))
        # Swapped in one step each: a detector reading meanwhile sees the old or the new table.
        self.policies, self.by_tenant = policies_by, grants_by

    def requires_approval(self, tenant_id: str, ts: datetime) -> bool:
        return any(p.in_force(ts) for p in self.policies.get(tenant_id, ()))

    def covering(self, tenant_id: str, staff_id: str, ts: datetime) -> Grant | None:
        for g in self.by_tenant.get(tenant_id, ()):
            if g.covers(staff_id, ts):
                return g
        return None

    def nearest(self, tenant_id: str, staff_id: str, ts: datetime) -> Grant | None:
        """The request filed by ``ts`` naming ``staff_id`` whose window is nearest ``ts`` (to explain a refusal)."""
        best: tuple[float, str] | None = None
        found: Grant | None = None
        for g in self.by_tenant.get(tenant_id, ()):
            if staff_id not in g.staff_ids or g.filed_at > ts:
                continue
            if g.starts_at <= ts <= g.ends_at:
                gap = 0.0
            else:
                gap = min(abs((ts - g.starts_at).total_seconds()), abs((ts - g.ends_at).total_seconds()))
            if best is None or (gap, g.request_id) < best:
                best, found = (gap, g.request_id), g
        return found

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_tenant.values())
