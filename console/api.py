"""The JSON API under ``/api``: the console's actions for automation, with bearer tokens
(``Authorization: Bearer bwt_...``) or a browser session plus its CSRF token in
``X-CSRF-Token``. Every endpoint checks the caller's role; every change is audited by the
domain function it calls."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from breachwatch.console.context import CSRF_HEADER, ROLE_FOR, Caller, ctx_of
from breachwatch.core.clock import utcnow
from breachwatch.core.settings import Settings
from breachwatch.incidents import lifecycle, ocsf, people, queries
from breachwatch.incidents.activity import actor_activity
from breachwatch.incidents.lifecycle import IncidentNotFound, LifecycleError
from breachwatch.incidents.model import IncidentOut
from breachwatch.incidents.priority import priority
from breachwatch.incidents.store import IncidentStore
from breachwatch.incidents.tables import IncidentRow
from breachwatch.notifier import notices as notices_module
from breachwatch.notifier import timeline
from breachwatch.notifier.paging import silences
from breachwatch.notifier.paging.silences import SilenceError, SilenceRow
from breachwatch.runtime.app import breach_hooks, lifecycle_hooks
from breachwatch.storage import audit

router = APIRouter(prefix="/api", tags=["incidents"])

Action = Literal["acknowledge", "investigate", "contain", "resolve", "false_positive", "reopen"]


def api_user(role: str = "viewer") -> Any:
    """A dependency: the caller by bearer token or session, holding at least ``role``;
    unsafe methods from a session must carry its CSRF token."""

    def dependency(request: Request) -> Caller:
        ctx = ctx_of(request)
        caller = ctx.caller(request)
        if caller is None:
            raise HTTPException(
                status_code=401, detail="sign in or send a bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        if not caller.can(role):
            raise HTTPException(status_code=403, detail=f"this needs the {role} role")
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            ctx.check_csrf(caller, request.headers.get(CSRF_HEADER))
        return caller

    return Depends(dependency)


Viewer = Annotated[Caller, api_user("viewer")]
Responder = Annotated[Caller, api_user("responder")]
Approver = Annotated[Caller, api_user(ROLE_FOR["approve_notice"])]
Admin = Annotated[Caller, api_user(ROLE_FOR["audit"])]
Confirmer = Annotated[Caller, api_user(ROLE_FOR["confirm_breach"])]
Assigner = Annotated[Caller, api_user(ROLE_FOR["assign"])]
Commenter = Annotated[Caller, api_user(ROLE_FOR["comment"])]


# --- shapes ---------------------------------------------------------------------------------------


class Me(BaseModel):
    username: str
    role: str
    via: str


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=2000, description="why; required except to acknowledge")


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source_ids: list[str] = Field(min_length=1, max_length=100, description="incidents to fold into this one")
    reason: str = Field(max_length=2000)


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    assignee: str = Field(max_length=64, description="a console user name; empty: nobody")
    reason: str = Field(default="", max_length=2000)


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: str = Field(max_length=people.MAX_COMMENT, description="text; @name mentions a console user")


class CommentOut(BaseModel):
    author: str
    at: datetime
    body: str
    mentions: list[str]


class SplitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    finding_ids: list[str] = Field(min_length=1, max_length=1000, description="findings to move to a new incident")
    reason: str = Field(max_length=2000)


class SilenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(max_length=2000)
    ends_at: datetime | None = Field(default=None, description="when it ends; or give duration_minutes")
    duration_minutes: int | None = Field(default=None, gt=0, le=90 * 24 * 60)
    actor_id: str | None = Field(default=None, max_length=128)
    tenant_id: str | None = Field(default=None, max_length=128)
    kind: str | None = Field(default=None, max_length=64)
    ip: str | None = Field(default=None, max_length=64, description="an address or a network (CIDR)")


class SilenceOut(BaseModel):
    silence_id: str
    owner: str
    reason: str
    starts_at: datetime
    ends_at: datetime
    matchers: dict[str, str]
    expired_at: datetime | None
    expired_by: str | None

    @classmethod
    def of(cls, row: SilenceRow) -> SilenceOut:
        return cls(
            silence_id=row.silence_id,
            owner=row.owner,
            reason=row.reason,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            matchers=row.matchers,
            expired_at=row.expired_at,
            expired_by=row.expired_by,
        )


class IncidentList(BaseModel):
    total: int
    by_status: dict[str, int]
    by_severity: dict[str, int]
    items: list[IncidentOut]


class FindingOut(BaseModel):
    finding_id: str
    detector: str
    kind: str
    severity: str
    score: float
    ts: datetime
    title: str
    reasons: list[str]
    playbook: str
    actor_id: str | None
    suppressed: bool = Field(description="attached to this false positive instead of opening and paging an incident")


class SuppressionOut(BaseModel):
    """What marking this incident a false positive holds back: findings of the same actor (or
    attacking address) and kind join it instead of opening and paging a new incident."""

    suppressed_findings: int = Field(description="findings taken in so far, none of them paged")
    marked_at: datetime | None = Field(description="when it was marked a false positive (None: not one now)")
    until: datetime | None = Field(description="event time the suppression ends; None: not suppressing")


class TimelineOut(BaseModel):
    at: datetime
    kind: str
    actor: str
    text: str
    reason: str


class LinkOut(BaseModel):
    incident_id: str
    related_id: str
    kind: str
    created_at: datetime
    created_by: str


class BreachOut(BaseModel):
    confirmed_by: str
    confirmed_at: datetime
    reason: str


class IncidentDetail(BaseModel):
    incident: IncidentOut
    evidence_count: int
    handled_by: str | None
    assignee: str | None
    priority: float = Field(description="0-100: score, data sensitivity, records and waiting time together")
    comments: list[CommentOut]
    findings: list[FindingOut]
    timeline: list[TimelineOut]
    links: list[LinkOut]
    related_by_address: list[str]
    breach: BreachOut | None
    silenced_by: SilenceOut | None
    suppression: SuppressionOut
    facts: dict[str, Any]


class EvidenceOut(BaseModel):
    event_id: str
    topic: str
    ts: datetime
    finding_id: str
    event: dict[str, Any]


class HourOut(BaseModel):
    start: datetime
    value: int
    in_incident: bool
    failures: int


class ActivityOut(BaseModel):
    subject: str
    metric: str
    baseline: float | None
    baseline_label: str
    hours: list[HourOut]


class AuditCheck(BaseModel):
    ok: bool
    rows: int
    head_seq: int | None
    head_hash: str | None
    problems: list[str]
    bad_seqs: list[int]


class NoticeDuty(BaseModel):
    model_config = ConfigDict(extra="allow")
    rule_id: str
    whom: str
    due_at: datetime | str | None = None
    status: str


class NoticeOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    notice_id: str
    tenant_id: str
    locale: str
    status: str
    version: int | str
    subject: str
    duties: list[NoticeDuty] = Field(default_factory=list)


class NoticePreview(BaseModel):
    subject: str
    text: str
    html: str | None


# --- helpers ----------------------------------------------------------------------------------------


def _detail(session: Session, incident: IncidentRow, suppress_days: int) -> IncidentDetail:
    by = lifecycle.handled_by(session, incident.incident_id)
    br = lifecycle.breach(session, incident.incident_id)
    silence = silences.is_silenced(session, incident)
    fp = lifecycle.suppression_state(session, incident, timedelta(days=suppress_days))
    held = people.assignee(session, incident.incident_id)
    return IncidentDetail(
        incident=IncidentStore.to_out(session, incident),
        evidence_count=incident.evidence_count,
        handled_by=by[0] if by else None,
        assignee=held.assignee if held else None,
        priority=priority(incident, breach=br is not None).value,
        comments=[
            CommentOut(author=c.author, at=c.at, body=c.body, mentions=m)
            for c, m in people.comments(session, incident.incident_id)
        ],
        findings=[
            FindingOut(
                finding_id=f.finding_id,
                detector=f.detector,
                kind=f.kind,
                severity=f.severity,
                score=f.score,
                ts=f.ts,
                title=f.title,
                reasons=list(f.reasons or []),
                playbook=f.playbook,
                actor_id=f.actor_id,
                suppressed=f.suppressed,
            )
            for f in queries.findings(session, incident.incident_id)
        ],
        timeline=[
            TimelineOut(at=e.at, kind=e.kind, actor=e.actor, text=e.text, reason=e.reason)
            for e in timeline.build(session, incident)
        ],
        links=[
            LinkOut(
                incident_id=x.incident_id,
                related_id=x.related_id,
                kind=x.kind,
                created_at=x.created_at,
                created_by=x.created_by,
            )
            for x in lifecycle.links(session, incident.incident_id)
        ],
        related_by_address=[r.incident_id for r in lifecycle.related_by_address(session, incident)],
        breach=BreachOut(confirmed_by=br.confirmed_by, confirmed_at=br.confirmed_at, reason=br.reason) if br else None,
        silenced_by=SilenceOut.of(silence) if silence else None,
        suppression=SuppressionOut(suppressed_findings=fp.suppressed_findings, marked_at=fp.marked_at, until=fp.until),
        facts=dict(incident.facts or {}),
    )


def _get(session: Session, incident_id: str) -> IncidentRow:
    row = session.get(IncidentRow, incident_id)
    if row is None:
        raise HTTPException(status_code=404, detail="no such incident")
    return row


def _settings(request: Request) -> Settings:
    return ctx_of(request).settings


def _conflict(exc: Exception) -> HTTPException:
    return HTTPException(status_code=409, detail=str(exc))


def _notices(*functions: str) -> Any:
    """The customer-notices module (the names say which of its functions the endpoint uses)."""
    return notices_module


# --- endpoints ----------------------------------------------------------------------------------------


@router.get("/me", response_model=Me)
def me(caller: Viewer) -> Me:
    """Who the token or session belongs to, and its role."""
    p = caller.principal
    return Me(username=p.username, role=p.role, via="token" if p.via.startswith("token:") else p.via)


@router.get("/incidents", response_model=IncidentList)
def list_incidents(
    request: Request,
    caller: Viewer,
    status: str = Query(queries.ACTIVE, description="active (not closed), all, or one status"),
    severity: str = "",
    kind: str = "",
    tenant: str = "",
    q: str = Query("", description="an incident, actor or tenant id, an address, a network (CIDR), or title words"),
    sort: str = Query("priority", description="priority, severity, score, updated, opened, evidence, status, title"),
    order: Literal["asc", "desc"] = "desc",
    mine: bool = Query(False, description="only incidents assigned to the caller or mentioning them"),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> IncidentList:
    """Incidents, open work first, highest priority first (or as ``sort`` says), with counts per status and severity."""
    flt = queries.IncidentFilter(
        status=status,
        severity=severity,
        kind=kind,
        tenant=tenant,
        q=q,
        sort=sort,
        descending=order == "desc",
        limit=limit,
        offset=offset,
    )
    with ctx_of(request).session() as session:
        only = people.mine(session, caller.principal.username) if mine else None
        page = queries.list_incidents(session, flt, only=only)
        items = [IncidentStore.to_out(session, r) for r in page.items]
    return IncidentList(total=page.total, by_status=page.by_status, by_severity=page.by_severity, items=items)


@router.get("/incidents/{incident_id}", response_model=IncidentDetail)
def get_incident(request: Request, incident_id: str, caller: Viewer) -> IncidentDetail:
    """One incident with its findings, timeline, links, breach record and silence."""
    ctx = ctx_of(request)
    with ctx.session() as session:
        return _detail(session, _get(session, incident_id), ctx.settings.false_positive_suppress_days)


@router.get("/incidents/{incident_id}/evidence", response_model=list[EvidenceOut])
def get_evidence(request: Request, incident_id: str, caller: Viewer) -> list[EvidenceOut]:
    """The incident's evidence events (the view is recorded in the audit trail)."""
    with ctx_of(request).session() as session, session.begin():
        _get(session, incident_id)
        lines = queries.evidence_lines(session, incident_id)
        audit.serialize_writes(session)
        audit.record(
            session, caller.actor, "evidence.view", lifecycle.subject(incident_id), {"events": len(lines), "via": "api"}
        )
    return [
        EvidenceOut(event_id=e.event_id, topic=e.topic, ts=e.ts, finding_id=e.finding_id, event=e.event) for e in lines
    ]


