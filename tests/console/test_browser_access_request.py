"""In headless Chromium: a tenant's approver opens the link from the e-mail (no account), reads
who wants in, why and when, and approves; the other approver's link then shows the decision;
another request is denied; an altered link shows nothing of the request. The page's own
Content-Security-Policy must not block anything on it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bench import console_shots
from breachwatch.core.clock import utcnow
from breachwatch.core.settings import Settings
from breachwatch.notifier.outbox import OutboxRow
from breachwatch.privacy import approvals
from breachwatch.privacy.approvals import AccessRequestIn
from breachwatch.privacy.staff_mail import file_and_ask
from breachwatch.storage.db import make_engine
from breachwatch.storage.migrate import upgrade
from tests.fixtures.staff_access import SECRET, remember, tenant

pytestmark = pytest.mark.browser
playwright_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("axe_playwright_python")
APPROVERS = ("ciso@rhein.example", "it-lead@rhein.example")
Site = console_shots.Console


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if not Path(console_shots.CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed")
    work = tmp_path_factory.mktemp("approve")
    settings = Settings(
        db_url=f"sqlite:///{work / 'bw.db'}",
        outbox_dir=work / "outbox",
        console_secret_key=SECRET,
        console_secure_cookies=True,  # Chromium treats 127.0.0.1 as a secure origin
    )
    engine = make_engine(settings.db_url)
    upgrade(engine)
    with Session(engine) as session, session.begin():
        remember(session, tenant("t-rhein"))
        approvals.require_approval(session, "t-rhein", APPROVERS, "cli:admin")
    engine.dispose()
    with console_shots.start_console(settings) as running:
        # The approvers' links point at the console as it runs here.
        yield Site(running.url, running.engine, settings.model_copy(update={"console_public_url": running.url}))


@pytest.fixture
def browser_page(site: Site) -> Iterator[Any]:
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=console_shots.CHROMIUM, args=console_shots.CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
        blocked: list[str] = []
        page.on("console", lambda m: blocked.append(m.text) if "Refused to" in m.text else None)
        try:
            yield page
        finally:
            browser.close()
        assert blocked == [], blocked


def _accessible(page: Any) -> None:
    found = console_shots.describe(console_shots.axe_violations(page))
    assert found == [], (page.url, found)


def _file(site: Site, request_id: str) -> dict[str, str]:
    """File a request; each approver's link, as their e-mail has it."""
    now = utcnow()
    req = AccessRequestIn(
        tenant_id="t-rhein",
        staff_ids=("st-bilal",),
        staff_names={"st-bilal": "Bilal Example"},
        purpose="support_on_request",
        starts_at=now + timedelta(hours=1),
        ends_at=now + timedelta(hours=4),
        ticket_id="SUP-4411",
        reason="Customer asked us to fix invoice rounding",
        request_id=request_id,
    )
    with Session(site.engine) as session, session.begin():
        file_and_ask(session, req, "ticketing-bot", site.settings)
    links = {}
    with Session(site.engine) as session:
        for m in session.scalars(select(OutboxRow).where(OutboxRow.message_id.like(f"access-request:{request_id}:%"))):
            [links[m.recipient]] = re.findall(re.escape(site.url) + r"/access-requests/[A-Za-z0-9._-]+", m.body_text)
    return links


def test_the_approver_approves_and_the_other_link_then_shows_it(site: Site, browser_page: object) -> None:
    p = browser_page  # type: ignore[assignment]
    links = _file(site, "AR-100")
    p.goto(links[APPROVERS[0]])  # type: ignore[attr-defined]
    _accessible(p)
    assert p.locator("#who").inner_text() == "Bilal Example"  # type: ignore[attr-defined]
    text = p.locator("#access-request").inner_text()  # type: ignore[attr-defined]
    assert "support on request (ticket SUP-4411)" in text and "fix invoice rounding" in text
    assert "data of Rhein Example GmbH in the ERP" in text
    p.fill("textarea[name=comment]", "Go ahead, today only")  # type: ignore[attr-defined]
    p.click("#approve")  # type: ignore[attr-defined]
    outcome = p.locator("#outcome").inner_text()  # type: ignore[attr-defined]
    _accessible(p)
    assert outcome.startswith("Your decision is recorded. Approved by ciso@rhein.example")
    p.screenshot(path="/tmp/access-request-approved.png")  # type: ignore[attr-defined]
    p.goto(links[APPROVERS[1]])  # type: ignore[attr-defined]
    assert p.locator("#access-request").get_attribute("data-state") == "approved"  # type: ignore[attr-defined]
    assert p.locator("#approve").count() == 0  # type: ignore[attr-defined]
    with Session(site.engine) as session:
        row = approvals.get(session, "AR-100")
        assert (row.state, row.decided_by, row.comment) == ("approved", APPROVERS[0], "Go ahead, today only")


def test_deny_and_an_altered_link(site: Site, browser_page: object) -> None:
    p = browser_page  # type: ignore[assignment]
    links = _file(site, "AR-101")
    p.goto(links[APPROVERS[1]])  # type: ignore[attr-defined]
    p.click("#deny")  # type: ignore[attr-defined]
    assert "Denied by it-lead@rhein.example" in p.locator("#outcome").inner_text()  # type: ignore[attr-defined]
    p.go_back()  # type: ignore[attr-defined]
    p.reload()  # type: ignore[attr-defined]
    assert p.locator("#access-request").get_attribute("data-state") == "denied"  # type: ignore[attr-defined]
    altered = links[APPROVERS[0]][:-4] + "AAAA"
    response = p.goto(altered)  # type: ignore[attr-defined]
    assert response.status == 400  # type: ignore[union-attr]
    assert "This link cannot be used" in p.content() and "Bilal" not in p.content()  # type: ignore[attr-defined]
    _accessible(p)
    with Session(site.engine) as session:
        assert approvals.get(session, "AR-101").state == "denied"
