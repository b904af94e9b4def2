"""Screenshots of the console's incident page for each detection kind, and axe-core's verdict
on every page, for a reviewer to look at.

    python -m bench.console_shots [--out DIR] [--seed 11] [--days 4] [--tenants 4] [--attack-days 2] [--trained]
                                  [--all-kinds]

(by default the pictures go to ~/.cache/breachwatch/bench/console-shots)

Simulates ERP traffic with attacks, replays it through the real pipeline into SQLite, serves
the console with uvicorn on 127.0.0.1 and drives Debian's Chromium with Playwright: for each
kind, the highest-scoring incident with a finding of that kind (``incident-{kind}-{scheme}.png``),
at 1400 px wide (light and dark) and at 390 px (a phone). ``--all-kinds`` adds the simulator's
opt-in scenarios, so that every detection kind can have an incident. Prints where the pictures
are and, last, one JSON line: kinds shot, pages checked, serious or critical accessibility
violations (should be 0), the detection kinds without an incident, and seconds taken.

``start_console`` and ``axe_violations`` are also what ``tests/console/test_browser.py`` uses.
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bench.common import BENCH_DIR, emit
from breachwatch.console.app import create_app
from breachwatch.console.security import SigninThrottle
from breachwatch.core.attack import kind_techniques
from breachwatch.core.settings import Settings
from breachwatch.incidents import users
from breachwatch.incidents.tables import FindingRow, IncidentRow
from breachwatch.runtime import app as composition
from breachwatch.runtime.replay import replay
from breachwatch.runtime.training import train_from_dump
from breachwatch.storage.db import make_engine
from breachwatch.storage.migrate import upgrade

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "a long fictional passphrase"
TEAM = {"amara": "responder", "bo": "approver", "chen": "admin", "dana": "viewer"}
# axe-core rule sets checked: WCAG 2.0 and 2.1, levels A and AA.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING = ("serious", "critical")


@dataclass
class Console:
    url: str
    engine: Engine
    settings: Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed_database(
    work: Path,
    *,
    seed: int,
    days: int,
    tenants: int,
    attack_days: int = 2,
    trained: bool = False,
    extra_kinds: bool = False,
) -> Settings:
    """A database of incidents from a replay of simulated traffic with attacks, and the team.
    ``trained``: a model fitted on the dump's clean days judges too, as in production, so the
    learned detector's kinds (account takeover, dormant account, slow exfiltration, ...) appear.
    ``extra_kinds``: the simulator's opt-in scenarios too (brute force, error burst, ...)."""
    from breachwatch.devkit.approvals import load_access_requests
    from breachwatch.devkit.simulate import simulate

    settings = Settings(
        db_url=f"sqlite:///{work / 'bw.db'}",
        outbox_dir=work / "outbox",
        console_secret_key="fictional-e2e-console-key-0123456789",
        console_secure_cookies=True,  # Chromium treats 127.0.0.1 as a secure origin
        console_url="http://127.0.0.1",
        pseudonym_key=SecretStr(secrets.token_hex(16)),
    )
    simulate(work / "dump", seed=seed, days=days, tenants=tenants, attack_days=attack_days, extra_kinds=extra_kinds)
    labels = json.loads((work / "dump" / "labels.json").read_text())
    model = None
    if trained:
        until = datetime.fromisoformat(labels["clean_until"])
        key = settings.pseudonym_key.get_secret_value().encode()  # type: ignore[union-attr]
        model = train_from_dump(settings, work / "dump", until, key)
    engine = make_engine(settings.db_url)
    upgrade(engine)
    # The tenants that require approval and the requests decided, as the backtest has them:
    # without them no access can be unapproved.
    load_access_requests(engine, work / "dump", settings, until=datetime.fromisoformat(labels["end"]))
    pipeline = composition.build_pipeline(settings, engine, model, notify=True)
    replay(work / "dump", pipeline, partitions=settings.partitions, max_bytes=settings.max_message_bytes)
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    with Session(engine) as session, session.begin():
        for name, role in TEAM.items():
            users.add_user(session, name, role, PASSWORD, email=f"{name}@unisen.example", hasher=hasher)
    engine.dispose()
    return settings


