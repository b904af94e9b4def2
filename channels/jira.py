"""Jira Cloud (REST API v3) channel: one issue per incident, a comment per change, the issue
moved to done when the incident closes and back when it reopens.

Idempotent by incident: the issue carries the label ``breachwatch-<incident id>`` and its key
is stored (``notifier.tickets``) the moment Jira answers. With no key stored, the channel
searches for the label before it opens an issue, which covers a crash between opening it and
storing its key; Jira's search catches up within seconds, and the outbox waits at least that
long before a retry (and its lease, minutes, before it settles an interrupted send). Each
comment carries the outbox id as a comment property, so a retried or interrupted comment is
found rather than posted twice. Status changes read the issue's status first, so repeating
one does nothing.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from breachwatch.channels.webhook import HttpClientMixin, send_json
from breachwatch.incidents.model import CLOSED_STATUSES
from breachwatch.notifier.delivery import Delivered, LookupResult, NotFound, PermanentError, Unknown
from breachwatch.notifier.integrations import CHANGE_HEADER, STATUS_HEADER
from breachwatch.notifier.message import OutboxMessage, one_line, truncate
from breachwatch.notifier.tickets import TicketBook

log = logging.getLogger(__name__)

API = "/rest/api/3"
LABEL_PREFIX = "breachwatch-"
PROPERTY = "breachwatch"
SUMMARY_MAX = 255
TEXT_MAX = 30_000  # a comment holds at most 32,767 characters
OPENING = frozenset({"opened", "split_from"})
DONE = "done"


def label(incident_id: str) -> str:
    """The label that finds an incident's issue (labels cannot hold spaces)."""
    return LABEL_PREFIX + incident_id.replace(" ", "_")


def adf(text: str) -> dict[str, Any]:
    """Plain text as an Atlassian Document (v3 takes no plain strings): a paragraph per line."""
    lines = [line for line in truncate(text, TEXT_MAX).splitlines() if line.strip()] or ["(no text)"]
    return {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": line}]} for line in lines],
    }


class JiraChannel(HttpClientMixin):
    """Keeps one Jira issue per incident in step with it."""

    def __init__(
        self,
        base_url: str,
        email: str,
        api_token: SecretStr | str,
        project: str,
        book: TicketBook,
        *,
        issue_type: str = "Task",
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        token = api_token.get_secret_value() if isinstance(api_token, SecretStr) else api_token
        if not (base_url and email and token and project):
            raise ValueError("Jira needs a site URL, an account email, an API token and a project key")
        self.base = base_url.rstrip("/")
        self.project = project
        self.issue_type = issue_type
        self.book = book
        self._token = token
        self._auth = "Basic " + base64.b64encode(f"{email}:{token}".encode()).decode()
        self._timeout = timeout
        self._transport = transport
        self._client: httpx.Client | None = None

    def __repr__(self) -> str:
        return f"JiraChannel({self.base!r}, project={self.project!r})"

    # --- HTTP ---------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        response = send_json(
            self._http(),
            method,
            self.base + API + path,
            data,
            what="Jira",
            headers={"Authorization": self._auth},
            secrets=(self._token, self._auth),
        )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    # --- the issue ------------------------------------------------------------------------------

    def find(self, incident_id: str) -> str | None:
        """The key of the incident's issue: stored, or found by its label (then stored)."""
        key = self.book.key(incident_id)
        if key is not None:
            return key
        jql = f'project = "{self.project}" AND labels = "{label(incident_id)}" ORDER BY created ASC'
        found = self._call("POST", "/search/jql", {"jql": jql, "fields": ["status"], "maxResults": 5}) or {}
        issues = [i for i in found.get("issues", []) if isinstance(i, dict) and i.get("key")]
        if not issues:
            return None
        if len(issues) > 1:
            log.warning("Jira holds %d issues for incident %s; using the first", len(issues), incident_id)
        return self.book.remember(incident_id, str(issues[0]["key"]))

    def _open(self, message: OutboxMessage, incident_id: str) -> str:
        fields = {
            "project": {"key": self.project},
            "issuetype": {"name": self.issue_type},
            "summary": one_line(message.subject, SUMMARY_MAX) or f"BreachWatch incident {incident_id}",
            "description": adf(message.body_text),
            "labels": ["breachwatch", label(incident_id)],
        }
        made = self._call("POST", "/issue", {"fields": fields}) or {}
        key = made.get("key")
        if not isinstance(key, str) or not key:
            raise PermanentError("Jira: the new issue's key is missing from the answer")
        return self.book.remember(incident_id, key)

    def _comments_with(self, key: str, message_id: str) -> bool:
        path = f"/issue/{quote(key)}/comment?orderBy=-created&maxResults=100&expand=properties"
        found = self._call("GET", path) or {}
        for comment in found.get("comments", []):
            for prop in comment.get("properties", []) if isinstance(comment, dict) else []:
                if prop.get("key") == PROPERTY and (prop.get("value") or {}).get("message_id") == message_id:
                    return True
        return False

    def _comment(self, key: str, message: OutboxMessage) -> None:
        body = {
            "body": adf(message.body_text),
            "properties": [{"key": PROPERTY, "value": {"message_id": message.message_id}}],
        }
        self._call("POST", f"/issue/{quote(key)}/comment", body)

    def _move(self, key: str, *, to_done: bool) -> None:
        """Move the issue to a done status (or out of one), unless it is there already."""
        issue = self._call("GET", f"/issue/{quote(key)}?fields=status") or {}
        category = (((issue.get("fields") or {}).get("status") or {}).get("statusCategory") or {}).get("key")
        if (category == DONE) == to_done:
            return
        options = (self._call("GET", f"/issue/{quote(key)}/transitions") or {}).get("transitions", [])
        wanted = [t for t in options if ((t.get("to") or {}).get("statusCategory") or {}).get("key") == DONE]
        if not to_done:
            rest = [t for t in options if t not in wanted]
            wanted = sorted(rest, key=lambda t: ((t.get("to") or {}).get("statusCategory") or {}).get("key") != "new")
        if not wanted:
            log.warning("Jira issue %s: the workflow offers no transition %s done", key, "to" if to_done else "out of")
            return
        self._call("POST", f"/issue/{quote(key)}/transitions", {"transition": {"id": str(wanted[0]["id"])}})

    # --- the channel ------------------------------------------------------------------------------

    def send(self, message: OutboxMessage) -> str:
        incident_id = message.incident_id
        if not incident_id:
            raise PermanentError("Jira: only messages about an incident have an issue")
        key = self.find(incident_id)
        fresh = key is None
        if key is None:
            key = self._open(message, incident_id)  # its description is this change
        change = message.headers.get(CHANGE_HEADER, "")
        status = message.headers.get(STATUS_HEADER, "")
        if status in CLOSED_STATUSES:
            self._move(key, to_done=True)
        elif change == "reopen":
            self._move(key, to_done=False)
        # Comment last, so a retry after a failed move adds no second comment.
        repeat = message.attempt > 1 and self._comments_with(key, message.message_id)
        if not fresh and change not in OPENING and not repeat:
            self._comment(key, message)
        return key

    def lookup(self, message_id: str) -> LookupResult:
        message = self.book.message(message_id)
        if message is None or not message.incident_id:
            return Unknown("the message is no longer in the outbox")
        key = self.find(message.incident_id)
        if key is None:
            return NotFound()  # no issue: nothing of this message reached Jira
        if message.headers.get(CHANGE_HEADER) in OPENING or self._comments_with(key, message_id):
            return Delivered(key)
        return NotFound()  # the issue is there, this change's comment is not: send it again
