"""The notice workflow on PostgreSQL: draft, approve twice-proof, deliver, correct."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.channels.file import FileChannel
from breachwatch.notifier.notices import (
    ApprovalRefused,
    approve_notice,
    correct_blast_radius,
    list_notices,
    on_breach_confirmed,
)
from breachwatch.notifier.outbox import Dispatcher
from breachwatch.runtime.schema import init_db
from breachwatch.storage.db import make_engine
from tests.fixtures.notifier_env import add_staff

pytestmark = pytest.mark.usefixtures("no_notice_files")
CONFIRMED_AT = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    eng = make_engine(postgres_url)
    init_db(eng)
    add_staff(eng)
    yield eng
    eng.dispose()


def test_notice_lifecycle_on_postgres(engine, settings, store_incident, tmp_path) -> None:
    incident_id = store_incident(incident_id=f"inc-{uuid.uuid4().hex[:16]}")
    with Session(engine) as session, session.begin():
        [notice_id] = on_breach_confirmed(
            session, incident_id, confirmed_by="responder-ada", confirmed_at=CONFIRMED_AT, settings=settings
        )
    with Session(engine) as session, session.begin():
        assert approve_notice(session, notice_id, "approver-bo", now=CONFIRMED_AT)["queued"] == 4
    with Session(engine) as session, pytest.raises(ApprovalRefused):
        approve_notice(session, notice_id, "approver-cy")
    Dispatcher(
        engine,
        {"email": FileChannel(tmp_path / "out", "breachwatch@unisen.example")},
        clock=lambda: CONFIRMED_AT + dt.timedelta(minutes=5),
    ).dispatch_due()
    with Session(engine) as session, session.begin():
        correct_blast_radius(
            session,
            incident_id,
            {"tenants": [{"tenant_id": "t-rhein", "records": 50000}]},
            actor="approver-bo",
            reason="recount",
            settings=settings,
        )
    with Session(engine) as session:
        [notice] = list_notices(session, incident_id, now=CONFIRMED_AT + dt.timedelta(hours=2))
    assert (notice["version"], notice["kind"], notice["version_status"]) == (2, "followup", "draft")
    assert {d["status"] for d in notice["deliveries"]} == {"sent"}
    assert len(list((tmp_path / "out").glob("*.eml"))) == 4
