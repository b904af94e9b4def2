"""Just-in-time approval: the API staff and the ticketing system file access requests with, and
the page a tenant's approver decides them on, reached by the link in the e-mail alone.

The page needs no console account: the link is the credential (``privacy.approvals``): signed,
expiring, one approver's, good for one decision. Showing the page changes nothing (mail
scanners open links); the decision is a POST that must carry a form token bound to a cookie the
page set (SameSite=Strict, so another site cannot post it), from this origin. The page sends no
referrer, and nothing on it loads from elsewhere.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from breachwatch.console.api import api_user
from breachwatch.console.context import CSRF_HEADER, ROLE_FOR, Caller, ConsoleContext, ctx_of
from breachwatch.console.security import security_headers
from breachwatch.core.settings import ConfigError
from breachwatch.notifier.notices import tenant_record
from breachwatch.privacy import approvals
from breachwatch.privacy.approvals import AccessRequestIn, ApprovalError, LinkInvalid
from breachwatch.privacy.staff_mail import file_and_ask
from breachwatch.privacy.transparency import identity_from
from breachwatch.storage import audit

router = APIRouter()
FORM_COOKIE = "bw_access_form"
_LINK_PATH = re.compile(r"/access-requests/[A-Za-z0-9._-]{20,}")
Filer = Annotated[Caller, api_user(ROLE_FOR["file_access_request"])]
Revoker = Annotated[Caller, api_user(ROLE_FOR["revoke_access_approval"])]


class AccessRequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant_id: str = Field(min_length=1, max_length=128)
    staff_ids: list[str] = Field(min_length=1, max_length=20, description="who will access the data")
    purpose: Literal["troubleshooting", "support_on_request", "maintenance", "security"]
    starts_at: datetime
    ends_at: datetime
    ticket_id: str | None = Field(default=None, max_length=128)
    reason: str = Field(default="", max_length=2000, description="what the approver is told, in a sentence or two")
    staff_names: dict[str, str] = Field(default_factory=dict, description="names to show, by staff id")
    request_id: str | None = Field(default=None, max_length=64, description="the ticketing system's own id")


class LinkRedaction(logging.Filter):
    """Keeps approvers' link secrets out of the web server's access log: a path naming one is
    logged as ``/access-requests/[link]`` (the link decides a request until it is used)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _LINK_PATH.sub("/access-requests/[link]", a) if isinstance(a, str) else a for a in record.args
            )
        return True


