"""The server-rendered pages: sign-in, the incident list, the incident page with its
actions, silences, notices and the audit log. Thin: parse the form, call one domain
function, then redirect with a message for the next page (post, redirect, get)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.console.chart import gauge_svg, series_svg
from breachwatch.console.context import Caller, ConsoleContext, ctx_of, may, page_user
from breachwatch.console.notice_state import queue_state
from breachwatch.console.security import SESSION_LIFETIME, security_headers
from breachwatch.console.words import distinct_reasons
from breachwatch.core.attack import techniques_of
from breachwatch.core.clock import utcnow
from breachwatch.incidents import lifecycle, people, queries, users
from breachwatch.incidents.lifecycle import ACTIONS, TRANSITIONS, IncidentNotFound, LifecycleError
from breachwatch.incidents.model import CLOSED_STATUSES, STATUSES
from breachwatch.incidents.priority import priority
from breachwatch.incidents.tables import IncidentRow
from breachwatch.incidents.trigger import trigger
from breachwatch.notifier import notices as notices_mod
from breachwatch.notifier import timeline
from breachwatch.notifier.paging import silences
from breachwatch.notifier.paging.silences import SilenceError
from breachwatch.runtime.app import breach_hooks, lifecycle_hooks
from breachwatch.storage import audit

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)

ACTION_LABELS: dict[str, str] = {
    "acknowledge": "Acknowledge",
    "investigate": "Start investigating",
    "contain": "Mark contained",
    "resolve": "Resolve",
    "false_positive": "False positive",
    "reopen": "Reopen",
}
# Messages shown after a redirect; the query string only ever names one of these keys, so
# nothing a link carries is shown to the user as text.
DONE: dict[str, str] = {
    "acknowledge": "Acknowledged: you are handling this incident.",
    "investigate": "Marked as under investigation.",
    "contain": "Marked contained.",
    "resolve": "Resolved.",
    "false_positive": "Marked a false positive.",
    "reopen": "Reopened.",
    "breach": "Breach confirmed. The awareness time is recorded.",
    "merged": "Incidents merged into this one.",
    "split": "Findings split off into a new incident.",
    "silenced": "Silence added. Matching incidents are recorded but not paged until it ends.",
    "expired": "Silence ended.",
    "approved": "Notice approved: its messages are sealed and queued.",
    "approval_recorded": "Approval recorded. The notice needs another approver before it is sent.",
    "outcome_sent": "Recorded: the message arrived.",
    "outcome_resending": "The message will be sent again.",
    "outcome_not_resent": "Not sent again: its version was superseded or withdrawn; the current version goes out.",
}


Viewer = Annotated[Caller, page_user("viewer")]
Responder = Annotated[Caller, page_user("responder")]
Admin = Annotated[Caller, may("audit")]
Confirmer = Annotated[Caller, may("confirm_breach")]
NoticeApprover = Annotated[Caller, may("approve_notice")]
NoticeReader = Annotated[Caller, may("preview_notice")]
EVIDENCE_PAGE = 50


def _see(path: str, done: str | None = None, *, error: str | None = None, ctx: ConsoleContext | None = None) -> Any:
    """Redirect to ``path``; ``done`` (a key of DONE) or ``error`` is shown once on the next page."""
    response = RedirectResponse(path, status_code=303)
    if ctx is not None and (done or error):
        ctx.flash(response, error if error else DONE.get(done or "", ""), "error" if error else "ok")
    return response


def _linker(base: dict[str, Any]) -> Callable[..., str]:
    """Links to the same list with some parameters changed; empty ones are left out."""

    def query(**changes: Any) -> str:
        return "?" + urlencode({k: v for k, v in {**base, **changes}.items() if v not in ("", None)})

    return query


def _incident_url(incident_id: str) -> str:
    return f"/incidents/{quote(incident_id, safe='')}"


def _safe_next(value: str | None) -> str:
    # Only a path on this site: "//evil.example" or "https://..." would leave it.
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/incidents"


def _client(request: Request) -> str:
    return ctx_of(request).client_address(request)


# --- sign-in ------------------------------------------------------------------------------------


def _seconds(wait: int) -> str:
    return f"{wait} second{'s' if wait != 1 else ''}" if wait < 120 else f"{wait // 60} minutes"


def _signin_page(request: Request, ctx: ConsoleContext, *, error: str = "", status: int = 200, **extra: str) -> Any:
    token, cookie = ctx.signer.signin_token(request.cookies.get(ctx.cookies.signin))
    response = ctx.page(
        request,
        "signin.html",
        None,
        status=status,
        signin_token=token,
        error=error,
        next=_safe_next(request.query_params.get("next") or extra.get("next")),
        username=extra.get("username", ""),
    )
    response.set_cookie(
        ctx.cookies.signin,
        cookie,
        max_age=1800,
        httponly=True,
        secure=ctx.secure,
        samesite="strict",
        path="/",
    )
    if "retry_after" in extra:
        response.headers["Retry-After"] = extra["retry_after"]
    return response


@router.get("/signin", response_class=HTMLResponse)
def signin_form(request: Request) -> Any:
    ctx = ctx_of(request)
    if ctx.caller(request) is not None:
        return _see(_safe_next(request.query_params.get("next")))
    return _signin_page(request, ctx)


@router.post("/signin", response_class=HTMLResponse)
def signin(
    request: Request,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    signin_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=500)] = "/incidents",
) -> Any:
    ctx = ctx_of(request)
    username = username.strip().lower()
    address = _client(request)
    if not ctx.signer.signin_token_ok(request.cookies.get(ctx.cookies.signin), signin_token):
        return _signin_page(
            request, ctx, error="The sign-in form expired. Please try again.", status=400, next=next, username=username
        )
    # Counted before the password is checked, so parallel guesses cannot all slip through.
    wait = ctx.throttle.reserve(username, address)
    if wait is not None:
        with ctx.session() as session, session.begin():
            audit.serialize_writes(session)
            audit.record(session, username or "(blank)", "signin.throttled", f"user:{username}", {"address": address})
        return _signin_page(
            request,
            ctx,
            error=f"Too many sign-in attempts. Try again in {_seconds(wait)}.",
            status=429,
            next=next,
            username=username,
            retry_after=str(wait),
        )
    with ctx.session() as session, session.begin():
        audit.serialize_writes(session)
        user = users.authenticate(session, username, password, hasher=ctx.hasher)
        if user is None:
            audit.record(session, username or "(blank)", "signin.failed", f"user:{username}", {"address": address})
            sid = None
        else:
            sid, _ = users.start_session(session, user.username, lifetime=SESSION_LIFETIME)
            audit.record(session, user.username, "signin", f"user:{user.username}", {"address": address})
    if sid is None:
        return _signin_page(
            request, ctx, error="Wrong user name or password.", status=401, next=next, username=username
        )
    ctx.throttle.succeeded(username, address)
    response = _see(_safe_next(next))
    response.set_cookie(
        ctx.cookies.session,
        ctx.signer.session_cookie(sid),
        max_age=int(SESSION_LIFETIME.total_seconds()),
        httponly=True,
        secure=ctx.secure,
        samesite="strict",
        path="/",
    )
    response.delete_cookie(ctx.cookies.signin, path="/", secure=ctx.secure, httponly=True, samesite="strict")
    return response


@router.post("/signout")
def signout(request: Request, caller: Viewer, csrf: Annotated[str, Form(max_length=200)] = "") -> Any:
    ctx = ctx_of(request)
    ctx.check_csrf(caller, csrf)
    sid = ctx.signer.session_id(request.cookies.get(ctx.cookies.session))
    with ctx.session() as session, session.begin():
        audit.serialize_writes(session)
        if sid:
            users.end_session(session, sid)
        audit.record(session, caller.actor, "signout", f"user:{caller.principal.username}", {})
    response = _see("/signin")
    response.delete_cookie(ctx.cookies.session, path="/", secure=ctx.secure, httponly=True, samesite="strict")
    return response


# --- incidents ----------------------------------------------------------------------------------


@router.get("/", include_in_schema=False)
def home(caller: Viewer) -> Any:
    return _see("/incidents")


@router.get("/incidents", response_class=HTMLResponse)
def incident_list(
    request: Request,
    caller: Viewer,
    status: str = queries.ACTIVE,
    severity: str = "",
    kind: str = "",
    tenant: str = "",
    q: str = "",
    sort: str = "priority",
    order: str = "desc",
    mine: bool = False,
    page: int = 1,
    per_page: int = 50,
) -> Any:
    ctx = ctx_of(request)
    per_page = max(10, min(per_page, 200))
    flt = queries.IncidentFilter(
        status=status,
        severity=severity,
        kind=kind,
        tenant=tenant,
        q=q,
        sort=sort,
        descending=order != "asc",
        limit=per_page,
        offset=(max(page, 1) - 1) * per_page,
    ).normalised()
    with ctx.session() as session:
        only = people.mine(session, caller.principal.username) if mine else None
        result = queries.list_incidents(session, flt, only=only)
        held = people.assignees(session, [i.incident_id for i in result.items])
    pages = max(1, -(-result.total // per_page))
    base = {
        "status": flt.status,
        "severity": flt.severity,
        "kind": flt.kind,
        "tenant": flt.tenant,
        "q": flt.q,
        "sort": flt.sort,
        "order": "desc" if flt.descending else "asc",
        "mine": "1" if mine else "",
        "per_page": per_page if per_page != 50 else "",
    }

    query = _linker(base)

    def sort_link(key: str) -> str:
        """The column's link: by it, highest first; again to reverse."""
        descending = not (flt.sort == key and flt.descending)
        return query(sort=key, order="desc" if descending else "asc", page="")

    return ctx.page(
        request,
        "incidents.html",
        caller,
        result=result,
        flt=flt,
        mine=mine,
        held=held,
        statuses=STATUSES,
        closed=CLOSED_STATUSES,
        page=min(max(page, 1), pages),
        pages=pages,
        query=query,
        sort_link=sort_link,
        active_count=sum(n for s, n in result.by_status.items() if s not in CLOSED_STATUSES),
    )


