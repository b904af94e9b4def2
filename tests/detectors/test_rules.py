"""Rules: what each must and must not catch, and how the detector behaves as a stream stage."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import string
import zlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from breachwatch.core.events import (
    ACCESS,
    AUTH,
    LOGS,
    MODEL_BY_TOPIC,
    STAFF,
    TENANTS,
    TICKETS,
    AccessEvent,
    AuthEvent,
    Event,
    LogRecord,
    Staff,
    Tenant,
    Ticket,
)
from breachwatch.core.findings import MAX_EVIDENCE, DetectionContext, Finding
from breachwatch.core.reference import ReferenceTables
from breachwatch.detectors.rules import RULES, Hit, RulesDetector, rule
from breachwatch.detectors.rules.exports import LogHistogram

T0 = datetime(2026, 11, 24, 9, 0, 0, tzinfo=UTC)
EXAMPLES = Path(__file__).resolve().parents[2] / "core" / "contracts" / "examples"

# --- building events ---------------------------------------------------------------------------

_seq = iter(range(10**9))


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def access(minutes: float = 0, **kw: Any) -> AccessEvent:
    d: dict[str, Any] = {
        "event_id": f"a-{next(_seq)}",
        "ts": at(minutes),
        "actor_id": "u-ayesha",
        "actor_type": "customer_user",
        "actor_tenant": "t-indus",
        "tenant_id": "t-indus",
        "action": "read",
        "resource_type": "customer",
        "sensitivity": "personal",
        "records": 3,
        "ip": "39.57.10.4",
        "country": "PK",
    }
    d.update(kw)
    return AccessEvent.model_validate_json(json.dumps(d))


def auth(minutes: float = 0, **kw: Any) -> AuthEvent:
    d: dict[str, Any] = {
        "event_id": f"l-{next(_seq)}",
        "ts": at(minutes),
        "actor_id": "u-ayesha",
        "actor_type": "customer_user",
        "actor_tenant": "t-indus",
        "action": "login",
        "outcome": "success",
        "ip": "39.57.10.4",
    }
    d.update(kw)
    return AuthEvent.model_validate_json(json.dumps(d))


def staff_access(minutes: float = 0, **kw: Any) -> AccessEvent:
    base = {"actor_id": "st-bilal", "actor_type": "staff", "actor_tenant": None, "ip": "10.20.0.7"}
    return access(minutes, **{**base, **kw})


def settled(evs: list[Event]) -> list[Event]:
    """``evs`` and an ordinary access half an hour after the last: staff accesses that nothing
    justifies are judged once the unit's event time is past them by ``staff.SETTLE``."""
    last = max(e.ts for e in evs)
    return [*evs, access((last - T0).total_seconds() / 60 + 30, actor_id="u-clock")]


def make_tables() -> ReferenceTables:
    tables = ReferenceTables()
    for t in (
        {
            "tenant_id": "t-indus",
            "name": "Indus Textiles",
            "jurisdiction": "PK",
            "contacts": [{"email": "owner@indus.example", "role": "owner"}],
            "data_subjects": 5200,
        },
        {
            "tenant_id": "t-rhein",
            "name": "Rhein Logistik",
            "jurisdiction": "DE",
            "locale": "de",
            "contacts": [{"email": "dpo@rhein.example", "role": "dpo"}],
            "data_subjects": 61000,
        },
        {
            "tenant_id": "t-kiso",
            "name": "Kiso Woodworks",
            "jurisdiction": "JP",
            "contacts": [{"email": "owner@kiso.example", "role": "owner"}],
            "data_subjects": 532,
        },
    ):
        v = Tenant.model_validate_json(json.dumps(t))
        tables.apply(TENANTS, v.tenant_id, v)
    for s in (
        {"staff_id": "st-bilal", "name": "Bilal Example", "email": "bilal@vendor.example", "team": "support"},
        {"staff_id": "st-sara", "name": "Sara Example", "email": "sara@vendor.example", "team": "security"},
        {
            "staff_id": "st-old",
            "name": "Former Example",
            "email": "old@vendor.example",
            "team": "support",
            "active": False,
        },
    ):
        v = Staff.model_validate_json(json.dumps(s))
        tables.apply(STAFF, v.staff_id, v)
    for k in (
        {"ticket_id": "SUP-4411", "tenant_id": "t-indus", "kind": "support", "staff_ids": ["st-bilal", "st-old"],
         "opened_at": at(-5), "closed_at": at(120)},
        {"ticket_id": "SUP-9000", "tenant_id": "t-rhein", "kind": "support", "staff_ids": ["st-sara"],
         "opened_at": at(-60), "closed_at": None},
    ):  # fmt: skip
        v = Ticket.model_validate_json(json.dumps(k))
        tables.apply(TICKETS, v.ticket_id, v)
    return tables


@pytest.fixture
def ctx() -> DetectionContext:
    return DetectionContext(tables=make_tables())


def run(events: Iterable[Event], ctx: DetectionContext, detector: RulesDetector | None = None) -> list[Finding]:
    d = detector or RulesDetector()
    return d.process(sorted(events, key=lambda e: e.ts), ctx)


def of(findings: list[Finding], name: str, actor: str | object | None = ...) -> list[Finding]:
    return [f for f in findings if f.detector == f"rules.{name}" and (actor is ... or f.actor_id == actor)]


def text(f: Finding) -> str:
    return "\n".join((f.title, *f.reasons))


# --- must / must-not examples, one table for every rule ---------------------------------------


def stuffing(ip: str = "203.0.113.9", accounts: int = 12, every: float = 0.25) -> list[AuthEvent]:
    return [
        auth(i * every, actor_id=f"u-{i:03d}", outcome="failure", ip=ip, actor_tenant="t-rhein")
        for i in range(accounts)
    ]


def office_typos() -> list[AuthEvent]:
    """40 people log in through one NAT address; 6 of them mistype twice first."""
    ip = "198.51.100.7"
    evs = [auth(i * 0.1, actor_id=f"u-staff{i:02d}", ip=ip) for i in range(40)]
    for i in range(6):
        evs += [auth(5 + i * 0.01, actor_id=f"u-typo{i}", outcome="failure", ip=ip) for _ in range(2)]
        evs.append(auth(6 + i * 0.1, actor_id=f"u-typo{i}", ip=ip))
    return evs


def export_history(n: int = 40, actor: str = "u-clerk") -> list[AccessEvent]:
    return [
        access(-60 * 24 * 30 + i * 60, actor_id=actor, action="export", records=50 + (i * 7) % 71) for i in range(n)
    ]


def role_change(minutes: float, roles: list[str], session: str | None = "s-own", **kw: Any) -> AuthEvent:
    extra = {"session_id": session} if session else {}
    return auth(minutes, action="role_change", roles=roles, **extra, **kw)


def own_session(session: str = "s-own", minutes: float = -20) -> AuthEvent:
    return auth(minutes, session_id=session)


