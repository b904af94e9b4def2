"""The breach register and each breach's decisions in the JSON API (``/api``): read the register
and one breach's record, export it, and record the register's account, a moment, a risk-of-harm
assessment, a law-enforcement delay and its end, a safe-harbour decision or missing contact
details. Roles as in the console; every change is audited by the domain function it calls."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from breachwatch.console.api import Viewer, api_user
from breachwatch.console.context import ROLE_FOR, Caller, ctx_of
from breachwatch.core.clock import utcnow
from breachwatch.notifier.notices import NoticeError
from breachwatch.notifier.notices import decisions as dec
from breachwatch.notifier.register import entries, export
from breachwatch.storage import audit

router = APIRouter(prefix="/api", tags=["breach register"])
Writer = Annotated[Caller, api_user(ROLE_FOR["write_register"])]
Exporter = Annotated[Caller, api_user(ROLE_FOR["export_register"])]
ContactsRecorder = Annotated[Caller, api_user(ROLE_FOR["record_contacts"])]
MomentRecorder = Annotated[Caller, api_user(ROLE_FOR["record_moment"])]
Assessor = Annotated[Caller, api_user(ROLE_FOR["assess_harm"])]
DelayRecorder = Annotated[Caller, api_user(ROLE_FOR["record_delay"])]
HarbourDecider = Annotated[Caller, api_user(ROLE_FOR["decide_safe_harbour"])]


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    facts: str | None = Field(default=None, max_length=20000)
    effects: str | None = Field(default=None, max_length=20000)
    remedial_action: str | None = Field(default=None, max_length=20000)


class MomentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    moment: Literal["aware", "determined", "assessed", "material"]
    at: datetime = Field(description="with its time zone offset")
    note: str = Field(default="", max_length=2000)


class FactorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    level: Literal["low", "medium", "high"]
    note: str = Field(default="", max_length=2000)


class AssessmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant_id: str = Field(max_length=128)
    jurisdiction: str = Field(max_length=16)
    owner: Literal["vendor", "customer"] = Field(description="whose decision this is")
    factors: dict[str, FactorIn] = Field(default_factory=dict, description="factor -> level and note")
    decision: Literal["notify", "no_notify"]
    reasons: str = Field(default="", max_length=2000, description="required not to notify")
    waive: list[str] | None = Field(default=None, max_length=200, description="duties a no-notify decision covers")


class DelayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requested_by: Literal["law_enforcement", "attorney_general"] = "law_enforcement"
    agency: str = Field(max_length=2000)
    official: str = Field(max_length=2000, description="who asked")
    form: Literal["written", "oral"]
    requested_at: datetime
    until: datetime | None = Field(default=None, description="none: until the agency says notice may go ahead")
    reference: str = Field(default="", max_length=2000)


class LiftIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at: datetime | None = Field(default=None, description="when the agency said notice may go ahead; none: now")
    note: str = Field(default="", max_length=2000)


class SafeHarbourIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant_id: str = Field(max_length=128)
    applies: bool
    encrypted_resource_types: list[str] | None = Field(default=None, max_length=200)
    reason: str = Field(max_length=2000)


class ContactGapIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant_id: str = Field(max_length=128)
    missing: int = Field(ge=0, le=10_000_000_000)
    note: str = Field(default="", max_length=2000)


def _change(request: Request, write: Callable[[Session], Any]) -> Any:
    """Run one change in its own transaction: 404 for an unknown breach, 422 for a refused one."""
    try:
        with ctx_of(request).session() as session, session.begin():
            audit.serialize_writes(session)
            return write(session)
    except LookupError as exc:
        raise HTTPException(status_code=404, detail=str(exc)[:300]) from None
    except (NoticeError, ValueError) as exc:
        raise HTTPException(status_code=422, detail=str(exc)[:300]) from None


@router.get("/register")
def register(request: Request, caller: Viewer, notified: bool | None = Query(None)) -> dict[str, Any]:
    """Every confirmed breach (only those notified, or not, if asked)."""
    with ctx_of(request).session() as session:
        return {"entries": entries.entries(session, notified=notified)}


@router.get("/register/export")
def register_export(request: Request, caller: Exporter, format: Literal["json", "csv"] = "json") -> Response:
    """The whole register as JSON or CSV (the export is audited)."""
    with ctx_of(request).session() as session, session.begin():
        body, _ = export.audited_export(session, caller.actor, format, "api")
    return Response(body, media_type=export.MEDIA_TYPES[format])


@router.get("/register/hipaa-logs")
def hipaa_logs(request: Request, caller: Viewer) -> list[dict[str, Any]]:
    """HIPAA's annual logs: breaches under 500 per covered entity and local year, with the report due."""
    with ctx_of(request).session() as session:
        return entries.hipaa_annual_logs(session)


