"""PagerDuty: the Events API v2 channel (out) and webhook v3 signatures and events (in).

Out: a page triggers an alert; an incident change queued with ``X-BreachWatch-Page-Action``
acknowledges or resolves it. The ``dedup_key`` is the incident id, so the page, its repeats
and the incident's acknowledgement and resolution all land on one PagerDuty alert, and sending
one again is harmless: PagerDuty folds a repeat into the alert. That is also what ``lookup``
relies on after an interrupted send: it answers "not found", meaning "safe to send again",
which for this channel is always true. A message that names its own ``X-BreachWatch-Dedup``
(a notice deadline's page) gets an alert of its own.

In: PagerDuty signs each webhook delivery with ``X-PagerDuty-Signature: v1=<hex>[,v1=<hex>]``,
the HMAC-SHA256 of the raw body under the subscription's secret (several while it rotates).
``WebhookEvent.parse`` reads the one event a delivery carries.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr
from pydantic_core import from_json

from breachwatch.channels.webhook import HttpClientMixin, post_json
from breachwatch.notifier.delivery import LookupResult, NotFound, PermanentError
from breachwatch.notifier.integrations import DEDUP_HEADER
from breachwatch.notifier.integrations import PAGE_ACTION_HEADER as ACTION_HEADER
from breachwatch.notifier.message import OutboxMessage, one_line, truncate

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_MAX = 1024
DETAILS_MAX = 8000
DEDUP_MAX = 255
ACTIONS = frozenset({"trigger", "acknowledge", "resolve"})
SIGNATURE_HEADER = "X-PagerDuty-Signature"
DELIVERY_HEADER = "X-Webhook-Id"
# Our severities (and PagerDuty's own words) to PagerDuty's four.
SEVERITIES = {
    "critical": "critical",
    "high": "error",
    "error": "error",
    "medium": "warning",
    "warning": "warning",
    "low": "info",
    "info": "info",
}


def verify_signature(secrets: Sequence[str], body: bytes, header: str) -> bool:
    """Whether one of the ``v1=`` signatures in ``header`` is the body's HMAC under one of the
    subscription ``secrets`` (each compared in constant time)."""
    given = [part.strip()[3:] for part in (header or "").split(",") if part.strip().startswith("v1=")]
    expected = [hmac.new(s.encode(), body, hashlib.sha256).hexdigest() for s in secrets if s]
    return any(hmac.compare_digest(e.encode(), g.encode()) for e in expected for g in given)


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """The parts of a PagerDuty webhook v3 event that matter here."""

    event_id: str
    event_type: str  # e.g. incident.acknowledged
    incident_key: str | None  # the dedup_key the alert was triggered with
    incident: str  # PagerDuty's own number or id, for the record
    agent: str | None  # who did it in PagerDuty (a user's name), when a person did

    @classmethod
    def parse(cls, body: bytes) -> WebhookEvent:
        """The event of a delivery; ``ValueError`` if the body is not a PagerDuty event."""
        doc = from_json(body)
        event = doc.get("event") if isinstance(doc, dict) else None
        if not isinstance(event, dict) or not isinstance(event.get("event_type"), str):
            raise ValueError("not a PagerDuty webhook event")
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        agent = event.get("agent") if isinstance(event.get("agent"), dict) else {}
        key = data.get("incident_key")
        number = data.get("number") or data.get("id") or "?"
        name = agent.get("summary") or agent.get("id")
        return cls(
            event_id=one_line(event.get("id") or "", 128),
            event_type=one_line(event["event_type"], 64),
            incident_key=one_line(key, DEDUP_MAX) if isinstance(key, str) and key else None,
            incident=one_line(number, 64),
            agent=one_line(name, 100) if isinstance(name, str) and name else None,
        )


class PagerDutyChannel(HttpClientMixin):
    """Triggers PagerDuty alerts through the Events API v2."""

    def __init__(
        self,
        routing_key: SecretStr | str,
        *,
        url: str = DEFAULT_URL,
        source: str = "breachwatch",
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        key = routing_key.get_secret_value() if isinstance(routing_key, SecretStr) else routing_key
        if not key:
            raise ValueError("a PagerDuty routing key is required")
        self.url = url
        self.source = source
        self._key = key
        self._timeout = timeout
        self._transport = transport
        self._client: httpx.Client | None = None

    def __repr__(self) -> str:
        return f"PagerDutyChannel(url={self.url!r})"

    def dedup_key(self, message: OutboxMessage) -> str:
        own = message.headers.get(DEDUP_HEADER)
        return truncate(own or message.incident_id or message.message_id, DEDUP_MAX)

    def payload(self, message: OutboxMessage) -> dict[str, Any]:
        action = message.headers.get(ACTION_HEADER, "trigger")
        if action not in ACTIONS:
            raise PermanentError(f"PagerDuty: no such event action {one_line(action, 20)!r}")
        event: dict[str, Any] = {"routing_key": self._key, "event_action": action, "dedup_key": self.dedup_key(message)}
        if action != "trigger":
            return event  # PagerDuty reads only the key of an acknowledgement or resolution
        severity = SEVERITIES.get(str(message.headers.get("X-BreachWatch-Severity", "")).lower(), "error")
        event["payload"] = {
            "summary": one_line(message.subject, SUMMARY_MAX) or "BreachWatch page",
            "source": self.source,
            "severity": severity,
            "component": message.message_type or "breachwatch",
            "group": "security",
            "class": message.message_type or "page",
            "custom_details": {"message_id": message.message_id, "text": truncate(message.body_text, DETAILS_MAX)},
        }
        return event

    def send(self, message: OutboxMessage) -> str:
        body = json.dumps(self.payload(message), ensure_ascii=False).encode()
        response = post_json(self._http(), self.url, body, what="PagerDuty Events API", secrets=(self._key,))
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if isinstance(answer, dict) and answer.get("status") not in (None, "success"):
            raise PermanentError(f"PagerDuty Events API: {one_line(answer.get('message'), 200)}")
        key = answer.get("dedup_key") if isinstance(answer, dict) else None
        return one_line(key, 256) if key else self.dedup_key(message)

    def lookup(self, message_id: str) -> LookupResult:
        # Not a claim that PagerDuty lacks it: a resend under the same dedup_key is a no-op there.
        return NotFound()