CASES: list[tuple[str, str, bool, Callable[[], list[Event]]]] = [
    # cross_tenant_access
    ("cross_tenant_access", "user reads another tenant", True,
     lambda: [access(actor_id="u-mallory", tenant_id="t-rhein")]),
    ("cross_tenant_access", "service account of one tenant reads another", True,
     lambda: [access(actor_id="svc-sync", actor_type="service", tenant_id="t-rhein")]),
    ("cross_tenant_access", "user reads own tenant", False, lambda: [access()]),
    ("cross_tenant_access", "staff has no tenant of their own", False,
     lambda: [staff_access(tenant_id="t-indus", ticket_id="SUP-4411")]),
    ("cross_tenant_access", "service account without a tenant", False,
     lambda: [access(actor_id="svc-backup", actor_type="service", actor_tenant=None, tenant_id="t-rhein")]),
    # staff_access (the whole matrix of mismatches is in test_staff_access.py)
    ("staff_access", "staff reads a tenant without any ticket", True,
     lambda: settled([staff_access(tenant_id="t-rhein")])),
    ("staff_access", "staff cites another tenant's ticket", True,
     lambda: settled([staff_access(tenant_id="t-rhein", ticket_id="SUP-4411")])),
    ("staff_access", "unknown staff account", True,
     lambda: settled([staff_access(actor_id="st-ghost", tenant_id="t-indus", ticket_id="SUP-4411")])),
    ("staff_access", "inactive staff even with a ticket", True,
     lambda: settled([staff_access(actor_id="st-old", tenant_id="t-indus", ticket_id="SUP-4411")])),
    ("staff_access", "ticket open, ticket_id missing on the event", False,
     lambda: settled([staff_access(30, tenant_id="t-indus")])),
    ("staff_access", "shortly before the ticket was opened (grace)", False,
     lambda: settled([staff_access(-15, tenant_id="t-indus")])),
    ("staff_access", "not yet settled: judged only once event time is past it", False,
     lambda: [staff_access(tenant_id="t-rhein"), access(19, actor_id="u-clock")]),
    # credential_stuffing
    ("credential_stuffing", "12 accounts fail from one address in 3 minutes", True, lambda: stuffing()),
    ("credential_stuffing", "a user mistypes three times", False,
     lambda: [auth(i * 0.2, outcome="failure") for i in range(3)] + [auth(1)]),
    ("credential_stuffing", "a NAT'd office with typos", False, office_typos),
    ("credential_stuffing", "failures too spread out in time", False, lambda: stuffing(every=2.5)),
    ("credential_stuffing", "many failures on only 4 accounts", False,
     lambda: [auth(i * 0.1, actor_id=f"u-{i % 4}", outcome="failure", ip="203.0.113.9") for i in range(30)]),
    # brute_force
    ("brute_force", "12 failures on one account", True,
     lambda: [auth(i * 0.3, outcome="failure", ip=f"192.0.2.{i % 3}") for i in range(12)]),
    ("brute_force", "three typos then a login", False,
     lambda: [auth(i * 0.2, outcome="failure") for i in range(3)] + [auth(1)]),
    ("brute_force", "9 failures, below the threshold", False,
     lambda: [auth(i * 0.2, outcome="failure") for i in range(9)]),
    # bulk_export
    ("bulk_export", "48,211 customers with no baseline (cold limit)", True,
     lambda: [access(actor_id="u-hans", actor_tenant="t-rhein", tenant_id="t-rhein", action="export",
                     records=48211)]),
    ("bulk_export", "5,000 customers against a p99 of about 120", True,
     lambda: [*export_history(), access(5, action="export", records=5000, actor_id="u-ayesha")]),
    ("bulk_export", "very large read of personal data", True, lambda: [access(action="read", records=30000)]),
    ("bulk_export", "below the 1,000-record floor", False,
     lambda: [*export_history(), access(5, action="export", records=900)]),
    ("bulk_export", "huge export of internal data", False,
     lambda: [access(action="export", sensitivity="internal", resource_type="inventory", records=500000)]),
    ("bulk_export", "denied export", False, lambda: [access(action="export", records=60000, outcome="denied")]),
    ("bulk_export", "1,200 customers with no baseline: under the cold limit and a quarter of the tenant", False,
     lambda: [access(action="export", records=1200)]),
    ("bulk_export", "1,500 card numbers with no card exports on record", True,
     lambda: [access(action="export", resource_type="payment_card", sensitivity="payment", records=1500)]),
    # self_granted_role
    ("self_granted_role", "a clerk becomes admin in a session it opened", True,
     lambda: [own_session(), role_change(0, ["clerk", "admin"])]),
    ("self_granted_role", "a clerk becomes admin in a session opened with MFA", True,
     lambda: [auth(-5, action="mfa", session_id="s-own"), role_change(0, ["clerk", "admin"])]),
    ("self_granted_role", "an administrator promotes a colleague from their own session", False,
     lambda: [own_session(), auth(-30, actor_id="u-boss", session_id="s-admin"),
              role_change(0, ["admin"], session="s-admin")]),
    ("self_granted_role", "a role change carrying no session", False,
     lambda: [own_session(), role_change(0, ["clerk", "admin"], session=None)]),
    ("self_granted_role", "a non-administrative role from its own session", False,
     lambda: [own_session(), role_change(0, ["clerk", "sales"])]),
    ("self_granted_role", "its own session, but opened more than a day before", False,
     lambda: [own_session(minutes=-60 * 25), role_change(0, ["clerk", "admin"])]),
    ("self_granted_role", "an administrator edits its own roles, keeping the admin role it was given", False,
     lambda: [role_change(-90, ["clerk", "admin"], session="s-admin"), own_session(),
              role_change(0, ["admin", "auditor"])]),
    ("self_granted_role", "admin taken away, then granted back from its own session", True,
     lambda: [role_change(-90, ["clerk", "admin"], session="s-admin"), own_session(),
              role_change(-5, ["clerk"]), role_change(0, ["clerk", "admin"])]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "what", "fires", "make"), CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_rule_examples(
    name: str, what: str, fires: bool, make: Callable[[], list[Event]], ctx: DetectionContext
) -> None:
    d = RulesDetector()
    found = of(run(make(), ctx, d), name)
    assert d.errors == {}
    assert bool(found) is fires, [text(f) for f in found]


def test_every_rule_has_metadata_and_both_kinds_of_example() -> None:
    for r in RULES:
        assert r.name and r.kind and r.severity in ("low", "medium", "high", "critical")
        assert r.description and "\n" not in r.description and len(r.description) <= 120
        assert r.playbook and "\n" not in r.playbook
        assert {fires for name, _, fires, _ in CASES if name == r.name} == {True, False}, r.name


# --- cross-tenant access -----------------------------------------------------------------------


def test_cross_tenant_reasons_name_both_tenants_with_numbers(ctx: DetectionContext) -> None:
    [f] = run([access(actor_id="u-mallory", tenant_id="t-rhein", records=3)], ctx)
    assert f.kind == "cross_tenant_access"
    assert f.severity == "critical"  # personal data
    assert "read 3 customer records (personal data) of tenant t-rhein" in text(f)
    assert "not this user's tenant t-indus" in text(f)
    assert f.actor_id == "u-mallory"
    assert f.tenant_ids == ("t-rhein",)  # the tenant whose data was read, not the reader's
    assert f.source_ips == ("39.57.10.4",)
    assert f.facts["records"] == 3 and 0 <= f.score <= 100


def test_cross_tenant_severity_follows_what_was_touched(ctx: DetectionContext) -> None:
    [plain] = run([access(actor_id="u-m", tenant_id="t-rhein", sensitivity="internal")], ctx)
    [denied] = run([access(actor_id="u-m", tenant_id="t-rhein", outcome="denied", records=0)], ctx)
    [sensitive] = run([access(actor_id="u-m", tenant_id="t-rhein", sensitivity="payment")], ctx)
    assert (denied.severity, plain.severity, sensitive.severity) == ("medium", "high", "critical")
    assert denied.score < plain.score < sensitive.score


def test_cross_tenant_is_one_finding_per_actor_tenant_and_day(ctx: DetectionContext) -> None:
    d = RulesDetector()
    first = run([access(i, actor_id="u-m", tenant_id="t-rhein", records=10) for i in range(5)], ctx, d)
    later = run([access(60, actor_id="u-m", tenant_id="t-rhein", records=10)], ctx, d)
    next_day = run([access(60 * 24, actor_id="u-m", tenant_id="t-rhein")], ctx, d)
    other_tenant = run([access(61, actor_id="u-m", tenant_id="t-other")], ctx, d)
    assert len(first) == 1 and len(first[0].events) == 5
    assert [f.finding_id for f in later] == [first[0].finding_id]
    assert later[0].facts["accesses"] == 6 and later[0].facts["records"] == 60
    assert "6 accesses" in text(later[0]) and "read 60 customer records" in text(later[0])
    assert next_day[0].finding_id != first[0].finding_id
    assert other_tenant[0].finding_id not in {first[0].finding_id, next_day[0].finding_id}


def test_a_late_event_joins_its_days_finding(ctx: DetectionContext) -> None:
    d = RulesDetector()
    midnight = 15 * 60  # minutes from T0 (09:00) to the next midnight
    [day1] = run([access(midnight - 2, actor_id="u-m", tenant_id="t-rhein")], ctx, d)
    [day2] = run([access(midnight + 3, actor_id="u-m", tenant_id="t-rhein")], ctx, d)
    [late] = run([access(midnight - 1, actor_id="u-m", tenant_id="t-rhein")], ctx, d)
    assert day2.finding_id != day1.finding_id
    assert late.finding_id == day1.finding_id and late.facts["accesses"] == 2


# --- staff access (more in test_staff_access.py) -----------------------------------------------


def test_staff_without_ticket_explains_the_cited_ticket(ctx: DetectionContext) -> None:
    [other_tenant] = run(settled([staff_access(tenant_id="t-rhein", ticket_id="SUP-4411")]), ctx)
    assert (other_tenant.kind, other_tenant.severity) == ("staff_ticket_mismatch", "high")
    assert "ticket SUP-4411, which is for tenant t-indus, not t-rhein" in text(other_tenant)
    [not_named] = run(settled([staff_access(tenant_id="t-rhein", ticket_id="SUP-9000")]), ctx)
    assert "ticket SUP-9000 for tenant t-rhein is assigned to st-sara, not st-bilal" in text(not_named)
    [missing] = run(settled([staff_access(tenant_id="t-rhein", ticket_id="SUP-0001")]), ctx)
    assert missing.kind == "staff_without_ticket"
    assert "SUP-0001, which is not in the ticket directory" in text(missing)
    assert "no ticket for tenant t-rhein naming st-bilal" in text(missing)
    [after_close] = run(settled([staff_access(120 + 16, tenant_id="t-indus", ticket_id="SUP-4411")]), ctx)
    assert "ticket SUP-4411 names st-bilal but was open from" in text(after_close)


def test_staff_ticket_window_has_grace_but_no_more(ctx: DetectionContext) -> None:
    # SUP-4411 is open from minute -5 to 120; the tables accept 15 minutes either side.
    assert not run(settled([staff_access(-19, tenant_id="t-indus"), staff_access(134, tenant_id="t-indus")]), ctx)
    assert run(settled([staff_access(-21, tenant_id="t-indus")]), ctx)
    assert run(settled([staff_access(136, tenant_id="t-indus")]), ctx)


def test_unknown_and_inactive_staff_are_critical(ctx: DetectionContext) -> None:
    [ghost] = run(settled([staff_access(actor_id="st-ghost", tenant_id="t-indus", sensitivity="internal")]), ctx)
    [old] = run(settled([staff_access(actor_id="st-old", tenant_id="t-indus", ticket_id="SUP-4411")]), ctx)
    assert ghost.severity == old.severity == "critical"
    assert "st-ghost is not in the vendor staff directory" in text(ghost)
    assert "st-old is marked inactive" in text(old)
    assert "no ticket" not in text(old)  # it had one; being inactive is the problem
    assert (ghost.facts["staff_known"], ghost.facts["had_ticket"]) == (0, 0)
    assert (old.facts["staff_known"], old.facts["staff_active"], old.facts["had_ticket"]) == (1, 0, 1)


def test_staff_findings_dedup_per_staff_tenant_and_day(ctx: DetectionContext) -> None:
    d = RulesDetector()
    a = run(settled([staff_access(i, tenant_id="t-rhein") for i in range(3)]), ctx, d)
    b = run(settled([staff_access(60, tenant_id="t-rhein", action="export", records=800)]), ctx, d)
    assert len(a) == 1 and [f.finding_id for f in b] == [a[0].finding_id]
    assert b[0].severity == "critical"  # a sensitive export without a ticket escalates
    assert b[0].facts["accesses"] == 4


# --- credential stuffing and brute force --------------------------------------------------------


def test_stuffing_finding_is_about_the_address(ctx: DetectionContext) -> None:
    [f] = run(stuffing(), ctx)
    assert f.kind == "credential_stuffing" and f.severity == "high"
    assert f.actor_id is None and f.source_ips == ("203.0.113.9",)
    assert len(f.events) == 12 and all(e.outcome == "failure" for e in f.events)
    assert f.ts == f.events[0].ts
    assert "12 failed logins from 203.0.113.9 against 12 accounts" in text(f)
    assert f.facts["failures"] == 12 and f.facts["compromised_accounts"] == 0
    assert f.tenant_ids == ("t-rhein",)


def test_stuffing_escalates_when_a_login_follows(ctx: DetectionContext) -> None:
    d = RulesDetector()
    [first] = run(stuffing(), ctx, d)
    later = run([auth(8, actor_id="u-victim", actor_tenant="t-rhein", ip="203.0.113.9")], ctx, d)
    [ip] = of(later, "credential_stuffing", None)
    [ato] = of(later, "credential_stuffing", "u-victim")
    assert ip.finding_id == first.finding_id and ip.severity == "critical" and ip.score > first.score
    assert "u-victim" in text(ip) and "treat these accounts as compromised" in text(ip)
    assert ato.kind == "account_takeover" and ato.severity == "critical"
    assert ato.source_ips == ("203.0.113.9",) and ato.tenant_ids == ("t-rhein",)
    assert "u-victim logged in successfully from 203.0.113.9" in text(ato)
    # A login from another address, or long after the run, is not the attacker's.
    assert not run([auth(9, actor_id="u-other", ip="192.0.2.50")], ctx, d)
    assert not run([auth(3 + 61 + 10, actor_id="u-late", ip="203.0.113.9")], ctx, d)


def test_stuffing_names_a_login_that_came_before_detection(ctx: DetectionContext) -> None:
    evs = stuffing()
    evs.insert(3, auth(0.8, actor_id="u-early", ip="203.0.113.9"))
    found = run(evs, ctx)
    assert {f.actor_id for f in found} == {None, "u-early"}
    [ip] = of(found, "credential_stuffing", None)
    assert ip.severity == "critical" and "u-early" in text(ip)


def test_stuffing_evidence_is_capped_and_counts_go_on(ctx: DetectionContext) -> None:
    d = RulesDetector()
    evs = [
        auth(i * 0.01, actor_id=f"u-{i}", outcome="failure", ip="203.0.113.9", actor_tenant="t-rhein")
        for i in range(1500)
    ]
    findings = [f for i in range(0, 1500, 100) for f in run(evs[i : i + 100], ctx, d)]
    assert len({f.finding_id for f in findings}) == 1
    evidence = [e.event_id for f in findings for e in f.events]
    assert len(evidence) == len(set(evidence)) == MAX_EVIDENCE
    # Once the evidence is full, more of the same is not news; a login from the address is.
    assert len(findings) == MAX_EVIDENCE // 100
    [final] = of(d.process([auth(16, actor_id="u-x", ip="203.0.113.9")], ctx), "credential_stuffing", None)
    assert final.severity == "critical" and final.facts["failures"] == 1500
    assert "1,500 failed logins from 203.0.113.9 against 1,500 accounts" in text(final)


def test_stuffing_split_over_partitions_reports_one_address_finding(ctx: DetectionContext) -> None:
    """Accounts are spread over partitions by actor id; each partition sees part of the run."""
    parts = [RulesDetector() for _ in range(4)]
    evs = [*stuffing(accounts=80, every=0.05), auth(6, actor_id="u-victim", actor_tenant="t-rhein", ip="203.0.113.9")]
    by_part: dict[int, list[Event]] = {}
    for e in evs:
        by_part.setdefault(zlib.crc32(e.actor_id.encode()) % 4, []).append(e)
    found = [f for p, batch in by_part.items() for f in run(batch, ctx, parts[p])]
    address = of(found, "credential_stuffing", None)
    assert len(address) == 4 and len({f.finding_id for f in address}) == 1
    assert sum(f.facts["failures"] for f in address) == 80
    assert [f.actor_id for f in of(found, "credential_stuffing") if f.actor_id] == ["u-victim"]


def test_brute_force_then_login_is_critical(ctx: DetectionContext) -> None:
    d = RulesDetector()
    fails = [auth(i * 0.3, outcome="failure", ip=f"192.0.2.{i % 3}") for i in range(12)]
    [attempt] = run(fails, ctx, d)
    assert attempt.kind == "brute_force" and attempt.severity == "medium"
    assert attempt.actor_id == "u-ayesha" and len(attempt.events) == 12
    assert "12 failed logins to u-ayesha" in text(attempt)
    [taken] = run([auth(5, ip="192.0.2.1")], ctx, d)
    assert taken.finding_id == attempt.finding_id and taken.severity == "critical"
    assert "then a successful login" in text(taken) and "an address that had been failing" in text(taken)


def test_brute_force_with_a_reset_before_the_login_is_only_high(ctx: DetectionContext) -> None:
    evs = [auth(i * 0.3, outcome="failure") for i in range(12)]
    evs += [auth(6, action="password_reset"), auth(7)]
    [f] = run(evs, ctx)
    assert f.severity == "high" and "password reset succeeded" in text(f)


# --- bulk export -------------------------------------------------------------------------------


def test_self_granted_admin_is_reported_at_the_change(ctx: DetectionContext) -> None:
    """Reported at the role change itself, before the new rights are used, with the session that
    ties the change to the account's own login; repeats within the hour join that finding."""
    d = RulesDetector()
    change = role_change(0, ["clerk", "admin"], ip="39.57.10.4")
    [f] = run([own_session(minutes=-12), change], ctx, d)
    assert f.kind == "privilege_escalation" and f.severity == "high" and f.score >= 60
    assert f.actor_id == "u-ayesha" and f.events == (change,) and f.detected_at == change.ts
    assert f.title == "u-ayesha gained the admin role in a session of its own"
    assert "session s-own, which u-ayesha itself opened at 2026-11-24 08:48:00 UTC" in text(f)
    assert f.facts["granted"] == ["admin"] and f.tenant_ids == ("t-indus",)
    # A change that keeps the role grants nothing; taken away and granted again, it joins the finding.
    assert run([role_change(15, ["admin", "auditor"])], ctx, d) == []
    again = run([role_change(18, ["clerk"]), role_change(20, ["admin"])], ctx, d)
    assert [g.finding_id for g in again] == [f.finding_id] and len(again[0].events) == 1
    later = run(
        [own_session("s-next", 100), role_change(105, ["clerk"]), role_change(110, ["admin"], session="s-next")], ctx, d
    )
    assert [g.finding_id for g in later] != [f.finding_id] and len(later) == 1


def test_self_granted_role_names_only_the_role_the_change_added(ctx: DetectionContext) -> None:
    """An administrator given ``admin`` by a colleague who then gives itself ``owner`` is reported
    for ``owner``; the ``admin`` it already held is in the roles after, not in what it gained."""
    evs = [role_change(-90, ["clerk", "admin"], session="s-admin"), own_session(), role_change(0, ["admin", "owner"])]
    [f] = of(run(evs, ctx), "self_granted_role")
    assert f.title == "u-ayesha gained the owner role in a session of its own"
    assert f.facts["granted"] == ["owner"] and f.facts["roles_after"] == ["admin", "owner"]
    assert "the account was given owner from its own session" in text(f)


def test_a_self_grant_checkpointed_without_its_granted_roles_still_restores(ctx: DetectionContext) -> None:
    """A checkpoint written before a grant kept what it added: its administrator roles stand in."""
    before = RulesDetector()
    run([own_session(), role_change(0, ["clerk", "admin"])], ctx, before)
    state = json.loads(json.dumps(before.state()))
    assert _rows_with_grants(state), "the checkpoint holds the grant"
    for row in _rows_with_grants(state):
        row[2] = row[2][:7]
    after = RulesDetector()
    after.load_state(state)
    [again] = run([role_change(15, ["clerk"]), role_change(20, ["clerk", "admin"])], ctx, after)
    assert again.title == "u-ayesha gained the admin role in a session of its own"


def _rows_with_grants(node: Any) -> list[list[Any]]:
    """The self-granted-role rule's per-account rows in a checkpoint that hold a grant."""
    if isinstance(node, dict):
        return [r for v in node.values() for r in _rows_with_grants(v)]
    if isinstance(node, list):
        if len(node) == 5 and isinstance(node[1], list) and isinstance(node[2], list) and len(node[2]) == 8:
            return [node]
        return [r for v in node for r in _rows_with_grants(v)]
    return []


def test_self_granted_role_memory_survives_a_checkpoint(ctx: DetectionContext) -> None:
    before = RulesDetector()
    run([own_session(minutes=-12)], ctx, before)
    after = RulesDetector()
    after.load_state(json.loads(json.dumps(before.state())))
    [f] = of(run([role_change(0, ["clerk", "admin"])], ctx, after), "self_granted_role")
    assert f.kind == "privilege_escalation"


def test_bulk_export_reasons_quote_the_baseline(ctx: DetectionContext) -> None:
    found = run([*export_history(), access(5, action="export", records=48211)], ctx)
    [f] = of(found, "bulk_export")
    assert "exported 48,211 customer records" in text(f)
    assert "the 99th percentile personal export of the tenant's users this one is compared with is 120 records" in text(
        f
    )
    assert f.facts["limit"] == 1200 and f.facts["records"] == 48211
    assert f.severity == "critical"  # 40x the limit, and most of the tenant's data subjects


def test_bulk_export_cold_start_uses_data_subjects(ctx: DetectionContext) -> None:
    [f] = run([access(action="export", records=4000)], ctx)  # t-indus holds 5,200 people
    assert "77% of the 5,200 data subjects tenant t-indus holds" in text(f)
    assert "no past personal exports on record for the users of tenant" in text(f)


def test_month_end_exports_matching_the_actors_own_history_do_not_fire(ctx: DetectionContext) -> None:
    d = RulesDetector()
    day = 60 * 24
    daily = [
        access(n * day + k * 10, actor_id=f"u-{k % 5}", action="export", records=60 + (n * 10 + k) % 90)
        for n in range(125)
        for k in range(10)
    ]
    # HR's payroll-time export of the staff list: personal data, and far above the customer
    # exports that make the tenant's personal baseline.
    month_ends = [
        access(m * 30 * day + 30, actor_id="u-hr", action="export", resource_type="employee", records=2500 + 100 * m)
        for m in range(1, 5)
    ]
    history = run(daily + month_ends[:3], ctx, d)
    # The first month-ends are new for this user, and fire; after three, it is their routine.
    assert [f.actor_id for f in history] == ["u-hr"] * 3
    assert not run([month_ends[3]], ctx, d)
    clerk = access(120 * day + 40, actor_id="u-clerk", action="export", resource_type="employee", records=2600)
    [f] = run([clerk], ctx, d)
    assert "u-clerk has no personal export history of their own" in text(f)


def test_at_a_small_tenant_a_quarter_of_its_people_is_a_bulk_export(ctx: DetectionContext) -> None:
    def export(minutes: float, records: int, **kw: Any) -> AccessEvent:
        fields = {"actor_id": "u-kenji", "actor_tenant": "t-kiso", "tenant_id": "t-kiso", "action": "export"}
        return access(minutes, records=records, **{**fields, **kw})

    d = RulesDetector()
    usual = [export(k * 60, 3 + k % 2, actor_id=f"u-{k % 3}") for k in range(19)]
    assert not run([*usual, export(2_000, 90)], ctx, d)  # under the 100-record floor
    [f] = run([export(2_100, 213)], ctx, d)
    assert "that is 40% of the 532 data subjects tenant t-kiso holds" in text(f)
    assert "never below 133" in text(f)
    [cards] = run([export(3 * 60 * 24, 204, resource_type="payment_card", sensitivity="payment")], ctx, d)
    assert cards.severity == "critical" and "no past payment exports on record" in text(cards)


def test_financial_period_close_exports_fire_only_beyond_any_close(ctx: DetectionContext) -> None:
    def ledger(minutes: float, records: int, actor_id: str = "u-fin") -> AccessEvent:
        return access(minutes, actor_id=actor_id, action="export", resource_type="journal_entry",
                      sensitivity="financial", records=records)  # fmt: skip

    d = RulesDetector()
    invoices = [ledger(k * 30, 200 + k, actor_id="u-ar") for k in range(30)]  # daily invoice runs
    # With no financial exports on record, a large company's whole ledger does not fire.
    assert not run([ledger(-60, 600_000, actor_id="u-gl")], ctx, RulesDetector())
    assert not run(invoices, ctx, d)
    [f] = run([ledger(29 * 60 * 24, 120_000, actor_id="u-ar")], ctx, d)
    assert "only an export above 100,000 records fires" in text(f)
    assert f.facts["limit"] == 100_000
    closes = [ledger(30 * 60 * 24 + k, 24_000) for k in range(3)]  # first close: 100x the invoices
    assert not run(closes, ctx, d)
    # Once closes are in the baseline, the bar is ten times the largest of them.
    [f] = run([ledger(40 * 60 * 24, 250_000, actor_id="u-ap")], ctx, d)
    assert "99th percentile financial export of the tenant's users this one is compared with is 24,000 records" in text(
        f
    )


def test_an_accountants_ledger_habit_does_not_vouch_for_exporting_the_customer_list(ctx: DetectionContext) -> None:
    d = RulesDetector()
    ledgers = [
        access(k * 60 * 24, actor_id="u-fin", action="export", resource_type="ledger", sensitivity="financial",
               records=9_000 + k)
        for k in range(10)
    ]  # fmt: skip
    customers = [access(k * 60, actor_id=f"u-{k % 4}", action="export", records=100 + k) for k in range(25)]
    assert not run(ledgers + customers, ctx, d)
    [f] = run([access(20 * 60 * 24, actor_id="u-fin", action="export", records=4_582)], ctx, d)
    assert f.kind == "bulk_export" and f.actor_id == "u-fin"
    assert "u-fin has no personal export history of their own" in text(f)


def test_fired_exports_do_not_raise_the_tenant_baseline(ctx: DetectionContext) -> None:
    d = RulesDetector()
    run(export_history(), ctx, d)
    thefts = [access(10 + i * 60 * 24, actor_id=f"u-thief{i}", action="export", records=5000) for i in range(30)]
    found = run(thefts, ctx, d)
    assert len(of(found, "bulk_export")) == 30


def test_log_histogram_quantile_is_an_upper_estimate_and_bounded() -> None:
    h = LogHistogram()
    for v in range(1, 1001):
        h.add(v, 0.0)
    assert 990 <= h.quantile(0.99) <= 1000
    assert h.quantile(0.5) >= 500 and h.quantile(0.5) < 550
    for v in range(10_000):
        h.add(v % 300, 1.0)
    assert h.n < 2048 and len(h.buckets) < 100


# --- the detector as a stream stage ------------------------------------------------------------


def scenario() -> list[Event]:
    evs: list[Event] = [
        *export_history(30),
        *stuffing(),
        auth(8, actor_id="u-victim", actor_tenant="t-rhein", ip="203.0.113.9"),
        *[auth(10 + i * 0.2, actor_id="u-bob", outcome="failure", ip="192.0.2.8") for i in range(11)],
        auth(14, actor_id="u-bob", ip="192.0.2.8"),
        *[access(20 + i, actor_id="u-m", tenant_id="t-rhein", records=i + 1) for i in range(6)],
        *[staff_access(30 + i, tenant_id="t-rhein") for i in range(4)],
        access(40, actor_id="u-hans", action="export", records=48211),
        access(41, actor_id="u-hans", action="export", records=9000),
        access(42, action="read", records=25000),
        access(55, actor_id="u-clock"),
        LogRecord.model_validate_json(
            json.dumps({"event_id": "g-1", "ts": at(43), "service": "api", "level": "INFO", "message": "ok"})
        ),
    ]
    return sorted(evs, key=lambda e: e.ts)


def summary(findings: list[Finding]) -> list[tuple[Any, ...]]:
    return [
        (
            f.finding_id, f.detector, f.kind, f.severity, f.score, f.ts, f.title, f.reasons,
            tuple(e.event_id for e in f.events), f.actor_id, f.tenant_ids, f.source_ips,
            json.dumps(f.facts, sort_keys=True), f.dedup_key,
        )
        for f in findings
    ]  # fmt: skip


def final_view(findings: list[Finding]) -> dict[str, tuple[Any, ...]]:
    """What an incident store keeps per finding: last wording, and all evidence seen."""
    out: dict[str, tuple[Any, ...]] = {}
    evidence: dict[str, set[str]] = {}
    for f in findings:
        evidence.setdefault(f.finding_id, set()).update(e.event_id for e in f.events)
        out[f.finding_id] = (f.severity, f.title, f.reasons, json.dumps(f.facts, sort_keys=True))
    return {k: (*v, frozenset(evidence[k])) for k, v in out.items()}


@pytest.mark.parametrize("cut", [1, 17, 40, 52, 60, 70])
def test_state_round_trip_gives_the_same_findings(cut: int, ctx: DetectionContext) -> None:
    evs = scenario()
    one = RulesDetector()
    expected = one.process(evs[:cut], ctx) + one.process(evs[cut:], ctx)

    before = RulesDetector()
    got = before.process(evs[:cut], ctx)
    saved = json.loads(json.dumps(before.state(), allow_nan=False))
    after = RulesDetector()
    after.load_state(saved)
    got += after.process(evs[cut:], ctx)
    assert summary(got) == summary(expected)
    assert json.dumps(after.state(), sort_keys=True) == json.dumps(one.state(), sort_keys=True)
    # Where the batch boundary falls changes when findings are updated, not what they end up saying.
    assert final_view(got) == final_view(RulesDetector().process(evs, ctx))


def test_scenario_raises_each_rule_once(ctx: DetectionContext) -> None:
    d = RulesDetector()
    findings = d.process(scenario(), ctx)
    assert d.errors == {}
    kinds = sorted((f.kind, f.actor_id or "") for f in findings)
    assert kinds == [
        ("account_takeover", "u-victim"),
        ("brute_force", "u-bob"),
        ("bulk_export", "u-ayesha"),
        ("bulk_export", "u-hans"),
        ("credential_stuffing", ""),
        ("cross_tenant_access", "u-m"),
        ("staff_ticket_mismatch", "st-bilal"),  # SUP-9000 of t-rhein was open, assigned to st-sara
    ]
    [hans] = [f for f in findings if f.actor_id == "u-hans"]
    assert hans.facts["exports_over_limit"] == 2 and hans.facts["records_over_limit"] == 57211


def test_finding_ids_are_deterministic(ctx: DetectionContext) -> None:
    evs = scenario()
    a = RulesDetector().process(evs, ctx)
    b = RulesDetector().process(evs, ctx)
    assert [f.finding_id for f in a] == [f.finding_id for f in b]
    assert len({f.finding_id for f in a}) == len(a)
    # Re-delivery after a crash: restore the checkpoint taken before the batch, process it again.
    d = RulesDetector()
    d.process(evs[:30], ctx)
    cp = json.dumps(d.state())
    first = d.process(evs[30:], ctx)
    d.load_state(json.loads(cp))
    again = d.process(evs[30:], ctx)
    assert summary(again) == summary(first)


def test_a_redelivered_event_does_not_count_twice(ctx: DetectionContext) -> None:
    d = RulesDetector()
    ev = access(actor_id="u-m", tenant_id="t-rhein", records=7)
    [f] = d.process([ev, ev], ctx)
    assert f.facts["accesses"] == 1 and len(f.events) == 1
    assert d.process([ev], ctx) == []


def test_old_episodes_are_forgotten(ctx: DetectionContext) -> None:
    d = RulesDetector()
    run([access(actor_id="u-m", tenant_id="t-rhein"), *stuffing(), staff_access(tenant_id="t-rhein")], ctx, d)
    assert len(json.dumps(d.state())) > 2000
    run([access(60 * 24 * 3)], ctx, d)
    rules = d.state()["rules"]
    assert rules["cross_tenant_access"]["tallies"] == []
    assert all(book == {"tallies": []} for book in rules["staff_access"]["books"].values())
    assert rules["credential_stuffing"]["addresses"] == []
    assert d.state()["reported"] == []


def test_a_raising_rule_is_counted_logged_and_skipped(ctx: DetectionContext, caplog: pytest.LogCaptureFixture) -> None:
    @rule(
        name="broken",
        kind="broken",
        severity="low",
        description="Raises on every access, quoting the event.",
        playbook="None.",
        inputs=(AccessEvent,),
    )
    def broken(ev: AccessEvent, mem: None, c: DetectionContext) -> Hit | None:
        raise KeyError(f"secret-{ev.actor_id}")

    d = RulesDetector(rules=[broken, *RULES])
    evs = [access(actor_id="u-payload", tenant_id="t-rhein"), access(1, actor_id="u-payload", tenant_id="t-rhein")]
    with caplog.at_level(logging.ERROR, logger="breachwatch.detectors.rules.detector"):
        findings = run(evs, ctx, d)
    assert d.errors == {"broken": 2}
    assert [f.kind for f in findings] == ["cross_tenant_access"]  # the rules after it still ran
    assert len(findings[0].events) == 2
    assert "broken" in caplog.text and evs[0].event_id in caplog.text and "KeyError" in caplog.text
    assert "u-payload" not in caplog.text


def test_unreadable_rule_state_starts_that_rule_afresh(ctx: DetectionContext) -> None:
    d = RulesDetector()
    run([access(actor_id="u-m", tenant_id="t-rhein"), *stuffing()], ctx, d)
    state = json.loads(json.dumps(d.state()))
    state["rules"]["credential_stuffing"] = {"addresses": [["203.0.113.9", "not a window"]]}
    restored = RulesDetector()
    restored.load_state(state)
    assert restored.state()["rules"]["credential_stuffing"] == {"addresses": []}
    assert restored.state()["rules"]["cross_tenant_access"] == state["rules"]["cross_tenant_access"]


def test_contract_examples(ctx: DetectionContext) -> None:
    tables = ReferenceTables()
    for topic, key in ((TENANTS, "tenant_id"), (STAFF, "staff_id"), (TICKETS, "ticket_id")):
        for line in (EXAMPLES / f"{topic}.jsonl").read_text().splitlines():
            v = MODEL_BY_TOPIC[topic].model_validate_json(line)
            tables.apply(topic, getattr(v, key), v)  # type: ignore[arg-type]
    evs = [
        MODEL_BY_TOPIC[topic].model_validate_json(line)
        for topic in (ACCESS, AUTH, LOGS)
        for line in (EXAMPLES / f"{topic}.jsonl").read_text().splitlines()
    ]
    findings = run(evs, DetectionContext(tables=tables))  # type: ignore[arg-type]
    assert [(f.kind, f.actor_id, f.severity) for f in findings] == [("bulk_export", "u-hans", "critical")]
    assert "exported 48,211 customer records" in text(findings[0])
    assert "79% of the 61,000 data subjects" in text(findings[0])


# --- property: arbitrary valid events never break the detector ---------------------------------

_ids = st.text(alphabet=string.ascii_letters + string.digits + "-_.@ é", min_size=1, max_size=10)
_actors = st.sampled_from(["u-ayesha", "u-m", "st-bilal", "st-old", "st-ghost", "svc-sync"]) | _ids
_tenants = st.sampled_from(["t-indus", "t-rhein"]) | _ids
_zones = st.sampled_from([UTC, timezone(timedelta(hours=5)), timezone(timedelta(hours=-9, minutes=-30))])
_times = st.one_of(
    # A day's margin at both ends: a time that has no UTC equivalent is not a valid event time.
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=_zones),
    st.datetimes(datetime(2026, 11, 24), datetime(2026, 11, 25), timezones=st.just(UTC)),
)
_ips = st.sampled_from(["203.0.113.9", "192.0.2.1", "2001:db8::1"]) | _ids