@router.get("/incidents/{incident_id}/breach-record")
def breach_record(request: Request, incident_id: str, caller: Viewer) -> dict[str, Any]:
    """One confirmed breach's register entry."""
    with ctx_of(request).session() as session:
        try:
            return entries.entry(session, incident_id)
        except LookupError as exc:
            raise HTTPException(status_code=404, detail=str(exc)[:300]) from None


@router.put("/incidents/{incident_id}/breach-record")
def write_account(request: Request, incident_id: str, body: AccountIn, caller: Writer) -> dict[str, Any]:
    """Write the register's account: facts, effects, remedial action."""
    return _change(request, lambda s: entries.write(s, incident_id, by=caller.actor, **body.model_dump()))


@router.post("/incidents/{incident_id}/moments")
def record_moment(request: Request, incident_id: str, body: MomentIn, caller: MomentRecorder) -> dict[str, Any]:
    """Record awareness, a determination, the end of an assessment or materiality."""
    settings = ctx_of(request).settings
    return _change(
        request,
        lambda s: dec.record_moment(
            s, incident_id, body.moment, body.at, by=caller.actor, note=body.note, settings=settings
        ),
    )


@router.post("/incidents/{incident_id}/assessments", status_code=201)
def record_assessment(request: Request, incident_id: str, body: AssessmentIn, caller: Assessor) -> dict[str, Any]:
    """Record a risk-of-harm assessment of one tenant's breach in one jurisdiction, and its decision."""
    settings = ctx_of(request).settings
    return _change(
        request,
        lambda s: dec.record_assessment(
            s,
            incident_id,
            body.tenant_id,
            body.jurisdiction,
            owner=body.owner,
            factors={k: v.model_dump() for k, v in body.factors.items()},
            decision=body.decision,
            reasons=body.reasons,
            waive=body.waive,
            by=caller.actor,
            settings=settings,
        ),
    )


@router.post("/incidents/{incident_id}/delays", status_code=201)
def record_delay(request: Request, incident_id: str, body: DelayIn, caller: DelayRecorder) -> dict[str, Any]:
    """Record a request to delay notice; answers with the duties it holds (only those its law allows)."""
    settings = ctx_of(request).settings
    return _change(
        request, lambda s: dec.record_delay(s, incident_id, **body.model_dump(), by=caller.actor, settings=settings)
    )


@router.post("/delays/{delay_id}/lift")
def lift_delay(request: Request, delay_id: str, body: LiftIn, caller: DelayRecorder) -> dict[str, Any]:
    """Record that the agency said notice may go ahead: the held clocks restart."""
    settings = ctx_of(request).settings
    return _change(
        request,
        lambda s: dec.lift_delay(
            s, delay_id, at=body.at or utcnow(), by=caller.actor, note=body.note, settings=settings
        ),
    )


@router.post("/incidents/{incident_id}/safe-harbour")
def safe_harbour(request: Request, incident_id: str, body: SafeHarbourIn, caller: HarbourDecider) -> dict[str, Any]:
    """Decide the encryption safe harbour for one tenant's breach."""
    settings = ctx_of(request).settings
    return _change(
        request,
        lambda s: dec.decide_safe_harbour(
            s,
            incident_id,
            body.tenant_id,
            applies=body.applies,
            encrypted_resource_types=body.encrypted_resource_types,
            reason=body.reason,
            by=caller.actor,
            settings=settings,
        ),
    )


@router.post("/incidents/{incident_id}/contact-gaps")
def contact_gap(request: Request, incident_id: str, body: ContactGapIn, caller: ContactsRecorder) -> dict[str, Any]:
    """Record how many affected people have no usable contact details (for substitute notice)."""
    settings = ctx_of(request).settings
    return _change(
        request,
        lambda s: dec.record_contact_gap(
            s, incident_id, body.tenant_id, body.missing, note=body.note, by=caller.actor, settings=settings
        ),
    )