@contextmanager
def start_console(settings: Settings) -> Iterator[Console]:
    """The console over ``settings.db_url``, served by uvicorn on a free port of 127.0.0.1."""
    import uvicorn

    engine = make_engine(settings.db_url)
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    application = create_app(settings, engine, password_hasher=hasher, throttle=SigninThrottle(per_address=500))
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning", proxy_headers=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield Console(f"http://127.0.0.1:{port}", engine, settings)
    finally:
        server.should_exit = True
        thread.join(10)
        engine.dispose()


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical WCAG A/AA violations on the page as it stands. The
    script is put in with ``evaluate`` (an inline script tag would break the page's CSP)."""
    from axe_playwright_python.sync_playwright import Axe

    result = Axe().run(page, options={"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]})
    return [v for v in result.response.get("violations", []) if v.get("impact") in BLOCKING]


def describe(violations: list[dict[str, Any]]) -> list[str]:
    return [
        f"{v['impact']} {v['id']}: {v['help']} at {', '.join(str(n['target']) for n in v['nodes'][:3])}"
        for v in violations
    ]


def sign_in(page: Any, url: str, user: str = "amara") -> None:
    page.goto(f"{url}/signin")
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{url}/incidents")


def top_incident_per_kind(engine: Engine) -> dict[str, str]:
    """For each detection kind, the highest-scoring incident it names, else the highest-scoring
    incident with a finding of that kind: a finding may join an incident another kind named (a
    brute force on an account a credential-stuffing address also tried), and that page is then
    where a responder sees it."""
    found = select(FindingRow.kind, IncidentRow.kind, IncidentRow.score, IncidentRow.incident_id).join(
        IncidentRow, FindingRow.incident_id == IncidentRow.incident_id
    )
    named = select(IncidentRow.kind, IncidentRow.kind, IncidentRow.score, IncidentRow.incident_id)
    with Session(engine) as session:
        rows = session.execute(named.union_all(found)).all()
    out: dict[str, str] = {}
    # Incidents the kind names first, then by score (ties by id, so the choice is repeatable).
    for kind, _named_by, _, incident_id in sorted(rows, key=lambda r: (r[0] != r[1], -r[2], r[3])):
        out.setdefault(kind, incident_id)
    return out


def shoot(
    console: Console, out: Path, browser: Any = None, schemes: tuple[str, ...] = ("light", "dark")
) -> dict[str, Any]:
    """Screenshots into ``out`` and axe-core on every page shot (in ``browser``, or a new one),
    in each colour scheme of ``schemes``."""
    if browser is None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            launched = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                return shoot(console, out, launched, schemes)
            finally:
                launched.close()
    out.mkdir(parents=True, exist_ok=True)
    kinds = top_incident_per_kind(console.engine)
    problems: list[str] = []
    checked = 0
    for scheme in schemes:
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, color_scheme=scheme)
        page = context.new_page()
        sign_in(page, console.url)
        pages = ["/incidents", "/silences", "/help"]
        pages += [f"/incidents/{i}" for i in dict.fromkeys(kinds.values())]  # one incident may serve two kinds
        for path in pages:
            page.goto(console.url + path)
            found = describe(axe_violations(page))
            problems += [f"{scheme} {path}: {p}" for p in found]
            checked += 1
        for kind, incident_id in kinds.items():
            page.goto(f"{console.url}/incidents/{incident_id}")
            page.screenshot(path=str(out / f"incident-{kind}-{scheme}.png"), full_page=True)
        context.close()
    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1)
    page = phone.new_page()
    sign_in(page, console.url)
    page.screenshot(path=str(out / "incidents-390.png"), full_page=True)
    for kind, incident_id in list(kinds.items())[:3]:
        page.goto(f"{console.url}/incidents/{incident_id}")
        page.screenshot(path=str(out / f"incident-{kind}-390.png"), full_page=True)
    phone.close()
    for p in problems:
        print(p)
    return {"kinds": sorted(kinds), "pages_checked": checked, "serious_or_critical": len(problems)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "console-shots")
    parser.add_argument("--work", type=Path, default=BENCH_DIR / "console-db")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--attack-days", type=int, default=2, help="the last days, where the attacks are")
    parser.add_argument(
        "--trained", action="store_true", help="judge with a model fitted on the clean days (more kinds)"
    )
    parser.add_argument(
        "--all-kinds",
        action="store_true",
        help="add the simulator's opt-in scenarios (brute force, error burst, anomalous access)",
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "bw.db").unlink(missing_ok=True)
    settings = seed_database(
        args.work,
        seed=args.seed,
        days=args.days,
        tenants=args.tenants,
        attack_days=args.attack_days,
        trained=args.trained,
        extra_kinds=args.all_kinds,
    )
    with start_console(settings) as console:
        result = shoot(console, args.out)
    print(f"screenshots in {args.out}")
    # Every detection kind there is (each has its ATT&CK entry) against those this replay opened.
    missing = sorted(set(kind_techniques()) - set(result["kinds"]))
    emit({**result, "kinds_without_incident": missing, "seconds": round(time.perf_counter() - t0, 1)})


if __name__ == "__main__":
    main()
