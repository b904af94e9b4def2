"""PagerDuty Events API v2 against a local receiver: a trigger event with dedup_key = the
incident id (so a repeat is harmless), acknowledge and resolve on the same key, a deadline's
page on its own key, severities, errors, a routing key that stays secret; and webhook v3
signatures and events."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from breachwatch.channels.pagerduty import ACTION_HEADER, DEDUP_HEADER, PagerDutyChannel, WebhookEvent, verify_signature
from breachwatch.notifier.delivery import NotFound, PermanentError, RetryableError
from breachwatch.notifier.message import OutboxMessage

ROUTING_KEY = "R0UT1NGKEYF1CT10NAL0000000000001"


def _message(**kw) -> OutboxMessage:
    fields = {
        "message_id": "page-7",
        "channel": "pagerduty",
        "recipient": "oncall-security@unisen.example",
        "subject": "[BreachWatch] OVERDUE: notice to Rhein Logistik GmbH",
        "body_text": "A breach-notification deadline has passed.",
        "message_type": "oncall_deadline",
        "incident_id": "inc-7f3a9c21e4b05d18",
        "headers": {"X-BreachWatch-Severity": "critical"},
    }
    return OutboxMessage(**{**fields, **kw})


def _accepting(receiver) -> None:
    receiver.default = (
        202,
        {"Content-Type": "application/json"},
        json.dumps({"status": "success", "message": "Event processed", "dedup_key": "inc-7f3a9c21e4b05d18"}).encode(),
    )


def test_triggers_an_event_keyed_by_the_incident(receiver) -> None:
    _accepting(receiver)
    channel = PagerDutyChannel(ROUTING_KEY, url=receiver.url + "/v2/enqueue")
    assert channel.send(_message()) == "inc-7f3a9c21e4b05d18"
    [req] = receiver.requests
    body = req.json()
    assert req.path == "/v2/enqueue"
    assert (body["routing_key"], body["event_action"], body["dedup_key"]) == (
        ROUTING_KEY,
        "trigger",
        "inc-7f3a9c21e4b05d18",
    )
    assert body["payload"]["summary"] == "[BreachWatch] OVERDUE: notice to Rhein Logistik GmbH"
    assert (body["payload"]["severity"], body["payload"]["source"]) == ("critical", "breachwatch")
    assert body["payload"]["custom_details"]["message_id"] == "page-7"


def test_a_resend_carries_the_same_dedup_key_so_lookup_allows_it(receiver) -> None:
    _accepting(receiver)
    channel = PagerDutyChannel(ROUTING_KEY, url=receiver.url + "/v2/enqueue")
    channel.send(_message(message_id="page-7"))
    channel.send(_message(message_id="page-8", headers={"X-BreachWatch-Severity": "medium"}))
    keys = [r.json()["dedup_key"] for r in receiver.requests]
    assert keys == ["inc-7f3a9c21e4b05d18", "inc-7f3a9c21e4b05d18"]
    assert receiver.requests[1].json()["payload"]["severity"] == "warning"
    assert isinstance(channel.lookup("page-7"), NotFound)


def test_long_summaries_are_cut_to_the_api_limit(receiver) -> None:
    _accepting(receiver)
    PagerDutyChannel(ROUTING_KEY, url=receiver.url).send(_message(subject="x" * 5000))
    assert len(receiver.requests[0].json()["payload"]["summary"]) == 1024


@pytest.mark.parametrize(("status", "error"), [(429, RetryableError), (502, RetryableError), (400, PermanentError)])
def test_outcomes_never_show_the_routing_key(receiver, status, error) -> None:
    receiver.answer_next(status, json.dumps({"status": "invalid event", "message": f"bad key {ROUTING_KEY}"}).encode())
    with pytest.raises(error) as caught:
        PagerDutyChannel(ROUTING_KEY, url=receiver.url).send(_message())
    assert ROUTING_KEY not in str(caught.value)
    assert ROUTING_KEY not in repr(PagerDutyChannel(ROUTING_KEY, url=receiver.url))


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
def test_an_incident_change_acknowledges_or_resolves_the_same_alert(receiver, action) -> None:
    _accepting(receiver)
    channel = PagerDutyChannel(ROUTING_KEY, url=receiver.url + "/v2/enqueue")
    channel.send(_message(message_id="alert-1", message_type="oncall_alert"))
    change = _message(message_id="chg-2", message_type=f"incident.{action}d", headers={ACTION_HEADER: action})
    channel.send(change)
    first, second = (r.json() for r in receiver.requests)
    assert second == {"routing_key": ROUTING_KEY, "event_action": action, "dedup_key": first["dedup_key"]}
    assert first["event_action"] == "trigger" and first["dedup_key"] == "inc-7f3a9c21e4b05d18"


def test_a_deadline_page_is_an_alert_of_its_own(receiver) -> None:
    _accepting(receiver)
    PagerDutyChannel(ROUTING_KEY, url=receiver.url).send(_message(headers={DEDUP_HEADER: "deadline:n-1:gdpr-33"}))
    assert receiver.requests[0].json()["dedup_key"] == "deadline:n-1:gdpr-33"


def test_an_unknown_event_action_is_refused_before_sending(receiver) -> None:
    with pytest.raises(PermanentError, match="event action"):
        PagerDutyChannel(ROUTING_KEY, url=receiver.url).send(_message(headers={ACTION_HEADER: "snooze"}))
    assert receiver.requests == []


def test_webhook_signatures_any_matching_v1_under_any_secret() -> None:
    body = b'{"event":{"id":"01","event_type":"incident.resolved"}}'
    good = hmac.new(b"secret-new", body, hashlib.sha256).hexdigest()
    other = hmac.new(b"secret-other", body, hashlib.sha256).hexdigest()
    assert verify_signature(["secret-old", "secret-new"], body, f"v1={other},v1={good}")
    assert not verify_signature(["secret-old"], body, f"v1={good}")
    assert not verify_signature(["secret-new"], body + b" ", f"v1={good}")
    assert not verify_signature(["secret-new"], body, f"v2={good}")
    assert not verify_signature([], body, f"v1={good}")


def test_a_webhook_event_names_our_incident_and_who_acted() -> None:
    body = json.dumps(
        {
            "event": {
                "id": "01ABC",
                "event_type": "incident.acknowledged",
                "agent": {"id": "P1", "summary": "Ada Example", "type": "user_reference"},
                "data": {"id": "Q1", "number": 42, "incident_key": "inc-7f3a9c21e4b05d18"},
            }
        }
    ).encode()
    event = WebhookEvent.parse(body)
    assert (event.event_type, event.incident_key, event.incident, event.agent) == (
        "incident.acknowledged",
        "inc-7f3a9c21e4b05d18",
        "42",
        "Ada Example",
    )
    with pytest.raises(ValueError):
        WebhookEvent.parse(b'{"messages": []}')
