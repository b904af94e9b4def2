"""Justify one vendor-staff access: the ticket that fits it, the purpose that ticket serves, and
the tenant's approval where the tenant requires one; or say in plain words why none does.

Pure functions of an access and the reference tables (``core.reference``). A ticket *fits*
an access when it is for the tenant whose data was touched, names the staff member, and was
open at the time (within ``TICKET_GRACE``); its purpose then has to cover what was done
(exporting a tenant's data is covered only by support the customer asked for, or by security
work). Where no ticket fits, the one the access cited, or else the nearest in time, explains
why: another tenant's, closed or not yet open, or assigned to someone else.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from breachwatch.core.events import AccessEvent, Ticket
from breachwatch.core.justification import AccessGrants, Grant, Justification, Problem
from breachwatch.core.reference import TICKET_GRACE, ReferenceTables
from breachwatch.detectors.rules.core import when

# Privacy policy 6.1: personnel may touch customer data only to troubleshoot, for support the
# customer asked for, for maintenance, or for security. A support ticket is support on request
# when the customer opened it (contract 1.1 ``requested_by``); one the vendor opened, or one
# that does not say, is the vendor's own troubleshooting.
PURPOSE_WORDS: dict[str, str] = {
    "troubleshooting": "troubleshooting",
    "support_on_request": "support the customer asked for",
    "maintenance": "maintenance",
    "security": "security work",
}
# Copying a tenant's data out is covered only when the customer asked for it or a security
# investigation needs it; troubleshooting and maintenance work on the data where it is.
EXPORT_PURPOSES = frozenset({"support_on_request", "security"})
# How far from an access an own ticket may lie and still be named as the one that no longer
# (or not yet) covered it; farther ones say nothing about this access.
NEAR = timedelta(days=30)

Labeller = Callable[[str], str]


def purpose_of(ticket: Ticket) -> str:
    """The purpose (policy 6.1) a ticket serves."""
    if ticket.kind == "maintenance":
        return "maintenance"
    if ticket.kind in ("security", "fraud"):
        return "security"
    return "support_on_request" if ticket.requested_by == "customer" else "troubleshooting"


def _open_at(t: Ticket, ts: datetime, grace: timedelta) -> bool:
    return t.opened_at - grace <= ts and (t.closed_at is None or ts <= t.closed_at + grace)


def _gap(t: Ticket, ts: datetime) -> float:
    """Seconds between ``ts`` and the ticket's open interval (0 inside it)."""
    if ts < t.opened_at:
        return (t.opened_at - ts).total_seconds()
    if t.closed_at is not None and ts > t.closed_at:
        return (ts - t.closed_at).total_seconds()
    return 0.0


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat().replace("+00:00", "Z")


def _ticket_facts(t: Ticket) -> dict[str, object]:
    return {
        "ticket_id": t.ticket_id,
        "opened_at": _iso(t.opened_at),
        "closed_at": _iso(t.closed_at),
        "purpose": purpose_of(t),
        "requested_by": t.requested_by,
    }


def justify(ev: AccessEvent, tables: ReferenceTables, grace: timedelta = TICKET_GRACE) -> Justification:
    """The justification of one staff access, or the problems that leave it unjustified."""
    problems: list[Problem] = []
    staff = tables.staff.get(ev.actor_id)
    if staff is None:
        problems.append(Problem("unknown_staff", {"staff_id": ev.actor_id}))
    elif not staff.active:
        problems.append(Problem("inactive_staff", {"staff_id": ev.actor_id}))
    ticket, ticket_problem = _ticket(ev, tables, grace)
    if ticket_problem is not None:
        problems.append(ticket_problem)
    grant, approval_problem = _approval(ev, tables.grants)
    required = approval_problem is not None or grant is not None
    if approval_problem is not None:
        problems.append(approval_problem)
    return Justification(
        ticket_id=ticket.ticket_id if ticket else (ev.ticket_id or None),
        ticket_kind=ticket.kind if ticket else None,
        requested_by=ticket.requested_by if ticket else None,
        purpose=purpose_of(ticket) if ticket else None,
        ticket_summary=ticket.summary if ticket else None,
        approval_required=required,
        request_id=grant.request_id if grant else None,
        problems=tuple(problems),
    )


