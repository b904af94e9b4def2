"""The moments of a breach that clocks start from (``notifier.duties.MOMENTS``).

Confirming a breach records three: ``detected``, when the system first noticed the incident (the
earliest detection moment of its findings, never later than the confirmation); ``confirmed``;
and ``aware``, which the confirmation also is: the person confirming records that, with a
reasonable degree of certainty, personal data was affected. A person may later record
``aware`` (earlier, if the vendor knew before it confirmed here), ``determined``,
``assessed`` or ``material`` (the registrant's materiality determination); each duty's clock
then starts at its own anchor's moment (``_policy.toml [anchors]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from breachwatch.incidents.tables import FindingRow, IncidentRow
from breachwatch.notifier.duties import MOMENTS
from breachwatch.notifier.notices.records import MomentRow
from breachwatch.storage.db import aggregate_time

SYSTEM_MOMENTS: tuple[str, ...] = ("detected", "confirmed")
PERSON_MOMENTS: tuple[str, ...] = tuple(m for m in MOMENTS if m not in SYSTEM_MOMENTS)


def detection(session: Session, incident_id: str) -> datetime | None:
    """When the incident's first finding was judged (event time), or None without findings: the
    incident's own ``detected_at``, else the earliest of its findings' (an incident stored by a
    version that kept it on the findings only)."""
    incident = session.get(IncidentRow, incident_id)
    if incident is not None and incident.detected_at is not None:
        return incident.detected_at
    found = session.scalar(
        select(func.min(func.coalesce(FindingRow.detected_at, FindingRow.ts))).where(
            FindingRow.incident_id == incident_id
        )
    )
    return None if found is None else aggregate_time(found)


def record_confirmation(
    session: Session, incident_id: str, *, confirmed_at: datetime, confirmed_by: str, now: datetime
) -> dict[str, datetime]:
    """Record detection, confirmation and awareness once (a second confirmation changes nothing)."""
    detected = detection(session, incident_id)
    # A replay of old events detects "before" it ran; events stamped later than the confirmation
    # (a skewed ERP clock) cannot have been detected after it.
    detected = confirmed_at if detected is None else min(detected, confirmed_at)
    wanted = {
        "detected": (detected, "system", "breachwatch", "the earliest detection of the incident's findings"),
        "confirmed": (confirmed_at, "system", confirmed_by, "breach confirmed"),
        "aware": (confirmed_at, "person", confirmed_by, "recorded by confirming the breach"),
    }
    for moment, (at, source, by, note) in wanted.items():
        if session.get(MomentRow, (incident_id, moment)) is None:
            session.add(
                MomentRow(
                    incident_id=incident_id,
                    moment=moment,
                    at=at,
                    source=source,
                    recorded_by=by,
                    recorded_at=now,
                    note=note,
                )
            )
    session.flush()
    return moments(session, incident_id)


def moments(session: Session, incident_id: str) -> dict[str, datetime]:
    """The recorded moments of an incident, by name."""
    return {r.moment: r.at for r in session.scalars(select(MomentRow).where(MomentRow.incident_id == incident_id))}


def moment_rows(session: Session, incident_id: str) -> list[dict[str, Any]]:
    """The recorded moments with who recorded them, in time order (for the console and register)."""
    order = list(MOMENTS)
    rows = sorted(
        session.scalars(select(MomentRow).where(MomentRow.incident_id == incident_id)),
        key=lambda r: (r.at, order.index(r.moment) if r.moment in order else len(order)),
    )
    return [
        {
            "moment": r.moment,
            "meaning": MOMENTS.get(r.moment, r.moment),
            "at": r.at.isoformat(),
            "source": r.source,
            "recorded_by": r.recorded_by,
            "recorded_at": r.recorded_at.isoformat() if r.recorded_at else None,
            "note": r.note,
        }
        for r in rows
    ]


def set_moment(
    session: Session, incident_id: str, moment: str, at: datetime, *, by: str, note: str, now: datetime
) -> Mapping[str, Any]:
    """A person's record of one moment; returns what it replaced (empty if nothing)."""
    row = session.get(MomentRow, (incident_id, moment))
    before = {} if row is None else {"at": row.at.isoformat(), "recorded_by": row.recorded_by, "note": row.note}
    if row is None:
        session.add(
            MomentRow(
                incident_id=incident_id,
                moment=moment,
                at=at,
                source="person",
                recorded_by=by,
                recorded_at=now,
                note=note,
            )
        )
    else:
        row.at, row.source, row.recorded_by, row.recorded_at, row.note = at, "person", by, now, note
    session.flush()
    return before
