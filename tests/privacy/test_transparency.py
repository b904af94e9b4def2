"""The transparency log: stored once per access however often a batch is re-delivered, read
back with the justification in plain words, staff named or pseudonymised by configuration,
another customer's id never shown, exported as JSON or CSV, kept only for its retention period."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.core.justification import Problem
from breachwatch.privacy import transparency
from breachwatch.privacy.transparency import StaffAccessRow, StaffIdentity
from breachwatch.storage import audit
from tests.fixtures.staff_access import T0, justified, staff_access, unjustified

KEY = b"fictional-pseudonym-key-0123456789"
OTHER_TENANT = Problem(
    "ticket_other_tenant",
    {
        "ticket_id": "SUP-9000",
        "ticket_tenant": "t-secret-customer",
        "opened_at": "2026-11-24T08:00:00Z",
        "closed_at": None,
        "purpose": "support_on_request",
        "requested_by": "customer",
    },
)


def _log(engine: Engine) -> None:
    accesses = [
        staff_access(1, justified(), action="export", records=1200),
        staff_access(2, unjustified(OTHER_TENANT), minutes=30),
        staff_access(3, unjustified(), minutes=60, staff="st-nadia", name="Nadia Example"),
        staff_access(4, justified(), tenant="t-fjord", minutes=5),
    ]
    with Session(engine) as session, session.begin():
        assert transparency.record_staff_accesses(session, accesses) == 4
    with Session(engine) as session, session.begin():  # the batch again, after a crash
        transparency.record_staff_accesses(session, accesses)


def _entries(engine: Engine, identity: StaffIdentity, tenant: str = "t-rhein") -> list[dict[str, object]]:
    with Session(engine) as session:
        return [transparency.entry(r, identity) for r in transparency.iter_rows(session, tenant)]


def test_each_access_is_stored_once_with_its_justification(engine: Engine) -> None:
    _log(engine)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(StaffAccessRow)) == 4
    first, second, third = _entries(engine, StaffIdentity())
    assert (first["ts"], first["staff"], first["action"], first["records"]) == (
        "2026-11-24T09:00:00Z",
        "Bilal Example",
        "export",
        1200,
    )
    assert first["justified"] is True and first["ticket_id"] == "SUP-4411"
    assert first["purpose"] == "support_on_request" and first["customer_requested"] is True
    assert first["reason"] == "ticket SUP-4411 (support the customer asked for) names Bilal Example"
    assert first["data_categories"] == ["personal"] and first["office_country"] == "PK"
    assert second["justified"] is False and third["justified"] is False and third["ticket_id"] is None
    assert "no ticket for tenant t-rhein naming Nadia Example" in str(third["reason"])


def test_another_customers_id_never_reaches_the_tenant(engine: Engine) -> None:
    _log(engine)
    second = _entries(engine, StaffIdentity())[1]
    assert second["reason"] == "the access cited ticket SUP-9000, which is for another customer, not t-rhein"
    assert "t-secret-customer" not in json.dumps(_entries(engine, StaffIdentity()))


def test_pseudonyms_are_stable_per_tenant_and_name_nobody(engine: Engine) -> None:
    _log(engine)
    pseudo = StaffIdentity("pseudonym", KEY)
    rhein = _entries(engine, pseudo)
    fjord = _entries(engine, pseudo, "t-fjord")
    assert rhein[0]["staff"] == rhein[1]["staff"] != rhein[2]["staff"]  # Bilal twice, then Nadia
    assert str(rhein[0]["staff"]).startswith("support staff member ")
    assert fjord[0]["staff"] != rhein[0]["staff"]  # the same person, unlinkable across tenants
    text = json.dumps(rhein + fjord)
    assert "Bilal" not in text and "Nadia" not in text and "st-bilal" not in text
    with pytest.raises(ValueError, match="BREACHWATCH_PSEUDONYM_KEY"):
        StaffIdentity("pseudonym", None)


def test_export_json_and_csv_one_record_per_access(engine: Engine) -> None:
    _log(engine)
    entries = _entries(engine, StaffIdentity())
    doc = json.loads("".join(transparency.export(iter(entries), "json")))
    assert len(doc) == 3
    for e in doc:
        assert {"ts", "staff", "action", "records", "ticket_id", "justified", "reason"} <= set(e)
    rows = list(csv.DictReader(io.StringIO("".join(transparency.export(iter(entries), "csv")))))
    assert [r["justified"] for r in rows] == ["True", "False", "False"]
    assert rows[0]["ticket_id"] == "SUP-4411" and rows[2]["ticket_id"] == ""
    assert json.loads("".join(transparency.export(iter([]), "json"))) == []


def test_reading_by_time_and_page(engine: Engine) -> None:
    _log(engine)
    with Session(engine) as session:
        since = [r.event_id for r in transparency.rows(session, "t-rhein", since=T0 + timedelta(minutes=30))]
        page = transparency.rows(session, "t-rhein", limit=2)
        rest = transparency.rows(session, "t-rhein", after=(page[-1].ts, page[-1].access_id))
        latest = transparency.latest(session, "t-rhein", limit=5, unjustified_only=True)
    assert since == ["s-t-rhein-2", "s-t-rhein-3"]
    assert [r.event_id for r in page + rest] == ["s-t-rhein-1", "s-t-rhein-2", "s-t-rhein-3"]
    assert [r.event_id for r in latest] == ["s-t-rhein-3", "s-t-rhein-2"]


def test_retention_deletes_old_accesses_and_is_audited(engine: Engine) -> None:
    _log(engine)
    now = T0 + timedelta(days=400, minutes=20)
    with Session(engine) as session, session.begin():
        dry = transparency.apply_retention(session, 400, "cli:dpo", now=now, dry_run=True)
        done = transparency.apply_retention(session, 400, "cli:dpo", now=now)
    assert dry["staff_accesses_purged"] == done["staff_accesses_purged"] == 2  # minutes 0 and 5
    with Session(engine) as session:
        left = sorted(session.scalars(select(StaffAccessRow.event_id)))
        [row] = audit.for_subject(session, "staff_accesses")
    assert left == ["s-t-rhein-2", "s-t-rhein-3"] and row.detail == {"deleted": 2}
