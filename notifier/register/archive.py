"""Register entries kept after their incident is erased.

A tenant's erasure request (privacy policy section 7) removes its incidents, evidence and
notices, but not the record of a breach the law requires the vendor to keep: GDPR Art. 17(3)(b)
exempts erasure where keeping is needed to comply with a legal obligation, and the register
duties (GDPR Art. 33(5), LGPD/ANPD five years, PIPEDA 24 months, HIPAA six years, ...) are
such obligations. Before an erased breach's rows go, its register entry is frozen here as a
document, without the tenant's contact people, and kept until its retention date."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from breachwatch.core.clock import utcnow
from breachwatch.notifier.notices.service import NoticeNotFound
from breachwatch.notifier.register.entries import entry
from breachwatch.notifier.register.models import ArchivedEntryRow

# Keys that name people rather than the breach: left out of a frozen entry.
_PEOPLE = frozenset({"contacts", "recipients", "contact", "email", "name_of_contact"})


def _without_people(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_people(v) for k, v in value.items() if k not in _PEOPLE}
    if isinstance(value, list):
        return [_without_people(v) for v in value]
    return value


def archive(session: Session, incident_ids: Iterable[str], reason: str, *, now: datetime | None = None) -> int:
    """Freeze the register entries of ``incident_ids`` (confirmed breaches only) before their
    rows are erased; how many were frozen."""
    now = now or utcnow()
    frozen = 0
    for incident_id in incident_ids:
        try:
            doc = entry(session, incident_id, now=now)
        except NoticeNotFound:
            continue  # not a confirmed breach: no register entry to keep
        keep = doc.get("keep_until")
        row = session.get(ArchivedEntryRow, incident_id) or ArchivedEntryRow(incident_id=incident_id)
        row.archived_at, row.reason = now, reason[:500]
        row.keep_until = datetime.fromisoformat(keep) if keep else None
        row.document = {**_without_people(doc), "archived": True, "archived_at": now.isoformat()}
        session.add(row)
        frozen += 1
    return frozen
