"""End to end in headless Chromium: simulated ERP traffic replayed without paging anyone, then an
approver confirms a breach in the console, opens its breach record, records a law-enforcement
request (which holds no GDPR clock), records a risk-of-harm assessment and finds both in the
breach register. No page may need an inline script or style (the Content-Security-Policy)."""

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
from breachwatch.notifier.notices.models import TenantRecordRow
from breachwatch.runtime import app as composition
from breachwatch.runtime.replay import replay
from breachwatch.storage import audit
from breachwatch.storage.db import make_engine
from breachwatch.storage.migrate import upgrade

pytestmark = pytest.mark.browser
playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
PASSWORD = "a long fictional passphrase"


@dataclass
class Console:
    url: str
    engine: Engine
    incident_id: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed")
    work = tmp_path_factory.mktemp("register-e2e")
    settings = Settings(
        db_url=f"sqlite:///{work / 'bw.db'}",
        outbox_dir=work / "outbox",
        console_secret_key="fictional-e2e-console-key-0123456789",
        console_secure_cookies=True,
    )
    simulate(work / "dump", seed=11, days=3, tenants=3, attack_days=1)
    engine = make_engine(settings.db_url)
    upgrade(engine)
    pipeline = composition.build_pipeline(settings, engine, notify=False)
    replay(work / "dump", pipeline, partitions=settings.partitions, max_bytes=settings.max_message_bytes)
    with Session(engine) as session, session.begin():
        users.add_user(session, "bo", "approver", PASSWORD, hasher=PasswordHasher(time_cost=1, memory_cost=1024))
        german = {t.tenant_id for t in session.scalars(select(TenantRecordRow)) if t.record["jurisdiction"] == "DE"}
        incident_id = next(
            i.incident_id
            for i in session.scalars(select(IncidentRow).order_by(IncidentRow.opened_at))
            if set(i.tenant_ids or []) == set(i.tenant_ids or []) & german and i.tenant_ids
        )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, engine, password_hasher=PasswordHasher(time_cost=1, memory_cost=1024)),
            host="127.0.0.1",
            port=_free_port(),
            log_level="warning",
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
        yield Console(f"http://127.0.0.1:{server.config.port}", engine, incident_id)
    finally:
        server.should_exit = True
        thread.join(10)
        engine.dispose()


def test_an_approver_records_a_delay_and_an_assessment_and_finds_them_in_the_register(console: Console) -> None:
    expect = playwright_api.expect
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        blocked: list[str] = []
        page.on("console", lambda m: blocked.append(m.text) if "Refused to" in m.text else None)
        try:
            page.goto(f"{console.url}/incidents/{console.incident_id}")
            page.fill("#username", "bo")
            page.fill("#password", PASSWORD)
            page.click("button:has-text('Sign in')")
            page.wait_for_url(f"{console.url}/incidents/{console.incident_id}")

            page.fill("#breach-reason", "Customer records were exported to an unknown address.")
            page.click("#breach button:has-text('Confirm breach')")
            expect(page.locator(".alert-ok")).to_contain_text("Breach confirmed")
            expect(page.locator("#notices")).to_contain_text("clock: awareness ← aware")
            page.click("#breach a:has-text('Breach record')")
            expect(page.locator("h1")).to_contain_text("Breach record")
            expect(page.locator("#clocks")).to_contain_text("eu.art33-1.authority")

            page.select_option("#d-by", "law_enforcement")
            page.fill("#d-agency", "Fictional Landeskriminalamt")
            page.fill("#d-official", "KHK R. Example")
            page.fill("#d-at", "2026-12-03T09:00:00Z")
            page.click("#delays button:has-text('Record the delay')")
            expect(page.locator(".alert-ok")).to_contain_text("Delay recorded")
            expect(page.locator("#delays")).to_contain_text("Holds no clock")

            form = page.locator("#assessments form").first
            form.locator("select[name=owner]").select_option("customer")
            form.locator("select[name=factor_acquired]").select_option("low")
            form.locator("input[name=note_acquired]").fill("the export file was never downloaded")
            form.locator("select[name=decision]").select_option("no_notify")
            form.locator("textarea[name=reasons]").fill("Unlikely to result in a risk: nothing left the tenant.")
            form.locator("button:has-text('Record the assessment')").click()
            expect(page.locator(".alert-ok")).to_contain_text("Assessment recorded")
            expect(page.locator("#assessments table")).to_contain_text("never downloaded")

            page.click("nav a:has-text('Breach register')")
            expect(page.locator("#entries")).to_contain_text("no notify by bo")
            page.screenshot(path="/tmp/breachwatch-register.png", full_page=True)
        finally:
            browser.close()
    assert blocked == [], blocked
    with Session(console.engine) as session:
        actions = {r.action for r in audit.recent(session, limit=50)}
        assert {"breach_confirmed", "delay_recorded", "harm_assessed"} <= actions
        assert audit.verify(session).ok
