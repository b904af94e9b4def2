"""Paging after the first page: re-page an unacknowledged incident, move up the escalation
chain, re-page once when severity rises, and remind silence owners before silences end.

The store pages the on-call when an incident opens (``notifier.alerts``). ``run_once`` is one
pass over the incidents that are not closed; run it every minute or so (``breachwatch
escalate --every 60``). Each page it sends is a row in ``incident_pages`` and outbox messages
with deterministic ids, so a pass that runs twice, or two passes at once, page once.

The chain comes from a TOML file (``BREACHWATCH_ESCALATION_FILE``)::

    repage_after_minutes = 15      # an unacknowledged page is sent again after this long
    repeat_interval_minutes = 240  # at most one severity-rise page per interval
    silence_reminder_hours = 24    # remind a silence's owner this long before it ends

    [[level]]
    name = "primary on-call"
    emails = ["oncall-security@unisen.example"]
    rotation = ["amara.okafor@unisen.example", "jonas.lindqvist@unisen.example"]
    rotation_start = 2026-01-05T09:00:00Z
    rotation_hours = 168            # who of the rotation is on call: one week each

    [[level]]
    name = "security lead"
    after_minutes = 30              # after the first page, if still unacknowledged
    emails = ["secops-lead@unisen.example"]

Without a file the chain is one level, ``BREACHWATCH_ONCALL_EMAILS``, re-paged after 15 minutes.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from markupsafe import escape
from sqlalchemy import ForeignKey, Integer, String, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from breachwatch.core.clock import utcnow
from breachwatch.core.findings import SEVERITY_RANK
from breachwatch.core.ids import stable_id, unique
from breachwatch.core.settings import ConfigError, Settings
from breachwatch.incidents.lifecycle import IncidentEventRow, note
from breachwatch.incidents.model import CLOSED_STATUSES
from breachwatch.incidents.tables import EvidenceRow, FindingRow, IncidentRow
from breachwatch.notifier.message import EMAIL, header_text, is_address
from breachwatch.notifier.oncall_context import alert_context, console_link
from breachwatch.notifier.outbox import queue_message
from breachwatch.notifier.paging import silences
from breachwatch.notifier.render import Rendered, render
from breachwatch.storage import audit
from breachwatch.storage.db import Base

log = logging.getLogger(__name__)

PAGE_TYPE = "oncall_page"
ALERT_TYPE = "oncall_alert"  # the first page, queued by notifier.alerts when the store opens an incident
MAX_EVIDENCE_IN_PAGE = 10


DEFAULT_ROTATION_START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday morning


@dataclass(frozen=True, slots=True)
class Level:
    """One rung of the chain: who is paged, and how long after the first page."""

    name: str
    after: timedelta = timedelta(0)
    emails: tuple[str, ...] = ()
    rotation: tuple[str, ...] = ()
    rotation_start: datetime = DEFAULT_ROTATION_START
    rotation_period: timedelta = timedelta(days=7)

    def on_call(self, at: datetime) -> str | None:
        """Who of the rotation is on call at ``at``."""
        if not self.rotation:
            return None
        shifts = int((at - self.rotation_start) // self.rotation_period)
        return self.rotation[shifts % len(self.rotation)]

    def recipients(self, at: datetime) -> tuple[str, ...]:
        person = self.on_call(at)
        return unique([*self.emails, *([person] if person else [])])


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """The escalation chain and the timings of re-pages and reminders."""

    levels: tuple[Level, ...]
    repage_after: timedelta = timedelta(minutes=15)
    repeat_interval: timedelta = timedelta(hours=4)
    silence_reminder: timedelta = timedelta(hours=24)

    def steps(self) -> list[Step]:
        """Every page of an unacknowledged incident, in order, as offsets from its first page."""
        out: list[Step] = []
        for i, level in enumerate(self.levels):
            out.append(Step(f"L{i}", i, level.after, "initial" if i == 0 else "escalation"))
            repage = level.after + self.repage_after
            nxt = self.levels[i + 1].after if i + 1 < len(self.levels) else None
            if nxt is None or repage < nxt:
                out.append(Step(f"L{i}r", i, repage, "repage"))
        return out


@dataclass(frozen=True, slots=True)
class Step:
    key: str  # stable name, part of message ids
    level: int
    offset: timedelta
    reason: str  # initial | repage | escalation


def default_policy(settings: Settings) -> EscalationPolicy:
    return EscalationPolicy(levels=(Level("on-call", emails=tuple(settings.oncall_emails)),))


def _minutes(doc: dict[str, Any], key: str, default: timedelta, where: str) -> timedelta:
    value = doc.get(key)
    if value is None:
        return default
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{where}: {key} must be a number of minutes, 0 or more")
    return timedelta(minutes=value)


def _emails(value: Any, key: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and is_address(v) for v in value):
        raise ConfigError(f"{where}: {key} must be a list of plain email addresses")
    return tuple(value)


def parse_policy(doc: dict[str, Any], settings: Settings, where: str = "escalation") -> EscalationPolicy:
    """A policy from parsed TOML; raises ``ConfigError`` naming the file and the key."""
    known = {"repage_after_minutes", "repeat_interval_minutes", "silence_reminder_hours", "level"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    raw_levels = doc.get("level", [])
    if not isinstance(raw_levels, list):
        raise ConfigError(f"{where}: [[level]] must be an array of tables")
    levels: list[Level] = []
    for i, raw in enumerate(raw_levels):
        at = f"{where}: level {i + 1}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{at}: must be a table")
        extra = sorted(set(raw) - {"name", "after_minutes", "emails", "rotation", "rotation_start", "rotation_hours"})
        if extra:
            raise ConfigError(f"{at}: unknown key(s) {', '.join(extra)}")
        after = _minutes(raw, "after_minutes", timedelta(0), at)
        if i == 0 and after:
            raise ConfigError(f"{at}: the first level is paged at once; after_minutes must be 0 or absent")
        if levels and after <= levels[-1].after:
            raise ConfigError(f"{at}: after_minutes must grow from one level to the next")
        emails = _emails(raw.get("emails"), "emails", at)
        rotation = _emails(raw.get("rotation"), "rotation", at)
        if i == 0 and not emails and not rotation:
            emails = tuple(settings.oncall_emails)
        if not emails and not rotation:
            raise ConfigError(f"{at}: needs emails or a rotation")
        start = raw.get("rotation_start", DEFAULT_ROTATION_START)
        if isinstance(start, date) and not isinstance(start, datetime):
            start = datetime(start.year, start.month, start.day, tzinfo=UTC)
        if not isinstance(start, datetime) or start.tzinfo is None:
            raise ConfigError(f"{at}: rotation_start must be a date-time with an offset, e.g. 2026-01-05T09:00:00Z")
        hours = raw.get("rotation_hours", 168)
        if not isinstance(hours, int) or isinstance(hours, bool) or hours < 1:
            raise ConfigError(f"{at}: rotation_hours must be a whole number of hours, 1 or more")
        name = raw.get("name", f"level {i + 1}")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{at}: name must be text")
        levels.append(
            Level(
                name=name.strip()[:80],
                after=after,
                emails=emails,
                rotation=rotation,
                rotation_start=start.astimezone(UTC),
                rotation_period=timedelta(hours=hours),
            )
        )
    if not levels:
        levels = list(default_policy(settings).levels)
    repage = _minutes(doc, "repage_after_minutes", timedelta(minutes=15), where)
    if repage <= timedelta(0):
        raise ConfigError(f"{where}: repage_after_minutes must be more than 0")
    reminder_hours = doc.get("silence_reminder_hours", 24)
    if not isinstance(reminder_hours, int | float) or isinstance(reminder_hours, bool) or reminder_hours < 0:
        raise ConfigError(f"{where}: silence_reminder_hours must be a number of hours")
    return EscalationPolicy(
        levels=tuple(levels),
        repage_after=repage,
        repeat_interval=_minutes(doc, "repeat_interval_minutes", timedelta(hours=4), where),
        silence_reminder=timedelta(hours=reminder_hours),
    )


def load_policy(path: Path | None, settings: Settings) -> EscalationPolicy:
    """The policy in ``path`` (TOML), or the default chain when ``path`` is None."""
    if path is None:
        return default_policy(settings)
    where = f"BREACHWATCH_ESCALATION_FILE ({path})"
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    return parse_policy(doc, settings, where)


class PageRow(Base):
    """One page of an incident: which step of the chain, to whom, at what severity."""

    __tablename__ = "incident_pages"

    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"), primary_key=True)
    cycle: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0, then +1 per reopening
    step: Mapped[str] = mapped_column(String(32), primary_key=True)
    level: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    paged_at: Mapped[datetime]
    recipients: Mapped[list[str]] = mapped_column(default=list)


@dataclass(slots=True)
class EscalationReport:
    """What one pass did."""

    checked: int = 0
    paged: dict[str, int] = field(default_factory=dict)  # reason -> pages sent
    silenced: int = 0
    reminders: int = 0
    messages: int = 0

    @property
    def pages(self) -> int:
        return sum(self.paged.values())


@dataclass(frozen=True, slots=True)
class _Page:
    step: str
    level: int
    reason: str


def _cycle(session: Session, incident_id: str) -> tuple[int, datetime | None]:
    row = session.execute(
        select(func.count(), func.max(IncidentEventRow.at)).where(
            IncidentEventRow.incident_id == incident_id, IncidentEventRow.action == "reopen"
        )
    ).one()
    return int(row[0] or 0), row[1]


def _first_alert(session: Session, incident: IncidentRow, *, persist: bool) -> PageRow | None:
    """The first page the store's hook queued, as step L0 of cycle 0 (recorded if ``persist``)."""
    from breachwatch.notifier.outbox import OutboxRow

    alerts = list(
        session.scalars(
            select(OutboxRow)
            .where(
                OutboxRow.incident_id == incident.incident_id,
                OutboxRow.message_type == ALERT_TYPE,
                OutboxRow.channel == EMAIL,
            )
            .order_by(OutboxRow.created_at)
        )
    )
    if not alerts:
        return None
    severity = str((alerts[0].headers or {}).get("X-BreachWatch-Severity") or incident.severity)
    row = PageRow(
        incident_id=incident.incident_id,
        cycle=0,
        step="L0",
        level=0,
        reason="initial",
        severity=severity if severity in SEVERITY_RANK else incident.severity,
        paged_at=alerts[0].created_at,
        recipients=[a.recipient for a in alerts],
    )
    if persist:
        session.add(row)
    return row