def _optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


_access = st.tuples(
    st.fixed_dictionaries(
        {
            "event_id": _ids,
            "ts": _times.map(datetime.isoformat),
            "actor_id": _actors,
            "actor_type": st.sampled_from(["customer_user", "staff", "service"]),
            "tenant_id": _tenants,
            "action": st.sampled_from(["read", "search", "export", "create", "update", "delete"]),
            "resource_type": st.sampled_from(["customer", "invoice", "payment_card"]) | _ids,
            "records": st.integers(0, 10**12),
        }
    ),
    _optional(
        actor_tenant=st.none() | _tenants,
        sensitivity=st.sampled_from(["public", "internal", "personal", "financial", "payment", "credentials"]),
        bytes=st.integers(0, 10**12),
        ip=_ips,
        country=st.sampled_from(["PK", "DE"]),
        ticket_id=st.none() | st.sampled_from(["SUP-4411", "SUP-9000"]) | _ids,
        outcome=st.sampled_from(["success", "denied"]),
        session_id=_ids,
        extra_field=_ids,
    ),
).map(lambda p: ("access", {**p[0], **p[1]}))

_auth = st.tuples(
    st.fixed_dictionaries(
        {
            "event_id": _ids,
            "ts": _times.map(datetime.isoformat),
            "actor_id": _actors,
            "actor_type": st.sampled_from(["customer_user", "staff", "service"]),
            "action": st.sampled_from(["login", "logout", "mfa", "password_reset", "role_change", "api_key_created"]),
            "outcome": st.sampled_from(["success", "failure"]),
        }
    ),
    _optional(
        actor_tenant=st.none() | _tenants,
        ip=_ips,
        roles=st.lists(_ids, max_size=3),
        detail=_ids,
    ),
).map(lambda p: ("auth", {**p[0], **p[1]}))

