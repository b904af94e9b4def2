"""Risk ledgers: signals below the incident threshold add up per actor and tenant, with a cap
per source and decay, and an incident opens when a ledger crosses its threshold, listing
every contribution."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from breachwatch.core.events import AccessEvent
from breachwatch.core.findings import Finding
from breachwatch.incidents.ledger import RiskPolicy
from breachwatch.incidents.store import IncidentStore
from breachwatch.runtime.schema import init_db
from breachwatch.storage.db import make_engine
from tests.fixtures.sqlite import sqlite_copy

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def read(n: int, actor: str, hours: float) -> AccessEvent:
    return AccessEvent(
        event_id=f"{actor}-{n}",
        ts=T0 + timedelta(hours=hours),
        actor_id=actor,
        actor_type="customer_user",
        actor_tenant="t-rhein",
        tenant_id="t-rhein",
        action="read",
        resource_type="customer",
        sensitivity="personal",
        records=40,
        ip="198.51.100.7",
        country="DE",
    )


def signal(n: int, kind: str, hours: float, actor: str = "u-hans", score: float = 50.0) -> Finding:
    return Finding(
        detector="learned",
        kind=kind,
        severity="low",
        score=score,
        ts=T0 + timedelta(hours=hours),
        title=f"{kind.replace('_', ' ')}: {actor}",
        reasons=(f"weak {kind} number {n}",),
        playbook="",
        events=(read(n, actor, hours),),
        actor_id=actor,
        tenant_ids=("t-rhein",),
        source_ips=("198.51.100.7",),
        dedup_key=f"signal|{kind}|{n}",
        signal=True,
    )


@pytest.fixture
def store(sqlite_template: Path, tmp_path: Path) -> IncidentStore:
    engine = make_engine(sqlite_copy(sqlite_template, tmp_path / "bw.db"))
    return IncidentStore(engine, risk=RiskPolicy(threshold=100.0, source_cap=60.0, half_life=timedelta(hours=24)))


def test_one_noisy_source_alone_never_opens_an_incident(store: IncidentStore) -> None:
    # Must not: ten signals of one kind (25 points each) are capped at 60.
    for n in range(10):
        assert store.record([signal(n, "slow_exfiltration", n)]).opened == []
    assert store.incidents() == []
    with Session(store.engine) as s:
        ledger = store.risk.ledger(s, "actor:u-hans", T0 + timedelta(hours=9))  # type: ignore[union-attr]
    assert ledger.total == 60.0 and len(ledger.contributions) == 10


def test_weak_signals_of_several_kinds_add_up_to_an_incident_that_lists_them(store: IncidentStore) -> None:
    # Must: three kinds of weak signal within hours: 25 + 25 + 25 + 25 + 25 points.
    store.record([signal(1, "slow_exfiltration", 0), signal(2, "slow_exfiltration", 1)])
    store.record([signal(3, "account_takeover", 2), signal(4, "account_takeover", 3)])
    assert store.incidents() == []  # 4 x 25 points less decay: under 100
    res = store.record([signal(5, "privilege_escalation", 4)])
    [inc] = store.incidents()
    assert res.opened == [inc.incident_id]
    assert inc.kind == "accumulated_risk" and inc.actor_ids == ["u-hans"] and inc.detected_at == T0 + timedelta(hours=4)
    assert inc.reasons[0].startswith("risk 1") and "5 signals" in inc.reasons[0]
    # Every contribution: what, when, how much.
    assert any(r.startswith("2026-11-24 09:00 UTC: slow exfiltration, 22 points (of 25)") for r in inc.reasons)
    assert any(
        "privilege escalation, 25 points (of 25)" in r and "weak privilege_escalation number 5" in r
        for r in inc.reasons
    )
    assert [a.technique_id for a in inc.attack] == ["T1078"]
    # A re-delivered batch books nothing twice.
    store.record([signal(5, "privilege_escalation", 4)])
    assert len(store.incidents()) == 1


def test_old_signals_decay_away(store: IncidentStore) -> None:
    # Must not: the same signals spread over a week (each has lost most of its points).
    for n, kind in enumerate(["slow_exfiltration", "account_takeover", "privilege_escalation", "dormant_account"]):
        store.record([signal(n, kind, 48.0 * n)])
    assert store.incidents() == []


def test_a_tenant_ledger_adds_its_actors_up(store: IncidentStore) -> None:
    # Must: many actors of one tenant each with two weak signals of two kinds (50 points each).
    for i in range(4):
        actor = f"u-{i}"
        store.record([signal(10 * i, "slow_exfiltration", i, actor), signal(10 * i + 1, "account_takeover", i, actor)])
    tenant = [i for i in store.incidents() if i.actor_ids == []]
    assert tenant and tenant[0].tenant_ids == ["t-rhein"] and "by u-0" in json.dumps(tenant[0].reasons)


def test_without_a_policy_signals_are_dropped(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/bw.db")
    init_db(engine)
    store = IncidentStore(engine, risk=RiskPolicy(threshold=0.0))
    for n, kind in enumerate(["slow_exfiltration", "account_takeover", "privilege_escalation"] * 3):
        store.record([dataclasses.replace(signal(n, kind, n), score=90.0)])
    assert store.incidents() == []
