"""The tenant directory entries an incident needs are stored whenever the incident is: when it
opens and when a later finding adds a tenant to it, paged or not (``replay`` without
``--notify`` pages nobody and still keeps them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.core.events import AccessEvent, Tenant
from breachwatch.core.findings import Finding
from breachwatch.core.settings import Settings
from breachwatch.notifier.notices.models import TenantRecordRow
from breachwatch.notifier.outbox import OutboxRow
from breachwatch.runtime import app

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


def _tenant(tenant_id: str, jurisdiction: str) -> Tenant:
    return Tenant.model_validate_json(
        json.dumps(
            {
                "tenant_id": tenant_id,
                "name": f"{tenant_id} Example Ltd",
                "jurisdiction": jurisdiction,
                "contacts": [{"email": f"dpo@{tenant_id}.example", "role": "dpo"}],
            }
        )
    )


def _finding(n: int, tenant: str) -> Finding:
    event = AccessEvent.model_validate_json(
        json.dumps(
            {
                "event_id": f"a-{n}",
                "ts": (T0 + timedelta(minutes=n)).isoformat(),
                "actor_id": "u-hans",
                "actor_type": "customer_user",
                "actor_tenant": "t-rhein",
                "tenant_id": tenant,
                "action": "export",
                "resource_type": "customer",
                "sensitivity": "personal",
                "records": 500,
            }
        )
    )
    return Finding(
        detector="rules.bulk_export",
        kind="bulk_export",
        severity="high",
        score=80.0,
        ts=event.ts,
        title="u-hans exported records",
        reasons=("large export",),
        playbook="Ask the tenant.",
        events=(event,),
        actor_id="u-hans",
        tenant_ids=(tenant,),
    )


def test_directory_entries_are_kept_when_an_incident_opens_and_when_it_grows(tmp_path: Path) -> None:
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'bw.db'}", outbox_dir=tmp_path / "outbox")
    engine = app.database(settings)
    store = app.incident_store(settings, engine, notify=False)
    tenants = {t.tenant_id: t for t in (_tenant("t-rhein", "DE"), _tenant("t-fjord", "NO"))}
    [incident_id] = store.record([_finding(1, "t-rhein")], tenants).opened
    with Session(engine) as session:
        assert set(session.scalars(select(TenantRecordRow.tenant_id))) == {"t-rhein"}
    # The same actor reaches a second tenant: the incident grows, and its new tenant is kept too.
    result = store.record([_finding(2, "t-fjord")], tenants)
    assert result.opened == [] and result.updated == [incident_id]
    with Session(engine) as session:
        stored = {r.tenant_id: r.record["jurisdiction"] for r in session.scalars(select(TenantRecordRow))}
        assert session.scalars(select(OutboxRow)).first() is None  # nobody was paged
    assert stored == {"t-rhein": "DE", "t-fjord": "NO"}
    engine.dispose()