_log = st.fixed_dictionaries(
    {
        "event_id": _ids,
        "ts": _times.map(datetime.isoformat),
        "service": _ids,
        "level": st.sampled_from(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]),
        "message": st.text(max_size=30),
    },
    optional={"actor_id": st.none() | _actors, "attrs": st.dictionaries(_ids, st.integers() | st.none())},
).map(lambda d: ("log", d))

_MODELS: dict[str, type[Event]] = {"access": AccessEvent, "auth": AuthEvent, "log": LogRecord}  # type: ignore[dict-item]


def _decode(items: list[tuple[str, dict[str, Any]]]) -> list[Event]:
    return [_MODELS[k].model_validate_json(json.dumps(d)) for k, d in items]  # type: ignore[attr-defined]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.lists(st.one_of(_access, _auth, _log), max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=3),
    ordered=st.booleans(),
)
def test_arbitrary_valid_events_never_break_process(
    items: list[tuple[str, dict[str, Any]]], cuts: list[int], ordered: bool
) -> None:
    evs = _decode(items)
    if ordered:
        evs.sort(key=lambda e: e.ts)
    ctx = DetectionContext(tables=make_tables())
    d = RulesDetector()
    bounds = [0, *sorted(c for c in cuts if c <= len(evs)), len(evs)]
    for lo, hi in itertools.pairwise(bounds):
        for f in d.process(evs[lo:hi], ctx):
            assert 0 <= f.score <= 100 and f.events and f.reasons and f.finding_id
            assert all(type(v) in (int, float) for v in f.facts.values()), f.facts
        assert d.errors == {}
        state = json.loads(json.dumps(d.state(), allow_nan=False))
        d = RulesDetector()
        d.load_state(state)
        assert json.loads(json.dumps(d.state(), allow_nan=False)) == state


