"""Just-in-time approval: a tenant opts in, staff file a request, the tenant's approvers are
e-mailed a link of their own; the request goes pending -> approved | denied | expired, an
approval can be revoked; links are signed, expiring and good for one decision; all audited."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.core.settings import ConfigError
from breachwatch.notifier.outbox import OutboxRow
from breachwatch.privacy import approvals
from breachwatch.privacy.approvals import AccessRequestIn, ApprovalError, ApprovalLinks, LinkInvalid
from breachwatch.privacy.staff_mail import file_and_ask
from breachwatch.storage import audit
from tests.fixtures.staff_access import PUBLIC_URL, SECRET, T0, remember, staff_settings, tenant

APPROVERS = ("ciso@rhein.example", "it-lead@rhein.example")


def _request(**kw: object) -> AccessRequestIn:
    values: dict[str, object] = {
        "tenant_id": "t-rhein",
        "staff_ids": ("st-bilal",),
        "purpose": "support_on_request",
        "starts_at": T0 + timedelta(hours=1),
        "ends_at": T0 + timedelta(hours=3),
        "ticket_id": "SUP-4411",
        "reason": "Customer asked us to fix invoice rounding",
        "staff_names": {"st-bilal": "Bilal Example"},
        "request_id": "AR-1",
    }
    values.update(kw)
    return AccessRequestIn(**values)  # type: ignore[arg-type]


def _opt_in(session: Session) -> None:
    approvals.require_approval(session, "t-rhein", APPROVERS, "cli:admin", locale="de", now=T0 - timedelta(days=1))


def _file(engine: Engine, tmp_path: Path, **kw: object) -> dict[str, str]:
    """File AR-1 at T0; each approver's link token, read from the e-mail they were sent."""
    settings = staff_settings(tmp_path)
    with Session(engine) as session, session.begin():
        remember(session, tenant("t-rhein", locale="de"))
        _opt_in(session)
        file_and_ask(session, _request(**kw), "ticketing-bot", settings, now=T0)
    links: dict[str, str] = {}
    with Session(engine) as session:
        for m in session.scalars(select(OutboxRow).where(OutboxRow.message_type == "access_request")):
            [token] = re.findall(re.escape(PUBLIC_URL) + r"/access-requests/([A-Za-z0-9._-]+)", m.body_text)
            links[m.recipient] = token
    return links


def _links() -> ApprovalLinks:
    return ApprovalLinks(SECRET, timedelta(hours=72))


def _decide(engine: Engine, token: str, approve: bool, minutes: float = 10) -> approvals.AccessRequestRow:
    rid, digest = _links().read(token)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        return approvals.decide(session, rid, digest, approve, comment="ok", now=T0 + timedelta(minutes=minutes))


def _actions(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        return [(r.actor, r.action) for r in audit.for_subject(session, "access_request:AR-1")]


def test_only_a_tenant_that_opted_in_takes_requests(engine: Engine, tmp_path: Path) -> None:
    settings = staff_settings(tmp_path)
    with Session(engine) as session, session.begin(), pytest.raises(ApprovalError, match="does not require approval"):
        file_and_ask(session, _request(), "ticketing-bot", settings, now=T0)
    with Session(engine) as session, session.begin():
        _opt_in(session)
        assert approvals.policy_in_force(session, "t-rhein", T0) is not None
        assert approvals.release_approval(session, "t-rhein", "cli:admin", now=T0 + timedelta(days=3))
        assert approvals.policy_in_force(session, "t-rhein", T0 + timedelta(days=4)) is None
        actions = [r.action for r in audit.for_subject(session, "tenant:t-rhein")]
    assert actions[-2:] == ["access_approval.require", "access_approval.release"]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"purpose": "curiosity"}, "purpose must be one of"),
        ({"ends_at": T0}, "must end after it starts"),
        ({"ends_at": T0 + timedelta(days=20)}, "at most 14 days"),
        ({"staff_ids": ()}, "at least one staff member"),
        ({"request_id": "AR 1; drop"}, "a request id is"),
    ],
)
def test_a_malformed_request_is_refused_with_the_reason(
    engine: Engine, tmp_path: Path, change: dict[str, object], error: str
) -> None:
    with Session(engine) as session, session.begin():
        _opt_in(session)
    with Session(engine) as session, session.begin(), pytest.raises(ApprovalError, match=error):
        file_and_ask(session, _request(**change), "ticketing-bot", staff_settings(tmp_path), now=T0)


