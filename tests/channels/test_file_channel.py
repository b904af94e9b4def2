"""The file channel writes one parseable RFC 5322 .eml per message, atomically, and a
message dispatched twice still leaves exactly one file."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from breachwatch.channels.file import FileChannel
from breachwatch.notifier.delivery import Delivered, NotFound, RetryableError
from breachwatch.notifier.outbox import Dispatcher, OutboxRow, enqueue

SENDER = "breachwatch@unisen.example"


def _parse(path: Path) -> email.message.EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def test_writes_a_parseable_multipart_eml(tmp_path: Path, new_message, clock) -> None:
    channel = FileChannel(tmp_path / "outbox", SENDER, clock=clock)
    name = channel.send(new_message("msg-0001", headers={"X-BreachWatch-Incident": "inc-1"}))

    path = tmp_path / "outbox" / name
    assert name == "msg-0001.eml"
    parsed = _parse(path)
    assert parsed["From"] == SENDER
    assert parsed["To"] == "oncall@unisen.example"
    assert parsed["Subject"] == "[BreachWatch] HIGH bulk_export"
    assert parsed["Message-ID"] == "<msg-0001@unisen.example>"
    assert parsed["X-BreachWatch-Message-Id"] == "msg-0001"
    assert parsed["X-BreachWatch-Incident"] == "inc-1"
    assert parsed["Date"] == "Tue, 24 Nov 2026 03:00:00 +0000"
    assert parsed.get_content_type() == "multipart/alternative"
    # RFC 5322 line endings (CRLF) on disk.
    assert parsed.get_body(("plain",)).get_content() == "An export of 48211 customer records.\r\n"
    assert "<b>48211</b>" in parsed.get_body(("html",)).get_content()
    assert [p.name for p in path.parent.iterdir()] == ["msg-0001.eml"]  # no temporary left behind


def test_text_only_message_is_not_multipart(tmp_path: Path, new_message) -> None:
    channel = FileChannel(tmp_path, SENDER)
    parsed = _parse(tmp_path / channel.send(new_message(body_html=None)))
    assert parsed.get_content_type() == "text/plain"


def test_message_id_cannot_escape_the_folder(tmp_path: Path, new_message) -> None:
    channel = FileChannel(tmp_path / "outbox", SENDER)
    path = channel.path_for("../../etc/passwd")
    assert path.parent == tmp_path / "outbox"
    assert path.name.endswith(".eml") and ".." not in path.name


def test_lookup_reports_whether_the_file_exists(tmp_path: Path, new_message) -> None:
    channel = FileChannel(tmp_path, SENDER)
    assert channel.lookup("msg-0001") == NotFound()
    channel.send(new_message("msg-0001"))
    assert channel.lookup("msg-0001") == Delivered("msg-0001.eml")


def test_a_path_that_is_a_file_is_a_retryable_error(tmp_path: Path, new_message) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(RetryableError, match=r"cannot write msg-0001\.eml"):
        FileChannel(blocker, SENDER).send(new_message("msg-0001"))


def test_dispatched_twice_leaves_exactly_one_file(tmp_path: Path, engine, new_message, clock) -> None:
    outbox_dir = tmp_path / "outbox"
    channel = FileChannel(outbox_dir, SENDER, clock=clock)
    with Session(engine) as session, session.begin():
        assert enqueue(session, new_message("msg-0001"), now=clock())
    with Session(engine) as session, session.begin():
        assert not enqueue(session, new_message("msg-0001"), now=clock())  # a re-processed batch

    first = Dispatcher(engine, {"email": channel}, clock=clock).dispatch_due()
    second = Dispatcher(engine, {"email": channel}, clock=clock).dispatch_due()

    assert (first.sent, second.claimed) == (1, 0)
    files = sorted(p.name for p in outbox_dir.iterdir())
    assert files == ["msg-0001.eml"]
    assert _parse(outbox_dir / "msg-0001.eml")["X-BreachWatch-Message-Id"] == "msg-0001"
    with Session(engine) as session:
        row = session.get(OutboxRow, "msg-0001")
        assert row is not None
        assert (row.status, row.attempts, row.provider_message_id) == ("sent", 1, "msg-0001.eml")
