"""The demo: simulated ERP traffic produced into an embedded broker, the service run over it until
it has caught up, and a summary of the incidents it opened and the alerts it wrote."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.core.settings import Settings
from breachwatch.devkit.approvals import load_access_requests
from breachwatch.devkit.local_kafka import embedded_bootstrap
from breachwatch.devkit.simulate import simulate
from breachwatch.incidents import users
from breachwatch.incidents.store import IncidentStore
from breachwatch.runtime import app
from breachwatch.streams.kafka_client import ensure_topics
from breachwatch.streams.produce import Rate, produce_dump

LISTED = 40
DEMO_USER = "demo"
SIGNIN_FILE = "console-signin.txt"


def demo_sign_in(engine: Engine, workdir: Path) -> str:
    """A console administrator ``demo`` with a fresh random password, for a first look at the
    demo's incidents; the lines that say how to look are also kept in ``console-signin.txt``."""
    password = secrets.token_urlsafe(12)
    with Session(engine) as session, session.begin():
        if session.get(users.UserRow, DEMO_USER) is None:
            users.add_user(session, DEMO_USER, "admin", password, email="demo@unisen.example")
        else:
            users.set_password(session, DEMO_USER, password)
    db = workdir / "breachwatch.db"
    text = (
        "Look at the incidents in the console:\n"
        "  make console      (or: breachwatch console --db sqlite:///" + str(db) + ")\n"
        "  then open http://127.0.0.1:8080/ and sign in as  demo  with the password  " + password + "\n"
    )
    (workdir / SIGNIN_FILE).write_text(text, encoding="utf-8")
    return text


def run_demo(
    settings: Settings, workdir: Path, *, tenants: int, days: int, seed: int, echo: Callable[[str], None]
) -> str:
    """Run the demo in ``workdir`` (its database and outbox are those ``settings`` name); the summary."""
    import time

    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / "breachwatch.db"
    db_path.unlink(missing_ok=True)
    dump = workdir / "dump"
    echo(f"simulating {days} days of ERP traffic for {tenants} tenants into {dump}")
    simulate(dump, seed=seed, days=days, tenants=tenants)
    # The simulated tenants that require approval, and the requests their approvers decided.
    engine = app.database(settings)
    load_access_requests(engine, dump, settings)
    engine.dispose()
    with embedded_bootstrap(settings, echo) as boot:
        ensure_topics(settings, boot)
        echo(f"producing the dump into Kafka at {boot}")
        produce_dump(settings, boot, dump, progress=Rate("produce", echo=echo))
        echo("running the service until it has caught up")
        t0 = time.perf_counter()
        stats = app.run_service(settings, boot, until_caught_up=True)
        secs = time.perf_counter() - t0
    engine = app.database(settings)
    incidents = IncidentStore(engine).incidents()
    look = demo_sign_in(engine, workdir)
    engine.dispose()
    consumed = sum(stats["consumed"].values())
    lines = [f"\nprocessed {consumed:,} events in {secs:.1f}s; {len(incidents)} incidents opened\n"]
    for inc in incidents[:LISTED]:
        lines.append(f"  [{inc.severity:8}] {inc.opened_at:%Y-%m-%d %H:%M} {inc.kind:24} {inc.title[:90]}")
    if len(incidents) > LISTED:
        lines.append(f"  ... and {len(incidents) - LISTED} more")
    outbox = settings.outbox_dir
    n = len(list(outbox.glob("*.eml"))) if outbox.exists() else 0
    lines.append(f"\non-call alert emails: {n} in {outbox}")
    lines.append(f"incident database: {db_path}")
    lines.append("")
    lines.append(look)
    return "\n".join(lines)