def _ticket(ev: AccessEvent, tables: ReferenceTables, grace: timedelta) -> tuple[Ticket | None, Problem | None]:
    """The ticket that justifies (or comes closest to justifying) the access, and what is wrong."""
    own = tables.tickets_naming(ev.actor_id, ev.tenant_id)
    fitting = [t for t in own if _open_at(t, ev.ts, grace)]
    if fitting:
        # Prefer the cited ticket, then one whose purpose covers the action.
        fitting.sort(key=lambda t: (t.ticket_id != ev.ticket_id, not _covers(t, ev.action), t.ticket_id))
        best = fitting[0]
        if not _covers(best, ev.action):
            return best, Problem("purpose_excludes_export", _ticket_facts(best))
        return best, None
    cited = tables.tickets.get(ev.ticket_id) if ev.ticket_id else None
    if ev.ticket_id and cited is None:
        return None, Problem("ticket_unknown", {"ticket_id": ev.ticket_id})
    if cited is not None:
        return cited, _cited_problem(ev, cited)
    # Nothing cited: a colleague's ticket open at the time, else their own nearest one.
    others = [t for t in tables.tickets_of(ev.tenant_id) if _open_at(t, ev.ts, grace)]
    if others:
        return others[0], Problem(
            "ticket_other_assignee", {**_ticket_facts(others[0]), "assignees": list(others[0].staff_ids)}
        )
    near = sorted((_gap(t, ev.ts), t.ticket_id, t) for t in own if _gap(t, ev.ts) <= NEAR.total_seconds())
    if near:
        t = near[0][2]
        return t, Problem("ticket_outside_window", _ticket_facts(t))
    return None, Problem("no_ticket", {})


def _cited_problem(ev: AccessEvent, cited: Ticket) -> Problem:
    if cited.tenant_id != ev.tenant_id:
        return Problem("ticket_other_tenant", {**_ticket_facts(cited), "ticket_tenant": cited.tenant_id})
    if ev.actor_id not in cited.staff_ids:
        return Problem("ticket_other_assignee", {**_ticket_facts(cited), "assignees": list(cited.staff_ids)})
    return Problem("ticket_outside_window", _ticket_facts(cited))


def _covers(t: Ticket, action: str) -> bool:
    return action != "export" or purpose_of(t) in EXPORT_PURPOSES


def _approval(ev: AccessEvent, grants: AccessGrants) -> tuple[Grant | None, Problem | None]:
    if not grants.requires_approval(ev.tenant_id, ev.ts):
        return None, None
    grant = grants.covering(ev.tenant_id, ev.actor_id, ev.ts)
    if grant is not None:
        return grant, None
    near = grants.nearest(ev.tenant_id, ev.actor_id, ev.ts)
    if near is None:
        return None, Problem("approval_missing", {})
    return None, Problem(
        "approval_missing",
        {
            "request_id": near.request_id,
            "state": near.state_at(ev.ts),
            "starts_at": _iso(near.starts_at),
            "ends_at": _iso(near.ends_at),
            "decided_at": _iso(near.decided_at),
            "decided_by": near.decided_by,
            "revoked_at": _iso(near.revoked_at),
            "expires_at": _iso(near.expires_at),
        },
    )


# --- wording -----------------------------------------------------------------------------------


def _t(value: object) -> str:
    """An ISO time from a problem's facts, as the on-call reads times."""
    return when(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())


def _duration(seconds: float) -> str:
    minutes = round(abs(seconds) / 60)
    if minutes < 120:
        return f"{minutes} minutes"
    hours = minutes / 60
    return f"{hours:.0f} hours" if hours < 48 else f"{hours / 24:.0f} days"


def _window(facts: dict[str, object]) -> str:
    closed = _t(facts["closed_at"]) if facts.get("closed_at") else "now (still open)"
    return f"open from {_t(facts['opened_at'])} to {closed}"


