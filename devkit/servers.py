"""Local servers that speak providers' APIs, for the tests and the demo: SendGrid's v3 API
(``SendGridServer``) and Jira Cloud's REST API v3 (``JiraServer``).

``SendGridServer`` speaks enough of SendGrid for the official client: Mail Send
(``POST /v3/mail/send``) and the Email Activity feed (``GET /v3/messages``); point
``BREACHWATCH_SENDGRID_HOST`` at its ``.url``. Besides failing on request, it can accept a
message and then stall without answering (the client times out although SendGrid has the
message) and, given a URL and a signing key, post signed "processed" events for each accepted
message to an event webhook as SendGrid does. ``JiraServer`` speaks the issue, search, comment
and transition endpoints the Jira channel uses; point ``BREACHWATCH_JIRA_URL`` at it.

Each is a real HTTP server on 127.0.0.1. It checks credentials and request bodies as the
provider does, answers with the provider's error shapes, can be told to fail the next calls
(429 with Retry-After, 5xx, 400), and records what it accepted.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import logging
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

log = logging.getLogger(__name__)

MAIL_SEND = "/v3/mail/send"
MESSAGES = "/v3/messages"
MAX_BODY = 30 * 1024 * 1024  # SendGrid's documented request size limit
MAX_RECIPIENTS = 1000
MAX_CUSTOM_ARGS_BYTES = 10_000
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "Content-Type",
        "Content-Transfer-Encoding",
        "To",
        "From",
        "Subject",
        "Reply-To",
        "CC",
        "BCC",
    )
)
_EMAIL = re.compile(r"^[^@\s\"<>,;]+@[^@\s\"<>,;]+\.[^@\s\"<>,;]+$")
_CONDITION = re.compile(
    r"""^\s*(?:
        unique_args\['(?P<arg>[^']+)'\]\s*=\s*"(?P<argval>[^"]*)"
      | (?P<field>msg_id|from_email|to_email|subject|status)\s*=\s*"(?P<val>[^"]*)"
      | msg_id\s+LIKE\s+'(?P<prefix>[^'%]*)%'
    )\s*$""",
    re.VERBOSE | re.IGNORECASE,
)


def _error(message: str, field: str | None = None) -> dict[str, Any]:
    return {"message": message, "field": field, "help": None}


@dataclass(frozen=True, slots=True)
class AcceptedMail:
    """One accepted Mail Send request."""

    x_message_id: str
    payload: dict[str, Any]
    received_at: datetime

    @property
    def to(self) -> list[str]:
        return [t["email"] for p in self.payload["personalizations"] for t in p["to"]]

    @property
    def subject(self) -> str:
        return str(self.payload.get("subject", ""))

    @property
    def text(self) -> str | None:
        return next((c["value"] for c in self.payload["content"] if c["type"] == "text/plain"), None)

    @property
    def html(self) -> str | None:
        return next((c["value"] for c in self.payload["content"] if c["type"] == "text/html"), None)

    @property
    def custom_args(self) -> dict[str, str]:
        return dict(self.payload.get("custom_args") or {})

    @property
    def headers(self) -> dict[str, str]:
        return dict(self.payload.get("headers") or {})


@dataclass(frozen=True, slots=True)
class ActivityRecord:
    """One recipient's message as the Email Activity feed lists it."""

    msg_id: str
    from_email: str
    to_email: str
    subject: str
    unique_args: dict[str, str]
    last_event_time: datetime
    status: str = "delivered"

    def to_json(self) -> dict[str, Any]:
        return {
            "from_email": self.from_email,
            "msg_id": self.msg_id,
            "subject": self.subject,
            "to_email": self.to_email,
            "status": self.status,
            "opens_count": 0,
            "clicks_count": 0,
            "last_event_time": self.last_event_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """A request the server answered (for assertions such as "exactly one POST")."""

    method: str
    path: str
    status: int


@dataclass(slots=True)
class _Scripted:
    status: int
    retry_after: float | None
    path: str


@dataclass(slots=True)
class _State:
    api_key: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    messages: list[AcceptedMail] = field(default_factory=list)
    activity: list[ActivityRecord] = field(default_factory=list)
    requests: list[RequestRecord] = field(default_factory=list)
    script: deque[_Scripted] = field(default_factory=deque)
    stalls: deque[float] = field(default_factory=deque)  # accept, then answer after this many seconds
    webhook_url: str | None = None
    webhook_key: ec.EllipticCurvePrivateKey | None = None


def validate_mail(body: Any) -> list[dict[str, Any]]:
    """SendGrid-style errors for a Mail Send body; empty if SendGrid would accept it."""
    if not isinstance(body, dict):
        return [_error("The request body must be a JSON object.")]
    errors: list[dict[str, Any]] = []
    pers = body.get("personalizations")
    if not isinstance(pers, list) or not pers:
        errors.append(
            _error("At least one personalization with at least one recipient is required.", "personalizations")
        )
        pers = []
    recipients = 0
    for i, p in enumerate(pers):
        to = p.get("to") if isinstance(p, dict) else None
        if not isinstance(to, list) or not to:
            errors.append(_error("Each personalization needs a non-empty 'to' list.", f"personalizations.{i}.to"))
            continue
        for j, t in enumerate(to):
            recipients += 1
            email = t.get("email") if isinstance(t, dict) else None
            if not isinstance(email, str) or not _EMAIL.fullmatch(email):
                errors.append(_error("Recipient email is not a valid address.", f"personalizations.{i}.to.{j}.email"))
        if isinstance(p, dict) and "custom_args" in p:
            errors.extend(_check_string_map(p["custom_args"], f"personalizations.{i}.custom_args"))
    if recipients > MAX_RECIPIENTS:
        errors.append(_error(f"No more than {MAX_RECIPIENTS} recipients per request.", "personalizations"))
    sender = body.get("from")
    if (
        not isinstance(sender, dict)
        or not isinstance(sender.get("email"), str)
        or not _EMAIL.fullmatch(sender["email"])
    ):
        errors.append(_error("A 'from' object with a valid email is required.", "from.email"))
    subject = body.get("subject")
    every_personal_subject = bool(pers) and all(isinstance(p, dict) and p.get("subject") for p in pers)
    if not every_personal_subject and (not isinstance(subject, str) or not subject):
        errors.append(_error("A subject is required, at the top level or in every personalization.", "subject"))
    elif isinstance(subject, str) and ("\r" in subject or "\n" in subject):
        errors.append(_error("The subject may not contain line breaks.", "subject"))
    content = body.get("content")
    if "template_id" not in body:
        if not isinstance(content, list) or not content:
            errors.append(_error("At least one content item is required.", "content"))
        else:
            types = []
            for k, c in enumerate(content):
                if not isinstance(c, dict) or not isinstance(c.get("type"), str) or not c.get("type"):
                    errors.append(_error("Each content item needs a MIME type.", f"content.{k}.type"))
                    continue
                if not isinstance(c.get("value"), str) or not c["value"]:
                    errors.append(_error("Each content item needs a non-empty value.", f"content.{k}.value"))
                types.append(c["type"])
            if "text/plain" in types and types[0] != "text/plain":
                errors.append(_error("text/plain content must come first.", "content"))
    if "headers" in body:
        errors.extend(_check_string_map(body["headers"], "headers"))
        if isinstance(body["headers"], dict):
            for name in body["headers"]:
                if str(name).lower() in RESERVED_HEADERS:
                    errors.append(_error(f"The header {name} is reserved.", "headers"))
    if "custom_args" in body:
        errors.extend(_check_string_map(body["custom_args"], "custom_args"))
        if len(json.dumps(body["custom_args"])) > MAX_CUSTOM_ARGS_BYTES:
            errors.append(_error("custom_args may not exceed 10,000 bytes.", "custom_args"))
    return errors


def _check_string_map(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return [_error("Must be an object whose values are strings.", where)]
    return []


def _parse_query(query: str) -> list[re.Match[str]] | None:
    parts = re.split(r"\s+AND\s+", query.strip(), flags=re.IGNORECASE) if query.strip() else []
    matches = [_CONDITION.match(p) for p in parts]
    return None if any(m is None for m in matches) else [m for m in matches if m is not None]


def _matches(record: ActivityRecord, conditions: list[re.Match[str]]) -> bool:
    for m in conditions:
        if m.group("arg") is not None:
            if record.unique_args.get(m.group("arg")) != m.group("argval"):
                return False
        elif m.group("field") is not None:
            if str(getattr(record, m.group("field").lower())) != m.group("val"):
                return False
        elif not record.msg_id.startswith(m.group("prefix")):
            return False
    return True


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "LocalSendGrid/1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sendgrid-local: " + format, *args)

    def _reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        # Recorded before the answer goes out, so a client that has its answer sees the record.
        state = self.server.state
        with state.lock:
            state.requests.append(RequestRecord(self.command, urlsplit(self.path).path, status))
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _authorised(self) -> bool:
        expected = f"Bearer {self.server.state.api_key}"
        given = self.headers.get("Authorization", "")
        if secrets.compare_digest(given.encode(), expected.encode()):
            return True
        self._reply(401, {"errors": [_error("Authorization failed: the API key is missing, malformed or not valid.")]})
        return False

    def _scripted(self, path: str) -> bool:
        state = self.server.state
        with state.lock:
            step = state.script.popleft() if state.script and state.script[0].path == path else None
        if step is None:
            return False
        headers = {}
        if step.retry_after is not None:
            headers["Retry-After"] = f"{step.retry_after:g}"
        messages = {429: "Too many requests.", 400: "Bad Request"}
        self._reply(step.status, {"errors": [_error(messages.get(step.status, "Internal server error."))]}, headers)
        return True

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path != MAIL_SEND:
            self._reply(404, {"errors": [_error("resource not found")]})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._reply(413, {"errors": [_error("The request body is too large.")]})
            return
        raw = self.rfile.read(length)
        if not self._authorised() or self._scripted(MAIL_SEND):
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._reply(400, {"errors": [_error("Bad Request: the body is not valid JSON.")]})
            return
        errors = validate_mail(body)
        if errors:
            self._reply(400, {"errors": errors})
            return
        x_id = secrets.token_urlsafe(16)[:22]
        now = datetime.now(UTC)
        state = self.server.state
        with state.lock:
            stall = state.stalls.popleft() if state.stalls else None
            state.messages.append(AcceptedMail(x_id, body, now))
            n = 0
            for p in body["personalizations"]:
                args = {**(body.get("custom_args") or {}), **(p.get("custom_args") or {})}
                for t in p["to"]:
                    state.activity.append(
                        ActivityRecord(
                            msg_id=f"{x_id}.recvd-local-{len(state.activity)}-{n}.0",
                            from_email=body["from"]["email"],
                            to_email=t["email"],
                            subject=p.get("subject") or body.get("subject", ""),
                            unique_args=args,
                            last_event_time=now,
                        )
                    )
                    n += 1
        self._post_events(body, x_id, now)
        if stall is not None:
            # Accepted and kept, but the answer comes too late for the client (or never).
            time.sleep(stall)
            with contextlib.suppress(OSError):  # the client gave up and closed the connection
                self._reply(202, None, {"X-Message-Id": x_id})
            return
        self._reply(202, None, {"X-Message-Id": x_id})

    def _post_events(self, body: dict[str, Any], x_id: str, now: datetime) -> None:
        state = self.server.state
        if state.webhook_url is None or state.webhook_key is None:
            return
        events = [
            {
                "email": t["email"],
                "timestamp": int(now.timestamp()),
                "event": "processed",
                "sg_event_id": secrets.token_urlsafe(16),
                "sg_message_id": f"{x_id}.filter-local",
                **(body.get("custom_args") or {}),
                **(p.get("custom_args") or {}),
            }
            for p in body["personalizations"]
            for t in p["to"]
        ]
        post_signed_events(state.webhook_url, state.webhook_key, events)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != MESSAGES:
            self._reply(404, {"errors": [_error("resource not found")]})
            return
        if not self._authorised() or self._scripted(MESSAGES):
            return
        params = parse_qs(parts.query)
        try:
            limit = int(params.get("limit", ["10"])[0])
        except ValueError:
            limit = -1
        if not 1 <= limit <= 1000:
            self._reply(400, {"errors": [_error("limit must be an integer from 1 to 1000", "limit")]})
            return
        conditions = _parse_query(params.get("query", [""])[0])
        if conditions is None:
            self._reply(400, {"errors": [_error("The query could not be parsed.", "query")]})
            return
        with self.server.state.lock:
            found = [r for r in reversed(self.server.state.activity) if _matches(r, conditions)][:limit]
        self._reply(200, {"messages": [r.to_json() for r in found]})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: _State) -> None:
        super().__init__(address, _Handler)
        self.state = state