def _plan(
    session: Session, incident: IncidentRow, policy: EscalationPolicy, now: datetime, *, adopt: bool
) -> tuple[int, list[_Page]]:
    """The pages this incident is due now, given its status and the pages already sent."""
    cycle, _ = _cycle(session, incident.incident_id)
    pages = list(
        session.scalars(
            select(PageRow)
            .where(PageRow.incident_id == incident.incident_id, PageRow.cycle == cycle)
            .order_by(PageRow.paged_at)
        )
    )
    if not pages and cycle == 0:
        first = _first_alert(session, incident, persist=adopt)
        if first is not None:
            pages = [first]
    if not pages:
        # Never paged in this cycle: a reopened incident, or one opened while silenced.
        return cycle, ([_Page("L0", 0, "initial" if cycle == 0 else "reopened")] if incident.status == "open" else [])
    due: list[_Page] = []
    done = {p.step for p in pages}
    if incident.status == "open":
        t0 = min(p.paged_at for p in pages if p.step == "L0") if "L0" in done else pages[0].paged_at
        steps = policy.steps()
        reached = [s for s in steps if t0 + s.offset <= now]
        order = {s.key: i for i, s in enumerate(steps)}
        last_done = max((order.get(k, -1) for k in done), default=-1)
        if reached and order[reached[-1].key] > last_done:
            # Only the latest due step: after a gap in passes, one page, not a burst.
            s = reached[-1]
            due.append(_Page(s.key, s.level, s.reason))
    paged_rank = max(SEVERITY_RANK.get(p.severity, 0) for p in pages)
    if SEVERITY_RANK.get(incident.severity, 0) > paged_rank and not due:
        last = max(p.paged_at for p in pages)
        if now - last >= policy.repeat_interval:
            level = max(p.level for p in pages)
            due.append(_Page(f"sev:{incident.severity}", level, "severity_rise"))
    return cycle, due


