"""Staff access: every access is justified by a ticket (tenant, window, assignee, purpose) and,
for tenants that require it, an approval; each kind of mismatch must and must not fire, and the
verdicts do not depend on the order tickets, approvals and accesses arrive in."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from breachwatch.core.events import STAFF, TENANTS, TICKETS, AccessEvent, Event, Staff, Tenant, Ticket
from breachwatch.core.findings import DetectionContext, Finding
from breachwatch.core.justification import ApprovalPolicy, Grant, StaffAccess
from breachwatch.core.reference import ReferenceTables
from breachwatch.detectors.rules import RulesDetector
from breachwatch.detectors.rules.staff import SETTLE

T0 = datetime(2026, 11, 24, 9, 0, 0, tzinfo=UTC)
_seq = iter(range(10**9))


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def iso(minutes: float | None) -> str | None:
    return None if minutes is None else at(minutes).isoformat().replace("+00:00", "Z")


def staff_access(minutes: float = 0, **kw: Any) -> AccessEvent:
    d: dict[str, Any] = {
        "event_id": f"s-{next(_seq)}",
        "ts": iso(minutes),
        "actor_id": "st-bilal",
        "actor_type": "staff",
        "actor_tenant": None,
        "tenant_id": "t-indus",
        "action": "read",
        "resource_type": "customer",
        "sensitivity": "personal",
        "records": 3,
        "ip": "10.20.0.7",
        "country": "PK",
    }
    d.update(kw)
    return AccessEvent.model_validate_json(json.dumps(d))


def clock(minutes: float) -> AccessEvent:
    """An ordinary customer access: moves the unit's event time on."""
    return AccessEvent.model_validate_json(
        json.dumps(
            {
                "event_id": f"c-{next(_seq)}",
                "ts": iso(minutes),
                "actor_id": "u-clock",
                "actor_type": "customer_user",
                "actor_tenant": "t-indus",
                "tenant_id": "t-indus",
                "action": "read",
                "resource_type": "product",
                "records": 1,
            }
        )
    )


TENANT_IDS = ("t-indus", "t-rhein", "t-kiso", "t-andes")
STAFF_ROWS = (
    ("st-bilal", "Bilal Example", "support", True),
    ("st-sara", "Sara Example", "security", True),
    ("st-nadia", "Nadia Example", "engineering", True),
    ("st-old", "Former Example", "support", False),
)
# (id, tenant, kind, requested_by, staff, opened, closed) in minutes from T0
TICKET_ROWS = (
    ("SUP-4411", "t-indus", "support", "customer", ["st-bilal"], -5, 120),
    ("SUP-9000", "t-rhein", "support", None, ["st-sara"], -60, None),
    ("SUP-5100", "t-kiso", "support", "vendor", ["st-nadia"], -10, 240),
    ("MNT-7", "t-kiso", "maintenance", "vendor", ["st-nadia"], -10, 240),
    ("SEC-31", "t-kiso", "security", "vendor", ["st-sara"], -10, 240),
)


def ticket(row: tuple[Any, ...]) -> Ticket:
    tid, tenant, kind, by, staff, opened, closed = row
    doc = {"ticket_id": tid, "tenant_id": tenant, "kind": kind, "staff_ids": staff, "opened_at": iso(opened)}
    doc["closed_at"] = iso(closed)
    if by:
        doc["requested_by"] = by
        doc["summary"] = f"{kind} for {tenant}"
    return Ticket.model_validate_json(json.dumps(doc))


def make_tables(*, tickets: bool = True) -> ReferenceTables:
    tables = ReferenceTables()
    for tid in TENANT_IDS:
        v = Tenant.model_validate_json(
            json.dumps(
                {
                    "tenant_id": tid,
                    "name": tid.title(),
                    "jurisdiction": "PK",
                    "contacts": [{"email": f"security@{tid}.example", "role": "security"}],
                }
            )
        )
        tables.apply(TENANTS, tid, v)
    for sid, name, team, active in STAFF_ROWS:
        doc = {"staff_id": sid, "name": name, "email": f"{sid}@unisen.example", "team": team, "active": active}
        doc["country"] = "PK"
        tables.apply(STAFF, sid, Staff.model_validate_json(json.dumps(doc)))
    if tickets:
        for row in TICKET_ROWS:
            t = ticket(row)
            tables.apply(TICKETS, t.ticket_id, t)
    return tables