@router.get("/incidents/{incident_id}/activity", response_model=ActivityOut)
def get_activity(request: Request, incident_id: str, caller: Viewer) -> ActivityOut:
    """The actor's hourly activity around the incident and its baseline (the chart's data)."""
    with ctx_of(request).session() as session:
        a = actor_activity(session, _get(session, incident_id))
    return ActivityOut(
        subject=a.subject,
        metric=a.metric,
        baseline=a.baseline,
        baseline_label=a.baseline_label,
        hours=[HourOut(start=h.start, value=h.value, in_incident=h.in_incident, failures=h.failures) for h in a.hours],
    )


@router.get("/incidents/{incident_id}/ocsf")
def get_ocsf(request: Request, incident_id: str, caller: Viewer) -> dict[str, Any]:
    """The incident and its findings as it stands, as an OCSF Detection Finding (class 2004):
    the record the findings topic carries for each change."""
    with ctx_of(request).session() as session:
        incident = _get(session, incident_id)
        findings = queries.findings(session, incident_id)
        return ocsf.detection_finding(incident, findings, breach=lifecycle.breach(session, incident_id))


def _lifecycle_action(
    request: Request,
    incident_id: str,
    write: Callable[[Session], Any],
    not_found: str = "no such incident",
    shows_new: bool = False,
) -> IncidentDetail:
    """Run one lifecycle change in its own transaction and answer with the incident, or with
    the new incident ``write`` returns when ``shows_new`` (a split)."""
    ctx = ctx_of(request)
    try:
        with ctx.session() as session, session.begin():
            result = write(session)
            shown = result.incident_id if shows_new else incident_id
    except IncidentNotFound as exc:
        raise HTTPException(status_code=404, detail=not_found.format(exc=str(exc)[:64])) from None
    except LifecycleError as exc:
        raise _conflict(exc) from None
    with ctx.session() as session:
        return _detail(session, _get(session, shown), ctx.settings.false_positive_suppress_days)