def _message(
    session: Session,
    incident: IncidentRow,
    page: _Page,
    level: Level,
    policy: EscalationPolicy,
    now: datetime,
    console_url: str | None = None,
) -> Rendered:
    findings = list(session.scalars(select(FindingRow).where(FindingRow.incident_id == incident.incident_id)))
    evidence = list(
        session.scalars(
            select(EvidenceRow)
            .where(EvidenceRow.incident_id == incident.incident_id)
            .order_by(EvidenceRow.ts, EvidenceRow.event_id)
            .limit(MAX_EVIDENCE_IN_PAGE)
        )
    )
    waited = int(policy.repage_after.total_seconds() // 60)
    preface = {
        "initial": "A new incident is waiting for an on-call engineer.",
        "reopened": "An incident was reopened by new evidence and needs an on-call engineer.",
        "repage": f"Nobody has acknowledged this incident for {waited} minutes. Please acknowledge it.",
        "escalation": (
            f"Escalated to {level.name}: nobody acknowledged this incident within "
            f"{int(level.after.total_seconds() // 60)} minutes of the first page."
        ),
        "severity_rise": f"The incident's severity rose to {incident.severity.upper()} with new evidence.",
    }[page.reason]
    tag = {
        "initial": "",
        "reopened": "[Reopened] ",
        "repage": "[Re-page] ",
        "escalation": f"[Escalated: {header_text(level.name, 40)}] ",
        "severity_rise": f"[Now {incident.severity.upper()}] ",
    }[page.reason]
    try:
        rendered = render(ALERT_TYPE, "en", alert_context(incident, findings, evidence, {}, console_url=console_url))
        subject, text, html = rendered.subject, rendered.text, rendered.html
    except Exception as exc:  # a template bug must not stop escalation
        log.error("page for %s rendered without the template: %s", incident.incident_id, type(exc).__name__)
        subject = f"[BreachWatch] {header_text(incident.severity, 16).upper()} incident {incident.incident_id}"
        link = console_link(console_url, incident.incident_id)
        text, html = f"Incident {incident.incident_id}\n" + (f"Console: {link}\n" if link else ""), None
    text = f"{preface}\n\n{text}"
    if html is not None:
        html = f"<p><strong>{escape(preface)}</strong></p>\n{html}"
    return Rendered(header_text(tag + subject, 200), text, html, "en")


def _send(
    session: Session,
    incident: IncidentRow,
    cycle: int,
    page: _Page,
    policy: EscalationPolicy,
    now: datetime,
    console_url: str | None = None,
) -> int:
    level = policy.levels[min(page.level, len(policy.levels) - 1)]
    rendered = _message(session, incident, page, level, policy, now, console_url)
    recipients = level.recipients(now)
    queued = 0
    for recipient in recipients:
        queued += queue_message(
            session,
            message_id=stable_id(PAGE_TYPE, incident.incident_id, str(cycle), page.step, recipient),
            message_type=PAGE_TYPE,
            recipient=recipient,
            rendered=rendered,
            incident_id=incident.incident_id,
            headers={
                "X-BreachWatch-Severity": header_text(incident.severity, 16),
                "X-BreachWatch-Page": f"{page.reason}:{page.step}",
            },
            now=now,
        )
    session.add(
        PageRow(
            incident_id=incident.incident_id,
            cycle=cycle,
            step=page.step,
            level=page.level,
            reason=page.reason,
            severity=incident.severity,
            paged_at=now,
            recipients=list(recipients),
        )
    )
    note(
        session,
        incident,
        audit.SYSTEM_ACTOR,
        "paged",
        f"{page.reason.replace('_', ' ')}: {level.name}",
        at=now,
        detail={"step": page.step, "cycle": cycle, "level": level.name, "recipients": list(recipients)},
    )
    return queued


def run_once(
    engine: Engine,
    settings: Settings,
    policy: EscalationPolicy,
    *,
    now: datetime | None = None,
    owner_emails: dict[str, str] | None = None,
) -> EscalationReport:
    """One escalation pass over every incident that is not closed, then the silence reminders.

    Each incident is decided read-only first and paged in a short transaction of its own,
    so a pass over many quiet incidents takes no write lock and one failure stops nothing else.
    """
    now = now or utcnow()
    report = EscalationReport()
    with Session(engine) as session:
        ids = list(
            session.scalars(
                select(IncidentRow.incident_id)
                .where(IncidentRow.status.not_in(sorted(CLOSED_STATUSES)))
                .order_by(IncidentRow.opened_at, IncidentRow.incident_id)
            )
        )
    for incident_id in ids:
        report.checked += 1
        with Session(engine) as session:
            incident = session.get(IncidentRow, incident_id)
            if incident is None:
                continue
            if silences.is_silenced(session, incident, now) is not None:
                report.silenced += 1
                continue
            _, due = _plan(session, incident, policy, now, adopt=False)
        if not due:
            continue
        try:
            with Session(engine) as session, session.begin():
                audit.serialize_writes(session)
                incident = session.get(IncidentRow, incident_id, with_for_update=True)
                if incident is None or incident.status in CLOSED_STATUSES:
                    continue
                if silences.is_silenced(session, incident, now) is not None:
                    continue
                cycle, due = _plan(session, incident, policy, now, adopt=True)
                for page in due:
                    report.messages += _send(session, incident, cycle, page, policy, now, settings.console_url)
                    report.paged[page.reason] = report.paged.get(page.reason, 0) + 1
        except Exception:
            log.exception("escalation of incident %s failed; the next pass tries again", incident_id)
    with Session(engine) as session:
        reminders_due = bool(silences.due_reminders(session, before=policy.silence_reminder, now=now))
    if reminders_due:
        with Session(engine) as session, session.begin():
            audit.serialize_writes(session)
            report.reminders = silences.queue_reminders(
                session,
                before=policy.silence_reminder,
                owner_email=owner_emails if owner_emails is not None else _owner_emails(session),
                fallback=policy.levels[0].recipients(now),
                now=now,
            )
    return report


def _owner_emails(session: Session) -> dict[str, str]:
    from breachwatch.incidents.users import UserRow

    return {u: e for u, e in session.execute(select(UserRow.username, UserRow.email)) if e}


def pages(session: Session, incident_id: str) -> Sequence[PageRow]:
    """Every page of an incident, oldest first."""
    return list(session.scalars(select(PageRow).where(PageRow.incident_id == incident_id).order_by(PageRow.paged_at)))


def first_page_queued(
    session: Session, incident: IncidentRow, recipients: Sequence[str], *, at: datetime | None = None
) -> None:
    """Record the page the new-incident hook just queued (step L0 of cycle 0) and audit it,
    in the store's transaction; the escalation pass re-pages and escalates from here."""
    at = at or utcnow()
    if session.get(PageRow, (incident.incident_id, 0, "L0")) is not None:
        return
    session.add(
        PageRow(
            incident_id=incident.incident_id,
            cycle=0,
            step="L0",
            level=0,
            reason="initial",
            severity=incident.severity,
            paged_at=at,
            recipients=list(recipients),
        )
    )
    audit.record(
        session,
        audit.SYSTEM_ACTOR,
        "page.queued",
        f"incident:{incident.incident_id}",
        {"step": "L0", "reason": "initial", "recipients": list(recipients), "severity": incident.severity},
        at=at,
    )
