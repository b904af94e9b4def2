"""On-call alerts: when an incident opens, page every on-call address by email through the
outbox, in the same transaction that stores the incident.

The message id is ``stable_id("oncall_alert", incident_id, recipient)``, so a batch that is
processed again (after a crash or a rebalance) finds its alerts already queued and adds none.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from breachwatch.settings import ConfigError, Settings
from detectors.base import stable_id, unique
from incidents.db import EvidenceRow, FindingRow, IncidentRow
from notifier.channels.base import Channel
from notifier.channels.file import FileChannel
from notifier.channels.pagerduty import PagerDutyChannel
from notifier.channels.sendgrid_api import SendGridChannel
from notifier.channels.slack import SlackChannel
from notifier.channels.smtp import SmtpChannel
from notifier.channels.webhook import WebhookChannel
from notifier.message import OutboxMessage, header_text
from notifier.outbox import enqueue
from notifier.render import Rendered, render
from streams.models import Tenant

log = logging.getLogger(__name__)

MESSAGE_TYPE = "oncall_alert"
EMAIL = "email"  # the logical channel; which provider serves it is a deployment setting
ALERT_LOCALE = "en"
MAX_EVIDENCE_ROWS = 10
MAX_LISTED = 20  # actors, tenants, addresses, reasons shown before "and N more"


def _time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _listed(values: Sequence[str]) -> list[str]:
    items = list(values[:MAX_LISTED])
    if len(values) > MAX_LISTED:
        items.append(f"… and {len(values) - MAX_LISTED} more")
    return items


def console_link(base_url: str | None, incident_id: str) -> str | None:
    """The console page of an incident, or None without a usable http(s) base URL."""
    if not base_url:
        return None
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        log.warning("console base URL ignored: it must be an http(s) URL")
        return None
    return f"{base_url.rstrip('/')}/incidents/{quote(incident_id, safe='')}"


def _evidence_row(row: EvidenceRow) -> dict[str, Any]:
    """One evidence event as a table row; the event's own fields are untrusted text."""
    try:
        event = json.loads(row.event_json)
    except ValueError:
        event = {}
    if not isinstance(event, dict):
        event = {}
    topic = row.topic.rsplit(".", 1)[-1]
    action = str(event.get("action") or "")
    resource = ""
    records: Any = ""
    if topic == "access":
        if event.get("outcome") == "denied":
            action += " (denied)"
        resource = f"{event.get('tenant_id', '')}/{event.get('resource_type', '')}"
        records = event.get("records", "")
    elif topic == "auth":
        action = f"{action} {event.get('outcome', '')}".strip()
        roles = event.get("roles")
        resource = ", ".join(str(r) for r in roles) if isinstance(roles, list) else ""
    elif topic == "logs":
        action = str(event.get("level") or "")
        resource = str(event.get("service") or "")
    return {
        "time": _time(row.ts),
        "actor": event.get("actor_id") or "",
        "action": action,
        "resource": resource,
        "records": records if isinstance(records, int) else "",
        "ip": event.get("ip") or "",
        "country": event.get("country") or "",
    }


