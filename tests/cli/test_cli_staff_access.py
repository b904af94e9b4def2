"""The staff-access commands as an operator runs them: export a tenant's transparency log as JSON
or CSV, opt a tenant in to approval, file, list and revoke requests, queue the monthly summaries,
and issue a tenant its own token."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.cli import main as breachwatch_command
from breachwatch.incidents import users
from breachwatch.notifier.outbox import OutboxRow
from breachwatch.privacy import approvals, transparency
from breachwatch.runtime.app import database
from breachwatch.storage import audit
from tests.fixtures.staff_access import (
    PUBLIC_URL,
    SECRET,
    justified,
    remember,
    staff_access,
    staff_settings,
    tenant,
    unjustified,
)

PASSWORD = "a long fictional passphrase"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'bw.db'}"


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Callable[..., Result]:
    runner = CliRunner()
    env = {
        "BREACHWATCH_DB_URL": db_url,
        "BREACHWATCH_OUTBOX_DIR": str(tmp_path / "outbox"),
        "BREACHWATCH_CONSOLE_SECRET_KEY": SECRET,
        "BREACHWATCH_CONSOLE_PUBLIC_URL": PUBLIC_URL,
        "BREACHWATCH_NEW_USER_PASSWORD": PASSWORD,
    }

    def run(*args: str, extra: dict[str, str] | None = None) -> Result:
        return runner.invoke(breachwatch_command, list(args), env={**env, **(extra or {})}, catch_exceptions=False)

    return run


@pytest.fixture
def logged(db_url: str, tmp_path: Path) -> None:
    engine = database(staff_settings(tmp_path), db_url)
    with Session(engine) as session, session.begin():
        remember(session, tenant("t-rhein"))
        transparency.record_staff_accesses(
            session,
            [
                staff_access(1, justified(), action="export", records=1200, start=datetime(2026, 11, 3, tzinfo=UTC)),
                staff_access(2, unjustified(), records=3, start=datetime(2026, 11, 20, tzinfo=UTC)),
                staff_access(3, justified(), records=5, start=datetime(2026, 12, 2, tzinfo=UTC)),
            ],
        )
    engine.dispose()


def test_export_one_record_per_access(cli: Callable[..., Result], logged: None, db_url: str) -> None:
    doc = json.loads(cli("transparency", "export", "t-rhein").stdout)
    assert [(e["ts"][:10], e["staff"], e["records"], e["justified"]) for e in doc] == [
        ("2026-11-03", "Bilal Example", 1200, True),
        ("2026-11-20", "Bilal Example", 3, False),
        ("2026-12-02", "Bilal Example", 5, True),
    ]
    assert doc[0]["ticket_id"] == "SUP-4411" and doc[1]["ticket_id"] is None
    assert doc[1]["reason"].startswith("no ticket for tenant t-rhein naming Bilal Example")
    since = cli("transparency", "export", "t-rhein", "--since", "2026-11-10T00:00:00Z", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(since.stdout)))
    assert [(r["records"], r["justified"]) for r in rows] == [("3", "False"), ("5", "True")]
    assert "2 staff accesses of t-rhein" in since.stderr
    bad = cli("transparency", "export", "t-rhein", "--since", "yesterday")
    assert bad.exit_code == 2 and "RFC 3339" in bad.output
    engine = database(staff_settings(Path("/tmp")), db_url)
    with Session(engine) as session:
        exports = [r.detail for r in audit.for_subject(session, "tenant:t-rhein") if r.action == "transparency.export"]
    assert exports == [{"entries": 3, "format": "json"}, {"entries": 2, "format": "csv"}]


def test_pseudonyms_by_configuration(cli: Callable[..., Result], logged: None) -> None:
    env = {"BREACHWATCH_TRANSPARENCY_STAFF_IDENTITY": "pseudonym"}
    refused = cli("transparency", "export", "t-rhein", extra=env)
    assert refused.exit_code == 1 and "BREACHWATCH_PSEUDONYM_KEY" in refused.output
    env["BREACHWATCH_PSEUDONYM_KEY"] = "fictional-pseudonym-key-0123456789"
    doc = json.loads(cli("transparency", "export", "t-rhein", extra=env).stdout)
    assert {e["staff"] for e in doc} == {doc[0]["staff"]} and "Bilal" not in json.dumps(doc)


def test_monthly_summaries_are_queued_once(cli: Callable[..., Result], logged: None, db_url: str) -> None:
    first = json.loads(cli("transparency", "summaries", "--month", "2026-11").stdout)
    again = json.loads(cli("transparency", "summaries", "--month", "2026-11").stdout)
    assert first == {"month": "2026-11", "queued": {"t-rhein": 1}} and again["queued"] == {"t-rhein": 0}
    assert cli("transparency", "summaries", "--month", "November").exit_code == 2


def test_approval_from_opt_in_to_revocation(cli: Callable[..., Result], db_url: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    window = ["--from", (now + timedelta(hours=1)).isoformat(), "--until", (now + timedelta(hours=3)).isoformat()]
    args = ["access-requests", "file", "--tenant", "t-rhein", "--staff", "st-bilal=Bilal Example"]
    args += ["--purpose", "support_on_request", "--ticket", "SUP-4411", *window]
    refused = cli(*args)
    assert refused.exit_code == 1 and "does not require approval" in refused.output
    assert cli("access-approval", "require", "t-rhein", "--approver", "not-an-address").exit_code == 1
    assert cli("access-approval", "require", "t-rhein", "--approver", "ciso@rhein.example").exit_code == 0
    filed = cli(*args, "--id", "AR-42")
    assert filed.exit_code == 0 and filed.stdout.strip() == "AR-42"
    assert "AR-42\tt-rhein\tpending\tst-bilal" in cli("access-requests", "list").stdout
    engine = database(staff_settings(tmp_path), db_url)
    with Session(engine) as session:
        [mail] = session.scalars(select(OutboxRow).where(OutboxRow.message_type == "access_request"))
        assert mail.recipient == "ciso@rhein.example" and "Bilal Example" in mail.body_text
    not_yet = cli("access-requests", "revoke", "AR-42")
    assert not_yet.exit_code == 1 and "this one is pending" in not_yet.output
    with Session(engine) as session, session.begin():  # the approver's decision, as the page makes it
        row = approvals.get(session, "AR-42")
        approvals.decide(session, "AR-42", next(iter(row.links)), True)
    assert cli("access-requests", "revoke", "AR-42", "--by", "ciso@rhein.example").exit_code == 0
    assert json.loads(cli("access-requests", "show", "AR-42").stdout)["state"] == "revoked"
    assert cli("access-approval", "release", "t-rhein").exit_code == 0
    assert cli("access-approval", "release", "t-rhein").exit_code == 1
    engine.dispose()


def test_a_tenant_gets_a_token_for_its_log_alone(cli: Callable[..., Result], db_url: str, tmp_path: Path) -> None:
    assert cli("users", "add", "amara", "--role", "admin").exit_code == 0
    made = cli("tokens", "create", "amara", "--tenant", "t-rhein", "--name", "rhein transparency")
    assert made.exit_code == 0 and "for tenant t-rhein (issued by amara)" in made.stderr
    assert "\ttenant:t-rhein" in cli("tokens", "list").stdout
    engine = database(staff_settings(tmp_path), db_url)
    with Session(engine) as session, session.begin():
        p = users.authenticate_token(session, made.stdout.strip())
    assert p is not None and p.tenant == "t-rhein" and not p.can("viewer")
    assert p.may_read_tenant("t-rhein") and not p.may_read_tenant("t-fjord")
    engine.dispose()
