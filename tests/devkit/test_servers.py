"""The local SendGrid server answers as SendGrid does: bearer auth, body validation with
SendGrid-shaped errors, 202 with X-Message-Id, the activity feed and its query syntax."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

import pytest
import sendgrid
from python_http_client.exceptions import BadRequestsError, TooManyRequestsError, UnauthorizedError

VALID: dict[str, Any] = {
    "personalizations": [{"to": [{"email": "oncall@unisen.example"}]}],
    "from": {"email": "breachwatch@unisen.example"},
    "subject": "Incident",
    "content": [{"type": "text/plain", "value": "text"}, {"type": "text/html", "value": "<p>html</p>"}],
    "custom_args": {"message_id": "msg-0001"},
}


def _raw(url: str, method: str = "POST", body: bytes | None = None, key: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            data = resp.read()
            return resp.status, json.loads(data) if data else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_accepts_a_valid_mail_with_202_and_a_message_id(sendgrid_server, sendgrid_key) -> None:
    client = sendgrid.SendGridAPIClient(sendgrid_key, host=sendgrid_server.url)
    response = client.send(VALID)
    assert response.status_code == 202
    assert response.headers["X-Message-Id"] == sendgrid_server.messages[0].x_message_id
    assert sendgrid_server.messages[0].custom_args == {"message_id": "msg-0001"}


def test_wrong_or_missing_key_is_401_with_sendgrid_errors(sendgrid_server) -> None:
    with pytest.raises(UnauthorizedError) as caught:
        sendgrid.SendGridAPIClient("SG.wrong.fictional", host=sendgrid_server.url).send(VALID)
    assert set(caught.value.to_dict["errors"][0]) == {"message", "field", "help"}
    status, body = _raw(sendgrid_server.url + "/v3/mail/send", body=json.dumps(VALID).encode())
    assert status == 401 and body["errors"]
    assert sendgrid_server.messages == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"personalizations": []}, "personalizations"),
        ({"personalizations": [{"to": [{"email": "not an address"}]}]}, "personalizations.0.to.0.email"),
        ({"from": {}}, "from.email"),
        ({"subject": ""}, "subject"),
        ({"subject": "a\r\nBcc: x@evil.example"}, "subject"),
        ({"content": []}, "content"),
        ({"content": [{"type": "text/html", "value": "<p>x</p>"}, {"type": "text/plain", "value": "x"}]}, "content"),
        ({"headers": {"Bcc": "x@evil.example"}}, "headers"),
        ({"custom_args": {"n": 1}}, "custom_args"),
    ],
)
def test_invalid_bodies_are_400_naming_the_field(sendgrid_server, sendgrid_key, change, field) -> None:
    with pytest.raises(BadRequestsError) as caught:
        sendgrid.SendGridAPIClient(sendgrid_key, host=sendgrid_server.url).send({**VALID, **change})
    assert field in [e["field"] for e in caught.value.to_dict["errors"]]
    assert sendgrid_server.messages == []


def test_non_json_body_and_unknown_path(sendgrid_server, sendgrid_key) -> None:
    assert _raw(sendgrid_server.url + "/v3/mail/send", body=b"{not json", key=sendgrid_key)[0] == 400
    assert _raw(sendgrid_server.url + "/v3/nope", body=b"{}", key=sendgrid_key)[0] == 404


def test_scripted_failures_apply_to_the_next_calls_only(sendgrid_server, sendgrid_key) -> None:
    sendgrid_server.fail_next(429, times=2, retry_after=3)
    client = sendgrid.SendGridAPIClient(sendgrid_key, host=sendgrid_server.url)
    for _ in range(2):
        with pytest.raises(TooManyRequestsError) as caught:
            client.send(VALID)
        assert caught.value.status_code == 429
        assert caught.value.headers["Retry-After"] == "3"
    assert client.send(VALID).status_code == 202
    assert [r.status for r in sendgrid_server.requests] == [429, 429, 202]


def test_activity_feed_answers_queries(sendgrid_server, sendgrid_key) -> None:
    client = sendgrid.SendGridAPIClient(sendgrid_key, host=sendgrid_server.url)
    client.send(VALID)
    client.send({**VALID, "custom_args": {"message_id": "msg-0002"}})
    first, second = sendgrid_server.messages

    def query(q: str) -> tuple[int, Any]:
        url = sendgrid_server.url + "/v3/messages?" + urlencode({"query": q, "limit": 10})
        return _raw(url, method="GET", key=sendgrid_key)

    status, body = query("unique_args['message_id']=\"msg-0002\"")
    assert status == 200
    assert [m["msg_id"].split(".")[0] for m in body["messages"]] == [second.x_message_id]
    assert body["messages"][0]["to_email"] == "oncall@unisen.example"
    assert len(query(f"msg_id LIKE '{first.x_message_id}%'")[1]["messages"]) == 1
    assert len(query('to_email="oncall@unisen.example" AND subject="Incident"')[1]["messages"]) == 2
    assert query("unique_args['message_id']=\"msg-9\"")[1]["messages"] == []
    assert query("DROP TABLE messages")[0] == 400
    assert _raw(sendgrid_server.url + "/v3/messages?limit=10", method="GET")[0] == 401
