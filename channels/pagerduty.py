"""PagerDuty Events API v2 channel: one ``trigger`` event per message.

The ``dedup_key`` is the incident id, so every page about one incident lands on one PagerDuty
alert and sending a page again is harmless: PagerDuty folds a repeat into the open alert. That
is also what ``lookup`` relies on after an interrupted send: it answers "not found", meaning
"safe to send again", which for this channel is always true.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from pydantic import SecretStr

from breachwatch.channels.webhook import HttpClientMixin, post_json
from breachwatch.notifier.delivery import LookupResult, NotFound, PermanentError
from breachwatch.notifier.message import OutboxMessage, one_line, truncate

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_MAX = 1024
DETAILS_MAX = 8000
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
        return message.incident_id or message.message_id

    def payload(self, message: OutboxMessage) -> dict[str, Any]:
        severity = SEVERITIES.get(str(message.headers.get("X-BreachWatch-Severity", "")).lower(), "error")
        return {
            "routing_key": self._key,
            "event_action": "trigger",
            "dedup_key": self.dedup_key(message),
            "payload": {
                "summary": one_line(message.subject, SUMMARY_MAX) or "BreachWatch page",
                "source": self.source,
                "severity": severity,
                "component": message.message_type or "breachwatch",
                "group": "security",
                "class": message.message_type or "page",
                "custom_details": {"message_id": message.message_id, "text": truncate(message.body_text, DETAILS_MAX)},
            },
        }

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
