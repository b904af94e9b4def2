"""An actor's risk ledger: the signals below the incident threshold that added up (or may),
as a page and as JSON (``/actors/{actor}/risk``, ``/api/actors/{actor}/risk``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from sqlalchemy import select

from breachwatch.console.api import Viewer as ApiViewer
from breachwatch.console.context import ctx_of
from breachwatch.console.views import Viewer
from breachwatch.incidents import ledger
from breachwatch.incidents.tables import IncidentRow

router = APIRouter()


class ContributionOut(BaseModel):
    finding_id: str
    at: str
    source: str
    points: float
    points_now: float
    what: str


class LedgerOut(BaseModel):
    subject: str
    at: str | None  # event time the ledger is read at: its newest contribution
    total: float
    threshold: float
    contributions: list[ContributionOut]
    incidents: list[str]  # the accumulated-risk incidents of the actor, newest first


def _ledger(request: Request, actor_id: str) -> LedgerOut:
    ctx = ctx_of(request)
    s = ctx.settings
    policy = ledger.RiskPolicy(s.risk_threshold, s.risk_source_cap, timedelta(hours=s.risk_half_life_hours))
    with ctx.session() as session:
        book = ledger.current(session, policy, f"actor:{actor_id}")
        incidents = session.scalars(
            select(IncidentRow.incident_id)
            .where(IncidentRow.kind == ledger.KIND)
            .where(IncidentRow.group_key == f"actor:{actor_id}")
            .order_by(IncidentRow.opened_at.desc())
            .limit(20)
        ).all()
    return LedgerOut(
        subject=book.subject,
        at=book.at.isoformat() if book.contributions else None,
        total=book.total,
        threshold=book.threshold,
        contributions=[
            ContributionOut(
                finding_id=c.finding_id,
                at=c.ts.isoformat(),
                source=c.source,
                points=c.points,
                points_now=round(c.now_points, 1),
                what=c.what,
            )
            for c in book.contributions
        ],
        incidents=list(incidents),
    )


@router.get("/api/actors/{actor_id}/risk", response_model=LedgerOut, tags=["risk"])
def actor_risk(request: Request, actor_id: str, caller: ApiViewer) -> LedgerOut:
    """An actor's risk ledger as of its newest contribution: each signal with its points then
    and now (after decay), the capped total and the threshold."""
    return _ledger(request, actor_id)


@router.get("/actors/{actor_id}/risk", response_class=HTMLResponse)
def actor_risk_page(request: Request, actor_id: str, caller: Viewer) -> Any:
    return ctx_of(request).page(request, "risk.html", caller, actor_id=actor_id, book=_ledger(request, actor_id))