@pytest.fixture
def ctx() -> DetectionContext:
    return DetectionContext(tables=make_tables())


def judge(
    events: list[Event], ctx: DetectionContext, d: RulesDetector | None = None
) -> tuple[list[Finding], list[StaffAccess]]:
    """Findings and judged accesses once every staff access has settled."""
    d = d or RulesDetector()
    last = max(e.ts for e in events)
    evs = sorted([*events, clock((last - T0).total_seconds() / 60 + 30)], key=lambda e: e.ts)
    findings = d.process(evs, ctx)
    assert d.errors == {}
    return findings, d.take_staff_accesses()


def text(f: Finding) -> str:
    return "\n".join((f.title, *f.reasons))


# --- tickets: each mismatch, must and must not ---------------------------------------------------

Make = Callable[[], list[Event]]
MISMATCHES: list[tuple[str, Make, str | None, str | None, str]] = [
    # (what, events, finding kind or None, problem code, words the finding must say)
    ("no ticket at all", lambda: [staff_access(tenant_id="t-andes")],
     "staff_without_ticket", "no_ticket", "no ticket for tenant t-andes naming st-bilal"),
    ("cites a ticket that does not exist", lambda: [staff_access(tenant_id="t-andes", ticket_id="SUP-0001")],
     "staff_without_ticket", "ticket_unknown", "ticket SUP-0001, which is not in the ticket directory"),
    ("wrong tenant: cites another tenant's ticket", lambda: [staff_access(tenant_id="t-andes", ticket_id="SUP-4411")],
     "staff_ticket_mismatch", "ticket_other_tenant", "ticket SUP-4411, which is for tenant t-indus, not t-andes"),
    ("expired ticket, cited", lambda: [staff_access(200, ticket_id="SUP-4411")],
     "staff_ticket_mismatch", "ticket_outside_window", "the access came 80 minutes after it was closed"),
    ("expired ticket, not cited", lambda: [staff_access(60 * 50)],
     "staff_ticket_mismatch", "ticket_outside_window", "the access came 2 days after it was closed"),
    ("ticket not yet open", lambda: [staff_access(-30, ticket_id="SUP-4411")],
     "staff_ticket_mismatch", "ticket_outside_window", "25 minutes before it was opened"),
    ("other assignee, cited", lambda: [staff_access(tenant_id="t-rhein", ticket_id="SUP-9000")],
     "staff_ticket_mismatch", "ticket_other_assignee", "ticket SUP-9000 for tenant t-rhein is assigned to st-sara"),
    ("other assignee, open ticket of a colleague", lambda: [staff_access(30, actor_id="st-nadia")],
     "staff_ticket_mismatch", "ticket_other_assignee", "assigned to st-bilal, not st-nadia"),
    ("export under a vendor-opened support ticket (troubleshooting)",
     lambda: [staff_access(30, actor_id="st-nadia", tenant_id="t-kiso", action="export", records=900)],
     "staff_ticket_mismatch", "purpose_excludes_export", "(opened by the vendor), which does not cover exporting"),
    ("export under a support ticket that does not say who opened it",
     lambda: [staff_access(30, actor_id="st-sara", tenant_id="t-rhein", action="export", ticket_id="SUP-9000")],
     "staff_ticket_mismatch", "purpose_excludes_export", "not recording who opened it"),
    ("inactive account with a fitting ticket", lambda: [staff_access(actor_id="st-old", ticket_id="SUP-4411")],
     "staff_without_ticket", "inactive_staff", "st-old is marked inactive"),
    # must not
    ("export the customer asked for", lambda: [staff_access(30, action="export", records=5000)],
     None, None, ""),
    ("export for security work", lambda: [staff_access(30, actor_id="st-sara", tenant_id="t-kiso", action="export")],
     None, None, ""),
    ("troubleshooting reads under a vendor-opened ticket",
     lambda: [staff_access(30, actor_id="st-nadia", tenant_id="t-kiso")], None, None, ""),
    ("maintenance update",
     lambda: [staff_access(30, actor_id="st-nadia", tenant_id="t-kiso", action="update", ticket_id="MNT-7")],
     None, None, ""),
    ("cited ticket, inside its window", lambda: [staff_access(60, ticket_id="SUP-4411")], None, None, ""),
    ("within the grace either side of the window", lambda: [staff_access(-19), staff_access(134)], None, None, ""),
    ("cites a wrong id while its own ticket for the tenant is open",
     lambda: [staff_access(10, ticket_id="SUP-9000")], None, None, ""),
]  # fmt: skip


