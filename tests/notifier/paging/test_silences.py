"""Silences: what they match, when they are in force, who ends them, the reminder before
they end, and that a silenced incident is recorded but its page held back (and audited)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.core.ids import stable_id
from breachwatch.incidents.tables import IncidentRow
from breachwatch.notifier.outbox import OutboxRow
from breachwatch.notifier.paging import silences
from breachwatch.notifier.paging.silences import SilenceError
from breachwatch.storage import audit

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def _incident(**fields: Any) -> IncidentRow:
    values: dict[str, Any] = {
        "incident_id": "inc-1",
        "kind": "bulk_export",
        "actor_ids": ["u-hans"],
        "tenant_ids": ["t-rhein", "t-fjord"],
        "source_ips": ["198.51.100.7"],
    }
    values.update(fields)
    return IncidentRow(**values)


def _add(engine: Engine, hours: float = 4, **matchers: Any) -> str:
    with Session(engine) as session, session.begin():
        return silences.add(
            session, "ada", "agreed penetration test", NOW + timedelta(hours=hours), now=NOW, **matchers
        ).silence_id


@pytest.mark.parametrize(
    ("matchers", "incident", "silenced"),
    [
        ({"actor_id": "u-hans"}, {}, True),
        ({"actor_id": "u-ines"}, {}, False),
        ({"tenant_id": "t-fjord"}, {}, True),
        ({"kind": "bulk_export", "tenant_id": "t-rhein"}, {}, True),
        ({"kind": "bulk_export", "tenant_id": "t-oslo"}, {}, False),  # every matcher must match
        ({"ip": "198.51.100.0/24"}, {}, True),
        ({"ip": "198.51.100.7"}, {"source_ips": ["198.51.100.8"]}, False),
        ({"ip": "2001:db8::/32"}, {"source_ips": ["not-an-address", "2001:db8::5"]}, True),
    ],
)
def test_a_silence_matches_when_every_matcher_it_sets_matches(
    sqlite_engine: Engine, matchers: dict[str, str], incident: dict[str, Any], silenced: bool
) -> None:
    _add(sqlite_engine, **matchers)
    with Session(sqlite_engine) as session:
        found = silences.is_silenced(session, _incident(**incident), NOW + timedelta(minutes=5))
    assert (found is not None) is silenced


def test_a_silence_holds_only_between_its_start_and_end_or_until_expired(engine: Engine) -> None:
    sid = _add(engine, hours=4, actor_id="u-hans")
    with Session(engine) as session:
        assert silences.is_silenced(session, _incident(), NOW + timedelta(hours=3, minutes=59)) is not None
        assert silences.is_silenced(session, _incident(), NOW + timedelta(hours=4)) is None
        assert silences.is_silenced(session, _incident(), NOW - timedelta(minutes=1)) is None
    with Session(engine) as session, session.begin():
        silences.expire(session, sid, "grace", now=NOW + timedelta(hours=1))
    with Session(engine) as session:
        assert silences.is_silenced(session, _incident(), NOW + timedelta(hours=2)) is None
        assert silences.list_silences(session, now=NOW + timedelta(hours=2)) == []
        assert [s.expired_by for s in silences.list_silences(session, include_ended=True)] == ["grace"]
        assert [r.action for r in audit.for_subject(session, f"silence:{sid}")] == ["silence.add", "silence.expire"]
    with Session(engine) as session, session.begin(), pytest.raises(SilenceError, match="already ended"):
        silences.expire(session, sid, "grace", now=NOW + timedelta(hours=1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "at least one of"),
        ({"actor_id": "u-hans", "reason": " "}, "needs a reason"),
        ({"actor_id": "u-hans", "hours": -1}, "end in the future"),
        ({"actor_id": "u-hans", "hours": 24 * 91}, "at most 90 days"),
        ({"ip": "not-a-network"}, "address or a network"),
        ({"actor_id": "u hans"}, "one word"),
    ],
)
def test_unusable_silences_are_refused(sqlite_engine: Engine, kwargs: dict[str, Any], message: str) -> None:
    hours = kwargs.pop("hours", 4)
    reason = kwargs.pop("reason", "pentest")
    with Session(sqlite_engine) as session, session.begin(), pytest.raises(SilenceError, match=message):
        silences.add(session, "ada", reason, NOW + timedelta(hours=hours), now=NOW, **kwargs)


def test_the_owner_is_reminded_once_before_the_silence_ends(sqlite_engine: Engine) -> None:
    sid = _add(sqlite_engine, hours=30, actor_id="u-hans")
    _add(sqlite_engine, hours=2, tenant_id="t-fjord")  # owner without an address: the on-call hears
    kwargs = {
        "before": timedelta(hours=24),
        "owner_email": {"someone-else": "x@unisen.example"},
        "fallback": ["oncall-security@unisen.example"],
    }
    with Session(sqlite_engine) as session, session.begin():
        assert silences.queue_reminders(session, now=NOW, **kwargs) == 1  # only the one ending within 24 h
    with Session(sqlite_engine) as session, session.begin():
        kwargs["owner_email"] = {"ada": "ada.lovelace@unisen.example"}
        assert silences.queue_reminders(session, now=NOW + timedelta(hours=7), **kwargs) == 1
        assert silences.queue_reminders(session, now=NOW + timedelta(hours=8), **kwargs) == 0
    with Session(sqlite_engine) as session:
        rows = session.scalars(select(OutboxRow).order_by(OutboxRow.created_at)).all()
        assert [r.recipient for r in rows] == ["oncall-security@unisen.example", "ada.lovelace@unisen.example"]
        reminder = rows[1]
        assert reminder.message_id == stable_id("silence_reminder", sid, "ada.lovelace@unisen.example")
        assert "ends in about 23 h" in reminder.subject and "actor=u-hans" in reminder.subject
        assert "agreed penetration test" in reminder.body_text
        assert [r.action for r in audit.recent(session, action="silence.reminder")] == ["silence.reminder"] * 2


def test_a_silenced_incident_is_recorded_and_its_page_held_back(
    sqlite_engine: Engine, ev: SimpleNamespace, record: Any
) -> None:
    _add(sqlite_engine, hours=4, actor_id="u-hans")
    [iid] = record(sqlite_engine, ev.finding([ev.access(1)]))
    with Session(sqlite_engine) as session, session.begin():
        incident = session.get(IncidentRow, iid)
        assert incident is not None
        held = silences.suppress_page(session, incident, at=NOW + timedelta(minutes=1))
        assert held is not None and held.owner == "ada"
        held_id = held.silence_id
        other = IncidentRow(incident_id="x", kind="k", actor_ids=["u-olga"], tenant_ids=[], source_ips=[])
        assert silences.suppress_page(session, other, at=NOW) is None
    with Session(sqlite_engine) as session:
        [row] = audit.for_subject(session, f"incident:{iid}")
        assert row.action == "page.suppressed" and row.detail["silence"] == held_id