def redact_links_in_access_log() -> None:
    """Install ``LinkRedaction`` on uvicorn's access log (once)."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, LinkRedaction) for f in logger.filters):
        logger.addFilter(LinkRedaction())


# --- the API ------------------------------------------------------------------------------------


def _caller(request: Request) -> Caller:
    caller = ctx_of(request).caller(request)
    if caller is None:
        raise HTTPException(
            status_code=401, detail="sign in or send a bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    return caller


@router.post("/api/access-requests", status_code=201, tags=["access approval"])
def file(request: Request, body: AccessRequestBody, caller: Filer) -> dict[str, Any]:
    """File a request for staff access to a tenant that requires approval; its approvers are
    e-mailed a link to decide. The request is pending until one of them does."""
    for name, value in (("starts_at", body.starts_at), ("ends_at", body.ends_at)):
        if value.tzinfo is None:
            raise HTTPException(status_code=422, detail=f"{name}: give a time with an offset")
    ctx = ctx_of(request)
    req = AccessRequestIn(
        tenant_id=body.tenant_id,
        staff_ids=tuple(body.staff_ids),
        purpose=body.purpose,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        ticket_id=body.ticket_id,
        reason=body.reason,
        staff_names=body.staff_names,
        request_id=body.request_id,
    )
    try:
        with ctx.session() as session, session.begin():
            row = file_and_ask(session, req, caller.actor, ctx.settings)
            return approvals.as_dict(row)
    except (ApprovalError, ConfigError) as exc:
        raise HTTPException(status_code=409 if isinstance(exc, ApprovalError) else 503, detail=str(exc)) from None


def _may_see(caller: Caller, tenant_id: str) -> None:
    if not caller.principal.may_read_tenant(tenant_id):
        raise HTTPException(status_code=403, detail="this token reads only its own tenant's requests")


@router.get("/api/access-requests", tags=["access approval"])
def list_requests(
    request: Request, tenant_id: Annotated[str | None, Query(max_length=128)] = None
) -> list[dict[str, Any]]:
    """Access requests, newest first: of one tenant (a tenant's token sees only its own)."""
    caller = _caller(request)
    tenant_id = tenant_id or caller.principal.tenant
    if tenant_id is not None:
        _may_see(caller, tenant_id)
    elif not caller.may("view"):
        raise HTTPException(status_code=403, detail="this needs the viewer role")
    with ctx_of(request).session() as session:
        return [approvals.as_dict(r) for r in approvals.requests_of(session, tenant_id)]


@router.get("/api/access-requests/{request_id}", tags=["access approval"])
def get_request(request: Request, request_id: str) -> dict[str, Any]:
    caller = _caller(request)
    with ctx_of(request).session() as session:
        try:
            row = approvals.get(session, request_id)
        except ApprovalError:
            raise HTTPException(status_code=404, detail="no such access request") from None
        _may_see(caller, row.tenant_id)
        return approvals.as_dict(row)


@router.post("/api/access-requests/{request_id}/revoke", tags=["access approval"])
def revoke(request: Request, request_id: str) -> dict[str, Any]:
    """End an approval now: the tenant's own token, or a console user with the approver role."""
    caller = _caller(request)
    ctx = ctx_of(request)
    ctx.check_csrf(caller, request.headers.get(CSRF_HEADER))
    with ctx.session() as session, session.begin():
        try:
            row = approvals.get(session, request_id)
        except ApprovalError:
            raise HTTPException(status_code=404, detail="no such access request") from None
        if caller.principal.tenant != row.tenant_id and not caller.may("revoke_access_approval"):
            raise HTTPException(status_code=403, detail="only the tenant's token or an approver may revoke")
        try:
            approvals.revoke(session, request_id, caller.actor)
        except ApprovalError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        return approvals.as_dict(row)


@router.get("/api/access-requests/{request_id}/audit", tags=["access approval"])
def request_audit(request: Request, request_id: str, caller: Revoker) -> list[dict[str, Any]]:
    """Every audited change of one request (filed, approved or denied, expired, revoked)."""
    with ctx_of(request).session() as session:
        return [
            {"at": r.at.isoformat(), "actor": r.actor, "action": r.action, "detail": r.detail}
            for r in audit.for_subject(session, f"access_request:{request_id}")
        ]


# --- the approver's page -------------------------------------------------------------------------


def _links(ctx: ConsoleContext) -> approvals.ApprovalLinks | None:
    try:
        return approvals.approval_links(ctx.settings)
    except ConfigError:
        return None


def _form_token(ctx: ConsoleContext, cookie: str, request_id: str) -> str:
    key = (ctx.settings.secret("console_secret_key") or "").encode()
    return hmac.new(key, f"access-form\x1f{cookie}\x1f{request_id}".encode(), hashlib.sha256).hexdigest()


def _cookie_name(ctx: ConsoleContext) -> str:
    return f"__Host-{FORM_COOKIE}" if ctx.secure else FORM_COOKIE


def _page(request: Request, status: int = 200, **values: Any) -> Response:
    ctx = ctx_of(request)
    values = {"done": False, "message": "", **values}
    response = ctx.page(request, "access_request.html", None, status=status, **values)
    for name, value in security_headers().items():
        response.headers[name] = value
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _view(ctx: ConsoleContext, row: approvals.AccessRequestRow) -> dict[str, Any]:
    identity = identity_from(ctx.settings)
    names = row.staff_names or {}
    with ctx.session() as session:
        directory = tenant_record(session, row.tenant_id)
    return {
        **approvals.as_dict(row),
        "tenant_name": directory.name if directory else row.tenant_id,
        "staff": [identity.label(row.tenant_id, s, names.get(s), None) for s in row.staff_ids],
    }


def _open(request: Request, token: str) -> tuple[approvals.AccessRequestRow | None, str, Response | None]:
    """The request a link names and its secret's hash, or the page to show instead."""
    links = _links(ctx_of(request))
    if links is None:
        return None, "", _page(request, 503, state="unavailable")
    try:
        request_id, digest = links.read(token)
    except LinkInvalid as exc:
        return None, "", _page(request, 400 if "not valid" in str(exc) else 410, state="bad_link", message=str(exc))
    with ctx_of(request).session() as session:
        try:
            row = approvals.get(session, request_id)
        except ApprovalError:
            return None, "", _page(request, 400, state="bad_link", message="this link is not valid")
    return row, digest, None


@router.get("/access-requests/{token}", response_class=HTMLResponse, include_in_schema=False)
def decision_page(request: Request, token: str) -> Response:
    """The request and, while it waits for this approver, the approve and deny buttons."""
    ctx = ctx_of(request)
    row, digest, shown = _open(request, token)
    if row is None:
        return shown  # type: ignore[return-value]
    state = approvals.state_now(row)
    if state != "pending" or approvals.approver_of(row, digest) is None:
        return _page(request, state=state, ask=_view(ctx, row), token=token)
    # The cookie the browser holds already, if any: a second tab must not void the first's form.
    cookie = request.cookies.get(_cookie_name(ctx)) or secrets.token_urlsafe(24)
    response = _page(
        request, state="pending", ask=_view(ctx, row), token=token, form=_form_token(ctx, cookie, row.request_id)
    )
    response.set_cookie(
        _cookie_name(ctx), cookie, max_age=3600, httponly=True, secure=ctx.secure, samesite="strict", path="/"
    )
    return response


def _same_origin(request: Request) -> bool:
    """A browser's post from this site: Origin (when sent) names this host, and Fetch
    Metadata (when sent) does not say cross-site."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host", ""):
        return False
    return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")


@router.post("/access-requests/{token}", response_class=HTMLResponse, include_in_schema=False)
def decide(
    request: Request,
    token: str,
    decision: Annotated[Literal["approve", "deny"], Form()],
    form: Annotated[str, Form(max_length=128)] = "",
    comment: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Record the approver's decision; the link is used up by it."""
    ctx = ctx_of(request)
    row, digest, shown = _open(request, token)
    if row is None:
        return shown  # type: ignore[return-value]
    if approvals.state_now(row) != "pending" or approvals.approver_of(row, digest) is None:
        return _page(request, 409, state=approvals.state_now(row), ask=_view(ctx, row), token=token)
    cookie = request.cookies.get(_cookie_name(ctx), "")
    if not (cookie and _same_origin(request) and hmac.compare_digest(form, _form_token(ctx, cookie, row.request_id))):
        return _page(request, 403, state="stale_form", ask=_view(ctx, row), token=token)
    try:
        with ctx.session() as session, session.begin():
            decided = approvals.decide(session, row.request_id, digest, decision == "approve", comment=comment)
            view = _view(ctx, decided)
    except LinkInvalid as exc:
        return _page(request, 400, state="bad_link", message=str(exc))
    except ApprovalError:
        with ctx.session() as session:
            now = approvals.get(session, row.request_id)
            return _page(request, 409, state=approvals.state_now(now), ask=_view(ctx, now), token=token)
    response = _page(request, state=view["state"], ask=view, done=True)
    response.delete_cookie(_cookie_name(ctx), path="/", secure=ctx.secure, httponly=True, samesite="strict")
    return response