def test_filing_needs_the_public_address_and_the_signing_key(engine: Engine, tmp_path: Path) -> None:
    with Session(engine) as session, session.begin():
        _opt_in(session)
    with Session(engine) as session, pytest.raises(ApprovalError, match="BREACHWATCH_CONSOLE_PUBLIC_URL"):
        file_and_ask(session, _request(), "bot", staff_settings(tmp_path, console_public_url=None), now=T0)
    with Session(engine) as session, pytest.raises(ConfigError, match="BREACHWATCH_CONSOLE_SECRET_KEY"):
        file_and_ask(session, _request(), "bot", staff_settings(tmp_path, console_secret_key=None), now=T0)


def test_each_approver_gets_an_own_link_in_the_tenants_language(engine: Engine, tmp_path: Path) -> None:
    links = _file(engine, tmp_path)
    assert set(links) == set(APPROVERS) and len(set(links.values())) == 2
    with Session(engine) as session:
        row = approvals.get(session, "AR-1")
        [mail] = session.scalars(select(OutboxRow).where(OutboxRow.recipient == APPROVERS[0]))
    assert row.state == "pending" and row.expires_at == T0 + timedelta(hours=3)  # the window ends first
    assert mail.subject.startswith("Ihre Genehmigung wird benötigt")
    assert "Bilal Example" in mail.body_text and "SUP-4411" in mail.body_text
    assert "von Ihrer Organisation angefragter Support" in mail.body_text
    assert f'href="{PUBLIC_URL}/access-requests/{links[APPROVERS[0]]}"' in (mail.body_html or "")
    assert links[APPROVERS[1]] not in mail.body_text  # the other approver's link goes to them only
    assert _actions(engine) == [("ticketing-bot", "access_request.file")]


def test_approve_names_the_approver_and_every_link_works_once(engine: Engine, tmp_path: Path) -> None:
    links = _file(engine, tmp_path)
    row = _decide(engine, links[APPROVERS[1]], approve=True)
    assert (row.state, row.decided_by) == ("approved", APPROVERS[1])
    for token in links.values():  # the same link again, and the other approver's
        with pytest.raises(ApprovalError, match="approved already"):
            _decide(engine, token, approve=False, minutes=11)
    assert _actions(engine) == [
        ("ticketing-bot", "access_request.file"),
        (APPROVERS[1], "access_request.approve"),
    ]


def test_deny(engine: Engine, tmp_path: Path) -> None:
    links = _file(engine, tmp_path)
    row = _decide(engine, links[APPROVERS[0]], approve=False)
    assert (row.state, row.decided_by, row.comment) == ("denied", APPROVERS[0], "ok")
    assert _actions(engine)[-1] == (APPROVERS[0], "access_request.deny")


def test_a_tampered_or_foreign_link_decides_nothing(engine: Engine, tmp_path: Path) -> None:
    links = _file(engine, tmp_path)
    token = links[APPROVERS[0]]
    head, sep, sig = token.rpartition(".")
    forged = head + sep + ("A" if sig[0] != "A" else "B") + sig[1:]
    with pytest.raises(LinkInvalid, match="not valid"):
        _decide(engine, forged, approve=True)
    other_key = ApprovalLinks("another-deployments-key-0123456789", timedelta(hours=72))
    foreign, _ = other_key.make("AR-1")
    with pytest.raises(LinkInvalid, match="not valid"):
        _decide(engine, foreign, approve=True)
    # Signed by us, but for a secret that was never issued: refused by the store.
    minted, _ = _links().make("AR-1")
    with pytest.raises(LinkInvalid, match="not valid"):
        _decide(engine, minted, approve=True)
    with Session(engine) as session:
        assert approvals.get(session, "AR-1").state == "pending"