@router.post("/incidents/{incident_id}/confirm-breach", response_model=IncidentDetail)
def confirm_breach(request: Request, incident_id: str, body: ReasonIn, caller: Confirmer) -> IncidentDetail:
    """Record that the caller became aware of a breach now; starts customer notices if installed."""
    settings = ctx_of(request).settings
    return _lifecycle_action(
        request,
        incident_id,
        lambda s: lifecycle.confirm_breach(
            s,
            incident_id,
            caller.actor,
            body.reason or "",
            on_confirmed=breach_hooks(settings),
            on_change=lifecycle_hooks(settings),
        ),
    )


@router.post("/incidents/{incident_id}/merge", response_model=IncidentDetail)
def merge(request: Request, incident_id: str, body: MergeIn, caller: Responder) -> IncidentDetail:
    """Fold other incidents into this one."""
    return _lifecycle_action(
        request,
        incident_id,
        lambda s: lifecycle.merge(
            s, incident_id, body.source_ids, caller.actor, body.reason, on_change=lifecycle_hooks(_settings(request))
        ),
        not_found="no incident {exc}",
    )


@router.post("/incidents/{incident_id}/split", response_model=IncidentDetail, status_code=201)
def split(request: Request, incident_id: str, body: SplitIn, caller: Responder) -> IncidentDetail:
    """Move findings out into a new incident; returns the new incident."""
    return _lifecycle_action(
        request,
        incident_id,
        lambda s: lifecycle.split(
            s, incident_id, body.finding_ids, caller.actor, body.reason, on_change=lifecycle_hooks(_settings(request))
        ),
        shows_new=True,
    )