_dense_times = st.integers(0, 40 * 60).map(lambda s: (T0 + timedelta(seconds=s)).isoformat())
_dense_auth = st.fixed_dictionaries(
    {
        "event_id": st.integers(0, 400).map(lambda i: f"l-{i}"),
        "ts": _dense_times,
        "actor_id": st.integers(0, 15).map(lambda i: f"u-{i}"),
        "actor_type": st.just("customer_user"),
        "actor_tenant": st.sampled_from(["t-indus", "t-rhein"]),
        "action": st.sampled_from(["login", "login", "login", "password_reset", "mfa"]),
        "outcome": st.sampled_from(["failure", "failure", "success"]),
        "ip": st.sampled_from(["203.0.113.9", "192.0.2.1", "198.51.100.7"]),
    }
).map(lambda d: ("auth", d))
_dense_access = st.fixed_dictionaries(
    {
        "event_id": st.integers(0, 400).map(lambda i: f"a-{i}"),
        "ts": _dense_times,
        "actor_id": st.sampled_from(["u-1", "u-2", "st-bilal", "st-old", "st-ghost", "svc-sync"]),
        "actor_type": st.sampled_from(["customer_user", "staff", "service"]),
        "actor_tenant": st.sampled_from(["t-indus", "t-rhein"]) | st.none(),
        "tenant_id": st.sampled_from(["t-indus", "t-rhein"]),
        "action": st.sampled_from(["read", "export"]),
        "resource_type": st.just("customer"),
        "sensitivity": st.sampled_from(["internal", "personal", "payment"]),
        "records": st.integers(0, 80_000),
        "ticket_id": st.sampled_from(["SUP-4411", "SUP-9000", "SUP-1"]) | st.none(),
    }
).map(lambda d: ("access", d))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(_dense_auth | _dense_access, min_size=20, max_size=100), cut=st.integers(0, 100))
def test_dense_streams_keep_the_checkpoint_promise(items: list[tuple[str, dict[str, Any]]], cut: int) -> None:
    """Many logins and accesses over few accounts and addresses, in any order and with
    duplicate ids: no rule raises, and a checkpoint anywhere changes nothing."""
    evs = _decode(items)
    ctx = DetectionContext(tables=make_tables())
    whole = RulesDetector()
    expected = whole.process(evs[:cut], ctx) + whole.process(evs[cut:], ctx)
    first = RulesDetector()
    got = first.process(evs[:cut], ctx)
    second = RulesDetector()
    second.load_state(json.loads(json.dumps(first.state(), allow_nan=False)))
    got += second.process(evs[cut:], ctx)
    assert whole.errors == first.errors == second.errors == {}
    assert summary(got) == summary(expected)
    for f in got:
        assert all(type(v) in (int, float) for v in f.facts.values()), f.facts
        assert f.events == tuple(sorted(f.events, key=lambda e: e.ts))
        assert len(f.events) <= MAX_EVIDENCE and 0 <= f.score <= 100


