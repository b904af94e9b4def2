"""Deadline escalation: page the on-call team as a duty's window runs down, and loudly once it
is overdue.

``check_deadlines`` looks at every duty the vendor owes that is not yet met, and for each
threshold crossed since the last check (half the window used, 80 % used, overdue, then every
``overdue_repeat`` while it stays overdue) queues one page per on-call channel and address.
Message ids are made of the notice, the duty, the threshold, the channel and the address, and
each threshold is recorded, so a second run (or a crash and a re-run) pages nobody twice. When
several thresholds were crossed between two checks only the latest is paged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.core.ids import stable_id, unique
from breachwatch.core.settings import Settings
from breachwatch.notifier.alerts import console_link, paging_channel_names
from breachwatch.notifier.integrations import DEDUP_HEADER
from breachwatch.notifier.message import EMAIL
from breachwatch.notifier.notices.law_context import paused
from breachwatch.notifier.notices.models import WITHDRAWN, DeadlinePageRow, NoticeDutyRow, NoticeRow
from breachwatch.notifier.notices.service import first_sent_at, fulfils
from breachwatch.notifier.outbox import queue_message
from breachwatch.notifier.render import Rendered, render

log = logging.getLogger(__name__)

MESSAGE_TYPE = "oncall_deadline"
WARN_FRACTIONS: tuple[float, ...] = (0.5, 0.8)
OVERDUE_REPEAT = timedelta(hours=12)
MAX_REPEATS = 28  # two weeks of twice-daily pages; beyond that the banner carries it
SEVERITY = {"warning": "medium", "urgent": "high", "overdue": "critical"}


@dataclass(frozen=True, slots=True)
class Threshold:
    """A point in a duty's window that triggers a page."""

    label: str  # "50%", "80%", "overdue", "overdue+12h", ...
    at: datetime
    level: str  # warning | urgent | overdue


@dataclass(slots=True)
class DeadlinePage:
    """A page ``check_deadlines`` queued for one duty at one threshold."""

    notice_id: str
    incident_id: str
    tenant_id: str
    rule_id: str
    threshold: str
    level: str
    target_at: datetime | None
    due_at: datetime | None
    message_ids: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # earlier thresholds passed over for this one


def thresholds(
    duty: NoticeDutyRow,
    *,
    warn_fractions: Sequence[float] = WARN_FRACTIONS,
    overdue_repeat: timedelta = OVERDUE_REPEAT,
    max_repeats: int = MAX_REPEATS,
) -> list[Threshold]:
    """Every page point of a duty's window, in time order (none while its clock has not started)."""
    start, target = duty.clock_started_at, duty.target_at
    if start is None or target is None:
        return []
    window = target - start
    points = [
        Threshold(f"{round(f * 100)}%", start + window * f, "warning" if i == 0 else "urgent")
        for i, f in enumerate(sorted(warn_fractions))
    ]
    points.append(Threshold("overdue", target, "overdue"))
    for n in range(1, max_repeats + 1):
        hours = overdue_repeat * n
        points.append(Threshold(f"overdue+{int(hours.total_seconds() // 3600)}h", target + hours, "overdue"))
    return points


def _left(target: datetime | None, now: datetime) -> str:
    if target is None:
        return ""
    seconds = int((target - now).total_seconds())
    hours, rest = divmod(abs(seconds), 3600)
    text = f"{hours} h {rest // 60:02d} min"
    return f"{text} left" if seconds >= 0 else f"overdue by {text}"


def _time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value is not None else ""


def page_context(
    notice: NoticeRow, duty: NoticeDutyRow, threshold: Threshold, now: datetime, console_url: str | None
) -> dict[str, Any]:
    """The ``oncall_deadline`` template context."""
    return {
        "level": threshold.level,
        "threshold": threshold.label,
        "time_left": _left(duty.target_at, now),
        "notice": {
            "id": notice.notice_id,
            "version": notice.current_version,
            "status": notice.status,
            "tenant_id": notice.tenant_id,
            "tenant_name": notice.tenant_name,
            "jurisdiction": notice.jurisdiction,
        },
        "incident": {"id": notice.incident_id},
        "duty": {
            "rule_id": duty.rule_id,
            "title": duty.title,
            "whom": duty.whom,
            "provision": duty.provision,
            "regime": duty.regime,
            "deadline": duty.deadline_text,
            "basis": duty.basis,
            "clock_started_at": _time(duty.clock_started_at),
            "target_at": _time(duty.target_at),
            "due_at": _time(duty.due_at),
        },
        "console_url": console_link(console_url, notice.incident_id),
    }


def _fallback(notice: NoticeRow, duty: NoticeDutyRow, threshold: Threshold, console_url: str | None = None) -> Rendered:
    subject = f"[BreachWatch] {threshold.level.upper()}: notice deadline {duty.rule_id} – incident {notice.incident_id}"
    text = (
        f"A notification deadline needs attention ({threshold.label}).\n"
        f"Incident: {notice.incident_id}\nNotice: {notice.notice_id}\nDuty: {duty.rule_id}\n"
        f"Target: {_time(duty.target_at)}\n"
    )
    link = console_link(console_url, notice.incident_id)
    if link:
        text += f"Console: {link}\n"
    return Rendered(subject=subject, text=text, html=None, locale="en")


