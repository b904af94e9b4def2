"""The tenant directory as notices need it: name, jurisdiction, locale and contacts.

The compacted ``erp.tenants`` topic lives in the consumer's memory; a notice is drafted in
another process (the console), so the entries an incident refers to are written to the
database in the same transaction that opens the incident (``remember_incident_tenants``, an
``IncidentStore`` hook), and anything else that reads the topic may call ``remember_tenants``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence

from pydantic import ValidationError
from sqlalchemy.orm import Session

from breachwatch.core.events import Tenant
from breachwatch.incidents.tables import EvidenceRow, FindingRow, IncidentRow
from breachwatch.notifier.notices.models import TenantRecordRow

log = logging.getLogger(__name__)


def remember_tenants(session: Session, tenants: Iterable[Tenant]) -> int:
    """Store (or refresh) these directory entries in the caller's transaction; returns how many changed."""
    changed = 0
    for tenant in tenants:
        record = json.loads(tenant.model_dump_json(exclude_none=True))
        row = session.get(TenantRecordRow, tenant.tenant_id)
        if row is None:
            session.add(TenantRecordRow(tenant_id=tenant.tenant_id, record=record))
            changed += 1
        elif row.record != record:
            row.record = record
            changed += 1
    return changed


def tenant_record(session: Session, tenant_id: str) -> Tenant | None:
    """The stored directory entry of ``tenant_id``, or None if none was ever recorded."""
    row = session.get(TenantRecordRow, tenant_id)
    if row is None:
        return None
    try:
        return Tenant.model_validate_json(json.dumps(row.record))
    except ValidationError:
        log.error("directory entry of tenant %s no longer validates; treating it as unknown", tenant_id)
        return None


def _tenant_ids_in(evidence: Sequence[EvidenceRow]) -> set[str]:
    ids: set[str] = set()
    for row in evidence:
        try:
            event = json.loads(row.event_json)
        except ValueError:
            continue
        if isinstance(event, dict):
            for key in ("tenant_id", "actor_tenant"):
                if isinstance(event.get(key), str):
                    ids.add(event[key])
    return ids


def remember_incident_tenants(
    session: Session,
    incident: IncidentRow,
    findings: Sequence[FindingRow],
    evidence: Sequence[EvidenceRow],
    tenants: Mapping[str, Tenant],
) -> int:
    """``IncidentStore`` hook: keep the directory entries of every tenant a new incident touches."""
    wanted = set(incident.tenant_ids or []) | _tenant_ids_in(evidence)
    return remember_tenants(session, (tenants[t] for t in sorted(wanted) if t in tenants))
