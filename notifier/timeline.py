"""One incident's story in time order: what was detected, who did what, who was paged and
whether the message went out, and who looked at the evidence."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.incidents.lifecycle import IncidentEventRow, subject
from breachwatch.incidents.tables import FindingRow, IncidentRow
from breachwatch.notifier.notices import notice_timeline
from breachwatch.storage import audit

ACTION_WORDS: dict[str, str] = {
    "acknowledge": "acknowledged",
    "suppressed_findings": "held back findings of a pattern judged a false positive",
    "investigate": "started investigating",
    "contain": "marked contained",
    "resolve": "resolved",
    "false_positive": "marked a false positive",
    "reopen": "reopened",
    "merge": "merged incidents in",
    "merged_into": "merged this into another incident",
    "split": "split findings off",
    "split_from": "split this off",
    "follows": "linked to an earlier incident",
    "followed_by": "linked to a later incident",
    "correlated": "linked a correlated incident",
    "confirm_breach": "confirmed a breach",
    "paged": "paged",
    "evidence_after_close": "noted evidence after closing",
    "silenced": "suppressed the page (silence)",
    "assign": "assigned the incident",
    "comment": "commented",
    "task_done": "ticked a task",
    "task_undone": "unticked a task",
}


VIEW_SPAN = timedelta(minutes=10)


def _count(n: Any, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of the timeline."""

    at: datetime
    kind: str  # detected | change | page | message | view | notice
    actor: str
    text: str
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


def build(session: Session, incident: IncidentRow, *, limit: int = 500) -> list[Entry]:
    """The incident's timeline, oldest first (wall-clock times; event times are in the text)."""
    from breachwatch.notifier.outbox import OutboxRow

    entries: list[Entry] = [
        Entry(
            incident.created_at,
            "detected",
            "breachwatch",
            f"opened the incident (first evidence at {incident.opened_at:%Y-%m-%d %H:%M:%S} UTC)",
        )
    ]
    for f in session.scalars(
        select(FindingRow).where(FindingRow.incident_id == incident.incident_id).order_by(FindingRow.created_at)
    ):
        entries.append(
            Entry(
                f.created_at,
                "detected",
                f.detector,
                f"found: {f.title} ({f.severity}, score {f.score:.0f}; events from {f.ts:%Y-%m-%d %H:%M} UTC)",
            )
        )
    for e in session.scalars(
        select(IncidentEventRow)
        .where(IncidentEventRow.incident_id == incident.incident_id)
        .order_by(IncidentEventRow.at, IncidentEventRow.id)
        .limit(limit)
    ):
        words = ACTION_WORDS.get(e.action, e.action.replace("_", " "))
        if e.from_status and e.to_status and e.action not in ("merged_into",):
            words += f" ({e.from_status.replace('_', ' ')} → {e.to_status.replace('_', ' ')})"
        kind = "page" if e.action == "paged" else "change"
        entries.append(Entry(e.at, kind, e.actor, words, e.reason, dict(e.detail or {})))
    for m in session.scalars(
        select(OutboxRow).where(OutboxRow.incident_id == incident.incident_id).order_by(OutboxRow.created_at)
    ):
        state = {"sent": "delivered", "pending": "waiting to send", "sending": "sending"}.get(m.status, m.status)
        when = m.sent_at if m.status == "sent" and m.sent_at else m.created_at
        entries.append(
            Entry(
                when,
                "message",
                "breachwatch",
                f"{m.message_type.replace('_', ' ')} to {m.recipient}: {state}",
                detail={"message_id": m.message_id, "attempts": m.attempts},
            )
        )
    last_view: dict[str, tuple[int, datetime, int]] = {}  # actor -> (entry index, first view, views)
    for row in audit.for_subject(session, subject(incident.incident_id), limit=limit):
        if row.action == "evidence.view":
            events = (row.detail or {}).get("events", "?")
            seen = last_view.get(row.actor)
            if seen is not None and row.at - seen[1] <= VIEW_SPAN:
                # Several looks by one person within a few minutes read as one line.
                index, first, views = seen
                entries[index] = Entry(
                    first, "view", row.actor, f"viewed the evidence ({_count(events, 'event')}, {views + 1} times)"
                )
                last_view[row.actor] = (index, first, views + 1)
                continue
            entries.append(Entry(row.at, "view", row.actor, f"viewed the evidence ({_count(events, 'event')})"))
            last_view[row.actor] = (len(entries) - 1, row.at, 1)
        elif row.action == "page.suppressed":
            entries.append(Entry(row.at, "page", row.actor, "page suppressed by a silence", detail=dict(row.detail)))
    for n in notice_timeline(session, incident.incident_id):
        try:
            at = datetime.fromisoformat(str(n.get("at")))
        except ValueError:
            continue
        what = str(n.get("action") or "").replace("_", " ")
        notice_id = n.get("notice_id")
        entries.append(
            Entry(at, "notice", str(n.get("actor") or ""), f"{what}" + (f" (notice {notice_id})" if notice_id else ""))
        )
    entries.sort(key=lambda e: e.at)
    return entries[-limit:]