def test_a_staff_members_first_access_to_a_tenant_is_named_with_its_window(ctx: DetectionContext) -> None:
    d = RulesDetector()
    day = 24 * 60.0
    # Ticketed work on t-indus starts the watch (no finding).
    assert run(settled([staff_access(0, tenant_id="t-indus")]), ctx, d) == []
    # Must: 70 days on, an unticketed read of t-rhein, which st-bilal never touched before.
    [first] = run(settled([staff_access(70 * day, tenant_id="t-rhein")]), ctx, d)
    assert "the first access by st-bilal to tenant t-rhein's data in the 70 days watched" in text(first)
    # Must: t-indus again after 70 days without st-bilal: a first in 70 days, the last one named.
    [back] = run(settled([staff_access(70 * day + 60, tenant_id="t-indus")]), ctx, d)
    assert "the first access by st-bilal to tenant t-indus's data in 70 days (the last on" in text(back)
    # Must not: t-rhein the next day (st-bilal was there yesterday).
    [again] = run(settled([staff_access(71 * day, tenant_id="t-rhein")]), ctx, d)
    assert "first access" not in text(again)
    # Must: another staff member's first access to t-rhein is theirs. Must not: speak for all
    # vendor staff, whose accesses to a tenant are spread over partitions by staff member.
    [other] = run(settled([staff_access(71 * day + 60, tenant_id="t-rhein", actor_id="st-amna")]), ctx, d)
    assert "the first access by st-amna to tenant t-rhein's data in the 71 days watched" in text(other)
    assert not [f for f in (first, back, again, other) if "any vendor staff" in text(f)]
    # The register survives a restart.
    restored = RulesDetector()
    restored.load_state(json.loads(json.dumps(d.state())))
    [later] = run(settled([staff_access(72 * day, tenant_id="t-rhein")]), ctx, restored)
    assert "first access" not in text(later)


