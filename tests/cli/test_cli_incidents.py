"""The incident-handling commands, run as an operator would: users and tokens, the audit
check naming an edited row, silences, a tenant's export and erasure, retention, escalation,
and the console server itself."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text
from sqlalchemy.orm import Session

from breachwatch.cli import main as breachwatch_command
from breachwatch.core.events import AccessEvent
from breachwatch.core.findings import Finding
from breachwatch.incidents import users
from breachwatch.incidents.store import IncidentStore
from breachwatch.storage.db import make_engine

PASSWORD = "a long fictional passphrase"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'bw.db'}"


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Callable[..., Result]:
    """Runs ``breachwatch <args>`` (the installed command group) against a fresh database."""
    group = breachwatch_command
    runner = CliRunner()
    base_env = {
        "BREACHWATCH_DB_URL": db_url,
        "BREACHWATCH_OUTBOX_DIR": str(tmp_path / "outbox"),
        "BREACHWATCH_NEW_USER_PASSWORD": PASSWORD,
    }

    def run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
        return runner.invoke(group, list(args), env={**base_env, **(env or {})}, input=input, catch_exceptions=False)

    return run


def _incident(db_url: str, actor: str = "u-hans", tenant: str = "t-rhein") -> str:
    doc = {
        "event_id": f"a-{actor}-1",
        "ts": "2026-11-24T02:00:00Z",
        "actor_id": actor,
        "actor_type": "customer_user",
        "actor_tenant": tenant,
        "tenant_id": tenant,
        "action": "export",
        "resource_type": "customer",
        "sensitivity": "personal",
        "records": 4800,
        "ip": "198.51.100.7",
    }
    event = AccessEvent.model_validate_json(json.dumps(doc))
    found = Finding(
        detector="rules.bulk_export",
        kind="bulk_export",
        severity="high",
        score=84,
        ts=event.ts,
        title=f"{actor} exported 4,800 records",
        reasons=("exported 4,800 records",),
        playbook="ask the tenant",
        events=(event,),
        actor_id=actor,
        tenant_ids=(tenant,),
        source_ips=("198.51.100.7",),
    )
    engine = make_engine(db_url)
    try:
        return IncidentStore(engine).record([found]).opened[0]
    finally:
        engine.dispose()


def test_users_and_tokens(cli: Callable[..., Result], db_url: str) -> None:
    added = cli("users", "add", "amara", "--role", "admin", "--email", "amara@unisen.example")
    assert added.exit_code == 0 and "amara added with role admin" in added.output
    again = cli("users", "add", "amara", "--role", "viewer")
    assert again.exit_code == 1 and "already exists" in again.output
    short = cli("users", "add", "bob", "--role", "viewer", env={"BREACHWATCH_NEW_USER_PASSWORD": "short"})
    assert short.exit_code == 1 and "at least 12" in short.output
    assert "amara\tadmin\tamara@unisen.example" in cli("users", "list").output

    created = cli("tokens", "create", "amara", "--name", "ticket sync")
    token = created.stdout.strip()
    assert created.exit_code == 0 and token.startswith("bwt_")
    listing = cli("tokens", "list").output
    assert "ticket sync\tactive\tnever used" in listing and token.split("_")[-1] not in listing
    engine = make_engine(db_url)
    with Session(engine) as session, session.begin():
        assert users.authenticate_token(session, token) is not None
    token_id = token.split("_")[1]
    assert cli("tokens", "revoke", token_id).exit_code == 0
    assert cli("tokens", "revoke", token_id).exit_code == 1
    assert cli("users", "disable", "amara").exit_code == 0
    with Session(engine) as session:
        assert users.authenticate(session, "amara", PASSWORD) is None
    engine.dispose()


def test_audit_verify_names_the_row_edited_in_the_database(cli: Callable[..., Result], db_url: str) -> None:
    for name in ("amara", "jonas", "ingrid"):
        cli("users", "add", name, "--role", "viewer")
    ok = cli("audit", "verify")
    assert ok.exit_code == 0 and ok.output.startswith("ok: 3 rows checked; head 3:")
    anchor = ok.output.strip().rsplit("head ", 1)[1]

    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text('UPDATE audit_log SET detail = \'{"role": "admin"}\' WHERE seq = 2'))
    engine.dispose()
    broken = cli("audit", "verify", "--anchor", anchor)
    assert broken.exit_code == 1
    assert "BROKEN seq 2: edited (its content no longer matches its hash)" in broken.output
    assert broken.output.strip().endswith("head 3:" + anchor.split(":")[1])


def test_silences_from_the_command_line(cli: Callable[..., Result]) -> None:
    added = cli("silences", "add", "--reason", "agreed pentest", "--hours", "2", "--ip", "203.0.113.0/24")
    assert added.exit_code == 0
    sid = added.output.strip()
    [listed] = [json.loads(line) for line in cli("silences", "list").output.splitlines()]
    assert listed["silence_id"] == sid and listed["matchers"] == {"ip": "203.0.113.0/24"}
    assert listed["owner"].startswith("cli:")
    assert cli("silences", "add", "--reason", "nothing matches").exit_code == 1
    assert cli("silences", "expire", sid).exit_code == 0
    assert cli("silences", "list").output == ""
    assert len(cli("silences", "list", "--all").output.splitlines()) == 1


def test_tenant_export_and_erase(cli: Callable[..., Result], db_url: str, tmp_path: Path) -> None:
    cli("users", "list")  # migrates the database
    own = _incident(db_url)
    _incident(db_url, actor="u-olga", tenant="t-fjord")
    out = tmp_path / "export" / "t-rhein.json"
    exported = cli("tenant", "export", "t-rhein", "--out", str(out))
    assert exported.exit_code == 0
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert [i["incident_id"] for i in doc["incidents"]] == [own]
    assert json.loads(cli("tenant", "export", "t-fjord").stdout)["incidents"][0]["actor_ids"] == ["u-olga"]

    refused = cli("tenant", "erase", "t-rhein", input="n\n")
    assert refused.exit_code == 1
    erased = cli("tenant", "erase", "t-rhein", "--yes")
    assert erased.exit_code == 0 and json.loads(erased.stdout)["incidents_deleted"] == 1
    assert json.loads(cli("tenant", "export", "t-rhein").stdout)["incidents"] == []
    assert cli("audit", "verify").exit_code == 0


def test_retention_needs_the_key_to_anonymise(cli: Callable[..., Result], db_url: str) -> None:
    cli("users", "list")
    _incident(db_url)
    no_key = cli("retention", "apply")
    assert no_key.exit_code == 2 and "BREACHWATCH_PSEUDONYM_KEY" in no_key.output
    env = {"BREACHWATCH_PSEUDONYM_KEY": "fictional-pseudonym-key-0123456789"}
    report = json.loads(cli("retention", "apply", "--days", "1", env=env).stdout)
    # The incident is still open, so its evidence is held whatever its age.
    assert report["events_anonymised"] == 0 and report["incidents_held_open"] == 1
    dry = json.loads(cli("retention", "apply", "--mode", "purge", "--dry-run").stdout)
    assert dry["dry_run"] is True and dry["mode"] == "purge"


def test_escalate_runs_one_pass_with_the_configured_chain(
    cli: Callable[..., Result], db_url: str, tmp_path: Path
) -> None:
    cli("users", "list")
    _incident(db_url)  # opened without a page: the pass pages it
    chain = tmp_path / "chain.toml"
    chain.write_text('[[level]]\nname = "primary"\nemails = ["oncall-security@unisen.example"]\n', encoding="utf-8")
    env = {"BREACHWATCH_ESCALATION_FILE": str(chain)}
    first = json.loads(cli("escalate", env=env).stdout)
    assert first["pages"] == {"initial": 1} and first["messages"] == 1
    assert json.loads(cli("escalate", "--deliver", env=env).stdout)["pages"] == {}
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1  # delivered by --deliver
    chain.write_text("[[level]]\nemails = 3\n", encoding="utf-8")
    bad = cli("escalate", env=env)
    assert bad.exit_code == 2 and "BREACHWATCH_ESCALATION_FILE" in bad.output and "emails" in bad.output


def test_the_console_command_serves_the_console(db_url: str, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = "from breachwatch.cli import main; main()"
    env = {**os.environ, "BREACHWATCH_CONSOLE_SECRET_KEY": "fictional-console-key-0123456789"}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "console", "--host", "127.0.0.1", "--port", str(port), "--db", db_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                signin = httpx.get(f"http://127.0.0.1:{port}/signin", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        assert signin.status_code == 200 and "Sign in" in signin.text
        assert httpx.get(f"http://127.0.0.1:{port}/api/incidents", timeout=2).status_code == 401
        assert "server" not in httpx.get(f"http://127.0.0.1:{port}/signin", timeout=2).headers
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert b"no users yet" in err and b"users add NAME --role admin" in err
