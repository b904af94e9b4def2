"""The Jira channel against the local Jira Cloud server (real HTTP, Jira's shapes): one issue per
incident whatever happens (a repeat, a crash between opening the issue and storing its key),
a comment per change, done on closing and back on reopening, and Jira's errors mapped to the
outbox's (429 with its Retry-After, 5xx, 4xx), the token never in an error."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.channels.jira import JiraChannel, label
from breachwatch.devkit.servers import JiraServer
from breachwatch.notifier.delivery import Delivered, NotFound, PermanentError, RetryableError
from breachwatch.notifier.integrations import CHANGE_HEADER, STATUS_HEADER
from breachwatch.notifier.message import OutboxMessage
from breachwatch.notifier.outbox import Dispatcher, OutboxRow, enqueue
from breachwatch.notifier.tickets import TicketBook

EMAIL = "breachwatch-bot@unisen.example"
TOKEN = "jira-fictional-token-Xv71Qp"
INCIDENT = "0f3a9c21e4b05d18aa77c301"


class SimulatedCrash(BaseException):
    """The process dying: not an Exception, so nothing in the dispatcher catches it."""


class CrashingBook(TicketBook):
    """Dies right after Jira answered with the new issue, before its key is stored."""

    def remember(self, incident_id: str, key: str) -> str:
        raise SimulatedCrash


@pytest.fixture
def jira() -> Iterator[JiraServer]:
    with JiraServer(EMAIL, TOKEN, project="SEC") as server:
        yield server


def _channel(jira: JiraServer, engine: Engine, book: TicketBook | None = None, token: str = TOKEN) -> JiraChannel:
    return JiraChannel(jira.url, EMAIL, token, "SEC", book or TicketBook(engine, "jira"))


def _change(n: int, change: str, status: str, text: str = "", incident: str = INCIDENT) -> OutboxMessage:
    return OutboxMessage(
        message_id=f"chg-{incident[:6]}-{n}",
        channel="jira",
        recipient="oncall-security@unisen.example",
        subject="[BreachWatch] HIGH bulk export: 48,211 records exported by u-hans",
        body_text=text or f"Incident {incident} {change}.\nStatus: {status}.",
        message_type=f"incident.{change}",
        incident_id=incident,
        headers={CHANGE_HEADER: change, STATUS_HEADER: status},
        ordering_key=f"incident:{incident}",
        attempt=1,
    )


def test_an_incident_gets_one_issue_then_comments_then_done_and_back(jira, engine) -> None:
    channel = _channel(jira, engine)
    key = channel.send(_change(1, "opened", "open", "Incident opened.\nWhy:\n- 41x the usual volume"))
    [issue] = jira.issues
    assert key == issue.key == "SEC-1"
    assert issue.summary.startswith("[BreachWatch] HIGH bulk export")
    assert set(issue.labels) == {"breachwatch", label(INCIDENT)}
    assert issue.comments == [] and issue.status == "To Do"

    assert channel.send(_change(2, "acknowledge", "acknowledged", "Acknowledged by ada.")) == key
    assert channel.send(_change(3, "resolve", "resolved", "Resolved by ada: the tenant's own export.")) == key
    assert jira.issues[0].status == "Done"
    assert jira.issues[0].comment_texts() == ["Acknowledged by ada.", "Resolved by ada: the tenant's own export."]
    assert channel.send(_change(4, "reopen", "open", "Reopened: new evidence.")) == key
    assert jira.issues[0].status == "To Do" and len(jira.issues) == 1
    assert TicketBook(engine, "jira").key(INCIDENT) == key


def test_a_closing_change_that_finds_the_issue_done_moves_nothing(jira, engine) -> None:
    channel = _channel(jira, engine)
    channel.send(_change(1, "opened", "open"))
    channel.send(_change(2, "resolve", "resolved"))
    moves = sum(1 for r in jira.requests if r.method == "POST" and r.path.endswith("/transitions"))
    channel.send(_change(3, "merged_into", "resolved"))
    assert sum(1 for r in jira.requests if r.method == "POST" and r.path.endswith("/transitions")) == moves


def test_a_first_change_other_than_opening_opens_the_issue_with_that_text(jira, engine) -> None:
    """Jira was configured after the incident opened: its next change opens the issue."""
    _channel(jira, engine).send(_change(1, "resolve", "resolved", "Resolved by ada."))
    [issue] = jira.issues
    assert issue.status == "Done" and issue.comments == []
    assert [p["content"][0]["text"] for p in issue.fields["description"]["content"]] == ["Resolved by ada."]


def test_a_crash_between_opening_the_issue_and_storing_its_key_opens_no_second(jira, engine, clock) -> None:
    with Session(engine) as session, session.begin():
        enqueue(session, _change(1, "opened", "open"), now=clock())
        enqueue(session, _change(2, "acknowledge", "acknowledged", "Acknowledged by ada."), now=clock())
    crashing = Dispatcher(engine, {"jira": _channel(jira, engine, CrashingBook(engine, "jira"))}, clock=clock)
    with pytest.raises(SimulatedCrash):
        crashing.dispatch_due()
    assert len(jira.issues) == 1 and TicketBook(engine, "jira").key(INCIDENT) is None

    clock.advance(301)  # the claim's lease runs out; the restarted service settles it
    report = Dispatcher(engine, {"jira": _channel(jira, engine)}, clock=clock).dispatch_due()
    assert (report.reconciled, report.sent) == (1, 1)
    [issue] = jira.issues
    assert TicketBook(engine, "jira").key(INCIDENT) == issue.key
    assert issue.comment_texts() == ["Acknowledged by ada."]
    with Session(engine) as session:
        assert {r.message_id: r.status for r in session.query(OutboxRow)} == {
            "chg-0f3a9c-1": "sent",
            "chg-0f3a9c-2": "sent",
        }


def test_with_no_key_stored_the_label_finds_the_issue(jira, engine) -> None:
    _channel(jira, engine).send(_change(1, "opened", "open"))
    fresh = TicketBook(engine, "jira-other-store")  # a store that never saw the key
    _channel(jira, engine, fresh).send(_change(2, "acknowledge", "acknowledged", "Acknowledged by ada."))
    assert len(jira.issues) == 1 and jira.issues[0].comment_texts() == ["Acknowledged by ada."]
    assert fresh.key(INCIDENT) == jira.issues[0].key


def test_a_retried_comment_that_arrived_is_not_posted_twice(jira, engine) -> None:
    channel = _channel(jira, engine)
    channel.send(_change(1, "opened", "open"))
    ack = _change(2, "acknowledge", "acknowledged", "Acknowledged by ada.")
    channel.send(ack)
    channel.send(replace(ack, attempt=2))  # its answer was lost on the way back
    assert jira.issues[0].comment_texts() == ["Acknowledged by ada."]


def test_lookup_tells_what_reached_jira(jira, engine, clock) -> None:
    channel = _channel(jira, engine)
    opened, ack = _change(1, "opened", "open"), _change(2, "acknowledge", "acknowledged", "Acknowledged.")
    with Session(engine) as session, session.begin():
        enqueue(session, opened, now=clock())
        enqueue(session, ack, now=clock())
    assert isinstance(channel.lookup(opened.message_id), NotFound)  # no issue yet
    channel.send(opened)
    assert channel.lookup(opened.message_id) == Delivered("SEC-1")
    assert isinstance(channel.lookup(ack.message_id), NotFound)  # the issue is there, the comment not
    channel.send(ack)
    assert channel.lookup(ack.message_id) == Delivered("SEC-1")


def test_429_is_retried_after_jiras_retry_after(jira, engine) -> None:
    jira.fail_next(429, retry_after=7)
    with pytest.raises(RetryableError) as caught:
        _channel(jira, engine).send(_change(1, "opened", "open"))
    assert caught.value.retry_after == 7
    assert jira.issues == []


@pytest.mark.parametrize(("status", "error"), [(503, RetryableError), (500, RetryableError), (400, PermanentError)])
def test_errors_map_to_the_outbox_contract(jira, engine, status, error) -> None:
    jira.fail_next(status)
    with pytest.raises(error):
        _channel(jira, engine).send(_change(1, "opened", "open"))


def test_a_rejected_field_is_permanent_and_named(jira, engine) -> None:
    channel = JiraChannel(jira.url, EMAIL, TOKEN, "SEC", TicketBook(engine, "jira"), issue_type="Epic saga")
    with pytest.raises(PermanentError, match="issuetype"):
        channel.send(_change(1, "opened", "open"))


def test_a_wrong_token_is_permanent_and_never_shown(jira, engine) -> None:
    wrong = "jira-wrong-token-Ab12Cd"
    with pytest.raises(PermanentError, match="401") as caught:
        _channel(jira, engine, token=wrong).send(_change(1, "opened", "open"))
    assert wrong not in str(caught.value) and TOKEN not in repr(_channel(jira, engine))


def test_the_outbox_delivers_an_incidents_changes_in_order_through_a_rate_limit(jira, engine, clock) -> None:
    with Session(engine) as session, session.begin():
        for n, (change, status) in enumerate([("opened", "open"), ("acknowledge", "acknowledged")], 1):
            enqueue(session, _change(n, change, status, f"change {n}"), now=clock())
        enqueue(session, _change(3, "resolve", "resolved", "change 3"), now=clock())
    dispatcher = Dispatcher(engine, {"jira": _channel(jira, engine)}, clock=clock)
    jira.fail_next(429, retry_after=30, path="/rest/api/3/issue/SEC-1/comment")
    dispatcher.dispatch_due()  # opens the issue; the acknowledgement waits its turn
    dispatcher.dispatch_due()  # the acknowledgement's comment meets the rate limit
    dispatcher.dispatch_due()  # nothing is due: the resolution waits behind it
    assert jira.issues[0].comment_texts() == []
    clock.advance(31)
    for _ in range(3):
        dispatcher.dispatch_due()
    assert jira.issues[0].comment_texts() == ["change 2", "change 3"]
    assert jira.issues[0].status == "Done"