def _with_tenant_visits(state: Any) -> Any:
    """``state`` with its staff register as an older version kept it: by tenant alone."""
    if isinstance(state, dict):
        if "visits" in state:
            return {**state, "visits": [[k.split("|")[1], v] for k, v in state["visits"]]}
        return {k: _with_tenant_visits(v) for k, v in state.items()}
    return state


def test_a_register_of_staff_visits_by_tenant_alone_claims_no_first(ctx: DetectionContext) -> None:
    """An older version kept when any staff member last touched a tenant; it cannot say who.
    Restored from it, the rule starts watching again instead of calling a return a first."""
    d = RulesDetector()
    day = 24 * 60.0
    run(settled([staff_access(0, tenant_id="t-indus"), staff_access(1, tenant_id="t-rhein")]), ctx, d)
    restored = RulesDetector()
    restored.load_state(_with_tenant_visits(json.loads(json.dumps(d.state()))))
    [back] = run(settled([staff_access(3 * day, tenant_id="t-rhein")]), ctx, restored)
    assert "first access" not in text(back)
    # Watched again from that access: a day on, a first is a first.
    [first] = run(settled([staff_access(4 * day + 60, tenant_id="t-indus")]), ctx, restored)
    assert "the first access by st-bilal to tenant t-indus's data in the 1 day watched" in text(first)


