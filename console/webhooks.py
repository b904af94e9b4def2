"""Webhook receivers on the console: PagerDuty's (``POST /webhooks/pagerduty``). No sign-in:
a delivery is taken only with a valid signature of the subscription's secret, and the answer
says nothing about incidents (202 to any signed delivery, 401 to anything else, and no route
at all while no secret is configured)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from breachwatch.channels.pagerduty import DELIVERY_HEADER, SIGNATURE_HEADER, WebhookEvent, verify_signature
from breachwatch.console.context import ConsoleContext, ctx_of
from breachwatch.notifier.message import one_line
from breachwatch.notifier.paging.inbound import PagerEvent, apply_pager_event
from breachwatch.runtime.app import lifecycle_hooks

log = logging.getLogger(__name__)

PAGERDUTY_PATH = "/webhooks/pagerduty"
# PagerDuty sends at most 256 KB per delivery (one event each).
MAX_BODY = 256 * 1024

router = APIRouter(include_in_schema=False)


def _apply(ctx: ConsoleContext, event: PagerEvent) -> str:
    with Session(ctx.engine) as session, session.begin():
        return apply_pager_event(session, event, on_change=lifecycle_hooks(ctx.settings))


@router.post(PAGERDUTY_PATH)
async def pagerduty(request: Request) -> Response:
    """One PagerDuty webhook v3 delivery: an acknowledgement or resolution is applied here."""
    ctx = ctx_of(request)
    secrets = [s.strip() for s in (ctx.settings.secret("pagerduty_webhook_secret") or "").split(",") if s.strip()]
    if not secrets:
        raise HTTPException(status_code=404)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        return Response(status_code=413)
    body = await request.body()
    if len(body) > MAX_BODY:
        return Response(status_code=413)
    if not verify_signature(secrets, body, request.headers.get(SIGNATURE_HEADER, "")):
        return Response(status_code=401)
    try:
        event = WebhookEvent.parse(body)
    except ValueError:
        return Response(status_code=400)
    delivery = one_line(request.headers.get(DELIVERY_HEADER) or event.event_id, 128)
    if not delivery:
        return Response(status_code=400)
    pager = PagerEvent("pagerduty", delivery, event.event_type, event.incident_key, event.incident, event.agent)
    outcome = await run_in_threadpool(_apply, ctx, pager)
    log.info("PagerDuty delivery %s (%s): %s", delivery, event.event_type, outcome)
    return Response(status_code=202)