class _LocalServer:
    """Start, stop and address of a local HTTP server on its own thread (a free port unless
    one is given); a subclass says which server it runs (``_make``)."""

    _thread_name = "local-server"

    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _make(self, address: tuple[str, int]) -> ThreadingHTTPServer:
        raise NotImplementedError

    def start(self) -> Self:
        if self._server is None:
            self._server = self._make(self._address)
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name=self._thread_name, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = None
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL to give the client."""
        if self._server is None:
            raise RuntimeError("the server is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"


class SendGridServer(_LocalServer):
    """A local SendGrid stand-in on 127.0.0.1; give its ``url`` to the client as its ``host``."""

    _thread_name = "sendgrid-local"

    def __init__(self, api_key: str, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._state = _State(api_key=api_key)

    def __repr__(self) -> str:
        return f"SendGridServer(url={self.url if self._server else None!r})"

    def _make(self, address: tuple[str, int]) -> ThreadingHTTPServer:
        return _Server(address, self._state)

    def fail_next(
        self, status: int, times: int = 1, *, retry_after: float | None = None, path: str = MAIL_SEND
    ) -> None:
        """Answer the next ``times`` authorised calls to ``path`` with ``status``."""
        with self._state.lock:
            for _ in range(times):
                self._state.script.append(_Scripted(status, retry_after, path))

    def stall_after_accept(self, seconds: float, times: int = 1) -> None:
        """Accept the next ``times`` messages (they count as sent), then wait ``seconds`` before
        answering: a client with a shorter timeout never learns that SendGrid has them."""
        with self._state.lock:
            self._state.stalls.extend([seconds] * times)

    def post_events_to(self, url: str, private_key: ec.EllipticCurvePrivateKey) -> None:
        """From now on, post a signed "processed" event for each accepted message to ``url``
        (SendGrid's signed event webhook), before answering the send."""
        with self._state.lock:
            self._state.webhook_url = url
            self._state.webhook_key = private_key

    @property
    def messages(self) -> list[AcceptedMail]:
        with self._state.lock:
            return list(self._state.messages)

    @property
    def activity(self) -> list[ActivityRecord]:
        with self._state.lock:
            return list(self._state.activity)

    @property
    def requests(self) -> list[RequestRecord]:
        with self._state.lock:
            return list(self._state.requests)

    def reset(self) -> None:
        """Forget accepted messages, the activity feed, the request log and any script."""
        with self._state.lock:
            self._state.messages.clear()
            self._state.activity.clear()
            self._state.requests.clear()
            self._state.script.clear()
            self._state.stalls.clear()


def post_signed_events(url: str, private_key: ec.EllipticCurvePrivateKey, events: list[dict[str, Any]]) -> int:
    """POST ``events`` to an event webhook signed as SendGrid signs them (ECDSA P-256 with
    SHA-256 over the timestamp and the body); the HTTP status it answered."""
    body = json.dumps(events).encode()
    timestamp = str(int(time.time()))
    signature = b64encode(private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": signature,
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        log.warning("event webhook %s answered %d", url, exc.code)
        return int(exc.code)
    except OSError as exc:
        log.warning("event webhook %s unreachable: %s", url, type(exc).__name__)
        return 0


# --- Jira Cloud ------------------------------------------------------------------------------

JIRA_API = "/rest/api/3"
NOT_FOUND = "Issue does not exist or you do not have permission to see it."
# A simple workflow: status -> (status category, transitions as (id, name, to)).
WORKFLOW: dict[str, tuple[str, tuple[tuple[str, str, str], ...]]] = {
    "To Do": ("new", (("11", "Start progress", "In Progress"), ("31", "Done", "Done"))),
    "In Progress": ("indeterminate", (("21", "Stop progress", "To Do"), ("31", "Done", "Done"))),
    "Done": ("done", (("41", "Reopen", "To Do"),)),
}
_JQL_TERM = re.compile(r'^\s*(project|labels)\s*=\s*"([^"]*)"\s*$', re.IGNORECASE)


def is_adf(doc: Any) -> bool:
    """Whether ``doc`` is an Atlassian Document: the only text Jira's v3 API takes."""
    if not isinstance(doc, dict) or doc.get("type") != "doc" or doc.get("version") != 1:
        return False
    content = doc.get("content")
    return isinstance(content, list) and all(isinstance(n, dict) and isinstance(n.get("type"), str) for n in content)


def _errors(messages: list[str] | None = None, fields: dict[str, str] | None = None) -> dict[str, Any]:
    return {"errorMessages": messages or [], "errors": fields or {}}


@dataclass(slots=True)
class JiraIssue:
    """One issue the local Jira holds."""

    id: str
    key: str
    fields: dict[str, Any]
    status: str = "To Do"
    comments: list[dict[str, Any]] = field(default_factory=list)
    created: float = field(default_factory=time.monotonic)

    @property
    def labels(self) -> list[str]:
        return list(self.fields.get("labels") or [])

    @property
    def summary(self) -> str:
        return str(self.fields.get("summary", ""))

    def comment_texts(self) -> list[str]:
        """Each comment's text, its paragraphs joined by new lines."""
        return ["\n".join(_adf_text(c["body"])) for c in self.comments]


def _adf_text(doc: dict[str, Any]) -> list[str]:
    return ["".join(t.get("text", "") for t in p.get("content", [])) for p in doc.get("content", [])]


@dataclass(slots=True)
class _JiraState:
    auth: str
    project: str
    issue_types: frozenset[str]
    search_lag_s: float
    # Re-entrant: a request holds it throughout, and its answer is logged under it too.
    lock: threading.RLock = field(default_factory=threading.RLock)
    issues: dict[str, JiraIssue] = field(default_factory=dict)
    ids: Any = field(default_factory=lambda: itertools.count(10001))
    requests: list[RequestRecord] = field(default_factory=list)
    script: deque[_Scripted] = field(default_factory=deque)


class _JiraHandler(BaseHTTPRequestHandler):
    server: _JiraHttp
    server_version = "LocalJira/1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("jira-local: " + format, *args)

    def _reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None, text: str = "") -> None:
        state = self.server.state
        with state.lock:
            state.requests.append(RequestRecord(self.command, urlsplit(self.path).path, status))
        data = text.encode() if text else (b"" if body is None else json.dumps(body).encode())
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "text/plain" if text else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _body(self) -> Any:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return json.loads(raw) if raw else None

    def _admitted(self, path: str) -> bool:
        """Credentials, then any scripted failure (answers and returns False if either stops it)."""
        state = self.server.state
        if not secrets.compare_digest(self.headers.get("Authorization", "").encode(), state.auth.encode()):
            # Jira answers a bad token in plain text, not as an ErrorCollection.
            self._reply(401, text="Client must be authenticated to access this resource.")
            return False
        with state.lock:
            step = state.script.popleft() if state.script and path.startswith(state.script[0].path) else None
        if step is None:
            return True
        headers = {"Retry-After": f"{step.retry_after:g}"} if step.retry_after is not None else {}
        if step.status == 429:
            headers["RateLimit-Reason"] = "jira-burst-based"
        words = {429: "Rate limit exceeded.", 400: "Bad request."}.get(step.status, "Internal server error.")
        self._reply(step.status, _errors([words]), headers)
        return False

    def _issue(self, key: str) -> JiraIssue | None:
        issue = self.server.state.issues.get(key)
        if issue is None:
            self._reply(404, _errors([NOT_FOUND]))
        return issue

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        body = self._body() if method == "POST" else None
        if not path.startswith(JIRA_API) or not self._admitted(path):
            if not path.startswith(JIRA_API):
                self._reply(404, _errors(["Not found."]))
            return
        rest = path[len(JIRA_API) :].strip("/").split("/")
        query = parse_qs(parts.query)
        with self.server.state.lock:
            if rest == ["issue"] and method == "POST":
                self._create(body)
            elif rest == ["search", "jql"]:
                self._search(body if method == "POST" else {k: v[0] for k, v in query.items()})
            elif len(rest) == 2 and rest[0] == "issue" and method == "GET":
                self._show(rest[1])
            elif len(rest) == 3 and rest[0] == "issue" and rest[2] == "comment":
                self._comment(rest[1], body) if method == "POST" else self._comments(rest[1], query)
            elif len(rest) == 3 and rest[0] == "issue" and rest[2] == "transitions":
                self._transition(rest[1], body) if method == "POST" else self._transitions(rest[1])
            else:
                self._reply(404, _errors(["Not found."]))

    def _create(self, body: Any) -> None:
        state = self.server.state
        fields = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(fields, dict):
            self._reply(400, _errors(["The request body must hold fields."]))
            return
        problems: dict[str, str] = {}
        if (fields.get("project") or {}).get("key") != state.project:
            problems["project"] = "Specify a valid project ID or key"
        if (fields.get("issuetype") or {}).get("name") not in state.issue_types:
            problems["issuetype"] = "Specify a valid issue type"
        summary = fields.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            problems["summary"] = "You must specify a summary of the issue."
        elif len(summary) > 255 or "\n" in summary:
            problems["summary"] = "Summary must be less than 255 characters and on one line."
        if "description" in fields and not is_adf(fields["description"]):
            problems["description"] = "Operation value must be an Atlassian Document (see the ADF)"
        labels = fields.get("labels", [])
        if not isinstance(labels, list) or any(not isinstance(x, str) or not x or " " in x for x in labels):
            problems["labels"] = "Labels cannot contain spaces."
        if problems:
            self._reply(400, _errors(fields=problems))
            return
        n = next(state.ids)
        key = f"{state.project}-{n - 10000}"
        state.issues[key] = JiraIssue(id=str(n), key=key, fields=fields)
        self._reply(201, {"id": str(n), "key": key, "self": f"{self._base()}/issue/{n}"})

    def _base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{JIRA_API}"

    def _search(self, body: Any) -> None:
        state = self.server.state
        jql = str((body or {}).get("jql") or "")
        where = jql.split(" ORDER BY ", 1)[0] if " ORDER BY " in jql.upper() else jql
        terms = [t for t in re.split(r"\s+AND\s+", where, flags=re.IGNORECASE) if t.strip()]
        matches = [_JQL_TERM.match(t) for t in terms]
        if not terms or any(m is None for m in matches):
            self._reply(400, _errors(['Unbounded or unsupported JQL: use project = "X" AND labels = "y".']))
            return
        now = time.monotonic()
        terms_of = [(m.group(1).lower(), m.group(2)) for m in matches if m is not None]
        hits = [
            i
            for i in state.issues.values()
            if now - i.created >= state.search_lag_s  # the index lags behind what was just created
            and all((i.fields["project"]["key"] == v) if k == "project" else v in i.labels for k, v in terms_of)
        ]
        wanted = list((body or {}).get("fields") or [])
        found = [
            {
                "id": i.id,
                "key": i.key,
                "self": f"{self._base()}/issue/{i.id}",
                **({"fields": {"status": self._status(i)}} if "status" in wanted else {}),
            }
            for i in sorted(hits, key=lambda i: int(i.id))
        ]
        self._reply(200, {"issues": found[: int((body or {}).get("maxResults") or 50)], "isLast": True})

    @staticmethod
    def _status(issue: JiraIssue) -> dict[str, Any]:
        category = WORKFLOW[issue.status][0]
        return {"name": issue.status, "statusCategory": {"key": category}}

    def _show(self, key: str) -> None:
        issue = self._issue(key)
        if issue is not None:
            self._reply(200, {"id": issue.id, "key": issue.key, "fields": {"status": self._status(issue)}})

    def _comment(self, key: str, body: Any) -> None:
        issue = self._issue(key)
        if issue is None:
            return
        if not isinstance(body, dict) or not is_adf(body.get("body")):
            self._reply(400, _errors(fields={"comment": "Comment body is not valid!"}))
            return
        comment = {
            "id": str(10000 + sum(len(i.comments) for i in self.server.state.issues.values())),
            "body": body["body"],
            "created": datetime.now(UTC).isoformat(),
            "properties": list(body.get("properties") or []),
        }
        issue.comments.append(comment)
        self._reply(201, {k: v for k, v in comment.items() if k != "properties"})

    def _comments(self, key: str, query: dict[str, list[str]]) -> None:
        issue = self._issue(key)
        if issue is None:
            return
        expand = "properties" in query.get("expand", [""])[0]
        ordered = issue.comments[::-1] if query.get("orderBy", [""])[0] == "-created" else issue.comments
        limit = int(query.get("maxResults", ["5000"])[0])
        shown = [{k: v for k, v in c.items() if k != "properties" or expand} for c in ordered[:limit]]
        self._reply(200, {"startAt": 0, "maxResults": limit, "total": len(issue.comments), "comments": shown})

    def _transitions(self, key: str) -> None:
        issue = self._issue(key)
        if issue is not None:
            options = [
                {"id": t, "name": name, "to": {"name": to, "statusCategory": {"key": WORKFLOW[to][0]}}}
                for t, name, to in WORKFLOW[issue.status][1]
            ]
            self._reply(200, {"expand": "transitions", "transitions": options})

    def _transition(self, key: str, body: Any) -> None:
        issue = self._issue(key)
        if issue is None:
            return
        wanted = str(((body or {}).get("transition") or {}).get("id"))
        to = [to for t, _, to in WORKFLOW[issue.status][1] if t == wanted]
        if not to:
            self._reply(400, _errors([f"Transition id '{wanted}' is not valid for this issue."]))
            return
        issue.status = to[0]
        self._reply(204)


class _JiraHttp(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: _JiraState) -> None:
        super().__init__(address, _JiraHandler)
        self.state = state


class JiraServer(_LocalServer):
    """A local Jira Cloud stand-in on 127.0.0.1, with one project, basic auth by account email
    and API token, and the workflow ``WORKFLOW``; its ``url`` is the site URL
    (``BREACHWATCH_JIRA_URL``). ``search_lag_s`` keeps a new issue out of search results that
    long, as Jira's index does."""

    _thread_name = "jira-local"

    def __init__(
        self,
        email: str,
        api_token: str,
        *,
        project: str = "SEC",
        issue_types: tuple[str, ...] = ("Task", "Bug"),
        search_lag_s: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        auth = "Basic " + base64.b64encode(f"{email}:{api_token}".encode()).decode()
        self._state = _JiraState(auth, project, frozenset(issue_types), search_lag_s)

    def _make(self, address: tuple[str, int]) -> ThreadingHTTPServer:
        return _JiraHttp(address, self._state)

    def fail_next(self, status: int, times: int = 1, *, retry_after: float | None = None, path: str = JIRA_API) -> None:
        """Answer the next ``times`` authorised calls whose path starts with ``path`` with ``status``."""
        with self._state.lock:
            for _ in range(times):
                self._state.script.append(_Scripted(status, retry_after, path))

    @property
    def issues(self) -> list[JiraIssue]:
        with self._state.lock:
            return sorted(self._state.issues.values(), key=lambda i: int(i.id))

    @property
    def requests(self) -> list[RequestRecord]:
        with self._state.lock:
            return list(self._state.requests)
