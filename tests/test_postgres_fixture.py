"""The throwaway PostgreSQL server: the incident schema is created and used on a real server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session

from breachwatch.incidents.tables import IncidentRow
from breachwatch.runtime.schema import init_db
from breachwatch.storage.db import make_engine

pytestmark = pytest.mark.postgres


def test_incident_schema_round_trips_on_postgres(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        init_db(engine)
        init_db(engine)  # a second run finds every table and changes nothing

        assert engine.dialect.name == "postgresql"
        assert {"incidents", "findings", "evidence", "checkpoints", "outbox"} <= set(inspect(engine).get_table_names())

        incident_id = f"inc-{uuid.uuid4().hex[:12]}"
        opened = datetime(2026, 11, 24, 10, 15, tzinfo=UTC)
        with Session(engine) as session:
            session.add(
                IncidentRow(
                    incident_id=incident_id,
                    kind="bulk_export",
                    title="Bulk export of customer records by u-ingrid",
                    severity="high",
                    score=87.5,
                    opened_at=opened,
                    updated_at=opened,
                    actor_ids=["u-ingrid"],
                    tenant_ids=["t-fjord"],
                    group_key="actor:u-ingrid",
                    facts={"records": 12000},
                )
            )
            session.commit()

        with Session(engine) as session:
            row = session.scalars(select(IncidentRow).where(IncidentRow.incident_id == incident_id)).one()
            server = session.execute(text("SELECT current_database(), version()")).one()

        assert server[0] == "breachwatch_test"
        assert server[1].startswith("PostgreSQL")
        assert row.opened_at == opened and row.opened_at.tzinfo is not None
        assert row.actor_ids == ["u-ingrid"] and row.facts == {"records": 12000}
        assert row.status == "open"
    finally:
        engine.dispose()
