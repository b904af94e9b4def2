"""Incident changes to the systems security teams work in: the OCSF topic, PagerDuty, Jira and
the generic webhook. ``queue_change`` is the hook the composition root hands the incident
lifecycle and the store: in the change's own transaction it queues one outbox message per
system, ordered per incident, so a change is delivered once it is committed, and in order.

What each system gets:

- ``ocsf``: every change, as the incident's OCSF Detection Finding (``incidents.ocsf``).
- ``pagerduty``: ``acknowledge`` when someone takes an open incident, ``resolve`` when it is
  closed (resolved, false positive, merged away), ``trigger`` when it is reopened and not
  silenced. The first trigger is the incident's first page (``notifier.alerts``).
- ``jira``: every change; the channel opens the incident's issue, comments, and moves it to
  done on closing (back on reopening).
- ``webhook``: every change, as ``incident.<what happened>``.
"""

from __future__ import annotations

import json

from sqlalchemy.orm import Session

from breachwatch.core.ids import stable_id
from breachwatch.core.settings import ConfigError, Settings
from breachwatch.incidents import queries
from breachwatch.incidents.lifecycle import SYSTEM, Change, breach
from breachwatch.incidents.ocsf import CLOSING, detection_finding
from breachwatch.incidents.tables import IncidentRow
from breachwatch.notifier.message import header_text, one_line
from breachwatch.notifier.outbox import queue_message
from breachwatch.notifier.paging.silences import is_silenced
from breachwatch.notifier.render import Rendered

OCSF = "ocsf"
CHANGE_HEADER = "X-BreachWatch-Change"
STATUS_HEADER = "X-BreachWatch-Status"
SEVERITY_HEADER = "X-BreachWatch-Severity"
PAGE_ACTION_HEADER = "X-BreachWatch-Page-Action"
# A pager alert of the message's own, apart from the incident's (a notice deadline's pages).
DEDUP_HEADER = "X-BreachWatch-Dedup"
TAKEN = frozenset({"acknowledged", "investigating", "contained"})
# What happened, as the event types receivers see (``incident.<event>``).
EVENTS: dict[str, str] = {
    "opened": "opened",
    "updated": "updated",
    "acknowledge": "acknowledged",
    "investigate": "investigating",
    "contain": "contained",
    "resolve": "resolved",
    "false_positive": "false_positive",
    "reopen": "reopened",
    "confirm_breach": "breach_confirmed",
    "merge": "merged",
    "merged_into": "merged_into",
    "split": "split",
    "split_from": "split_from",
}


def jira_configured(settings: Settings) -> bool:
    """Whether incidents get Jira issues; a half-configured Jira stops start-up, named."""
    parts = {
        "BREACHWATCH_JIRA_URL": settings.jira_url,
        "BREACHWATCH_JIRA_EMAIL": settings.jira_email,
        "BREACHWATCH_JIRA_API_TOKEN": settings.secret("jira_api_token"),
        "BREACHWATCH_JIRA_PROJECT": settings.jira_project,
    }
    given = [name for name, value in parts.items() if value]
    if given and len(given) < len(parts):
        missing = ", ".join(name for name in parts if name not in given)
        raise ConfigError(f"{missing}: required when {given[0]} is set (Jira needs all four)")
    return bool(given)


def change_channel_names(settings: Settings) -> list[str]:
    """The systems incident changes are queued to, by logical channel name: the adapters
    serving them are built from the same settings (``runtime.app``)."""
    names = []
    if settings.ocsf_topic:
        names.append(OCSF)
    if settings.secret("pagerduty_routing_key"):
        names.append("pagerduty")
    if jira_configured(settings):
        names.append("jira")
    if settings.webhook_url:
        names.append("webhook")
    return names


def team_address(settings: Settings) -> str:
    """Whom messages to a shared system are addressed to: the on-call team's first address."""
    return settings.oncall_emails[0] if settings.oncall_emails else settings.mail_from


def page_action(session: Session, incident: IncidentRow, change: Change) -> str | None:
    """What PagerDuty is told of a change: trigger, acknowledge, resolve, or nothing."""
    if change.action in CLOSING:
        return "resolve"
    if change.action == "reopen":
        return None if is_silenced(session, incident, change.at) is not None else "trigger"
    if change.from_status == "open" and change.to_status in TAKEN:
        return "acknowledge"
    return None


def describe(incident: IncidentRow, change: Change) -> str:
    """The change in plain words (a ticket comment, a webhook's text)."""
    event = EVENTS.get(change.action, change.action).replace("_", " ")
    who = "" if change.actor == SYSTEM else f" by {one_line(change.actor, 100)}"
    lines = [f"Incident {incident.incident_id} {event}{who}."]
    if change.reason:
        lines.append(f"Reason: {one_line(change.reason, 2000)}")
    lines.append(
        f"Status: {incident.status.replace('_', ' ')}. Severity: {incident.severity.upper()}. "
        f"Score: {incident.score:g}/100. Kind: {incident.kind.replace('_', ' ')}."
    )
    lines.append(f"Title: {one_line(incident.title, 500)}")
    if incident.actor_ids:
        lines.append(f"Actors: {', '.join(one_line(a, 128) for a in incident.actor_ids[:10])}")
    if incident.source_ips:
        lines.append(f"Addresses: {', '.join(one_line(a, 64) for a in incident.source_ips[:10])}")
    if incident.reasons:
        lines.append("Why:")
        lines.extend(f"- {one_line(r, 500)}" for r in incident.reasons[:10])
    return "\n".join(lines) + "\n"


def summary(incident: IncidentRow) -> str:
    """One line naming the incident (a ticket's summary, a page's title)."""
    kind = incident.kind.replace("_", " ")
    return header_text(f"[BreachWatch] {incident.severity.upper()} {kind}: {incident.title}", 250)


def _ocsf_text(session: Session, incident: IncidentRow, change: Change) -> str:
    findings = queries.findings(session, incident.incident_id)
    record = detection_finding(incident, findings, change=change, breach=breach(session, incident.incident_id))
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def queue_change(session: Session, incident: IncidentRow, change: Change, settings: Settings) -> int:
    """Queue ``change`` to every configured system, in the change's transaction; how many
    messages were newly queued (a change queued before, by a batch stored again, adds none)."""
    channels = change_channel_names(settings)
    if not channels:
        return 0
    event = EVENTS.get(change.action, change.action)
    text = describe(incident, change)
    headers: dict[str, str] = {
        CHANGE_HEADER: change.action,
        STATUS_HEADER: incident.status,
        SEVERITY_HEADER: incident.severity,
    }
    queued = 0
    for channel in channels:
        body, extra = text, dict(headers)
        if channel == "pagerduty":
            action = page_action(session, incident, change)
            if action is None:
                continue
            extra[PAGE_ACTION_HEADER] = action
        elif channel == OCSF:
            body = _ocsf_text(session, incident, change)
        queued += queue_message(
            session,
            message_id=stable_id("incident_change", channel, incident.incident_id, change.key),
            message_type=f"incident.{event}",
            recipient=team_address(settings),
            rendered=Rendered(subject=summary(incident), text=body, html=None, locale="en"),
            channel=channel,
            incident_id=incident.incident_id,
            headers=extra,
            ordering_key=ordering_key(incident.incident_id),
            now=change.at,
        )
    return queued


def ordering_key(incident_id: str) -> str:
    """Messages about one incident to one system go out in the order they were queued."""
    return f"incident:{incident_id}"
