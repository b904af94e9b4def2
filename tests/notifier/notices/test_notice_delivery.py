"""Delivery never twice: a dispatcher process really killed before, during and after the call
to SendGrid (local server), then restarted, leaves exactly one copy of every message at the
provider; when SendGrid cannot say whether it has one, the message waits for a person."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.channels.registry import build_channels
from breachwatch.core.clock import utcnow
from breachwatch.core.settings import Settings, load_settings
from breachwatch.devkit.servers import MESSAGES
from breachwatch.notifier.notices import approve_notice, list_notices, on_breach_confirmed, resolve_unknown
from breachwatch.notifier.outbox import Dispatcher, OutboxRow

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
