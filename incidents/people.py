"""Who works on an incident: its assignee, the team's comments (with @mentions of console
users), and a short task checklist drawn from the findings' playbooks.

Assigning and commenting write a timeline entry and an audit row through ``lifecycle.note``,
in the caller's transaction, like every other change to an incident.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from breachwatch.core.clock import utcnow
from breachwatch.core.ids import stable_id
from breachwatch.incidents import lifecycle
from breachwatch.incidents.lifecycle import IncidentNotFound, LifecycleError
from breachwatch.incidents.queries import findings, playbooks
from breachwatch.incidents.tables import FindingRow, IncidentRow
from breachwatch.incidents.users import UserRow
from breachwatch.storage import audit
from breachwatch.storage.db import Base

MAX_COMMENT = 4000
MAX_TASKS = 12
# "@amara" or "@on-call.lead": the user-name alphabet, after a space or at the start.
MENTION = re.compile(r"(?<![\w@])@([a-z0-9][a-z0-9._-]{0,63})", re.IGNORECASE)
# A playbook is a few sentences; each imperative one is a task ("Ask ...; if not, revoke ...").
_SENTENCE = re.compile(r"(?<=[.;])\s+(?=[A-Za-z])")


class AssignmentRow(Base):
    """The incident's current assignee (one at a time; the timeline keeps the history)."""

    __tablename__ = "incident_assignments"

    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"), primary_key=True)
    assignee: Mapped[str] = mapped_column(String(64), index=True)
    assigned_by: Mapped[str] = mapped_column(String(200))
    assigned_at: Mapped[datetime]


class CommentRow(Base):
    __tablename__ = "incident_comments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"), index=True)
    author: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime]
    body: Mapped[str] = mapped_column(Text)