def alert_context(
    incident: IncidentRow,
    findings: Sequence[FindingRow],
    evidence: Sequence[EvidenceRow],
    tenants: Mapping[str, Tenant],
    *,
    console_url: str | None = None,
    max_rows: int = MAX_EVIDENCE_ROWS,
) -> dict[str, Any]:
    """The ``oncall_alert`` template context: plain data only, no database objects."""
    ordered = sorted(evidence, key=lambda e: (e.ts, e.event_id))
    records = 0
    for e in ordered:
        if e.topic.endswith("access"):
            try:
                value = json.loads(e.event_json).get("records")
            except (ValueError, AttributeError):
                value = None
            if isinstance(value, int) and value >= 0:
                records += value
    by_topic = Counter(e.topic for e in ordered)
    reasons = list(incident.reasons or []) or list(unique(r for f in findings for r in f.reasons))
    tenant_ids = list(incident.tenant_ids or [])
    return {
        "incident": {
            "id": incident.incident_id,
            "title": incident.title,
            "kind": incident.kind,
            "severity": incident.severity,
            "score": f"{incident.score:.0f}",
            "status": incident.status,
            "opened_at": _time(incident.opened_at),
            "updated_at": _time(incident.updated_at),
            "detectors": list(incident.detectors or []),
        },
        "actors": _listed(list(incident.actor_ids or [])),
        "tenants": [{"id": tid, "name": getattr(tenants.get(tid), "name", None)} for tid in tenant_ids[:MAX_LISTED]]
        + (
            [{"id": f"… and {len(tenant_ids) - MAX_LISTED} more", "name": None}] if len(tenant_ids) > MAX_LISTED else []
        ),
        "source_ips": _listed(list(incident.source_ips or [])),
        "reasons": _listed(reasons),
        "findings": [
            {"detector": f.detector, "title": f.title, "severity": f.severity, "score": f"{f.score:.0f}"}
            for f in sorted(findings, key=lambda f: (-f.score, f.finding_id))[:MAX_LISTED]
        ],
        "playbooks": list(unique(f.playbook for f in findings))[:MAX_LISTED],
        "evidence": {
            "total": max(incident.evidence_count or 0, len(ordered)),
            "first_ts": _time(ordered[0].ts) if ordered else _time(incident.opened_at),
            "last_ts": _time(ordered[-1].ts) if ordered else _time(incident.updated_at),
            "by_topic": [{"topic": t, "count": n} for t, n in sorted(by_topic.items())],
            "records": records,
            "rows": [_evidence_row(e) for e in ordered[:max_rows]],
        },
        "console_url": console_link(console_url, incident.incident_id),
    }


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
    from incidents.escalation import first_page_queued
    from incidents.silences import suppress_page

    if sa_inspect(incident).persistent and suppress_page(session, incident) is not None:
        return 0
    try:
        context = alert_context(incident, findings, evidence, tenants, console_url=console_url)
        rendered = render(MESSAGE_TYPE, ALERT_LOCALE, context)
    except Exception as exc:
        log.error("oncall alert for %s rendered with the fallback: %s", incident.incident_id, type(exc).__name__)
        rendered = _fallback(incident, console_link(console_url, incident.incident_id))
    queued = 0
    queued_to: list[str] = []
    for recipient in unique(settings.oncall_emails):
        message = OutboxMessage(
            message_id=stable_id(MESSAGE_TYPE, incident.incident_id, recipient),
            channel=EMAIL,
            recipient=recipient,
            subject=rendered.subject,
            body_text=rendered.text,
            body_html=rendered.html,
            message_type=MESSAGE_TYPE,
            incident_id=incident.incident_id,
            headers={
                "X-BreachWatch-Incident": incident.incident_id,
                "X-BreachWatch-Severity": header_text(incident.severity, 16),
            },
        )
        try:
            added = enqueue(session, message)
        except ValueError as exc:
            # An on-call address the mail path cannot use; the other addresses still get paged.
            log.error("oncall alert for %s not queued for one address: %s", incident.incident_id, exc)
            continue
        queued += int(added)
        if added:
            queued_to.append(recipient)
    if queued_to and sa_inspect(incident).persistent:  # escalation tracks stored incidents only
        first_page_queued(session, incident, queued_to)
    return queued


def build_channels(settings: Settings) -> dict[str, Channel]:
    """The delivery channels this deployment uses, by logical channel name."""
    mail: Channel
    if settings.mail_channel == "file":
        mail = FileChannel(settings.outbox_dir, settings.mail_from)
    elif settings.mail_channel == "sendgrid":
        if settings.sendgrid_api_key is None or not settings.sendgrid_api_key.get_secret_value():
            raise ConfigError("BREACHWATCH_SENDGRID_API_KEY: required when BREACHWATCH_MAIL_CHANNEL=sendgrid")
        mail = SendGridChannel(settings.sendgrid_api_key, settings.mail_from, host=settings.sendgrid_host)
    elif settings.mail_channel == "smtp":
        mail = SmtpChannel(
            settings.smtp_host,
            settings.smtp_port,
            settings.mail_from,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
        )
    else:  # pragma: no cover - Settings only admits the values above
        raise ConfigError(f"BREACHWATCH_MAIL_CHANNEL: unknown channel {settings.mail_channel!r}")
    return {EMAIL: mail, **oncall_channels(settings)}


def oncall_channels(settings: Settings) -> dict[str, Channel]:
    """The paging channels configured besides email: Slack, PagerDuty, a signed webhook."""
    channels: dict[str, Channel] = {}
    slack_url = settings.secret("slack_webhook_url")
    if slack_url:
        channels["slack"] = SlackChannel(slack_url)
    routing_key = settings.secret("pagerduty_routing_key")
    if routing_key:
        channels["pagerduty"] = PagerDutyChannel(routing_key, url=settings.pagerduty_url)
    if settings.webhook_url:
        secret = settings.secret("webhook_secret")
        if not secret:
            raise ConfigError("BREACHWATCH_WEBHOOK_SECRET: required when BREACHWATCH_WEBHOOK_URL is set")
        channels["webhook"] = WebhookChannel(settings.webhook_url, secret)
    return channels