def _incident_or_404(session: Session, incident_id: str) -> IncidentRow:
    row = session.get(IncidentRow, incident_id)
    if row is None:
        raise IncidentNotFound(incident_id)
    return row


def _correlated(session: Session, incident: IncidentRow, links: list[Any]) -> list[str]:
    """Open incidents one finding tied to this one: offered in the merge form, a person decides."""
    out: list[str] = []
    for link in links:
        if link.kind != "correlated":
            continue
        other = link.related_id if link.incident_id == incident.incident_id else link.incident_id
        row = session.get(IncidentRow, other)
        if row is not None and row.status not in CLOSED_STATUSES:
            out.append(other)
    return out


def _incident_values(session: Session, caller: Caller, incident: IncidentRow, suppress_days: int) -> dict[str, Any]:
    findings = queries.findings(session, incident.incident_id)
    fired = trigger(session, incident)
    now = utcnow()
    notices = notices_mod.list_notices(session, incident.incident_id, now=now)
    links = lifecycle.links(session, incident.incident_id)
    breach = lifecycle.breach(session, incident.incident_id)
    return {
        "incident": incident,
        "findings": findings,
        "reasons": distinct_reasons(incident.reasons or []),
        "playbooks": queries.playbooks(findings),
        "trigger": fired,
        "chart": series_svg(fired.series, incident.severity),
        "gauges": [(g, gauge_svg(g)) for g in fired.gauges],
        "attack": techniques_of([incident.kind, *(f.kind for f in findings)]),
        "timeline": timeline.build(session, incident),
        "actions": [a for a in ACTIONS if incident.status in TRANSITIONS[a][1]],
        "action_labels": ACTION_LABELS,
        "assignment": people.assignee(session, incident.incident_id),
        "comments": people.comments(session, incident.incident_id),
        "tasks": people.tasks(session, incident.incident_id, findings),
        "team": [u.username for u in users.list_users(session) if not u.disabled],
        "priority": priority(incident, now=now, breach=breach is not None),
        "breach": breach,
        "links": links,
        "merge_suggestion": ", ".join(_correlated(session, incident, links)),
        "related": lifecycle.related_by_address(session, incident),
        "silence": silences.is_silenced(session, incident),
        "silence_key": _silence_key(incident),
        "suppression": lifecycle.suppression_state(session, incident, timedelta(days=suppress_days)),
        "notices": [
            (n, queue_state(session, n, caller.actor if caller.may("approve_notice") else None, now)) for n in notices
        ],
        "closed": incident.status in CLOSED_STATUSES,
        "now": now,
    }


