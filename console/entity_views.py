"""Pages for what incidents are about: an actor, a tenant, a network (or one address), each
with its recent activity, baselines, risk, incidents and notices; the search that finds them
by id, e-mail, address or network; and the help page (roles and keyboard shortcuts)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.console.context import Caller, ctx_of, page_user
from breachwatch.core.clock import utcnow
from breachwatch.incidents import entities, people, users
from breachwatch.incidents.priority import priority
from breachwatch.notifier.notices.directory import tenant_record
from breachwatch.notifier.notices.models import NoticeRow, TenantRecordRow
from breachwatch.notifier.notices.service import notice_summary

router = APIRouter(include_in_schema=False)
Viewer = Annotated[Caller, page_user("viewer")]
ACTIVITY_PAGE = 50


def _entity_page(
    request: Request, caller: Caller, kind: str, key: str, entity: entities.Entity, page: int, **extra: Any
) -> Any:
    ctx = ctx_of(request)
    page = max(page, 1)
    now = utcnow()
    with ctx.session() as session:
        events = entities.activity(session, kind, key, limit=ACTIVITY_PAGE + 1, offset=(page - 1) * ACTIVITY_PAGE)
        held = people.assignees(session, [r.incident_id for r in entity.incidents[:200]])
    return ctx.page(
        request,
        "entity.html",
        caller,
        kind=kind,
        key=key,
        entity=entity,
        incidents=entity.incidents[:200],
        priorities={r.incident_id: priority(r, now=now).value for r in entity.incidents[:200]},
        held=held,
        events=events[:ACTIVITY_PAGE],
        page=page,
        more=len(events) > ACTIVITY_PAGE,
        page_link=lambda p: "?" + urlencode({"page": p}) + "#activity",
        **extra,
    )


@router.get("/actors/{actor_id}", response_class=HTMLResponse)
def actor_page(request: Request, actor_id: str, caller: Viewer, page: int = 1) -> Any:
    with ctx_of(request).session() as session:
        entity = entities.actor(session, actor_id)
    return _entity_page(request, caller, "actor", actor_id, entity, page, notices=[], record=None)


def _tenant_notices(session: Session, tenant_id: str) -> list[dict[str, Any]]:
    now = utcnow()
    rows = session.scalars(select(NoticeRow).where(NoticeRow.tenant_id == tenant_id).order_by(NoticeRow.notice_id))
    return [notice_summary(session, n, now) for n in rows]


@router.get("/tenants/{tenant_id}", response_class=HTMLResponse)
def tenant_page(request: Request, tenant_id: str, caller: Viewer, page: int = 1) -> Any:
    with ctx_of(request).session() as session:
        entity = entities.tenant(session, tenant_id)
        notices = _tenant_notices(session, tenant_id)
        record = tenant_record(session, tenant_id)
    return _entity_page(request, caller, "tenant", tenant_id, entity, page, notices=notices, record=record)


@router.get("/networks/{network:path}", response_class=HTMLResponse)
def network_page(request: Request, network: str, caller: Viewer, page: int = 1) -> Any:
    ctx = ctx_of(request)
    net = entities.parse_network(network)
    if net is None:
        return ctx.page(
            request, "error.html", caller, status=404, title="Not an address or a network", message=network[:80]
        )
    with ctx.session() as session:
        entity = entities.network(session, net)
    return _entity_page(request, caller, "network", str(net), entity, page, notices=[], record=None)


def _contacts(session: Session) -> dict[str, str]:
    """E-mail of every tenant contact -> the tenant."""
    out: dict[str, str] = {}
    for tenant_id, record in session.execute(select(TenantRecordRow.tenant_id, TenantRecordRow.record)):
        for contact in (record or {}).get("contacts") or []:
            if isinstance(contact, dict) and contact.get("email"):
                out[str(contact["email"])] = tenant_id
    return out


ENTITY_URL = {"actor": "/actors/", "tenant": "/tenants/", "network": "/networks/", "incident": "/incidents/"}


@router.get("/search", response_class=HTMLResponse)
def search(request: Request, caller: Viewer, q: str = "") -> Any:
    """One match goes straight to its page; several are listed; words search incident titles."""
    ctx = ctx_of(request)
    with ctx.session() as session:
        targets = entities.resolve(session, q, contacts=_contacts(session))
        team = [u for u in users.list_users(session) if u.email and u.email.lower() == q.strip().lower()]
    pages = [t for t in targets if t.kind in ENTITY_URL]
    if len(pages) == 1 and not team:
        t = pages[0]
        return RedirectResponse(ENTITY_URL[t.kind] + quote(t.value, safe="/:"), status_code=303)
    if not pages and not team and q.strip():
        return RedirectResponse("/incidents?" + urlencode({"status": "all", "q": q.strip()[:200]}), status_code=303)
    return ctx.page(request, "search.html", caller, q=q, targets=pages, urls=ENTITY_URL, team=team)


@router.get("/help", response_class=HTMLResponse)
def help_page(request: Request, caller: Viewer) -> Any:
    return ctx_of(request).page(request, "help.html", caller)