def check_deadlines(
    session: Session,
    settings: Settings,
    now: datetime,
    *,
    warn_fractions: Sequence[float] = WARN_FRACTIONS,
    overdue_repeat: timedelta = OVERDUE_REPEAT,
    console_url: str | None = None,
) -> list[DeadlinePage]:
    """Queue on-call pages for the vendor's duties whose thresholds were crossed; returns them.

    A duty discharged by the notice is marked met once the provider accepted the notice.
    Runs in the caller's transaction.
    """
    if now.tzinfo is None:
        raise ValueError("now must be time-zone aware")
    console_url = console_url or settings.console_url
    channels = [EMAIL, *sorted(paging_channel_names(settings))]
    emails = list(unique(settings.oncall_emails))
    team = emails[0] if emails else settings.mail_from
    pages: list[DeadlinePage] = []
    rows = session.execute(
        select(NoticeDutyRow, NoticeRow)
        .join(NoticeRow, NoticeRow.notice_id == NoticeDutyRow.notice_id)
        .where(
            NoticeDutyRow.owner == "vendor",
            NoticeDutyRow.active.is_(True),
            NoticeDutyRow.met_at.is_(None),
            NoticeRow.status != WITHDRAWN,
        )
        .order_by(NoticeDutyRow.target_at, NoticeDutyRow.notice_id, NoticeDutyRow.rule_id)
    ).all()
    for duty, notice in rows:
        if fulfils(duty):
            sent = first_sent_at(session, notice.notice_id)
            if sent is not None:
                duty.met_at = sent
                continue
        if duty.waived or paused(duty, now):
            continue  # decided not to notify, or held back at law enforcement's request
        crossed = [
            t for t in thresholds(duty, warn_fractions=warn_fractions, overdue_repeat=overdue_repeat) if t.at <= now
        ]
        if not crossed:
            continue
        done = set(
            session.scalars(
                select(DeadlinePageRow.threshold).where(
                    DeadlinePageRow.notice_id == notice.notice_id, DeadlinePageRow.rule_id == duty.rule_id
                )
            )
        )
        new = [t for t in crossed if t.label not in done]
        if not new:
            continue
        latest = new[-1]
        for t in new[:-1]:
            session.add(
                DeadlinePageRow(
                    notice_id=notice.notice_id, rule_id=duty.rule_id, threshold=t.label, paged=False, at=now
                )
            )
        session.add(DeadlinePageRow(notice_id=notice.notice_id, rule_id=duty.rule_id, threshold=latest.label, at=now))
        page = DeadlinePage(
            notice_id=notice.notice_id,
            incident_id=notice.incident_id,
            tenant_id=notice.tenant_id,
            rule_id=duty.rule_id,
            threshold=latest.label,
            level=latest.level,
            target_at=duty.target_at,
            due_at=duty.due_at,
            skipped=[t.label for t in new[:-1]],
        )
        try:
            rendered = render(MESSAGE_TYPE, "en", page_context(notice, duty, latest, now, console_url))
        except Exception as exc:
            log.error("deadline page for %s rendered with the fallback: %s", notice.notice_id, type(exc).__name__)
            rendered = _fallback(notice, duty, latest, console_url)
        targets = [(EMAIL, addr) for addr in emails] + [(ch, team) for ch in channels if ch != EMAIL]
        for channel, recipient in targets:
            message_id = stable_id(MESSAGE_TYPE, notice.notice_id, duty.rule_id, latest.label, channel, recipient)
            if queue_message(
                session,
                message_id=message_id,
                message_type=MESSAGE_TYPE,
                recipient=recipient,
                rendered=rendered,
                channel=channel,
                incident_id=notice.incident_id,
                headers={
                    "X-BreachWatch-Severity": SEVERITY[latest.level],
                    "X-BreachWatch-Notice": notice.notice_id,
                    # A pager keeps a deadline's pages apart from the incident's own alert,
                    # which follows the incident (acknowledged, resolved) and this does not.
                    **({DEDUP_HEADER: f"deadline:{notice.notice_id}:{duty.rule_id}"} if channel != EMAIL else {}),
                },
                now=now,
            ):
                page.message_ids.append(message_id)
        pages.append(page)
        log.warning(
            "notice %s duty %s: %s (target %s), paged %d time(s)",
            notice.notice_id,
            duty.rule_id,
            latest.label,
            _time(duty.target_at),
            len(page.message_ids),
        )
    return pages


def overdue_duties(session: Session, now: datetime) -> list[dict[str, Any]]:
    """Unmet vendor duties past their target, for the console's banner."""
    out = []
    rows = session.execute(
        select(NoticeDutyRow, NoticeRow)
        .join(NoticeRow, NoticeRow.notice_id == NoticeDutyRow.notice_id)
        .where(
            NoticeDutyRow.owner == "vendor",
            NoticeDutyRow.active.is_(True),
            NoticeDutyRow.met_at.is_(None),
            NoticeDutyRow.target_at < now,
            NoticeRow.status != WITHDRAWN,
        )
        .order_by(NoticeDutyRow.target_at)
    ).all()
    for duty, notice in rows:
        if fulfils(duty) and first_sent_at(session, notice.notice_id) is not None:
            continue
        if duty.waived or paused(duty, now):
            continue
        out.append(
            {
                "incident_id": notice.incident_id,
                "notice_id": notice.notice_id,
                "tenant_id": notice.tenant_id,
                "tenant_name": notice.tenant_name,
                "rule_id": duty.rule_id,
                "title": duty.title,
                "target_at": duty.target_at.isoformat() if duty.target_at else None,
                "due_at": duty.due_at.isoformat() if duty.due_at else None,
                "overdue_by_s": int((now - duty.target_at).total_seconds()) if duty.target_at else 0,
            }
        )
    return out
