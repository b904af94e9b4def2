"""The approval gate cannot be walked round: approvers are approver-role users, compared
case-insensitively and counted once each; the person who confirmed the breach is not enough
alone; what is sent is exactly what was approved (an edited outbox row is refused and paged);
a superseded or withdrawn version is never sent, whoever releases it."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from breachwatch.channels.file import FileChannel
from breachwatch.core.settings import Settings
from breachwatch.incidents.users import disable
from breachwatch.notifier.message import EMAIL, content_digest
from breachwatch.notifier.notices import (
    ApprovalRefused,
    NoticeError,
    approve_notice,
    list_notices,
    on_breach_confirmed,
    resolve_unknown,
    revise_notice,
)
from breachwatch.notifier.notices.models import NoticeEventRow, NoticeRow
from breachwatch.notifier.outbox import Dispatcher, OutboxRow, requeue
from breachwatch.runtime.app import outbox_dispatcher
from breachwatch.storage import audit

pytestmark = pytest.mark.usefixtures("no_notice_files")
CONFIRMED_AT = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)
SENT_AT = CONFIRMED_AT + dt.timedelta(hours=1)


@pytest.fixture
def notice(engine, settings: Settings, store_incident) -> str:
    """A drafted notice to t-rhein (two recipients, a customer notice and a regulator draft each),
    the breach confirmed by responder-ada."""
    incident_id = store_incident()
    with Session(engine) as session, session.begin():
        [notice_id] = on_breach_confirmed(
            session, incident_id, confirmed_by="responder-ada", confirmed_at=CONFIRMED_AT, settings=settings
        )
    return notice_id


def _approve(engine, notice_id: str, who: str, **kw) -> dict:
    with Session(engine) as session, session.begin():
        return approve_notice(session, notice_id, who, now=CONFIRMED_AT, **kw)


def _require_two(engine, notice_id: str) -> None:
    with Session(engine) as session, session.begin():
        session.execute(update(NoticeRow).where(NoticeRow.notice_id == notice_id).values(required_approvals=2))


def _dispatcher(engine, settings: Settings, out: Path) -> Dispatcher:
    channels = {EMAIL: FileChannel(out, settings.mail_from)}
    return outbox_dispatcher(settings, engine, channels)


def _statuses(engine, message_type: str | None = None) -> dict[str, str]:
    stmt = select(OutboxRow.message_id, OutboxRow.status)
    if message_type:
        stmt = stmt.where(OutboxRow.message_type == message_type)
    with Session(engine) as session:
        return dict(session.execute(stmt).all())


# --- who may approve ---------------------------------------------------------------------------


def test_names_differing_in_case_are_one_approver(engine, notice) -> None:
    _require_two(engine, notice)
    first = _approve(engine, notice, "approver-bo")
    assert (first["status"], first["approvals"]) == ("draft", ["approver-bo"])
    with pytest.raises(ApprovalRefused, match="approver-bo already approved"):
        _approve(engine, notice, "Approver-BO")
    assert _statuses(engine) == {}  # nothing queued on one person's word
    second = _approve(engine, notice, "APPROVER-CY ")
    assert (second["status"], second["approvals"], second["queued"]) == ("approved", ["approver-bo", "approver-cy"], 4)


@pytest.mark.parametrize(
    ("who", "why"),
    [
        ("somebody", "no user 'somebody'"),
        ("responder-ada", "has the responder role; approving notices needs the approver role"),
        ("", "an approver must be named"),
    ],
)
def test_only_approver_role_users_approve(engine, notice, who, why) -> None:
    with pytest.raises(ApprovalRefused, match=why):
        _approve(engine, notice, who)
    assert _statuses(engine) == {}


def test_a_disabled_approver_cannot_approve(engine, notice) -> None:
    with Session(engine) as session, session.begin():
        disable(session, "approver-bo")
    with pytest.raises(ApprovalRefused, match="disabled"):
        _approve(engine, notice, "approver-bo")


def test_the_confirmer_is_not_enough_alone(engine, settings, store_incident) -> None:
    incident_id = store_incident()
    with Session(engine) as session, session.begin():
        # An approver confirmed the breach (through a token: the same person).
        [notice_id] = on_breach_confirmed(
            session,
            incident_id,
            confirmed_by="Approver-Bo (token 0a1b2c3d4e5f6a7b)",
            confirmed_at=CONFIRMED_AT,
            settings=settings,
        )
    alone = _approve(engine, notice_id, "approver-bo")
    assert alone["status"] == "draft" and "confirmed the breach and cannot be the only approver" in alone["waiting_for"]
    assert _statuses(engine) == {}
    assert _approve(engine, notice_id, "approver-cy")["status"] == "approved"


def test_the_confirmer_alone_suffices_when_the_deployment_allows_it(engine, settings, store_incident) -> None:
    incident_id = store_incident()
    with Session(engine) as session, session.begin():
        [notice_id] = on_breach_confirmed(
            session, incident_id, confirmed_by="approver-bo", confirmed_at=CONFIRMED_AT, settings=settings
        )
    assert _approve(engine, notice_id, "approver-bo", confirmer_may_approve_alone=True)["status"] == "approved"


# --- what is sent is what was approved ---------------------------------------------------------


def test_an_edited_outbox_body_is_refused_and_paged(engine, settings, notice, tmp_path) -> None:
    approved = _approve(engine, notice, "approver-bo")
    assert approved["queued"] == 4
    with Session(engine) as session:
        [event] = session.scalars(select(NoticeEventRow).where(NoticeEventRow.action == "notice_approved")).all()
    assert len(event.detail["digests"]) == 4  # the seals are in the audit trail
    with Session(engine) as session, session.begin():
        [victim] = session.scalars(
            select(OutboxRow.message_id).where(OutboxRow.message_type == "customer_notice").limit(1)
        ).all()
        # Below the ORM, as someone with database access would.
        session.execute(
            update(OutboxRow)
            .where(OutboxRow.message_id == victim)
            .values(body_text=OutboxRow.body_text + "\nPay the ransom to 1BoatSLRHtKNngkdXEeobR76b53LETtpyT")
            .execution_options(synchronize_session=False)
        )
    out = tmp_path / "out"

    dispatcher = _dispatcher(engine, settings, out)
    report = dispatcher.dispatch_due()

    assert (report.refused, report.sent) == (1, 3)
    assert dispatcher.dispatch_due().sent == 1  # the on-call page about it, queued by the refusal
    statuses = _statuses(engine)
    assert statuses[victim] == "failed"
    sent_files = "".join(p.read_text(encoding="utf-8") for p in out.glob("*.eml"))
    assert "1BoatSLR" not in sent_files
    [page] = _statuses(engine, "oncall_send_refused")
    assert "refused" in sent_files and victim in sent_files  # the on-call page went out
    with Session(engine) as session:
        row = session.get(OutboxRow, victim)
        assert row is not None and "differs from the approved content" in (row.last_error or "")
        assert audit.verify(session).ok
        actions = set(session.scalars(select(NoticeEventRow.action)))
    assert "delivery_refused" in actions
    assert page


def test_the_seal_holds_without_the_guard_and_the_guard_without_the_seal(engine, settings, notice, tmp_path) -> None:
    _approve(engine, notice, "approver-bo")
    with Session(engine) as session, session.begin():
        ids = sorted(session.scalars(select(OutboxRow.message_id).where(OutboxRow.message_type == "customer_notice")))
        session.execute(update(OutboxRow).where(OutboxRow.message_id.not_in(ids[:1])).values(status="held"))
        session.execute(update(OutboxRow).where(OutboxRow.message_id == ids[0]).values(subject="Nothing happened"))
    # A dispatcher built with no guard still checks the outbox's own seal.
    bare = Dispatcher(engine, {EMAIL: FileChannel(tmp_path / "bare", settings.mail_from)})
    assert bare.dispatch_due().refused == 1
    assert _statuses(engine)[ids[0]] == "failed" and not list((tmp_path / "bare").glob("*.eml"))

    # Someone who also recomputes the seal in the outbox is stopped by the approval record.
    with Session(engine) as session, session.begin():
        row = session.get(OutboxRow, ids[1])
        assert row is not None
        forged = replace(row.to_message(), subject="All clear")
        session.execute(
            update(OutboxRow)
            .where(OutboxRow.message_id == ids[1])
            .values(subject="All clear", sealed_digest=content_digest(forged), status="pending")
        )
    report = _dispatcher(engine, settings, tmp_path / "guarded").dispatch_due()
    assert report.refused == 1 and _statuses(engine)[ids[1]] == "failed"
    assert "All clear" not in "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "guarded").glob("*.eml"))


# --- superseded and withdrawn versions are never sent --------------------------------------------


def _make_unknown(engine, message_ids: list[str]) -> None:
    with Session(engine) as session, session.begin():
        session.execute(
            update(OutboxRow)
            .where(OutboxRow.message_id.in_(message_ids))
            .values(status="unknown", attempts=1, last_error="interrupted mid-send, outcome unknown")
        )


def test_a_superseded_version_is_never_released(engine, settings, notice, tmp_path) -> None:
    _approve(engine, notice, "approver-bo")
    v1 = sorted(_statuses(engine))
    _make_unknown(engine, v1)  # version 1's sends were interrupted, nobody can tell
    with Session(engine) as session, session.begin():
        assert (
            revise_notice(
                session,
                notice,
                editor="approver-cy",
                reason="the cause is known",
                settings=settings,
                changes={"cause": "a reused password"},
            )
            == 2
        )
    # A person says version 1 never arrived: it is not sent again, version 2 goes out instead.
    with Session(engine) as session, session.begin():
        assert {resolve_unknown(session, m, arrived=False, by="approver-bo") for m in v1} == {"not_resent"}
    # Releasing it below the workflow does not help either: the guard refuses it at send time.
    with Session(engine) as session, session.begin():
        session.execute(update(OutboxRow).where(OutboxRow.message_id == v1[0]).values(status="held"))
        assert requeue(session, v1[0])
    report = _dispatcher(engine, settings, tmp_path / "out").dispatch_due()
    assert (report.refused, report.sent) == (1, 0)
    assert list(_statuses(engine, "oncall_send_refused").values()) == ["pending"]  # the on-call is paged
    assert {_statuses(engine)[m] for m in v1} == {"failed"}
    channel = FileChannel(tmp_path / "out", settings.mail_from)
    assert not any(channel.path_for(m).exists() for m in v1)
    _approve(engine, notice, "approver-bo")
    report = _dispatcher(engine, settings, tmp_path / "out").dispatch_due()
    assert report.sent == 4 + 1 and report.refused == 0  # version 2, and the page
    with Session(engine) as session:
        [summary] = list_notices(session, "inc-7f3a9c21e4b05d18")
    assert (summary["version"], summary["status"]) == (2, "sent")


def test_a_current_version_is_resent_only_on_an_approvers_word(engine, settings, notice, tmp_path) -> None:
    _approve(engine, notice, "approver-bo")
    ids = sorted(_statuses(engine))
    _make_unknown(engine, ids)
    with Session(engine) as session, session.begin(), pytest.raises(NoticeError, match="responder role"):
        resolve_unknown(session, ids[0], arrived=False, by="responder-ada")
    with Session(engine) as session, session.begin():
        assert resolve_unknown(session, ids[0], arrived=False, by="approver-cy") == "resending"
        assert resolve_unknown(session, ids[1], arrived=True, by="approver-cy") == "sent"
        with pytest.raises(NoticeError, match="not waiting for a decision"):
            resolve_unknown(session, ids[1], arrived=False, by="approver-cy")
    report = _dispatcher(engine, settings, tmp_path / "out").dispatch_due()
    assert (report.sent, report.refused) == (1, 0)


def test_a_withdrawn_notice_is_never_sent(engine, settings, notice, tmp_path) -> None:
    _approve(engine, notice, "approver-bo")
    ids = sorted(_statuses(engine))
    with Session(engine) as session, session.begin():
        # Withdrawn after approval, before the pump ran: its messages were held, then released.
        session.execute(update(NoticeRow).where(NoticeRow.notice_id == notice).values(status="withdrawn"))
        session.execute(update(OutboxRow).where(OutboxRow.message_id.in_(ids)).values(status="held"))
        assert all(requeue(session, m) for m in ids)
    report = _dispatcher(engine, settings, tmp_path / "out").dispatch_due()
    assert (report.refused, report.sent) == (4, 0)
    with Session(engine) as session:
        errors = {session.get(OutboxRow, m).last_error for m in ids}  # type: ignore[union-attr]
    assert errors == {f"refused before sending: notice {notice} was withdrawn"}
