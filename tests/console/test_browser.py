"""End to end in headless Chromium: incidents from a real replay of simulated ERP traffic,
served by uvicorn; an on-call engineer signs in, reads the explanation and the chart,
acknowledges and resolves one incident, and marks another a false positive."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.console.app import create_app
from breachwatch.core.settings import Settings
from breachwatch.devkit.simulate import simulate
from breachwatch.incidents import users
from breachwatch.incidents.tables import IncidentRow
from breachwatch.runtime import app as composition
from breachwatch.runtime.replay import replay
from breachwatch.storage import audit
from breachwatch.storage.db import make_engine
from breachwatch.storage.migrate import upgrade

pytestmark = pytest.mark.browser
playwright_api = pytest.importorskip("playwright.sync_api")

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
SHOTS = Path("/tmp")


@dataclass
class Console:
    url: str
    engine: Engine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed")
    work = tmp_path_factory.mktemp("e2e")
    settings = Settings(
        db_url=f"sqlite:///{work / 'bw.db'}",
        outbox_dir=work / "outbox",
        console_secret_key="fictional-e2e-console-key-0123456789",
        console_secure_cookies=True,  # Chromium treats 127.0.0.1 as a secure origin
    )
    simulate(work / "dump", seed=11, days=4, tenants=4, attack_days=2)
    engine = make_engine(settings.db_url)
    upgrade(engine)
    pipeline = composition.build_pipeline(settings, engine, notify=True)
    replay(work / "dump", pipeline, partitions=settings.partitions, max_bytes=settings.max_message_bytes)
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    with Session(engine) as session, session.begin():
        users.add_user(session, "amara", "responder", PASSWORD, hasher=hasher)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, engine, password_hasher=hasher), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield Console(f"http://127.0.0.1:{port}", engine)
    finally:
        server.should_exit = True
        thread.join(10)
        engine.dispose()


@pytest.fixture
def page(console: Console) -> Iterator[object]:
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        errors: list[str] = []
        # Anything the page's Content-Security-Policy blocked (an inline style, a script) shows here.
        page.on("console", lambda m: errors.append(m.text) if "Refused to" in m.text else None)
        try:
            yield page
        finally:
            browser.close()
        assert errors == [], errors


def _sign_in(page: object, console: Console) -> None:
    p = page  # type: ignore[assignment]
    p.goto(f"{console.url}/incidents")  # type: ignore[attr-defined]
    assert "/signin" in p.url  # type: ignore[attr-defined]
    p.fill("#username", "amara")  # type: ignore[attr-defined]
    p.fill("#password", PASSWORD)  # type: ignore[attr-defined]
    p.click("button:has-text('Sign in')")  # type: ignore[attr-defined]
    p.wait_for_url(f"{console.url}/incidents")  # type: ignore[attr-defined]


def _open_incidents(console: Console) -> list[IncidentRow]:
    with Session(console.engine) as session:
        return list(session.scalars(select(IncidentRow).where(IncidentRow.status == "open")))


def test_an_on_call_engineer_reads_acknowledges_and_resolves(page: object, console: Console) -> None:
    expect = playwright_api.expect
    p = page  # type: ignore[assignment]
    _sign_in(p, console)
    expect(p.locator("h1")).to_have_text("Incidents")  # type: ignore[attr-defined]
    rows = p.locator("table.incidents tbody tr")  # type: ignore[attr-defined]
    assert rows.count() == len(_open_incidents(console)) >= 5
    expect(rows.first.locator(".sev")).to_have_text("critical")
    p.screenshot(path=str(SHOTS / "breachwatch-incidents.png"), full_page=True)  # type: ignore[attr-defined]

    # The most severe bulk export: an explanation, a chart with data, evidence, a timeline.
    p.click("table.incidents a:has-text('exported')")  # type: ignore[attr-defined]
    expect(p.locator("#why h2")).to_have_text("Why BreachWatch flagged this")  # type: ignore[attr-defined]
    reasons = p.locator("#why ul.reasons li")  # type: ignore[attr-defined]
    assert reasons.count() >= 2 and "records" in reasons.first.inner_text()
    chart = p.locator("#activity svg.chart")  # type: ignore[attr-defined]
    expect(chart).to_be_visible()
    assert chart.locator("rect.bar").count() >= 1
    assert int(chart.get_attribute("data-peak") or "0") > 1000
    expect(chart.locator("line.chart-baseline")).to_have_count(1)
    assert p.locator("#evidence tbody tr").count() >= 1  # type: ignore[attr-defined]
    expect(p.locator("#timeline")).to_contain_text("opened the incident")  # type: ignore[attr-defined]
    expect(p.locator("#timeline")).to_contain_text("amara viewed the evidence")  # type: ignore[attr-defined]
    incident_id = p.url.rsplit("/", 1)[-1]  # type: ignore[attr-defined]

    p.click("#actions button:has-text('Acknowledge')")  # type: ignore[attr-defined]
    expect(p.locator(".incident-head .status")).to_have_text("acknowledged")  # type: ignore[attr-defined]
    expect(p.locator(".facts-row")).to_contain_text("amara")  # type: ignore[attr-defined]
    p.fill("#reason", "Tenant admin confirmed a planned CRM migration; export deleted.")  # type: ignore[attr-defined]
    p.click("#actions button:has-text('Resolve')")  # type: ignore[attr-defined]
    expect(p.locator(".incident-head .status")).to_have_text("resolved")  # type: ignore[attr-defined]
    expect(p.locator("#timeline")).to_contain_text("planned CRM migration")  # type: ignore[attr-defined]
    p.screenshot(path=str(SHOTS / "breachwatch-incident.png"), full_page=True)  # type: ignore[attr-defined]

    with Session(console.engine) as session:
        row = session.get(IncidentRow, incident_id)
        assert row is not None and row.status == "resolved"
        trail = [r.action for r in audit.for_subject(session, f"incident:{incident_id}")]
        changes = [a for a in trail if a.startswith("incident.")]
        assert changes == ["incident.acknowledge", "incident.resolve"]
        assert trail.count("evidence.view") == 3  # opened, then shown again after each action
        assert audit.verify(session).ok


def test_an_on_call_engineer_marks_a_false_positive(page: object, console: Console) -> None:
    expect = playwright_api.expect
    p = page  # type: ignore[assignment]
    _sign_in(p, console)
    p.click("table.incidents a:has-text('accessed tenant') >> nth=0")  # type: ignore[attr-defined]
    incident_id = p.url.rsplit("/", 1)[-1]  # type: ignore[attr-defined]
    p.click("#actions button:has-text('False positive')")  # type: ignore[attr-defined]
    expect(p.locator(".alert-error")).to_contain_text("false positive needs a reason")  # type: ignore[attr-defined]
    p.fill("#reason", "The support ticket was opened by phone; its id was never recorded.")  # type: ignore[attr-defined]
    p.click("#actions button:has-text('False positive')")  # type: ignore[attr-defined]
    expect(p.locator(".incident-head .status")).to_have_text("false positive")  # type: ignore[attr-defined]
    p.goto(f"{console.url}/incidents?status=false_positive")  # type: ignore[attr-defined]
    expect(p.locator(f"table.incidents a[href='/incidents/{incident_id}']")).to_have_count(1)  # type: ignore[attr-defined]
    with Session(console.engine) as session:
        row = session.get(IncidentRow, incident_id)
        assert row is not None and row.status == "false_positive"
