"""Changes made in the pager, reflected here: an incident acknowledged or resolved in PagerDuty
is acknowledged or resolved in BreachWatch, through the lifecycle like a change in the console
(the timeline, the audit trail, the change hooks), with PagerDuty and its user as the actor.

Each delivery is recorded once by the pager's delivery id (PagerDuty retries a delivery it
thinks failed), in the transaction that applies it, so a repeat changes nothing. A change the
incident's status does not allow (acknowledging a resolved incident, resolving one resolved
already, as when the change came from here in the first place) is recorded and skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, Session, mapped_column

from breachwatch.core.clock import utcnow
from breachwatch.incidents import lifecycle
from breachwatch.incidents.lifecycle import ChangeHook, IncidentNotFound, LifecycleError
from breachwatch.notifier.message import one_line
from breachwatch.storage import audit
from breachwatch.storage.db import Base, insert_or_ignore

log = logging.getLogger(__name__)

# The pager's event types that change an incident here, and the lifecycle action each is.
ACTIONS = {"incident.acknowledged": "acknowledge", "incident.resolved": "resolve"}
WORDS = {"acknowledge": "acknowledged", "resolve": "resolved"}


class InboundDeliveryRow(Base):
    """One webhook delivery from an outside system, and what it did."""

    __tablename__ = "inbound_deliveries"

    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    event_type: Mapped[str] = mapped_column(String(64))
    incident_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    outcome: Mapped[str] = mapped_column(Text)


@dataclass(frozen=True, slots=True)
class PagerEvent:
    """What a pager reported: which event, about which of our incidents, done by whom."""

    source: str  # "pagerduty"
    delivery_id: str
    event_type: str
    incident_id: str | None  # the dedup key we paged with, i.e. our incident id
    pager_incident: str  # the pager's own number, for the record
    agent: str | None


def apply_pager_event(
    session: Session, event: PagerEvent, *, on_change: Sequence[ChangeHook] = (), now: datetime | None = None
) -> str:
    """Apply one delivery in the caller's transaction; what it did, in words (also stored).
    A delivery seen before does nothing and says so."""
    now = now or utcnow()
    audit.serialize_writes(session)
    row = {
        "source": event.source,
        "delivery_id": event.delivery_id,
        "received_at": now,
        "event_type": event.event_type,
        "incident_id": event.incident_id,
        "outcome": "",
    }
    if not insert_or_ignore(session, InboundDeliveryRow.__table__, row):
        return "repeat delivery, ignored"
    outcome = _apply(session, event, on_change, now)
    stored = session.get(InboundDeliveryRow, (event.source, event.delivery_id))
    if stored is not None:
        stored.outcome = outcome
    return outcome


def _apply(session: Session, event: PagerEvent, on_change: Sequence[ChangeHook], now: datetime) -> str:
    action = ACTIONS.get(event.event_type)
    if action is None:
        return f"{event.event_type}: not reflected"
    if not event.incident_id:
        return "no incident key: not one of our pages"
    who = f"{event.source}:{event.agent}" if event.agent else event.source
    by = f" by {event.agent}" if event.agent else ""
    reason = f"{WORDS[action]} in {event.source} (incident {event.pager_incident}){by}"
    try:
        # A refused change raises before it writes anything, so the delivery is still recorded.
        lifecycle.transition(session, event.incident_id, action, who, reason, at=now, on_change=on_change)
    except IncidentNotFound:
        return "no such incident"
    except LifecycleError as exc:
        outcome = f"not applied: {one_line(exc, 200)}"
        audit.record(
            session,
            who,
            f"incident.{action}.skipped",
            lifecycle.subject(event.incident_id),
            {"via": event.source, "reason": outcome},
            at=now,
        )
        return outcome
    log.info("%s %s incident %s", event.source, WORDS[action], event.incident_id)
    return WORDS[action]