def test_a_link_expires(engine: Engine, tmp_path: Path) -> None:
    links = ApprovalLinks(SECRET, timedelta(seconds=1))
    token, _ = links.make("AR-1")
    time.sleep(2.1)
    with pytest.raises(LinkInvalid, match="expired"):
        links.read(token)


def test_an_undecided_request_expires(engine: Engine, tmp_path: Path) -> None:
    links = _file(engine, tmp_path)
    with Session(engine) as session, session.begin():
        assert approvals.expire_due(session, now=T0 + timedelta(hours=2)) == []
        assert approvals.expire_due(session, now=T0 + timedelta(hours=3)) == ["AR-1"]
        assert approvals.expire_due(session, now=T0 + timedelta(hours=4)) == []
    with pytest.raises(ApprovalError, match="expired already"):
        _decide(engine, links[APPROVERS[0]], approve=True, minutes=200)
    with Session(engine) as session:
        row = approvals.get(session, "AR-1")
        [expiry] = [r for r in audit.for_subject(session, "access_request:AR-1") if r.action.endswith("expire")]
    assert row.state == "expired" and expiry.at == T0 + timedelta(hours=3)


def test_a_decision_after_the_expiry_time_is_refused_even_before_the_sweep(engine: Engine, tmp_path: Path) -> None:
    links = _file(engine, tmp_path)
    with pytest.raises(ApprovalError, match="expired"):
        _decide(engine, links[APPROVERS[0]], approve=True, minutes=181)
    with Session(engine) as session:
        assert approvals.state_now(approvals.get(session, "AR-1"), T0 + timedelta(minutes=181)) == "expired"


def test_revoke_ends_an_approval_and_only_an_approval(engine: Engine, tmp_path: Path) -> None:
    links = _file(engine, tmp_path)
    with Session(engine) as session, session.begin(), pytest.raises(ApprovalError, match="this one is pending"):
        approvals.revoke(session, "AR-1", "tenant t-rhein", now=T0)
    _decide(engine, links[APPROVERS[0]], approve=True)
    with Session(engine) as session, session.begin():
        row = approvals.revoke(session, "AR-1", "tenant t-rhein (token abc)", now=T0 + timedelta(hours=2))
        assert (row.state, row.revoked_at) == ("revoked", T0 + timedelta(hours=2))
    with Session(engine) as session, session.begin(), pytest.raises(ApprovalError, match="this one is revoked"):
        approvals.revoke(session, "AR-1", "x", now=T0 + timedelta(hours=2, minutes=5))
    assert _actions(engine)[-1] == ("tenant t-rhein (token abc)", "access_request.revoke")


def test_the_detectors_read_each_state_as_of_the_access(engine: Engine, tmp_path: Path) -> None:
    links = _file(engine, tmp_path)
    _decide(engine, links[APPROVERS[0]], approve=True, minutes=30)
    with Session(engine) as session, session.begin():
        approvals.revoke(session, "AR-1", "x", now=T0 + timedelta(hours=2))
        policies, grants = approvals.load_grants(session)
    [g] = grants
    assert [p.tenant_id for p in policies] == ["t-rhein"]
    at = lambda m: T0 + timedelta(minutes=m)  # noqa: E731
    assert [g.state_at(at(m)) for m in (-1, 10, 45, 125)] == [None, "pending", "approved", "revoked"]
    assert [g.covers("st-bilal", at(m)) for m in (45, 70, 110, 130)] == [False, True, True, False]
    assert not g.covers("st-sara", at(70))


def test_the_audit_chain_holds(engine: Engine, tmp_path: Path) -> None:
    links = _file(engine, tmp_path)
    _decide(engine, links[APPROVERS[0]], approve=True)
    with Session(engine) as session:
        assert audit.verify(session).ok
