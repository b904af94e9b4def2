"""Delivery never twice: a dispatcher process really killed before, during and after the call
to SendGrid (local server), then restarted, leaves exactly one copy of every message at the
provider; so does a SendGrid that accepts a message and answers only after the client timed
out: the message is looked up (event-webhook receipts, then the activity feed) before any
resend, and when SendGrid cannot say whether it has one, the message waits for a person."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.channels.registry import build_channels
from breachwatch.channels.sendgrid_api import SendGridChannel
from breachwatch.cli import main as breachwatch_command
from breachwatch.console.app import create_app
from breachwatch.core.clock import utcnow
from breachwatch.core.settings import Settings, load_settings
from breachwatch.devkit.servers import MESSAGES
from breachwatch.notifier.message import EMAIL
from breachwatch.notifier.notices import approve_notice, list_notices, on_breach_confirmed, resolve_unknown
from breachwatch.notifier.outbox import Dispatcher, OutboxRow
from breachwatch.runtime.app import outbox_dispatcher

pytestmark = pytest.mark.usefixtures("no_notice_files")
CHILD = Path(__file__).with_name("kill_dispatcher.py")
AFTER_LEASE = dt.timedelta(minutes=5, seconds=1)  # the dispatcher's default lease, just expired


@pytest.fixture
def sg_settings(tmp_path: Path, sendgrid_server, sendgrid_key) -> Settings:
    return load_settings(
        db_url=f"sqlite:///{tmp_path / 'notifier.db'}",
        mail_channel="sendgrid",
        sendgrid_api_key=sendgrid_key,
        sendgrid_host=sendgrid_server.url,
        mail_from="breachwatch@unisen.example",
    )


@pytest.fixture
def approved(engine, sg_settings, store_incident) -> tuple[str, str]:
    """(incident id, notice id) of an approved notice: four messages waiting in the outbox."""
    incident_id = store_incident()
    with Session(engine) as session, session.begin():
        [notice_id] = on_breach_confirmed(
            session,
            incident_id,
            confirmed_by="responder-ada",
            confirmed_at=utcnow() - dt.timedelta(hours=1),
            settings=sg_settings,
        )
        assert approve_notice(session, notice_id, "approver-bo")["queued"] == 4
    return incident_id, notice_id


@pytest.fixture
def webhook_key() -> ec.EllipticCurvePrivateKey:
    """The key SendGrid signs its event webhook with (the console holds the public half)."""
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def console_url(engine, sg_settings, webhook_key) -> Iterator[str]:
    """The console, served by uvicorn on 127.0.0.1 over the test database, its SendGrid event
    webhook configured with ``webhook_key``'s public half."""
    public = webhook_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings = sg_settings.model_copy(update={"sendgrid_webhook_public_key": base64.b64encode(public).decode()})
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, engine), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _run_child(settings: Settings, kill_at: str, sendgrid_key: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BREACHWATCH_")}
    env.update(
        BREACHWATCH_DB_URL=settings.db_url,
        BREACHWATCH_MAIL_CHANNEL="sendgrid",
        BREACHWATCH_SENDGRID_API_KEY=sendgrid_key,
        BREACHWATCH_SENDGRID_HOST=settings.sendgrid_host,
        BREACHWATCH_MAIL_FROM=settings.mail_from,
        BREACHWATCH_TEST_KILL_AT=kill_at,
    )
    return subprocess.run([sys.executable, str(CHILD)], env=env, capture_output=True, text=True, timeout=60)


def _restart(engine, settings: Settings):
    """A new dispatcher after the dead one's lease ran out."""
    return Dispatcher(engine, build_channels(settings), clock=lambda: utcnow() + AFTER_LEASE).dispatch_due()


def _rows(engine) -> dict[str, str]:
    with Session(engine) as session:
        return dict(session.execute(select(OutboxRow.message_id, OutboxRow.status)).all())


def _copies(server) -> Counter[str]:
    return Counter(m.custom_args["message_id"] for m in server.messages)


@pytest.mark.parametrize(("kill_at", "copies_after_kill"), [("before", {0}), ("during", {0, 1}), ("after", {1})])
def test_a_killed_dispatcher_never_makes_a_second_copy(
    engine, sg_settings, sendgrid_server, sendgrid_key, approved, kill_at, copies_after_kill
) -> None:
    incident_id, _ = approved
    child = _run_child(sg_settings, kill_at, sendgrid_key)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert set(_rows(engine).values()) == {"sending"}  # claimed, outcome not recorded
    assert len(sendgrid_server.messages) in copies_after_kill

    report = _restart(engine, sg_settings)

    rows = _rows(engine)
    assert set(rows.values()) == {"sent"}
    copies = _copies(sendgrid_server)
    assert copies == Counter(dict.fromkeys(rows, 1))  # every message exactly once
    # What reached SendGrid before the kill is confirmed from its activity feed, not sent again.
    assert report.reconciled == len(sendgrid_server.activity) - report.sent
    assert _restart(engine, sg_settings).attempted == 0
    assert len(sendgrid_server.messages) == 4
    with Session(engine) as session:
        [notice] = list_notices(session, incident_id)
    assert notice["status"] == "sent"
    assert {d["rule_id"]: d["status"] for d in notice["duties"]}["eu.art33-2.controller"] == "met"


def test_an_unconfirmable_send_waits_for_a_person(engine, sg_settings, sendgrid_server, sendgrid_key, approved) -> None:
    incident_id, _ = approved
    assert _run_child(sg_settings, "after", sendgrid_key).returncode == -signal.SIGKILL
    [(first_id, count)] = _copies(sendgrid_server).items()
    assert count == 1
    # The activity feed refuses look-ups (e.g. the account has no Email Activity add-on).
    sendgrid_server.fail_next(403, times=4, path=MESSAGES)

    report = _restart(engine, sg_settings)

    assert (report.unknown, report.attempted) == (4, 0)
    assert set(_rows(engine).values()) == {"unknown"}
    assert _restart(engine, sg_settings).attempted == 0  # never resent blindly
    with Session(engine) as session:
        [notice] = list_notices(session, incident_id)
    assert notice["status"] == "outcome_unknown"
    assert len(sendgrid_server.messages) == 1

    # A person checks the provider: the first arrived, the others did not.
    with Session(engine) as session, session.begin():
        for message_id in _rows(engine):
            assert resolve_unknown(session, message_id, arrived=message_id == first_id, by="approver-bo")
    _restart(engine, sg_settings)
    assert _copies(sendgrid_server) == Counter(dict.fromkeys(_rows(engine), 1))
    assert set(_rows(engine).values()) == {"sent"}
    with Session(engine) as session:
        assert json.dumps(list_notices(session, incident_id)[0]["status"]) == '"sent"'


# --- a provider that accepts and then does not answer --------------------------------------------

STALL_S = 2.5
CLIENT_TIMEOUT_S = 1.0


def _dispatcher(engine, settings: Settings, sendgrid_key: str, after: dt.timedelta = dt.timedelta(0)):
    """The service's dispatcher (send guard, receipts) on the real SendGrid client, whose timeout
    is shorter than the server's stall."""
    channel = SendGridChannel(sendgrid_key, settings.mail_from, host=settings.sendgrid_host, timeout=CLIENT_TIMEOUT_S)
    dispatcher = outbox_dispatcher(settings, engine, {EMAIL: channel})
    dispatcher.clock = lambda: utcnow() + after
    return dispatcher


def _stalled_send(engine, sg_settings, sendgrid_server, sendgrid_key) -> str:
    """One pass in which SendGrid accepts the first message and answers too late; its id."""
    sendgrid_server.stall_after_accept(STALL_S)
    report = _dispatcher(engine, sg_settings, sendgrid_key).dispatch_due()
    assert (report.in_doubt, report.sent, report.retried) == (1, 3, 0)
    [(doubtful, status)] = [(m, s) for m, s in _rows(engine).items() if s != "sent"]
    assert status == "sending"  # not pending: nothing sends it again before SendGrid is asked
    assert _copies(sendgrid_server) == Counter(dict.fromkeys(_rows(engine), 1))
    # Passes before the lease ends leave it alone.
    assert _dispatcher(engine, sg_settings, sendgrid_key).dispatch_due().attempted == 0
    return doubtful


def test_a_send_accepted_then_timed_out_is_looked_up_not_resent(
    engine, sg_settings, sendgrid_server, sendgrid_key, approved
) -> None:
    incident_id, _ = approved
    _stalled_send(engine, sg_settings, sendgrid_server, sendgrid_key)

    report = _dispatcher(engine, sg_settings, sendgrid_key, AFTER_LEASE).dispatch_due()

    assert (report.reconciled, report.attempted) == (1, 0)  # found in the activity feed
    assert set(_rows(engine).values()) == {"sent"}
    assert _copies(sendgrid_server) == Counter(dict.fromkeys(_rows(engine), 1))
    assert len(sendgrid_server.messages) == 4
    with Session(engine) as session:
        [notice] = list_notices(session, incident_id)
    assert notice["status"] == "sent"


def test_a_timed_out_send_is_settled_by_the_event_webhook_receipt(
    engine, sg_settings, sendgrid_server, sendgrid_key, approved, console_url, webhook_key
) -> None:
    # SendGrid posts its signed "processed" events to the console, as a deployment configures it.
    sendgrid_server.post_events_to(f"{console_url}/webhooks/sendgrid/events", webhook_key)
    doubtful = _stalled_send(engine, sg_settings, sendgrid_server, sendgrid_key)
    # The account has no Email Activity: only the receipts can tell.
    sendgrid_server.fail_next(403, times=4, path=MESSAGES)

    report = _dispatcher(engine, sg_settings, sendgrid_key, AFTER_LEASE).dispatch_due()

    assert (report.reconciled, report.unknown, report.attempted) == (1, 0, 0)
    assert _rows(engine)[doubtful] == "sent"
    assert _copies(sendgrid_server) == Counter(dict.fromkeys(_rows(engine), 1))
    assert not [r for r in sendgrid_server.requests if r.path == MESSAGES]  # the receipt answered first


def test_when_nobody_can_tell_a_person_decides_on_the_command_line(
    engine, sg_settings, sendgrid_server, sendgrid_key, approved
) -> None:
    doubtful = _stalled_send(engine, sg_settings, sendgrid_server, sendgrid_key)
    sendgrid_server.fail_next(403, times=4, path=MESSAGES)
    report = _dispatcher(engine, sg_settings, sendgrid_key, AFTER_LEASE).dispatch_due()
    assert (report.unknown, report.attempted) == (1, 0)

    cli = CliRunner()
    env = {"BREACHWATCH_DB_URL": sg_settings.db_url, "BREACHWATCH_CONFIG": "", "BREACHWATCH_MAIL_CHANNEL": "file"}
    listed = cli.invoke(breachwatch_command, ["notices", "unknown"], env=env, catch_exceptions=False)
    assert doubtful in listed.output
    refused = cli.invoke(breachwatch_command, ["notices", "outcome", doubtful, "--arrived", "--by", "nobody"], env=env)
    assert refused.exit_code == 1 and "no user 'nobody'" in refused.output
    # The provider's dashboard shows it: a person records it as sent, and it is never sent again.
    decided = cli.invoke(
        breachwatch_command, ["notices", "outcome", doubtful, "--arrived", "--by", "Approver-Bo"], env=env
    )
    assert decided.exit_code == 0 and "recorded as sent" in decided.output
    assert _dispatcher(engine, sg_settings, sendgrid_key, AFTER_LEASE).dispatch_due().attempted == 0
    assert set(_rows(engine).values()) == {"sent"}
    assert _copies(sendgrid_server) == Counter(dict.fromkeys(_rows(engine), 1))