def _silence_key(incident: IncidentRow) -> tuple[str, str]:
    """What the incident is grouped on, which its silence form matches by default: the
    attacking network of a network incident, else the actor, else the address."""
    kind, _, value = (incident.group_key or "").partition(":")
    if kind == "net" and value:
        return "ip", value
    if kind == "ip" and value:
        return "ip", value
    if incident.actor_ids:
        return "actor", incident.actor_ids[0]
    return "kind", incident.kind


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident_page(
    request: Request, incident_id: str, caller: Viewer, ev: int = 1, ev_sort: str = "ts", ev_order: str = "asc"
) -> Any:
    ctx = ctx_of(request)
    with ctx.session() as session, session.begin():
        incident = session.get(IncidentRow, incident_id)
        if incident is None:
            return ctx.page(request, "error.html", caller, status=404, title="No such incident", message="")
        total = queries.evidence_count(session, incident_id)
        pages = max(1, -(-total // EVIDENCE_PAGE))
        ev = min(max(ev, 1), pages)
        evidence = queries.evidence_lines(
            session,
            incident_id,
            EVIDENCE_PAGE,
            offset=(ev - 1) * EVIDENCE_PAGE,
            sort=ev_sort,
            descending=ev_order == "desc",
        )
        # Opening the page shows the evidence: who saw it is part of the record (policy 6.1),
        # and the page's own timeline already shows this view.
        audit.serialize_writes(session)
        audit.record(
            session,
            caller.actor,
            "evidence.view",
            lifecycle.subject(incident_id),
            {"events": len(evidence), "via": "console"},
        )
        values = _incident_values(session, caller, incident, ctx.settings.false_positive_suppress_days)
        logins = queries.incident_logins(session, incident_id)
    ev_sort = ev_sort if ev_sort in queries.EVIDENCE_SORTS else "ts"

    def ev_link(**changes: Any) -> str:
        merged = {"ev": ev, "ev_sort": ev_sort, "ev_order": ev_order, **changes}
        return "?" + urlencode(merged) + "#evidence"

    return ctx.page(
        request,
        "incident.html",
        caller,
        evidence=evidence,
        evidence_total=total,
        logins=logins,
        ev=ev,
        ev_pages=pages,
        ev_sort=ev_sort,
        ev_order=ev_order,
        ev_link=ev_link,
        **values,
    )


def _refused(ctx: ConsoleContext, incident_id: str, message: str) -> Any:
    """Back to the incident page, saying why the change was refused (post, redirect, get)."""
    return _see(_incident_url(incident_id), error=message, ctx=ctx)


@router.post("/incidents/{incident_id}/actions/{action}")
def incident_action(
    request: Request,
    incident_id: str,
    action: str,
    caller: Responder,
    reason: Annotated[str, Form(max_length=2000)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Any:
    ctx = ctx_of(request)
    ctx.check_csrf(caller, csrf)
    if action not in TRANSITIONS or not caller.may(action):
        return ctx.page(request, "error.html", caller, status=404, title="No such action", message="")
    try:
        with ctx.session() as session, session.begin():
            lifecycle.transition(
                session, incident_id, action, caller.actor, reason, on_change=lifecycle_hooks(ctx.settings)
            )
            if action == "acknowledge":
                people.take_if_unassigned(session, incident_id, caller.principal.username, caller.actor)
    except IncidentNotFound:
        return ctx.page(request, "error.html", caller, status=404, title="No such incident", message="")
    except LifecycleError as exc:
        return _refused(ctx, incident_id, str(exc))
    return _see(_incident_url(incident_id), action, ctx=ctx)


@router.post("/incidents/{incident_id}/breach")
def confirm_breach(
    request: Request,
    incident_id: str,
    caller: Confirmer,
    reason: Annotated[str, Form(max_length=2000)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Any:
    ctx = ctx_of(request)
    ctx.check_csrf(caller, csrf)
    try:
        with ctx.session() as session, session.begin():
            lifecycle.confirm_breach(
                session,
                incident_id,
                caller.actor,
                reason,
                on_confirmed=breach_hooks(ctx.settings),
                on_change=lifecycle_hooks(ctx.settings),
            )
    except IncidentNotFound:
        return ctx.page(request, "error.html", caller, status=404, title="No such incident", message="")
    except LifecycleError as exc:
        return _refused(ctx, incident_id, str(exc))
    return _see(_incident_url(incident_id), "breach", ctx=ctx)


@router.post("/incidents/{incident_id}/merge")
def merge(
    request: Request,
    incident_id: str,
    caller: Responder,
    source_ids: Annotated[str, Form(max_length=2000)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Any:
    ctx = ctx_of(request)
    ctx.check_csrf(caller, csrf)
    ids = [s.strip() for s in source_ids.replace(",", " ").split() if s.strip()]
    try:
        with ctx.session() as session, session.begin():
            lifecycle.merge(session, incident_id, ids, caller.actor, reason, on_change=lifecycle_hooks(ctx.settings))
    except IncidentNotFound as exc:
        return _refused(ctx, incident_id, f"No incident {str(exc)[:64]}.")
    except LifecycleError as exc:
        return _refused(ctx, incident_id, str(exc))
    return _see(_incident_url(incident_id), "merged", ctx=ctx)


@router.post("/incidents/{incident_id}/split")
async def split(request: Request, incident_id: str, caller: Responder) -> Any:
    ctx = ctx_of(request)
    form = await request.form()
    ctx.check_csrf(caller, str(form.get("csrf") or ""))
    finding_ids = [str(v) for v in form.getlist("finding_id")][:1000]
    reason = str(form.get("reason") or "")[:2000]
    try:
        with ctx.session() as session, session.begin():
            new = lifecycle.split(
                session, incident_id, finding_ids, caller.actor, reason, on_change=lifecycle_hooks(ctx.settings)
            )
            new_id = new.incident_id
    except IncidentNotFound:
        return ctx.page(request, "error.html", caller, status=404, title="No such incident", message="")
    except LifecycleError as exc:
        return _refused(ctx, incident_id, str(exc))
    return _see(_incident_url(new_id), "split", ctx=ctx)


@router.post("/incidents/{incident_id}/silence")
def silence_incident(
    request: Request,
    incident_id: str,
    caller: Responder,
    reason: Annotated[str, Form(max_length=2000)] = "",
    hours: Annotated[float, Form(gt=0, le=24 * 90)] = 24,
    match_actor: Annotated[str, Form(max_length=10)] = "",
    match_tenant: Annotated[str, Form(max_length=10)] = "",
    match_kind: Annotated[str, Form(max_length=10)] = "",
    match_ip: Annotated[str, Form(max_length=10)] = "",
    match_address: Annotated[str, Form(max_length=10)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Any:
    ctx = ctx_of(request)
    ctx.check_csrf(caller, csrf)
    try:
        with ctx.session() as session, session.begin():
            incident = _incident_or_404(session, incident_id)
            key_kind, key = _silence_key(incident)
            # The incident's own network (or address) unless one address was asked for.
            ip = key if match_ip and key_kind == "ip" else None
            if match_address and incident.source_ips:
                ip = incident.source_ips[0]
            silences.add(
                session,
                caller.actor,
                reason,
                utcnow() + timedelta(hours=hours),
                actor_id=incident.actor_ids[0] if match_actor and incident.actor_ids else None,
                tenant_id=incident.tenant_ids[0] if match_tenant and incident.tenant_ids else None,
                kind=incident.kind if match_kind else None,
                ip=ip,
            )
    except IncidentNotFound:
        return ctx.page(request, "error.html", caller, status=404, title="No such incident", message="")
    except SilenceError as exc:
        return _refused(ctx, incident_id, str(exc))
    return _see(_incident_url(incident_id), "silenced", ctx=ctx)


# --- silences -----------------------------------------------------------------------------------


@router.get("/silences", response_class=HTMLResponse)
def silence_list(request: Request, caller: Viewer, include_ended: bool = False) -> Any:
    ctx = ctx_of(request)
    with ctx.session() as session:
        rows = silences.list_silences(session, include_ended=include_ended)
    return ctx.page(request, "silences.html", caller, silences=rows, include_ended=include_ended, now=utcnow())


@router.post("/silences")
def silence_add(
    request: Request,
    caller: Responder,
    reason: Annotated[str, Form(max_length=2000)] = "",
    hours: Annotated[float, Form(gt=0, le=24 * 90)] = 24,
    actor_id: Annotated[str, Form(max_length=128)] = "",
    tenant_id: Annotated[str, Form(max_length=128)] = "",
    kind: Annotated[str, Form(max_length=64)] = "",
    ip: Annotated[str, Form(max_length=64)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Any:
    ctx = ctx_of(request)
    ctx.check_csrf(caller, csrf)
    try:
        with ctx.session() as session, session.begin():
            silences.add(
                session,
                caller.actor,
                reason,
                utcnow() + timedelta(hours=hours),
                actor_id=actor_id,
                tenant_id=tenant_id,
                kind=kind,
                ip=ip,
            )
    except SilenceError as exc:
        return _see("/silences", error=str(exc), ctx=ctx)
    return _see("/silences", "silenced", ctx=ctx)


@router.post("/silences/{silence_id}/expire")
def silence_expire(
    request: Request, silence_id: str, caller: Responder, csrf: Annotated[str, Form(max_length=200)] = ""
) -> Any:
    ctx = ctx_of(request)
    ctx.check_csrf(caller, csrf)
    try:
        with ctx.session() as session, session.begin():
            silences.expire(session, silence_id, caller.actor)
    except SilenceError as exc:
        return _see("/silences", error=str(exc), ctx=ctx)
    return _see("/silences", "expired", ctx=ctx)


# --- notices ------------------------------------------------------------------------------------


@router.get("/notices/{notice_id}/preview", response_class=HTMLResponse)
def notice_preview(request: Request, notice_id: str, caller: NoticeReader, incident: str = "") -> Any:
    ctx = ctx_of(request)
    with ctx.session() as session, session.begin():
        try:
            preview = notices_mod.preview_notice(session, notice_id)
        except LookupError:
            return ctx.page(request, "error.html", caller, status=404, title="No such notice", message="")
        audit.serialize_writes(session)
        audit.record(session, caller.actor, "notice.preview", f"notice:{notice_id}", {"via": "console"})
    back = _incident_url(incident) if incident else "/incidents"
    return ctx.page(
        request,
        "notice_preview.html",
        caller,
        notice_id=notice_id,
        subject=str(preview.get("subject", "")),
        text=str(preview.get("text", "")),
        has_html=bool(preview.get("html")),
        draft=preview.get("regulator_draft"),
        back=back,
        incident_id=incident,
    )


@router.get("/notices/{notice_id}/preview.html")
def notice_preview_html(request: Request, notice_id: str, caller: NoticeReader, part: str = "notice") -> Any:
    """The HTML part of the notice, or with ``part=regulator_draft`` of its regulator-report draft."""
    ctx = ctx_of(request)
    with ctx.session() as session:
        try:
            preview = notices_mod.preview_notice(session, notice_id)
        except LookupError:
            return Response(status_code=404)
    source = preview.get("regulator_draft") if part == "regulator_draft" else preview
    if not source:
        return Response(status_code=404)
    html = source.get("html") or ""
    # Served sandboxed with its own policy: the notice's own HTML, never able to run script.
    return HTMLResponse(str(html), headers=security_headers(preview=True))


@router.post("/notices/{notice_id}/approve")
def notice_approve(
    request: Request,
    notice_id: str,
    caller: NoticeApprover,
    incident_id: Annotated[str, Form(max_length=64)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Any:
    ctx = ctx_of(request)
    ctx.check_csrf(caller, csrf)
    refused = notices_mod.NoticeError
    try:
        with ctx.session() as session, session.begin():
            # The notices module records the approval in the audit trail itself.
            audit.serialize_writes(session)
            result = notices_mod.approve_notice(
                session,
                notice_id,
                caller.username,
                confirmer_may_approve_alone=ctx.settings.notice_confirmer_may_approve_alone,
            )
    except LookupError:
        return ctx.page(request, "error.html", caller, status=404, title="No such notice", message="")
    except (refused, ValueError) as exc:
        if incident_id:
            return _refused(ctx, incident_id, str(exc)[:300])
        return ctx.page(request, "error.html", caller, status=409, title="Not approved", message=str(exc)[:300])
    done = "approved" if result["status"] == "approved" else "approval_recorded"
    return _see(_incident_url(incident_id) if incident_id else "/incidents", done, ctx=ctx)


@router.post("/notices/deliveries/{message_id}/outcome")
def notice_delivery_outcome(
    request: Request,
    message_id: str,
    caller: NoticeApprover,
    arrived: Annotated[Literal["yes", "no"], Form()],
    incident_id: Annotated[str, Form(max_length=64)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Any:
    """A person's decision on a notice message whose delivery nobody could confirm."""
    ctx = ctx_of(request)
    ctx.check_csrf(caller, csrf)
    try:
        with ctx.session() as session, session.begin():
            audit.serialize_writes(session)
            outcome = notices_mod.resolve_unknown(session, message_id, arrived=arrived == "yes", by=caller.username)
    except notices_mod.NoticeError as exc:
        if incident_id:
            return _refused(ctx, incident_id, str(exc)[:300])
        return ctx.page(request, "error.html", caller, status=409, title="Not recorded", message=str(exc)[:300])
    return _see(_incident_url(incident_id) if incident_id else "/incidents", f"outcome_{outcome}", ctx=ctx)


# --- audit --------------------------------------------------------------------------------------


AUDIT_PAGE = 100


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    caller: Admin,
    action: str = "",
    who: str = "",
    since: str = "",
    until: str = "",
    verify: bool = False,
    page: int = 1,
) -> Any:
    ctx = ctx_of(request)
    start, end = _day(since), _day(until, end=True)
    page = max(page, 1)
    with ctx.session() as session:
        rows, total = audit.search(
            session,
            actor=who.strip()[:200] or None,
            action=action or None,
            since=start,
            until=end,
            limit=AUDIT_PAGE,
            offset=(page - 1) * AUDIT_PAGE,
        )
        # Verifying reads the whole chain: done when asked, not on every visit.
        check = audit.verify(session) if verify else None
        actions = sorted(set(session.scalars(select(audit.AuditRow.action).distinct())))
        actors = sorted(set(session.scalars(select(audit.AuditRow.actor).distinct().limit(500))))
    base = {"action": action, "who": who, "since": since if start else "", "until": until if end else ""}

    query = _linker(base)

    return ctx.page(
        request,
        "audit.html",
        caller,
        rows=rows,
        total=total,
        page=page,
        pages=max(1, -(-total // AUDIT_PAGE)),
        check=check,
        action=action,
        who=who,
        since=base["since"],
        until=base["until"],
        actions=actions,
        actors=actors,
        query=query,
    )


def _day(value: str, *, end: bool = False) -> datetime | None:
    """A ``YYYY-MM-DD`` day from a date field as the start (or the end) of that UTC day."""
    try:
        day = datetime.strptime(value.strip(), "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return day + timedelta(days=1) if end else day