@pytest.mark.parametrize(("what", "make", "kind", "code", "words"), MISMATCHES, ids=[m[0] for m in MISMATCHES])
def test_mismatch_kinds(
    what: str, make: Make, kind: str | None, code: str | None, words: str, ctx: DetectionContext
) -> None:
    findings, judged = judge(make(), ctx)
    assert judged and all(a.staff_id.startswith("st-") for a in judged)
    if kind is None:
        assert findings == [], [text(f) for f in findings]
        assert all(a.justification.justified for a in judged)
        return
    assert [f.kind for f in findings] == [kind], [text(f) for f in findings]
    assert words in text(findings[0])
    [access] = judged
    assert not access.justification.justified
    assert code in [p.code for p in access.justification.problems]


def test_a_justified_access_is_logged_at_once_with_its_ticket_and_purpose(ctx: DetectionContext) -> None:
    d = RulesDetector()
    ev = staff_access(30, action="export", records=5000)
    assert d.process([ev], ctx) == []
    [access] = d.take_staff_accesses()
    j = access.justification
    assert (j.ticket_id, j.ticket_kind, j.requested_by, j.purpose) == (
        "SUP-4411",
        "support",
        "customer",
        "support_on_request",
    )
    assert j.ticket_summary == "support for t-indus" and j.justified and not j.approval_required
    assert (access.staff_name, access.staff_team, access.office_country) == ("Bilal Example", "support", "PK")
    assert (access.action, access.records, access.cited_ticket) == ("export", 5000, None)
    assert d.take_staff_accesses() == []  # taken once


def test_an_unjustified_access_is_judged_when_it_settles(ctx: DetectionContext) -> None:
    d = RulesDetector()
    ev = staff_access(tenant_id="t-andes")
    assert d.process([ev, clock(19)], ctx) == [] and d.take_staff_accesses() == []
    [f] = d.process([clock(20)], ctx)
    [access] = d.take_staff_accesses()
    assert not access.justification.justified
    assert f.detected_at == at(20) == ev.ts + SETTLE
    assert f.ts == ev.ts and [e.event_id for e in f.events] == [ev.event_id]


def test_severity_follows_what_was_done(ctx: DetectionContext) -> None:
    [read], _ = judge([staff_access(200, ticket_id="SUP-4411", sensitivity="internal")], ctx)
    [export], _ = judge([staff_access(30, actor_id="st-nadia", tenant_id="t-kiso", action="export")], ctx)
    [denied], _ = judge([staff_access(200, ticket_id="SUP-4411", outcome="denied", records=0)], ctx)
    assert (read.severity, export.severity, denied.severity) == ("high", "critical", "medium")


# --- approvals ----------------------------------------------------------------------------------


def grant(rid: str, state: str, start: float, end: float, **kw: Any) -> Grant:
    minutes = {k: at(v) if isinstance(v, (int, float)) else v for k, v in kw.items()}
    values: dict[str, Any] = {
        "request_id": rid,
        "tenant_id": "t-kiso",
        "staff_ids": ("st-nadia",),
        "ticket_id": "SUP-5100",
        "purpose": "troubleshooting",
        "starts_at": at(start),
        "ends_at": at(end),
        "filed_at": at(start - 120),
        "expires_at": at(end),
        "state": state,
        **minutes,
    }
    return Grant(**values)


def approval_ctx(*grants: Grant, since: float = -60 * 24) -> DetectionContext:
    tables = make_tables()
    tables.grants.replace([ApprovalPolicy("t-kiso", at(since))], grants)
    return DetectionContext(tables=tables)


def nadia(minutes: float, **kw: Any) -> AccessEvent:
    return staff_access(minutes, actor_id="st-nadia", tenant_id="t-kiso", **kw)