def describe(
    p: Problem, ev_ts: datetime, tenant_id: str, staff_id: str, label: Labeller = str, *, for_tenant: bool = False
) -> str:
    """One problem in plain words. ``label`` names staff members (their id, name or pseudonym);
    ``for_tenant`` words it for the tenant itself, which must not learn other tenants' ids."""
    f = p.facts
    who = label(staff_id)
    at = when(ev_ts.timestamp())
    if p.code == "unknown_staff":
        return f"{who} is not in the vendor staff directory"
    if p.code == "inactive_staff":
        return f"{who} is marked inactive in the vendor staff directory"
    if p.code == "no_ticket":
        return f"no ticket for tenant {tenant_id} naming {who} was open at {at}, and the access cited none"
    if p.code == "ticket_unknown":
        return f"the access cited ticket {f['ticket_id']}, which is not in the ticket directory"
    if p.code == "ticket_other_tenant":
        other = "another customer" if for_tenant else f"tenant {f['ticket_tenant']}"
        return f"the access cited ticket {f['ticket_id']}, which is for {other}, not {tenant_id}"
    if p.code == "ticket_outside_window":
        return _outside_window(f, ev_ts, who)
    if p.code == "ticket_other_assignee":
        names = [label(s) for s in f.get("assignees", [])]  # type: ignore[union-attr]
        to = "other staff members" if for_tenant or not names else ", ".join(names)
        return f"ticket {f['ticket_id']} for tenant {tenant_id} is assigned to {to}, not {who}"
    if p.code == "purpose_excludes_export":
        by = {"vendor": "opened by the vendor", "customer": "opened by the customer"}.get(
            str(f.get("requested_by")), "not recording who opened it"
        )
        return (
            f"ticket {f['ticket_id']} is {PURPOSE_WORDS[str(f['purpose'])]} ({by}), which does not cover"
            " exporting the tenant's data; only support the customer asked for, or security work, does"
        )
    if p.code == "approval_missing":
        return _approval_words(f, ev_ts, tenant_id, who)
    return p.code.replace("_", " ")


def _outside_window(f: dict[str, object], ev_ts: datetime, who: str) -> str:
    opened = datetime.fromisoformat(str(f["opened_at"]).replace("Z", "+00:00"))
    if ev_ts < opened:
        rel = f"{_duration((opened - ev_ts).total_seconds())} before it was opened"
    else:
        closed = datetime.fromisoformat(str(f["closed_at"]).replace("Z", "+00:00"))
        rel = f"{_duration((ev_ts - closed).total_seconds())} after it was closed"
    return f"ticket {f['ticket_id']} names {who} but was {_window(f)}: the access came {rel}"


def _approval_words(f: dict[str, object], ev_ts: datetime, tenant_id: str, who: str) -> str:
    head = f"tenant {tenant_id} requires approval before staff access"
    rid = f.get("request_id")
    state = f.get("state")
    if not rid:
        return f"{head}, and no access request for {who} had been filed by {when(ev_ts.timestamp())}"
    if state == "pending":
        return f"{head}; request {rid} was still waiting for the approver's decision at {when(ev_ts.timestamp())}"
    if state == "denied":
        by = f" by {f['decided_by']}" if f.get("decided_by") else ""
        return f"{head}; request {rid} was denied{by} at {_t(f['decided_at'])}"
    if state == "expired":
        return f"{head}; request {rid} expired unanswered at {_t(f['expires_at'])}"
    if state == "revoked":
        return f"{head}; the approval of request {rid} was revoked at {_t(f['revoked_at'])}"
    start = datetime.fromisoformat(str(f["starts_at"]).replace("Z", "+00:00"))
    end = datetime.fromisoformat(str(f["ends_at"]).replace("Z", "+00:00"))
    if ev_ts < start:
        rel = f"{_duration((start - ev_ts).total_seconds())} before it began"
    else:
        rel = f"{_duration((ev_ts - end).total_seconds())} after it ended"
    window = f"{_t(f['starts_at'])} to {_t(f['ends_at'])}"
    return f"{head}; request {rid} was approved for {window}, and the access came {rel}"


def justified_words(j: Justification, label: Labeller, staff_id: str) -> str:
    """What justified an access, in plain words."""
    purpose = PURPOSE_WORDS.get(j.purpose or "", j.purpose or "")
    text = f"ticket {j.ticket_id} ({purpose}) names {label(staff_id)}"
    if j.request_id:
        text += f"; the tenant's approver approved request {j.request_id} for the time"
    return text
