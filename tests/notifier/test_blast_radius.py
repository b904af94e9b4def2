"""Blast radius: tenants, data kinds, records, people and window, from evidence, from the
actor's (or address's) history, and from detector counts; and a person's corrections."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from breachwatch.core.events import ACCESS, AUTH, MODEL_BY_TOPIC, Tenant
from breachwatch.incidents.tables import EvidenceRow, FindingRow, IncidentRow
from breachwatch.notifier import blast_radius as br
from breachwatch.notifier.duties import CategoryMap, default_category_map

T0 = dt.datetime(2026, 11, 24, 2, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
BASE = {"actor_type": "customer_user", "actor_tenant": "t-rhein", "country": "NL"}


def access(
    event_id: str, minute: int, *, actor: str = "u-hans", tenant: str = "t-rhein", ip: str = "185.220.101.5", **kw: Any
) -> dict[str, Any]:
    body = {
        **BASE,
        "event_id": event_id,
        "ts": (T0 + minute * MIN).isoformat(),
        "actor_id": actor,
        "tenant_id": tenant,
        "ip": ip,
        "action": "read",
        "resource_type": "customer",
        "sensitivity": "personal",
        "records": 10,
    }
    return {**body, **kw}


def evidence_row(incident_id: str, body: dict[str, Any], topic: str = ACCESS, finding_id: str = "f-1") -> EvidenceRow:
    event = MODEL_BY_TOPIC[topic].model_validate_json(json.dumps(body))
    return EvidenceRow(
        incident_id=incident_id,
        event_id=event.event_id,
        finding_id=finding_id,
        topic=topic,
        ts=event.ts,
        event_json=event.model_dump_json(exclude_none=True),
    )


def incident(
    incident_id: str = "inc-1",
    *,
    actors=("u-hans",),
    ips=("185.220.101.5",),
    tenants=("t-rhein",),
    opened: int = 0,
    updated: int = 30,
) -> IncidentRow:
    return IncidentRow(
        incident_id=incident_id,
        kind="account_takeover",
        title="t",
        severity="high",
        score=80.0,
        status="open",
        opened_at=T0 + opened * MIN,
        updated_at=T0 + updated * MIN,
        actor_ids=list(actors),
        tenant_ids=list(tenants),
        source_ips=list(ips),
        detectors=["rules.x"],
        reasons=[],
        evidence_count=0,
        group_key=f"actor:{actors[0]}" if actors else f"ip:{ips[0]}",
        facts={},
    )


def finding(facts: dict[str, Any] | None = None, finding_id: str = "f-1", incident_id: str = "inc-1") -> FindingRow:
    return FindingRow(
        finding_id=finding_id,
        incident_id=incident_id,
        detector="rules.x",
        kind="bulk_export",
        severity="high",
        score=80.0,
        ts=T0,
        title="t",
        reasons=[],
        playbook="",
        actor_id="u-hans",
        facts=facts or {},
    )


class ListHistory:
    """A history source over a fixed list of events (stands for the topic)."""

    name = "list"

    def __init__(self, bodies: list[dict[str, Any]]) -> None:
        self.events = [MODEL_BY_TOPIC[ACCESS].model_validate_json(json.dumps(b)) for b in bodies]

    def access_events(self, *, actor_ids, source_ips, start, end):
        return [e for e in self.events if start <= e.ts <= end and br.concerns(e, actor_ids, source_ips)]


def test_evidence_gives_tenants_categories_counts_and_window() -> None:
    rows = [
        evidence_row("inc-1", access("a-1", 1, action="export", records=500)),
        evidence_row("inc-1", access("a-2", 2, resource_type="invoice", sensitivity="financial", records=40)),
        evidence_row("inc-1", access("a-3", 3, action="update", resource_type="employee", records=2)),
        evidence_row("inc-1", access("a-4", 4, outcome="denied", records=0)),
        evidence_row(
            "inc-1",
            {
                **BASE,
                "event_id": "l-1",
                "ts": T0.isoformat(),
                "actor_id": "u-hans",
                "action": "login",
                "outcome": "success",
            },
            topic=AUTH,
        ),
    ]
    radius = br.compute(incident(), [finding()], rows)

    [impact] = radius.tenants
    assert impact.tenant_id == "t-rhein"
    cells = {(c.resource_type, c.sensitivity): (c.records, c.events, c.actions) for c in impact.categories}
    assert cells == {
        ("customer", "personal"): (500, 1, ("export",)),
        ("invoice", "financial"): (40, 1, ("read",)),
        ("employee", "personal"): (2, 1, ("update",)),
    }
    assert (impact.records, impact.subjects, impact.records_lower_bound) == (542, 542, False)
    # Employee records hold national ids and bank details (categories.toml), not just "personal".
    assert impact.data_categories == ("financial", "financial_account", "government_id", "personal")
    assert impact.uncategorised == ()
    assert impact.nature == ("confidentiality", "integrity")
    assert impact.denied_events == 1
    assert (radius.window_start, radius.window_end) == (T0, T0 + 30 * MIN)
    assert radius.evidence_events == 4 and radius.history_events == 0


def test_history_adds_the_actors_other_accesses_inside_the_window_only() -> None:
    history = ListHistory(
        [
            access("a-1", 1, records=500),  # already evidence: counted once
            access("h-1", 20, records=70),  # the same actor, later in the window
            access("h-2", 25, tenant="t-indus", records=3),  # the same actor in another tenant
            access("h-3", 22, actor="u-other", records=9999),  # someone else
            access("h-4", 90, records=9999),  # after the window
        ]
    )
    radius = br.compute(
        incident(), [finding()], [evidence_row("inc-1", access("a-1", 1, records=500))], history=history
    )
    counts = {t.tenant_id: t.records for t in radius.tenants}
    assert counts == {"t-rhein": 570, "t-indus": 3}
    assert (radius.history_events, radius.history_source) == (2, "list")


def test_confirmation_extends_the_window_while_the_account_was_not_contained() -> None:
    history = ListHistory([access("h-1", 200, records=70)])
    radius = br.compute(incident(), [finding()], [], history=history, until=T0 + 240 * MIN)
    assert radius.window_end == T0 + 240 * MIN
    assert radius.tenant("t-rhein").records == 70


def test_an_address_incident_follows_the_address_across_accounts() -> None:
    history = ListHistory(
        [
            access("h-1", 5, actor="u-a", ip="203.0.113.9", records=4),
            access("h-2", 6, actor="u-b", ip="203.0.113.9", tenant="t-indus", records=6),
            access("h-3", 7, actor="u-c", ip="198.51.100.1", records=999),
        ]
    )
    radius = br.compute(incident(actors=(), ips=("203.0.113.9",), tenants=()), [], [], history=history)
    assert {t.tenant_id: t.records for t in radius.tenants} == {"t-rhein": 4, "t-indus": 6}


def test_detector_counts_beyond_the_stored_evidence_are_a_lower_bound() -> None:
    rows = [evidence_row("inc-1", access(f"a-{i}", 1, action="export", records=1000)) for i in range(3)]
    radius = br.compute(incident(), [finding({"records_over_limit": 250_000, "limit": 20_000})], rows)
    impact = radius.tenant("t-rhein")
    assert (impact.records, impact.records_lower_bound, impact.subjects) == (250_000, True, 250_000)


def test_people_are_capped_by_the_tenants_declared_data_subjects() -> None:
    tenant = Tenant.model_validate_json(
        json.dumps(
            {
                "tenant_id": "t-rhein",
                "name": "Rhein Logistik GmbH",
                "jurisdiction": "DE",
                "contacts": [{"email": "dpo@rhein-logistik.example", "role": "dpo"}],
                "data_subjects": 61000,
            }
        )
    )
    rows = [evidence_row("inc-1", access(f"a-{i}", i, action="export", records=48211)) for i in range(2)]
    impact = br.compute(incident(), [], rows, tenants={"t-rhein": tenant}).tenant("t-rhein")
    assert (impact.records, impact.subjects, impact.subjects_basis) == (96422, 61000, "declared_cap")


def test_a_tenant_named_by_the_incident_without_access_is_listed_with_nothing_reached() -> None:
    radius = br.compute(incident(tenants=("t-rhein",)), [], [])
    impact = radius.tenant("t-rhein")
    assert (impact.records, impact.subjects, impact.personal_data, impact.categories) == (0, 0, False, ())


def test_the_history_source_is_read_up_to_a_cap() -> None:
    history = ListHistory([access(f"h-{i}", 1, records=1) for i in range(10)])
    radius = br.compute(incident(), [], [], history=history, max_history_events=4)
    assert radius.history_truncated and radius.tenant("t-rhein").records == 4
    assert any("lower bounds" in limit for limit in radius.limits)


def test_store_history_rereads_evidence_of_other_incidents(engine) -> None:
    with Session(engine) as session, session.begin():
        session.add_all([incident("inc-1"), incident("inc-2", opened=10, updated=20)])
        session.flush()
        session.add_all(
            [
                evidence_row("inc-1", access("a-1", 1, records=5)),
                evidence_row("inc-2", access("a-9", 15, records=700), finding_id="f-2"),
                evidence_row("inc-2", access("a-8", 16, actor="u-other", records=1), finding_id="f-2"),
            ]
        )
    with Session(engine) as session:
        inc, findings, evidence = br.load_for(session, "inc-1")
        radius = br.compute(inc, findings, evidence, history=br.StoreHistory(session))
    assert radius.tenant("t-rhein").records == 705 and radius.history_events == 1


def test_dump_history_reads_a_topic_dump_and_skips_bad_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps(access("d-1", 3, records=11)),
        "not json",
        json.dumps({"event_id": "x"}),
        json.dumps(access("d-2", 4, actor="u-other", records=5)),
    ]
    (tmp_path / "erp.access.jsonl").write_text("\n".join(lines) + "\n")
    radius = br.compute(incident(), [], [], history=br.DumpHistory(tmp_path))
    assert radius.tenant("t-rhein").records == 11 and radius.history_source == "topic dump"


def test_a_correction_changes_figures_keeps_the_rest_and_says_who() -> None:
    radius = br.compute(incident(), [], [evidence_row("inc-1", access("a-1", 1, records=500))])
    change = br.Correction(
        tenants=(
            br.TenantCorrection(tenant_id="t-rhein", records=800, data_categories=("personal", "financial")),
            br.TenantCorrection(tenant_id="t-indus", subjects=12, records=12),
        ),
        window_start=T0 - 60 * MIN,
    )
    fixed = br.correct(radius, change, by="approver-bo", reason="vendor logs show an earlier session")
    rhein, indus = fixed.tenant("t-rhein"), fixed.tenant("t-indus")
    assert (rhein.records, rhein.subjects, rhein.data_categories, rhein.corrected) == (
        800,
        500,
        ("financial", "personal"),
        True,
    )
    assert (indus.records, indus.subjects, indus.subjects_basis) == (12, 12, "corrected")
    assert fixed.window_start == T0 - 60 * MIN
    assert "approver-bo" in fixed.corrections[0] and "records 500 -> 800" in fixed.corrections[0]
    assert br.from_json(br.to_json(fixed)) == fixed
    assert radius.tenant("t-rhein").records == 500  # the original is untouched


def test_a_correction_refuses_unknown_categories_and_a_backwards_window() -> None:
    radius = br.compute(incident(), [], [])
    with pytest.raises(ValueError, match="unknown data categories"):
        br.correct(
            radius,
            br.Correction(tenants=(br.TenantCorrection(tenant_id="t", data_categories=("x",)),)),
            by="a",
            reason="r",
        )
    with pytest.raises(ValueError, match="window"):
        br.correct(radius, br.Correction(window_end=T0 - 60 * MIN), by="a", reason="r")


def test_legal_categories_come_from_resource_types_and_unknown_types_are_named() -> None:
    # Sensitivity labels alone never say "health" or "government_id": the resource type does.
    rows = [
        evidence_row("inc-1", access("a-1", 1, resource_type="leave_request", records=12)),
        evidence_row("inc-1", access("a-2", 2, resource_type="telemetry_blob", sensitivity="internal", records=3)),
    ]
    [impact] = br.compute(incident(), [finding()], rows).tenants
    assert impact.data_categories == ("health", "personal")
    assert impact.uncategorised == ("resource type 'telemetry_blob'",)
    # A tenant's own map entry decides its types (here: clinical visits are PHI).
    base = default_category_map()
    clinic = CategoryMap(
        resource_types={**base.resource_types, "telemetry_blob": frozenset({"phi"})}, sensitivity=base.sensitivity
    )
    [impact] = br.compute(incident(), [finding()], rows, category_map=lambda tenant_id: clinic).tenants
    assert impact.data_categories == ("health", "personal", "phi") and impact.uncategorised == ()