APPROVALS: list[tuple[str, list[Grant], float, str | None]] = [
    # (what, requests, access minute, words of the finding or None when justified)
    ("inside the approved window", [grant("AR-1", "approved", 0, 60, decided_at=-30)], 30, None),
    ("after the approved window ended", [grant("AR-1", "approved", 0, 60, decided_at=-30)], 90,
     "request AR-1 was approved for 2026-11-24 09:00:00 UTC to 2026-11-24 10:00:00 UTC, and the access came"
     " 30 minutes after it ended"),
    ("before the approved window began", [grant("AR-1", "approved", 60, 120, decided_at=-30)], 30,
     "the access came 30 minutes before it began"),
    ("the request was denied",
     [grant("AR-2", "denied", 0, 60, decided_at=-20, decided_by="security@t-kiso.example")], 30,
     "request AR-2 was denied by security@t-kiso.example at 2026-11-24 08:40:00 UTC"),
    ("the request expired unanswered", [grant("AR-3", "expired", 0, 60, expires_at=10)], 30,
     "request AR-3 expired unanswered at 2026-11-24 09:10:00 UTC"),
    ("the approval was revoked before the access", [grant("AR-4", "revoked", 0, 60, decided_at=-30, revoked_at=20)], 30,
     "the approval of request AR-4 was revoked at 2026-11-24 09:20:00 UTC"),
    ("the approval was revoked after the access",
     [grant("AR-4", "revoked", 0, 60, decided_at=-30, revoked_at=40)], 30, None),
    ("approved only after the access", [grant("AR-5", "approved", 0, 60, decided_at=40)], 30,
     "request AR-5 was still waiting for the approver's decision"),
    ("no request at all", [], 30, "no access request for st-nadia had been filed"),
    ("another staff member's approval", [grant("AR-6", "approved", 0, 60, decided_at=-30, staff_ids=("st-sara",))], 30,
     "no access request for st-nadia had been filed"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "grants", "minute", "words"), APPROVALS, ids=[a[0] for a in APPROVALS])
def test_approval_states(what: str, grants: list[Grant], minute: float, words: str | None) -> None:
    ctx = approval_ctx(*grants)
    findings, [access] = judge([nadia(minute)], ctx)
    assert access.justification.approval_required
    if words is None:
        assert findings == [] and access.justification.justified
        assert access.justification.request_id == grants[0].request_id
        return
    [f] = findings
    assert (f.kind, f.severity) == ("staff_access_unapproved", "high")
    assert "tenant t-kiso requires approval before staff access" in text(f)
    assert words in text(f)


def test_approval_is_needed_only_while_the_tenant_requires_it() -> None:
    before = approval_ctx(since=60)  # opted in at minute 60
    assert judge([nadia(30)], before)[0] == []
    assert [f.kind for f in judge([nadia(90)], before)[0]] == ["staff_access_unapproved"]
    ended = make_tables()
    ended.grants.replace([ApprovalPolicy("t-kiso", at(-600), until=at(0))], [])
    assert judge([nadia(30)], DetectionContext(tables=ended))[0] == []


def test_an_unapproved_access_with_a_bad_ticket_is_two_findings() -> None:
    ctx = approval_ctx()
    findings, _ = judge([nadia(30, action="export")], ctx)
    assert sorted(f.kind for f in findings) == ["staff_access_unapproved", "staff_ticket_mismatch"]


# --- order and batching do not change the verdicts ------------------------------------------------


def _outcome(findings: list[Finding], judged: list[StaffAccess]) -> tuple[Any, ...]:
    last: dict[str, tuple[Any, ...]] = {}
    for f in findings:
        last[f.finding_id] = (f.kind, f.severity, f.title, f.reasons, f.detected_at)
    return (sorted(last.items()), sorted((a.event_id, a) for a in judged))


def _stream() -> list[Event]:
    evs: list[Event] = [
        staff_access(-10),  # SUP-4411 opens at -5: inside the grace
        staff_access(5, tenant_id="t-andes"),  # nothing justifies it
        nadia(12),  # approved at 8 for 10..60
        nadia(70),  # outside the window
        staff_access(80, actor_id="st-sara", tenant_id="t-rhein"),
        clock(95),
        clock(140),
    ]
    # The same ids on every call, so two runs can be compared.
    return [e.model_copy(update={"event_id": f"stream-{i}"}) for i, e in enumerate(evs)]


