"""What the page script asks every few seconds to keep lists and the incident page live: a
short fingerprint of what the page shows. Only when it changes does the script fetch the page
again (which, for an incident page, shows the evidence and is recorded as a view)."""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select

from breachwatch.console.context import ctx_of
from breachwatch.incidents.lifecycle import IncidentEventRow
from breachwatch.incidents.people import CommentRow
from breachwatch.incidents.tables import IncidentRow
from breachwatch.notifier.outbox import OutboxRow

router = APIRouter(include_in_schema=False)


def _digest(*parts: Any) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:16]


@router.get("/live/incidents")
def list_state(request: Request) -> Any:
    """Changes when any incident is opened, changes or gains evidence."""
    ctx = ctx_of(request)
    if ctx.caller(request) is None:
        return JSONResponse({"signed_in": False}, status_code=401)
    with ctx.session() as session:
        count, newest = session.execute(select(func.count(), func.max(IncidentRow.modified_at))).one()
        last_event = session.scalar(select(func.max(IncidentEventRow.id)))
    return {"signed_in": True, "version": _digest(count, newest, last_event)}


@router.get("/live/incidents/{incident_id}")
def incident_state(request: Request, incident_id: str) -> Any:
    """Changes when the incident, its timeline, comments or messages change."""
    ctx = ctx_of(request)
    if ctx.caller(request) is None:
        return JSONResponse({"signed_in": False}, status_code=401)
    with ctx.session() as session:
        incident = session.get(IncidentRow, incident_id)
        if incident is None:
            return JSONResponse({"signed_in": True, "version": None}, status_code=404)
        last_event = session.scalar(
            select(func.max(IncidentEventRow.id)).where(IncidentEventRow.incident_id == incident_id)
        )
        comments = session.scalar(
            select(func.count()).select_from(CommentRow).where(CommentRow.incident_id == incident_id)
        )
        messages = list(
            session.execute(
                select(OutboxRow.status, func.count())
                .where(OutboxRow.incident_id == incident_id)
                .group_by(OutboxRow.status)
            )
        )
    version = _digest(
        incident.modified_at, incident.evidence_count, incident.status, last_event, comments, sorted(messages)
    )
    return {"signed_in": True, "version": version}
