"""The breach register and each breach's record in the console: the register page (with its
JSON and CSV exports and HIPAA's annual logs) and an incident's breach record, where a person
writes the register's account, records a moment, a risk-of-harm assessment, a law-enforcement
delay (and its end), a safe-harbour decision or missing contact details. Thin: parse the form,
call one domain function, redirect or render; the domain function audits the change."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from breachwatch.console.context import Caller, ctx_of, may
from breachwatch.core.clock import utcnow
from breachwatch.notifier.duties import MOMENTS, REQUESTERS
from breachwatch.notifier.notices import NoticeError, list_notices
from breachwatch.notifier.notices import decisions as dec
from breachwatch.notifier.notices.harm import FACTORS, LEVELS
from breachwatch.notifier.notices.moments import PERSON_MOMENTS
from breachwatch.notifier.register import entries, export
from breachwatch.storage import audit

router = APIRouter(include_in_schema=False)

DONE: dict[str, str] = {
    "written": "The register's account is saved.",
    "moment": "Moment recorded. Duties whose clocks start there were worked out again.",
    "assessed": "Assessment recorded.",
    "delay": "Delay recorded. Only the duties whose law allows it are held back.",
    "lifted": "Delay lifted. The held clocks restarted.",
    "harbour": "Safe-harbour decision recorded.",
    "contacts": "Missing contact details recorded.",
}
Text = Annotated[str, Form(max_length=2000)]
Viewer = Annotated[Caller, may("view")]
Writer = Annotated[Caller, may("write_register")]
Exporter = Annotated[Caller, may("export_register")]
ContactsRecorder = Annotated[Caller, may("record_contacts")]
MomentRecorder = Annotated[Caller, may("record_moment")]
Assessor = Annotated[Caller, may("assess_harm")]
DelayRecorder = Annotated[Caller, may("record_delay")]
HarbourDecider = Annotated[Caller, may("decide_safe_harbour")]


def _record_url(incident_id: str) -> str:
    return f"/incidents/{quote(incident_id, safe='')}/breach-record"


def _done(incident_id: str, done: str) -> RedirectResponse:
    # The query names one of DONE's keys, so nothing a link carries is shown as text.
    return RedirectResponse(f"{_record_url(incident_id)}?done={done}", status_code=303)


def _when(value: str, what: str) -> datetime | None:
    """An RFC 3339 time with an offset from a form, or None for an empty field."""
    value = value.strip()
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise NoticeError(f"{what}: {value[:40]!r} is not a time like 2026-11-24T09:00:00Z") from None
    if moment.tzinfo is None:
        raise NoticeError(f"{what}: give the time zone offset, e.g. 2026-11-24T09:00:00+01:00")
    return moment


def _record_page(
    request: Request, caller: Caller, incident_id: str, *, done: str = "", error: str = "", status: int = 200
) -> Any:
    ctx = ctx_of(request)
    with ctx.session() as session:
        try:
            record = entries.entry(session, incident_id)
        except LookupError:
            return ctx.page(request, "error.html", caller, status=404, title="No confirmed breach", message="")
        notices = list_notices(session, incident_id)
        waivable = {
            (t["tenant_id"], j["code"], owner): dec.waivable(session, incident_id, t["tenant_id"], j["code"], owner)
            for t in record["tenants"]
            for j in t["jurisdictions"]
            for owner in ("vendor", "customer")
        }
    return ctx.page(
        request,
        "breach_record.html",
        caller,
        status=status,
        record=record,
        notices=notices,
        waivable=waivable,
        factors=FACTORS,
        levels=LEVELS,
        person_moments=PERSON_MOMENTS,
        moments_meaning=MOMENTS,
        requesters=REQUESTERS,
        done=DONE.get(done, ""),
        error=error,
    )


def _decide(
    request: Request, caller: Caller, incident_id: str, csrf: str, done: str, write: Callable[[Session], Any]
) -> Any:
    """Run one decision in its own transaction; the record page again, with the error if refused."""
    ctx = ctx_of(request)
    ctx.check_csrf(caller, csrf)
    try:
        with ctx.session() as session, session.begin():
            audit.serialize_writes(session)
            write(session)
    except LookupError as exc:
        return _record_page(request, caller, incident_id, error=str(exc)[:300], status=404)
    except (NoticeError, ValueError) as exc:
        return _record_page(request, caller, incident_id, error=str(exc)[:300], status=422)
    return _done(incident_id, done)


# --- the register -------------------------------------------------------------------------------


@router.get("/register", response_class=HTMLResponse)
def register_page(request: Request, caller: Viewer, notified: str = "") -> Any:
    ctx = ctx_of(request)
    wanted = {"yes": True, "no": False}.get(notified)
    with ctx.session() as session:
        found = entries.entries(session, notified=wanted)
        logs = entries.hipaa_annual_logs(session)
    return ctx.page(request, "register.html", caller, entries=found, logs=logs, notified=notified)


@router.get("/register/export.{fmt}")
def register_export(request: Request, fmt: str, caller: Exporter) -> Any:
    if fmt not in ("json", "csv"):
        return Response(status_code=404)
    with ctx_of(request).session() as session, session.begin():
        body, _ = export.audited_export(session, caller.actor, fmt, "console")
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    media = export.MEDIA_TYPES[fmt]
    return Response(
        body, media_type=media, headers={"Content-Disposition": f'attachment; filename="breach-register-{stamp}.{fmt}"'}
    )


# --- one breach's record ------------------------------------------------------------------------


@router.get("/incidents/{incident_id}/breach-record", response_class=HTMLResponse)
def record_page(request: Request, incident_id: str, caller: Viewer, done: str = "") -> Any:
    return _record_page(request, caller, incident_id, done=done)


@router.post("/incidents/{incident_id}/breach-record/write")
def record_write(
    request: Request,
    incident_id: str,
    caller: Writer,
    facts: Annotated[str, Form(max_length=20000)] = "",
    effects: Annotated[str, Form(max_length=20000)] = "",
    remedial_action: Annotated[str, Form(max_length=20000)] = "",
    csrf: Text = "",
) -> Any:
    return _decide(
        request,
        caller,
        incident_id,
        csrf,
        "written",
        lambda s: entries.write(
            s, incident_id, by=caller.actor, facts=facts, effects=effects, remedial_action=remedial_action
        ),
    )


@router.post("/incidents/{incident_id}/breach-record/moment")
def record_moment(
    request: Request,
    incident_id: str,
    caller: MomentRecorder,
    moment: Text = "",
    at: Text = "",
    note: Text = "",
    csrf: Text = "",
) -> Any:
    settings = ctx_of(request).settings

    def write(session: Session) -> Any:
        when = _when(at, "at")
        if when is None:
            raise NoticeError("at: give the moment's time")
        return dec.record_moment(session, incident_id, moment, when, by=caller.actor, note=note, settings=settings)

    return _decide(request, caller, incident_id, csrf, "moment", write)


@router.post("/incidents/{incident_id}/breach-record/assessment")
async def record_assessment(request: Request, incident_id: str, caller: Assessor) -> Any:
    form = await request.form()
    settings = ctx_of(request).settings

    def field(name: str) -> str:
        return str(form.get(name) or "")[:2000]

    factors = {
        name: {"level": field(f"factor_{name}"), "note": field(f"note_{name}")}
        for name in FACTORS
        if field(f"factor_{name}")
    }
    waive = [str(v) for v in form.getlist("waive")][:200] if field("decision") == "no_notify" else None
    return _decide(
        request,
        caller,
        incident_id,
        field("csrf"),
        "assessed",
        lambda s: dec.record_assessment(
            s,
            incident_id,
            field("tenant_id"),
            field("jurisdiction"),
            owner=field("owner"),
            factors=factors,
            decision=field("decision"),
            reasons=field("reasons"),
            waive=waive or None,
            by=caller.actor,
            settings=settings,
        ),
    )


@router.post("/incidents/{incident_id}/breach-record/delay")
def record_delay(
    request: Request,
    incident_id: str,
    caller: DelayRecorder,
    requested_by: Text = "law_enforcement",
    agency: Text = "",
    official: Text = "",
    form: Text = "written",
    requested_at: Text = "",
    until: Text = "",
    reference: Text = "",
    csrf: Text = "",
) -> Any:
    settings = ctx_of(request).settings

    def write(session: Session) -> Any:
        asked = _when(requested_at, "requested at")
        if asked is None:
            raise NoticeError("requested at: give when the request was made")
        return dec.record_delay(
            session,
            incident_id,
            requested_by=requested_by,
            agency=agency,
            official=official,
            form=form,
            requested_at=asked,
            until=_when(until, "until"),
            reference=reference,
            by=caller.actor,
            settings=settings,
        )

    return _decide(request, caller, incident_id, csrf, "delay", write)


@router.post("/incidents/{incident_id}/breach-record/delay/{delay_id}/lift")
def lift_delay(
    request: Request,
    incident_id: str,
    delay_id: str,
    caller: DelayRecorder,
    at: Text = "",
    note: Text = "",
    csrf: Text = "",
) -> Any:
    settings = ctx_of(request).settings

    def write(session: Session) -> Any:
        when = _when(at, "lifted at") or utcnow()
        return dec.lift_delay(session, delay_id, at=when, by=caller.actor, note=note, settings=settings)

    return _decide(request, caller, incident_id, csrf, "lifted", write)


@router.post("/incidents/{incident_id}/breach-record/safe-harbour")
def record_safe_harbour(
    request: Request,
    incident_id: str,
    caller: HarbourDecider,
    tenant_id: Text = "",
    applies: Text = "",
    encrypted_resource_types: Text = "",
    reason: Text = "",
    csrf: Text = "",
) -> Any:
    settings = ctx_of(request).settings
    types = [t for t in encrypted_resource_types.replace(",", " ").split() if t]
    return _decide(
        request,
        caller,
        incident_id,
        csrf,
        "harbour",
        lambda s: dec.decide_safe_harbour(
            s,
            incident_id,
            tenant_id,
            applies=applies == "yes",
            encrypted_resource_types=types or None,
            reason=reason,
            by=caller.actor,
            settings=settings,
        ),
    )


@router.post("/incidents/{incident_id}/breach-record/contacts")
def record_contacts(
    request: Request,
    incident_id: str,
    caller: ContactsRecorder,
    tenant_id: Text = "",
    missing: Annotated[int, Form(ge=0, le=10_000_000_000)] = 0,
    note: Text = "",
    csrf: Text = "",
) -> Any:
    settings = ctx_of(request).settings
    return _decide(
        request,
        caller,
        incident_id,
        csrf,
        "contacts",
        lambda s: dec.record_contact_gap(
            s, incident_id, tenant_id, missing, note=note, by=caller.actor, settings=settings
        ),
    )