def _grants() -> tuple[list[ApprovalPolicy], list[Grant]]:
    return [ApprovalPolicy("t-kiso", at(-600))], [grant("AR-9", "approved", 10, 60, decided_at=8)]


def test_tickets_and_approvals_arriving_after_the_accesses_change_nothing() -> None:
    first = make_tables()
    first.grants.replace(*_grants())
    d = RulesDetector()
    expected = _outcome(d.process(_stream(), DetectionContext(tables=first)), d.take_staff_accesses())

    # Live: the first accesses arrive before the tickets and the approval do (within the
    # settling time: the first access is judged at minute 10, on the next event after).
    late = make_tables(tickets=False)
    ctx = DetectionContext(tables=late)
    d = RulesDetector()
    evs = _stream()
    findings = d.process(evs[:2], ctx)
    for row in TICKET_ROWS:
        t = ticket(row)
        late.apply(TICKETS, t.ticket_id, t)
    late.grants.replace(*_grants())
    findings += d.process(evs[2:], ctx)
    assert _outcome(findings, d.take_staff_accesses()) == expected
    assert len(expected[0]) == 2  # t-andes without a ticket, nadia outside the approved window


@pytest.mark.parametrize("cut", [1, 2, 3, 4, 5, 6])
def test_batches_and_checkpoints_change_nothing(cut: int) -> None:
    tables = make_tables()
    tables.grants.replace(*_grants())
    ctx = DetectionContext(tables=tables)
    whole = RulesDetector()
    expected = _outcome(whole.process(_stream(), ctx), whole.take_staff_accesses())
    evs = _stream()
    before = RulesDetector()
    findings = before.process(evs[:cut], ctx)
    judged = before.take_staff_accesses()
    after = RulesDetector()
    after.load_state(json.loads(json.dumps(before.state(), allow_nan=False)))
    findings += after.process(evs[cut:], ctx)
    assert _outcome(findings, judged + after.take_staff_accesses()) == expected


def test_a_redelivered_staff_access_counts_once(ctx: DetectionContext) -> None:
    d = RulesDetector()
    ev = staff_access(tenant_id="t-andes")
    d.process([ev], ctx)
    [f] = d.process([ev, clock(30)], ctx)
    assert f.facts["accesses"] == 1
    assert len(d.take_staff_accesses()) == 1


def test_a_late_copy_of_an_access_still_held_is_not_held_twice(ctx: DetectionContext) -> None:
    # An access hours older than the unit's clock, re-delivered after the memory of judged ids
    # was swept: it is still held (not yet settled), so the copy is the same access.
    d = RulesDetector()
    ev = staff_access(-240, tenant_id="t-andes")
    d.process([clock(0), ev], ctx)
    assert d.process([ev], ctx) == [] and d.errors == {}
    [f] = d.process([clock(30)], ctx)
    assert f.facts["accesses"] == 1 and d.errors == {}
    assert len(d.take_staff_accesses()) == 1


# --- bulk export of staff: the customer's request is the job, anything else still fires ----------


def test_a_bulk_export_the_customers_ticket_asked_for_is_not_a_bulk_export(ctx: DetectionContext) -> None:
    # Above the cold limit of a tenant with no export history: any other actor would fire.
    findings, judged = judge([staff_access(30, action="export", records=25_000)], ctx)
    assert findings == [], [text(f) for f in findings]
    assert judged[0].justification.justified


@pytest.mark.parametrize(
    ("what", "event"),
    [
        ("no ticket", lambda: staff_access(30, tenant_id="t-andes", action="export", records=25_000)),
        (
            "a troubleshooting ticket the vendor opened",
            lambda: staff_access(30, actor_id="st-nadia", tenant_id="t-kiso", action="export", records=25_000),
        ),
        # The ticket arrives within its grace: the staff rule forgives it, the export rule does
        # not wait for it (the export was not asked for when it was taken).
        ("a ticket opened only after the export", lambda: staff_access(-10, action="export", records=25_000)),
    ],
)
def test_a_staff_bulk_export_no_request_covers_still_fires(
    what: str, event: Callable[[], AccessEvent], ctx: DetectionContext
) -> None:
    findings, _ = judge([event()], ctx)
    assert "bulk_export" in [f.kind for f in findings], what