@router.post("/incidents/{incident_id}/assign", response_model=IncidentDetail)
def assign(request: Request, incident_id: str, body: AssignIn, caller: Assigner) -> IncidentDetail:
    """Assign the incident to a console user (or to nobody); audited with the previous assignee."""
    return _lifecycle_action(
        request, incident_id, lambda s: people.assign(s, incident_id, body.assignee, caller.actor, body.reason)
    )


@router.post("/incidents/{incident_id}/comments", response_model=IncidentDetail, status_code=201)
def add_comment(request: Request, incident_id: str, body: CommentIn, caller: Commenter) -> IncidentDetail:
    """Comment on the incident; ``@name`` mentions a console user (their "mine" list shows it)."""
    return _lifecycle_action(request, incident_id, lambda s: people.comment(s, incident_id, caller.actor, body.body))


@router.post("/incidents/{incident_id}/{action}", response_model=IncidentDetail)
def act(request: Request, incident_id: str, action: Action, body: ReasonIn, caller: Responder) -> IncidentDetail:
    """Acknowledge (which also assigns an unassigned incident to the caller), investigate,
    contain, resolve, mark false positive, or reopen."""

    def change(s: Session) -> Any:
        row = lifecycle.transition(
            s, incident_id, action, caller.actor, body.reason, on_change=lifecycle_hooks(_settings(request))
        )
        if action == "acknowledge":
            people.take_if_unassigned(s, incident_id, caller.principal.username, caller.actor)
        return row

    return _lifecycle_action(request, incident_id, change)


@router.get("/silences", response_model=list[SilenceOut], tags=["silences"])
def list_silences(request: Request, caller: Viewer, include_ended: bool = False) -> list[SilenceOut]:
    """Silences in force (and ended ones, if asked)."""
    with ctx_of(request).session() as session:
        return [SilenceOut.of(r) for r in silences.list_silences(session, include_ended=include_ended)]


