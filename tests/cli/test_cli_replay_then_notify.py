"""A new user's path: ``breachwatch replay DUMP --db URL`` (no ``--notify``: nobody is paged),
then a breach confirmed in the console. The notices must be addressed from the tenant
directory the replay read, not drafted for the unknown jurisdiction "ZZ" with no recipient."""

from __future__ import annotations

import json
from pathlib import Path

from argon2 import PasswordHasher
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.cli import main
from breachwatch.console.app import create_app
from breachwatch.core.settings import Settings
from breachwatch.devkit.simulate import simulate
from breachwatch.incidents import users
from breachwatch.incidents.tables import IncidentRow
from breachwatch.notifier.outbox import OutboxRow
from breachwatch.storage.db import make_engine


def test_a_replay_without_notify_keeps_the_directory_a_later_breach_notice_needs(tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    simulate(dump, seed=11, days=3, tenants=3, attack_days=1)
    directory = {t["tenant_id"]: t for t in map(json.loads, (dump / "erp.tenants.jsonl").read_text().splitlines()) if t}
    db = f"sqlite:///{tmp_path / 'bw.db'}"
    env = {"BREACHWATCH_OUTBOX_DIR": str(tmp_path / "outbox"), "BREACHWATCH_NOTICES_FILE": ""}
    result = CliRunner().invoke(
        main, ["replay", str(dump), "--out", str(tmp_path / "incidents.jsonl"), "--db", db, "--jobs", "1"], env=env
    )
    assert result.exit_code == 0, result.output

    engine = make_engine(db)
    with Session(engine) as session:
        # Nobody was paged: the replay ran without --notify.
        assert session.scalars(select(OutboxRow)).first() is None
        incident = next(
            i
            for i in session.scalars(select(IncidentRow).order_by(IncidentRow.opened_at))
            if set(i.tenant_ids or []) & set(directory)
        )
        incident_id, tenant_ids = incident.incident_id, [t for t in incident.tenant_ids if t in directory]
        detected = incident.detected_at
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    with Session(engine) as session, session.begin():
        users.add_user(session, "bo", "approver", "a long fictional passphrase", hasher=hasher)
        token = users.create_token(session, "bo", "tests")[1]
    settings = Settings(
        db_url=db, outbox_dir=tmp_path / "outbox", console_secret_key="fictional-console-key-for-tests-0123456789"
    )
    app = create_app(settings, engine, password_hasher=hasher)
    with TestClient(app, base_url="https://console.unisen.example") as client:
        auth = {"Authorization": f"Bearer {token}"}
        confirmed = client.post(
            f"/api/incidents/{incident_id}/confirm-breach", json={"reason": "records left the tenant"}, headers=auth
        )
        assert confirmed.status_code == 200, confirmed.text
        notices = client.get(f"/api/incidents/{incident_id}/notices", headers=auth).json()
        record = client.get(f"/api/incidents/{incident_id}/breach-record", headers=auth).json()
    engine.dispose()

    by_tenant = {n["tenant_id"]: n for n in notices}
    for tenant_id in tenant_ids:
        notice = by_tenant[tenant_id]
        entry = directory[tenant_id]
        assert notice["jurisdiction"] == entry["jurisdiction"] != "ZZ"
        assert notice["tenant_name"] == entry["name"]
        assert notice["recipients"], "a notice with nobody to send it to"
        assert set(notice["recipients"]) <= {c["email"] for c in entry["contacts"]}
        assert not any("directory entry is unknown" in p for p in notice["problems"])

    # Clocks that start at detection (CERT-In, HIPAA discovery) start at the store's detection time.
    assert detected is not None
    assert {m["moment"]: m["at"] for m in record["moments"]}["detected"] == detected.isoformat()