# --- the batch filters (``Rule.wants``) leave out only events a rule would pass over --------


_ACCESS_ACTIONS = ("read", "search", "export", "create", "update", "delete")
_AUTH_ACTIONS = ("login", "logout", "mfa", "password_reset", "role_change", "api_key_created")
_SENSITIVITIES = ("public", "internal", "personal", "financial", "payment", "credentials")


@st.composite
def _mixed_events(draw: st.DrawFn) -> list[Event]:
    """Accesses and logins over every value the filters test, a few actors, tenants and addresses."""
    # A burst of failed logins first, or not: what follows (a reset, a success) then counts.
    burst = draw(st.sampled_from(("", "u-ayesha", "u-mallory")))
    out: list[Event] = [
        auth(i * 0.1, actor_id=burst, actor_tenant="t-indus", outcome="failure", ip="203.0.113.9")
        for i in range(12 if burst else 0)
    ]
    for i in range(draw(st.integers(1, 80))):
        minutes = 2 + i * draw(st.sampled_from((0.05, 0.5, 3.0)))
        actor = draw(st.sampled_from(("u-ayesha", "u-ayesha", "u-mallory", "svc-sync", "st-bilal", "st-ghost")))
        actor_type = "staff" if actor.startswith("st-") else draw(st.sampled_from(("customer_user", "service")))
        home = None if actor_type == "staff" else draw(st.sampled_from(("t-indus", "t-rhein")))
        ip = draw(st.sampled_from(("203.0.113.9", "39.57.10.4", "198.51.100.7")))
        if draw(st.booleans()):
            out.append(
                access(
                    minutes,
                    actor_id=actor,
                    actor_type=actor_type,
                    actor_tenant=home,
                    tenant_id=draw(st.sampled_from(("t-indus", "t-rhein", "t-kiso"))),
                    action=draw(st.sampled_from(_ACCESS_ACTIONS)),
                    outcome=draw(st.sampled_from(("success", "denied"))),
                    sensitivity=draw(st.sampled_from(_SENSITIVITIES)),
                    records=draw(st.sampled_from((0, 3, 900, 2_000, 9_999, 10_000, 250_000))),
                    ip=ip,
                )
            )
        else:
            out.append(
                auth(
                    minutes,
                    actor_id=actor,
                    actor_type=actor_type,
                    actor_tenant=home,
                    action=draw(st.sampled_from(_AUTH_ACTIONS)),
                    outcome=draw(st.sampled_from(("success", "failure"))),
                    ip=ip,
                )
            )
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_mixed_events())
def test_batch_filters_change_no_finding_and_no_memory(events: list[Event]) -> None:
    """The catalogue with its filters and the same rules calling ``match`` on every event of
    their inputs: the same findings (ids, scores, reasons, evidence) and the same state."""

    filtered = RulesDetector()
    assert any(r.wants is not None for r in filtered.rules)
    plain = RulesDetector(tuple(dataclasses.replace(r, wants=None) for r in RULES))
    ctx = DetectionContext(tables=make_tables())
    half = len(events) // 2
    for part in (events[:half], events[half:]):  # two batches: state carries across them
        got, want = run(part, ctx, filtered), run(part, ctx, plain)
        assert [(f.finding_id, f.score, f.reasons, [e.event_id for e in f.events]) for f in got] == [
            (f.finding_id, f.score, f.reasons, [e.event_id for e in f.events]) for f in want
        ]
    assert filtered.state() == plain.state()