@router.post("/silences", response_model=SilenceOut, status_code=201, tags=["silences"])
def add_silence(request: Request, body: SilenceIn, caller: Responder) -> SilenceOut:
    """Silence matching incidents' pages until ``ends_at`` (or for ``duration_minutes``)."""
    now = utcnow()
    if body.ends_at is None and body.duration_minutes is None:
        raise HTTPException(status_code=422, detail="give ends_at or duration_minutes")
    ends_at = body.ends_at or now + timedelta(minutes=body.duration_minutes or 0)
    if ends_at.tzinfo is None:
        raise HTTPException(status_code=422, detail="ends_at needs a time zone offset")
    try:
        with ctx_of(request).session() as session, session.begin():
            row = silences.add(
                session,
                caller.actor,
                body.reason,
                ends_at,
                actor_id=body.actor_id,
                tenant_id=body.tenant_id,
                kind=body.kind,
                ip=body.ip,
                now=now,
            )
            return SilenceOut.of(row)
    except SilenceError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None


@router.post("/silences/{silence_id}/expire", response_model=SilenceOut, tags=["silences"])
def expire_silence(request: Request, silence_id: str, caller: Responder) -> SilenceOut:
    """End a silence now."""
    try:
        with ctx_of(request).session() as session, session.begin():
            return SilenceOut.of(silences.expire(session, silence_id, caller.actor))
    except SilenceError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None


@router.get("/incidents/{incident_id}/notices", response_model=list[NoticeOut], tags=["notices"])
def incident_notices(request: Request, incident_id: str, caller: Viewer) -> list[dict[str, Any]]:
    """The customer notices of an incident (404 when customer notices are not installed)."""
    module = _notices("list_notices")
    with ctx_of(request).session() as session:
        _get(session, incident_id)
        return list(module.list_notices(session, incident_id))


@router.get("/notices/{notice_id}/preview", response_model=NoticePreview, tags=["notices"])
def preview_notice(request: Request, notice_id: str, caller: Responder) -> NoticePreview:
    """The notice as its recipients will see it (the view is audited)."""
    module = _notices("preview_notice")
    with ctx_of(request).session() as session, session.begin():
        try:
            p = module.preview_notice(session, notice_id)
        except LookupError:
            raise HTTPException(status_code=404, detail="no such notice") from None
        audit.serialize_writes(session)
        audit.record(session, caller.actor, "notice.preview", f"notice:{notice_id}", {"via": "api"})
    return NoticePreview(subject=str(p.get("subject", "")), text=str(p.get("text", "")), html=p.get("html"))


@router.post("/notices/{notice_id}/approve", tags=["notices"])
def approve_notice(request: Request, notice_id: str, caller: Approver) -> dict[str, Any]:
    """Approve a notice for sending."""
    module = _notices("approve_notice")
    refused = getattr(module, "NoticeError", ValueError)
    try:
        with ctx_of(request).session() as session, session.begin():
            # The notices module records the approval in the audit trail itself.
            audit.serialize_writes(session)
            result = module.approve_notice(
                session,
                notice_id,
                caller.username,
                confirmer_may_approve_alone=ctx_of(request).settings.notice_confirmer_may_approve_alone,
            )
    except LookupError:
        raise HTTPException(status_code=404, detail="no such notice") from None
    except (refused, ValueError) as exc:
        raise HTTPException(status_code=409, detail=str(exc)[:300]) from None
    return {"notice_id": notice_id, "approved_by": caller.username, "result": result}


class OutcomeIn(BaseModel):
    arrived: bool = Field(description="true: the message reached the recipient; false: it did not (send it again)")


@router.post("/notices/deliveries/{message_id}/outcome", tags=["notices"])
def delivery_outcome(request: Request, message_id: str, body: OutcomeIn, caller: Approver) -> dict[str, str]:
    """Decide a notice message whose delivery the provider could not confirm; a superseded or
    withdrawn version is never sent again."""
    try:
        with ctx_of(request).session() as session, session.begin():
            audit.serialize_writes(session)
            outcome = notices_module.resolve_unknown(session, message_id, arrived=body.arrived, by=caller.username)
    except notices_module.NoticeError as exc:
        raise HTTPException(status_code=409, detail=str(exc)[:300]) from None
    return {"message_id": message_id, "outcome": outcome}


@router.get("/audit/verify", response_model=AuditCheck, tags=["audit"])
def verify_audit(request: Request, caller: Admin) -> AuditCheck:
    """Recompute the audit chain and name every edited or deleted row."""
    with ctx_of(request).session() as session:
        v = audit.verify(session)
    return AuditCheck(
        ok=v.ok,
        rows=v.rows,
        head_seq=v.head_seq,
        head_hash=v.head_hash,
        problems=[str(p) for p in v.problems],
        bad_seqs=v.bad_seqs,
    )