class MentionRow(Base):
    """A user named in a comment: what the "mine" filter finds besides assignments."""

    __tablename__ = "incident_mentions"

    comment_id: Mapped[int] = mapped_column(ForeignKey("incident_comments.id"), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"), index=True)


class TaskRow(Base):
    """A checklist item someone ticked; items nobody ticked have no row."""

    __tablename__ = "incident_tasks"

    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    done_by: Mapped[str] = mapped_column(String(200))
    done_at: Mapped[datetime]


@dataclass(frozen=True, slots=True)
class Task:
    task_id: str
    text: str
    done_by: str | None
    done_at: datetime | None

    @property
    def done(self) -> bool:
        return self.done_by is not None


def _incident(session: Session, incident_id: str) -> IncidentRow:
    row = session.get(IncidentRow, incident_id)
    if row is None:
        raise IncidentNotFound(incident_id)
    return row


def _active_user(session: Session, username: str) -> UserRow:
    user = session.get(UserRow, username.strip().lower())
    if user is None or user.disabled:
        raise LifecycleError(f"no console user {username.strip()[:64]!r}")
    return user


# --- assignment -------------------------------------------------------------------------------


def assignee(session: Session, incident_id: str) -> AssignmentRow | None:
    return session.get(AssignmentRow, incident_id)


def assignees(session: Session, incident_ids: Iterable[str]) -> dict[str, str]:
    ids = list(incident_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(AssignmentRow.incident_id, AssignmentRow.assignee).where(AssignmentRow.incident_id.in_(ids))
    )
    return {i: a for i, a in rows}


def assign(
    session: Session, incident_id: str, username: str, actor: str, reason: str = "", *, at: datetime | None = None
) -> AssignmentRow | None:
    """Make ``username`` (an active console user) the assignee, or nobody with an empty name;
    audited with the previous assignee. Returns the assignment (None when unassigned)."""
    at = at or utcnow()
    audit.serialize_writes(session)
    incident = _incident(session, incident_id)
    row = session.get(AssignmentRow, incident_id)
    before = row.assignee if row else None
    target = _active_user(session, username).username if username.strip() else None
    if target == before:
        return row
    if target is None:
        assert row is not None
        session.delete(row)
        row = None
    elif row is None:
        row = AssignmentRow(incident_id=incident_id, assignee=target, assigned_by=actor[:200], assigned_at=at)
        session.add(row)
    else:
        row.assignee, row.assigned_by, row.assigned_at = target, actor[:200], at
    words = f"to {target}" if target else "to nobody"
    why = reason.strip()[: lifecycle.MAX_REASON]
    lifecycle.note(
        session,
        incident,
        actor,
        "assign",
        f"{words}: {why}" if why else words,
        at=at,
        detail={"assignee": target, "previous": before},
    )
    session.flush()
    return row


def take_if_unassigned(session: Session, incident_id: str, username: str, actor: str) -> None:
    """Whoever acknowledges an incident nobody holds becomes its assignee."""
    if session.get(AssignmentRow, incident_id) is None and session.get(UserRow, username) is not None:
        assign(session, incident_id, username, actor, "took it by acknowledging")


# --- comments ---------------------------------------------------------------------------------


def mentioned(session: Session, body: str) -> list[str]:
    """The active console users a comment names with ``@``, in order, each once."""
    names = list(dict.fromkeys(m.lower() for m in MENTION.findall(body)))
    if not names:
        return []
    known = set(
        session.scalars(select(UserRow.username).where(UserRow.username.in_(names), UserRow.disabled.is_(False)))
    )
    return [n for n in names if n in known]


def comment(session: Session, incident_id: str, author: str, body: str, *, at: datetime | None = None) -> CommentRow:
    """Add a comment; the users it mentions find the incident under "mine"."""
    text = body.strip()
    if not text:
        raise LifecycleError("a comment needs some text")
    if len(text) > MAX_COMMENT:
        raise LifecycleError(f"a comment may have at most {MAX_COMMENT} characters")
    at = at or utcnow()
    audit.serialize_writes(session)
    incident = _incident(session, incident_id)
    row = CommentRow(incident_id=incident_id, author=author[:200], at=at, body=text)
    session.add(row)
    session.flush()
    names = mentioned(session, text)
    for name in names:
        session.add(MentionRow(comment_id=row.id, username=name, incident_id=incident_id))
    lifecycle.note(
        session,
        incident,
        author,
        "comment",
        text[: lifecycle.MAX_REASON],
        at=at,
        detail={"comment": row.id, "mentions": names},
    )
    session.flush()
    return row


def comments(session: Session, incident_id: str) -> list[tuple[CommentRow, list[str]]]:
    """The incident's comments, oldest first, each with the users it mentions."""
    rows = list(
        session.scalars(select(CommentRow).where(CommentRow.incident_id == incident_id).order_by(CommentRow.id))
    )
    names: dict[int, list[str]] = {}
    if rows:
        for cid, user in session.execute(
            select(MentionRow.comment_id, MentionRow.username).where(MentionRow.incident_id == incident_id)
        ):
            names.setdefault(cid, []).append(user)
    return [(r, sorted(names.get(r.id, []))) for r in rows]


def mine(session: Session, username: str) -> set[str]:
    """Incidents assigned to ``username`` or whose comments mention them."""
    held = set(session.scalars(select(AssignmentRow.incident_id).where(AssignmentRow.assignee == username)))
    named = set(session.scalars(select(MentionRow.incident_id).where(MentionRow.username == username)))
    return held | named


# --- tasks ------------------------------------------------------------------------------------


def playbook_steps(playbooks: Sequence[str]) -> list[str]:
    """The distinct steps of the playbook lines, in order, at most ``MAX_TASKS``."""
    steps: dict[str, None] = {}
    for line in playbooks:
        for part in _SENTENCE.split(line.strip()):
            step = part.strip().rstrip(";").strip()
            if len(step) > 3:
                steps.setdefault(step[0].upper() + step[1:], None)
    return list(steps)[:MAX_TASKS]


def task_id(text: str) -> str:
    return stable_id("task", text)[:32]


def tasks(session: Session, incident_id: str, rows: Sequence[FindingRow]) -> list[Task]:
    """The checklist: one task per playbook step of the findings, most severe finding first."""
    done = {r.task_id: r for r in session.scalars(select(TaskRow).where(TaskRow.incident_id == incident_id))}
    out = []
    for step in playbook_steps(playbooks(list(rows))):
        tid = task_id(step)
        row = done.get(tid)
        out.append(Task(tid, step, row.done_by if row else None, row.done_at if row else None))
    return out


def set_task(
    session: Session, incident_id: str, tid: str, done: bool, actor: str, *, at: datetime | None = None
) -> Task:
    """Tick or untick one checklist task (audited)."""
    at = at or utcnow()
    audit.serialize_writes(session)
    incident = _incident(session, incident_id)
    by_id = {t.task_id: t for t in tasks(session, incident_id, findings(session, incident_id))}
    task = by_id.get(tid)
    if task is None:
        raise LifecycleError("no such task on this incident")
    row = session.get(TaskRow, (incident_id, tid))
    if done and row is None:
        session.add(TaskRow(incident_id=incident_id, task_id=tid, text=task.text, done_by=actor[:200], done_at=at))
    elif not done and row is not None:
        session.delete(row)
    else:
        return task
    lifecycle.note(
        session, incident, actor, "task_done" if done else "task_undone", task.text[:300], at=at, detail={"task": tid}
    )
    session.flush()
    return Task(tid, task.text, actor if done else None, at if done else None)
