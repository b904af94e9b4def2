"""A tenant's transparency log: every vendor-staff access to its data and its justification.

``GET /api/tenants/{tenant}/transparency`` answers a tenant's own token (``breachwatch tokens
create USER --tenant T``), which can read nothing else, and any console user with the viewer
role; ``/tenants/{tenant}/transparency`` is the same log as a page for the vendor's people.
Each read is audited (privacy policy 6.1: every access is accounted for, this one too).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from breachwatch.console.context import Caller, ctx_of
from breachwatch.console.views import Viewer as PageViewer
from breachwatch.privacy import transparency
from breachwatch.storage import audit

router = APIRouter()
MAX_PAGE = 1000


class TransparencyPage(BaseModel):
    tenant_id: str
    entries: list[dict[str, Any]]
    next: str | None  # pass as ``after`` for the next page; null at the end


def _reader(request: Request, tenant_id: str) -> Caller:
    """The caller, if it may read ``tenant_id``'s log: its own tenant token, or a viewer."""
    caller = ctx_of(request).caller(request)
    if caller is None:
        raise HTTPException(
            status_code=401, detail="sign in or send a bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    if not caller.principal.may_read_tenant(tenant_id):
        own = caller.principal.tenant
        detail = f"this token reads only tenant {own}'s log" if own else "this needs the viewer role"
        raise HTTPException(status_code=403, detail=detail)
    return caller


def _cursor(after: str | None) -> tuple[datetime, str] | None:
    if not after:
        return None
    ts, _, access_id = after.rpartition("|")
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")), access_id
    except ValueError:
        raise HTTPException(status_code=422, detail="after: not a cursor this API returned") from None


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise HTTPException(status_code=422, detail=f"{name}: give a time with an offset, e.g. 2026-11-01T00:00:00Z")
    return value


@router.get("/api/tenants/{tenant_id}/transparency", response_model=TransparencyPage, tags=["transparency"])
def read_log(
    request: Request,
    tenant_id: str,
    since: Annotated[datetime | None, Query(description="from this time (RFC 3339)")] = None,
    until: Annotated[datetime | None, Query(description="before this time")] = None,
    after: Annotated[str | None, Query(description="the `next` cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 200,
    format: Annotated[Literal["json", "csv"], Query(description="csv: one row per access, no paging")] = "json",
) -> Any:
    """The staff accesses to the tenant's data in time order: when, who (as the tenant may see
    them), office country, what and how many records of which data categories, and the ticket,
    purpose and approval that justified each, or why nothing did."""
    caller = _reader(request, tenant_id)
    ctx = ctx_of(request)
    identity = transparency.identity_from(ctx.settings)
    since, until = _aware(since, "since"), _aware(until, "until")
    with ctx.session() as session, session.begin():
        if format == "csv":
            rows = transparency.iter_rows(session, tenant_id, since=since, until=until)
            body = "".join(transparency.export((transparency.entry(r, identity) for r in rows), "csv"))
            n = body.count("\n") - 1
        else:
            rows_page = transparency.rows(
                session, tenant_id, since=since, until=until, after=_cursor(after), limit=limit
            )
            entries = [transparency.entry(r, identity) for r in rows_page]
            n = len(entries)
        audit.serialize_writes(session)
        audit.record(session, caller.actor, "transparency.read", f"tenant:{tenant_id}", {"entries": n, "via": "api"})
    if format == "csv":
        return Response(body, media_type="text/csv; charset=utf-8")
    last = rows_page[-1] if len(rows_page) == limit else None
    cursor = f"{last.ts.isoformat()}|{last.access_id}" if last is not None else None
    return TransparencyPage(tenant_id=tenant_id, entries=entries, next=cursor)


@router.get("/tenants/{tenant_id}/transparency", response_class=HTMLResponse, include_in_schema=False)
def log_page(request: Request, tenant_id: str, caller: PageViewer, only: str = "") -> Any:
    """The log as a page: the latest staff accesses first, optionally only the unjustified ones."""
    ctx = ctx_of(request)
    identity = transparency.identity_from(ctx.settings)
    with ctx.session() as session, session.begin():
        rows = transparency.latest(session, tenant_id, limit=500, unjustified_only=only == "unjustified")
        entries = [transparency.entry(r, identity) for r in rows]
        audit.serialize_writes(session)
        audit.record(session, caller.actor, "transparency.read", f"tenant:{tenant_id}", {"entries": len(entries)})
    return ctx.page(request, "transparency.html", caller, tenant_id=tenant_id, entries=entries, only=only)
