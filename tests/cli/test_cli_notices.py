"""``breachwatch notices list|preview|approve|send|deadlines`` and ``templates lint``."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session

from breachwatch.cli import main as breachwatch_command
from breachwatch.core.settings import load_settings
from breachwatch.notifier.notices import on_breach_confirmed, remember_tenants
from breachwatch.notifier.render import TEMPLATES_DIR

CONFIRMED_AT = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for var in ("BREACHWATCH_CONTRACTS_FILE", "BREACHWATCH_NOTICES_FILE", "BREACHWATCH_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    main = breachwatch_command
    runner = CliRunner()
    env = {
        "BREACHWATCH_DB_URL": f"sqlite:///{tmp_path / 'notifier.db'}",
        "BREACHWATCH_OUTBOX_DIR": str(tmp_path / "outbox"),
        "BREACHWATCH_MAIL_CHANNEL": "file",
        "BREACHWATCH_ONCALL_EMAILS": "oncall-security@unisen.example",
    }

    def run(*args: str) -> click.testing.Result:
        return runner.invoke(main, list(args), env=env, catch_exceptions=False)

    return run


@pytest.fixture
def notice_id(engine, tmp_path: Path, incident_factory, rhein_tenant) -> str:
    incident, findings, evidence = incident_factory()
    incident_id = incident.incident_id
    settings = load_settings(db_url=f"sqlite:///{tmp_path / 'notifier.db'}")
    with Session(engine) as session, session.begin():
        session.add(incident)
        session.flush()
        session.add_all([*findings, *evidence])
        remember_tenants(session, [rhein_tenant])
        [nid] = on_breach_confirmed(
            session, incident_id, confirmed_by="responder-ada", confirmed_at=CONFIRMED_AT, settings=settings
        )
    return nid


def test_list_preview_approve_send(cli, notice_id, tmp_path: Path) -> None:
    listed = cli("notices", "list")
    assert listed.exit_code == 0
    assert f"{notice_id}  v1 draft" in listed.output and "t-rhein (DE, de)" in listed.output
    assert "eu.art33-2.controller" in listed.output
    [row] = json.loads(cli("notices", "list", "--incident", "inc-7f3a9c21e4b05d18", "--json").output)
    assert (row["notice_id"], row["status"]) == (notice_id, "draft")

    preview = cli("notices", "preview", notice_id)
    assert preview.exit_code == 0
    assert "Subject: Meldung einer Verletzung des Schutzes personenbezogener Daten" in preview.output
    assert '<html lang="de"' in cli("notices", "preview", notice_id, "--html").output
    assert "Entwurf" in cli("notices", "preview", notice_id, "--regulator-draft").output

    assert cli("notices", "send").output.startswith('{"claimed": 0')  # nothing approved, nothing sent
    approved = cli("notices", "approve", notice_id, "--by", "approver-bo")
    assert approved.exit_code == 0 and "approved by approver-bo; 2 message(s) queued" in approved.output
    again = cli("notices", "approve", notice_id, "--by", "approver-cy")
    assert again.exit_code == 1 and "already approved" in again.output

    sent = json.loads(cli("notices", "send").output)
    assert (sent["claimed"], sent["sent"]) == (2, 2)
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2
    assert json.loads(cli("notices", "send").output)["claimed"] == 0
    assert "v1 sent" in cli("notices", "list").output


def test_unknown_notice_is_an_error(cli, engine) -> None:
    result = cli("notices", "preview", "no-such-notice")
    assert result.exit_code == 1 and "no notice 'no-such-notice'" in result.output
    assert cli("notices", "list").output.strip() == "no notices"


def test_deadlines_page_once(cli, notice_id) -> None:
    first = cli("notices", "deadlines")  # the confirmation was long ago: overdue
    assert f"paged: {notice_id} eu.art33-2.controller overdue" in first.output
    assert "OVERDUE" in first.output
    assert "paged:" not in cli("notices", "deadlines").output


def test_templates_lint(cli, tmp_path: Path) -> None:
    assert cli("templates", "lint").output.strip() == "templates ok"
    broken = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, broken)
    (broken / "customer_notice/en/body.txt.j2").write_text("{{ notice.reference }}\n", encoding="utf-8")
    result = cli("templates", "lint", "--dir", str(broken))
    assert result.exit_code == 1
    assert "customer_notice/en" in result.output and "element 'nature'" in result.output
