"""Where an approved notice stands in the outbox, in words for its card: waiting, being sent,
sent, failed; when the service will send it; and a warning when it is overdue and nothing is
sending (the console queues; only a running ``breachwatch run`` delivers)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.notifier.outbox import OutboxRow

# The service's outbox pump looks for due messages about every second; a message due for
# longer than this with no attempt means no service is delivering.
STALLED_AFTER = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class QueueState:
    state: str  # draft | queued | sending | sent | failed | none
    words: str
    due_at: datetime | None
    stalled: bool
    can_approve: bool


def queue_state(session: Session, notice: dict[str, Any], approver: str | None, now: datetime) -> QueueState:
    """The outbox state of ``notice`` (a ``list_notices`` entry) and whether ``approver`` may
    still approve its current version."""
    version = notice.get("version")
    ids = [d["message_id"] for d in notice.get("deliveries", []) if d.get("version") == version]
    draft = notice.get("version_status") == "draft" and notice.get("status") != "withdrawn"
    approvals = list(notice.get("approvals") or [])
    can_approve = draft and approver is not None and approver not in approvals
    if draft:
        need = int(notice.get("required_approvals") or 1)
        got = len(approvals)
        words = f"draft: {got} of {need} approval{'s' if need != 1 else ''}" + (
            f" (by {', '.join(approvals)})" if approvals else ""
        )
        return QueueState("draft", words, None, False, can_approve)
    rows = list(session.scalars(select(OutboxRow).where(OutboxRow.message_id.in_(ids)))) if ids else []
    if not rows:
        return QueueState("none", str(notice.get("status", "")).replace("_", " "), None, False, False)
    states = {r.status for r in rows}
    if states == {"sent"}:
        last = max((r.sent_at for r in rows if r.sent_at), default=None)
        return QueueState("sent", f"sent to {len(rows)} recipient message(s)", last, False, False)
    if "failed" in states or "unknown" in states:
        failed = [r for r in rows if r.status in ("failed", "unknown")]
        error = next((r.last_error for r in failed if r.last_error), "")
        return QueueState(
            "failed", f"{len(failed)} message(s) failed" + (f": {error[:160]}" if error else ""), None, False, False
        )
    waiting = [r for r in rows if r.status in ("pending", "sending")]
    due = min(r.next_attempt_at for r in waiting)
    stalled = now - due > STALLED_AFTER and all(r.attempts == 0 for r in waiting)
    state = "sending" if "sending" in states else "queued"
    words = f"{len(waiting)} of {len(rows)} message(s) waiting in the outbox"
    return QueueState(state, words, due, stalled, False)
