"""On-call alerts: when an incident opens, page every on-call address by email through the
outbox, in the same transaction that stores the incident.

The message id is ``stable_id("oncall_alert", incident_id, recipient)``, so a batch that is
processed again (after a crash or a rebalance) finds its alerts already queued and adds none.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from breachwatch.core.events import Tenant
from breachwatch.core.ids import stable_id, unique
from breachwatch.core.settings import ConfigError, Settings
from breachwatch.incidents.tables import EvidenceRow, FindingRow, IncidentRow
from breachwatch.notifier.integrations import ordering_key, team_address
from breachwatch.notifier.message import header_text
from breachwatch.notifier.oncall_context import alert_context, console_link
from breachwatch.notifier.outbox import queue_message
from breachwatch.notifier.render import Rendered, render

log = logging.getLogger(__name__)

MESSAGE_TYPE = "oncall_alert"
ALERT_LOCALE = "en"


def _fallback(incident: IncidentRow, link: str | None) -> Rendered:
    # Used only if the templates fail: a page with the facts this system made itself still
    # goes out, and the incident's transaction is not rolled back over a template bug.
    lines = [
        "BreachWatch opened a security incident; the full alert could not be rendered.",
        f"Incident: {incident.incident_id}",
        f"Kind: {header_text(incident.kind, 64)}   Severity: {header_text(incident.severity, 16).upper()}",
        f"Score: {header_text(incident.score, 16)}/100",
    ]
    if link:
        lines.append(f"Console: {link}")
    subject = f"[BreachWatch] {header_text(incident.severity, 16).upper()} incident {incident.incident_id}"
    return Rendered(subject=subject, text="\n".join(lines) + "\n", html=None, locale=ALERT_LOCALE)


def enqueue_incident_alert(
    session: Session,
    incident: IncidentRow,
    findings: Sequence[FindingRow],
    evidence: Sequence[EvidenceRow],
    tenants: Mapping[str, Tenant],
    settings: Settings,
    *,
    console_url: str | None = None,
) -> int:
    """Queue the on-call alert for a newly opened incident to every ``settings.oncall_emails``
    address, in the caller's transaction; returns how many were newly queued.

    A matching silence holds the page (the incident is still recorded, the suppression
    audited); a queued page starts the escalation clock."""
    from breachwatch.notifier.paging.escalation import first_page_queued
    from breachwatch.notifier.paging.silences import suppress_page

    if sa_inspect(incident).persistent and suppress_page(session, incident) is not None:
        return 0
    console_url = console_url or settings.console_url
    try:
        context = alert_context(incident, findings, evidence, tenants, console_url=console_url)
        rendered = render(MESSAGE_TYPE, ALERT_LOCALE, context)
    except Exception as exc:
        log.error("oncall alert for %s rendered with the fallback: %s", incident.incident_id, type(exc).__name__)
        rendered = _fallback(incident, console_link(console_url, incident.incident_id))
    queued_to: list[str] = []
    for recipient in unique(settings.oncall_emails):
        # An on-call address the mail path cannot use is skipped; the others still get paged.
        if queue_message(
            session,
            message_id=stable_id(MESSAGE_TYPE, incident.incident_id, recipient),
            message_type=MESSAGE_TYPE,
            recipient=recipient,
            rendered=rendered,
            incident_id=incident.incident_id,
            headers={"X-BreachWatch-Severity": header_text(incident.severity, 16)},
        ):
            queued_to.append(recipient)
    queued = len(queued_to) + page_other_channels(session, incident, rendered, settings, MESSAGE_TYPE)
    if queued_to and sa_inspect(incident).persistent:  # escalation tracks stored incidents only
        first_page_queued(session, incident, queued_to)
    return queued


def page_other_channels(
    session: Session, incident: IncidentRow, rendered: Rendered, settings: Settings, message_type: str, step: str = ""
) -> int:
    """Queue a page to the paging channels besides email (Slack, PagerDuty, the webhook), in
    the incident's order on each, so PagerDuty has the trigger before any acknowledgement."""
    team = team_address(settings)
    queued = 0
    for channel in paging_channel_names(settings):
        queued += queue_message(
            session,
            message_id=stable_id(message_type, incident.incident_id, step, channel, team),
            message_type=message_type,
            recipient=team,
            rendered=rendered,
            channel=channel,
            incident_id=incident.incident_id,
            headers={"X-BreachWatch-Severity": header_text(incident.severity, 16)},
            ordering_key=ordering_key(incident.incident_id),
        )
    return queued


def paging_channel_names(settings: Settings) -> list[str]:
    """The paging channels configured besides email (Slack, PagerDuty, a signed webhook), by
    logical name: pages are queued to these, and the adapters that serve them are built from
    the same settings."""
    names = []
    if settings.secret("slack_webhook_url"):
        names.append("slack")
    if settings.secret("pagerduty_routing_key"):
        names.append("pagerduty")
    if settings.webhook_url:
        if not settings.secret("webhook_secret"):
            raise ConfigError("BREACHWATCH_WEBHOOK_SECRET: required when BREACHWATCH_WEBHOOK_URL is set")
        names.append("webhook")
    return names
