"""``breachwatch register list|show|export|write|assess|logs`` and the decisions under
``breachwatch notices`` (moment, delay add|lift|list, safe-harbour, contacts): each names an
active console user with the console's role for it, and is refused otherwise."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session

from breachwatch.cli import main as breachwatch_command
from breachwatch.core.settings import load_settings
from breachwatch.incidents import users
from breachwatch.notifier.notices import on_breach_confirmed, remember_tenants
from breachwatch.storage import audit

CONFIRMED_AT = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)
INCIDENT = "inc-7f3a9c21e4b05d18"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for var in ("BREACHWATCH_CONTRACTS_FILE", "BREACHWATCH_NOTICES_FILE", "BREACHWATCH_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    env = {
        "BREACHWATCH_DB_URL": f"sqlite:///{tmp_path / 'notifier.db'}",
        "BREACHWATCH_OUTBOX_DIR": str(tmp_path / "outbox"),
        "BREACHWATCH_MAIL_CHANNEL": "file",
    }

    def run(*args: str) -> click.testing.Result:
        return CliRunner().invoke(breachwatch_command, list(args), env=env, catch_exceptions=False)

    return run


@pytest.fixture
def breach(engine, tmp_path: Path, incident_factory, rhein_tenant) -> str:
    """A confirmed breach of a Californian tenant's HR records (social security numbers), and
    console users: ``bo`` (approver), ``ada`` (responder), ``vic`` (viewer)."""
    incident, findings, evidence = incident_factory()
    for row in evidence:
        row.event_json = row.event_json.replace('"resource_type":"customer"', '"resource_type":"employee"')
    settings = load_settings(db_url=f"sqlite:///{tmp_path / 'notifier.db'}")
    hasher = users.default_hasher()
    with Session(engine) as session, session.begin():
        session.add(incident)
        session.flush()
        session.add_all([*findings, *evidence])
        remember_tenants(session, [rhein_tenant.model_copy(update={"jurisdiction": "US-CA", "locale": "en"})])
        for name, role in (("bo", "approver"), ("ada", "responder"), ("vic", "viewer")):
            users.add_user(session, name, role, "a long fictional passphrase", hasher=hasher)
    with Session(engine) as session, session.begin():
        on_breach_confirmed(
            session, INCIDENT, confirmed_by="bo", confirmed_at=CONFIRMED_AT, settings=settings, now=CONFIRMED_AT
        )
    return INCIDENT


def test_list_show_write_and_export_the_register(cli, breach: str, tmp_path: Path, engine) -> None:
    listed = cli("register", "list")
    assert listed.exit_code == 0 and f"{breach}  confirmed 2026-11-24T09:00:00+00:00" in listed.output
    assert "t-rhein (not notified)" in listed.output
    assert cli("register", "list", "--notified").output.strip() == "no confirmed breach"

    refused = cli("register", "write", breach, "--facts", "x", "--by", "vic")
    assert refused.exit_code == 1 and "vic is a viewer; this needs the responder role" in refused.output
    assert (
        "no active console user 'nobody'" in cli("register", "write", breach, "--facts", "x", "--by", "nobody").output
    )
    written = cli(
        "register",
        "write",
        breach,
        "--facts",
        "HR records exported",
        "--remedial-action",
        "account disabled",
        "--by",
        "ADA",
    )
    assert written.exit_code == 0
    shown = json.loads(cli("register", "show", breach).output)
    assert (shown["facts"], shown["written_by"]) == ("HR records exported", "ada")

    out = tmp_path / "register.csv"
    assert cli("register", "export", "--format", "csv", "--out", str(out)).exit_code == 0
    [row] = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert (row["incident_id"], row["jurisdiction"], row["remedial_action"]) == (breach, "US-CA", "account disabled")
    assert json.loads(cli("register", "export").output)["entries"][0]["incident_id"] == breach
    with Session(engine) as session:
        assert [r.actor.startswith("cli:") for r in audit.recent(session, action="register.export")] == [True, True]


def test_delay_add_list_and_lift(cli, breach: str) -> None:
    # Cal. Civ. Code 1798.82(c): the residents' notice is held while the agency asks.
    args = ["notices", "delay", "add", breach, "--agency", "Fictional County Sheriff", "--official", "Det. Example"]
    args += ["--form", "written", "--requested-at", "2026-11-24T12:00:00Z"]
    assert "needs the approver role" in cli(*args, "--by", "ada").output
    added = cli(*args, "--by", "bo")
    assert added.exit_code == 0, added.output
    assert "holds us-ca.residents (t-rhein): Cal. Civ. Code 1798.82(c), until the agency says" in added.output
    assert "holds us-ca.maintainer-to-owner (t-rhein)" in added.output  # the vendor's own notice too
    [delay] = json.loads(cli("notices", "delay", "list", breach).output)
    assert (delay["official"], delay["form"]) == ("Det. Example", "written")
    lifted = cli("notices", "delay", "lift", delay["delay_id"], "--at", "2026-12-01T10:00:00Z", "--by", "bo")
    assert lifted.exit_code == 0 and "restarted: us-ca.maintainer-to-owner, us-ca.residents" in lifted.output
    naive = cli(*args[:-2], "--requested-at", "2026-11-24T12:00:00", "--by", "bo")
    assert naive.exit_code == 2 and "has no offset" in naive.output


def test_moment_assessment_safe_harbour_and_contacts(cli, breach: str) -> None:
    moment = cli("notices", "moment", breach, "determined", "--at", "2026-11-25T10:00:00Z", "--by", "bo")
    assert moment.exit_code == 0 and "determined recorded at 2026-11-25T10:00:00+00:00" in moment.output

    no_reasons = cli(
        "register", "assess", breach, "--tenant", "t-rhein", "--jurisdiction", "us-ca", "--owner", "customer",
        "--decision", "no_notify", "--by", "bo",
    )  # fmt: skip
    assert no_reasons.exit_code == 1 and "the reasons is required" in no_reasons.output
    assessed = cli(
        "register", "assess", breach, "--tenant", "t-rhein", "--jurisdiction", "US-CA", "--owner", "customer",
        "--factor", "acquired=high:downloaded", "--factor", "misuse=medium", "--decision", "notify", "--by", "bo",
    )  # fmt: skip
    assert assessed.exit_code == 0 and assessed.output.startswith("assessment 1: notify")
    bad_factor = cli(
        "register", "assess", breach, "--tenant", "t-rhein", "--jurisdiction", "US-CA", "--owner", "customer",
        "--factor", "acquired", "--decision", "notify", "--by", "bo",
    )  # fmt: skip
    assert bad_factor.exit_code == 2 and "FACTOR=LEVEL" in bad_factor.output

    harbour = cli(
        "notices",
        "safe-harbour",
        breach,
        "--tenant",
        "t-rhein",
        "--does-not-apply",
        "--reason",
        "key taken",
        "--by",
        "bo",
    )
    assert harbour.exit_code == 0 and "does not apply" in harbour.output
    contacts = cli("notices", "contacts", breach, "--tenant", "t-rhein", "--missing", "12", "--by", "ada")
    assert contacts.exit_code == 0
    shown = json.loads(cli("register", "show", breach).output)
    assert shown["contact_gaps"][0]["missing"] == 12 and shown["safe_harbour"][0]["applies"] is False
    assert {m["moment"]: m["at"] for m in shown["moments"]}["determined"] == "2026-11-25T10:00:00+00:00"
    assert cli("register", "logs").output.strip() == "no breach is logged for HHS"
