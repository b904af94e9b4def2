"""Blast radius of a confirmed breach: which tenants, which data, how many records and people,
over which window.

Method, in order, each step widening what the one before could see:

1. **Evidence.** The access events stored with the incident (at most 1,000 per incident).
2. **History.** The compromised actor's access events (or, for an attack that has no single
   actor, the attacking addresses') over the incident window, re-read from an
   ``AccessHistory``: by default the evidence of every incident in the store (``StoreHistory``);
   a topic dump (``DumpHistory``) or the Kafka topic itself (``streams.access_history``) when
   the composition root hands one in.
3. **Detector counts.** Findings carry counts over everything their detector saw
   (``records``, ``records_over_limit``, ``sensitive_records``); where one is higher than the
   events add up to, it is used as a lower bound ("at least").

Records are the ERP's own counts of rows read, searched, exported or changed; a row read twice
counts twice. Legal data categories come from the records' resource types through the category
map (``notifier.duties.categories``, plus a tenant's own entries); a resource type the map does
not know falls back to its sensitivity label and is named in ``uncategorised``, so the duties
it could trigger stay open. People are estimated as the records of personal-data kinds, capped by the number
of data subjects the tenant declares. Those limits travel with the result (``limits``), and a
person can correct any number; ``correct`` returns the corrected copy.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.core.events import ACCESS, SENSITIVE, AccessEvent, Tenant
from breachwatch.incidents.tables import EvidenceRow, FindingRow, IncidentRow
from breachwatch.notifier.duties import DATA_CATEGORIES, CategoryMap, default_category_map

log = logging.getLogger(__name__)

# Facts a detector reports that count records over more than the stored evidence.
RECORD_FACTS: tuple[str, ...] = ("records_over_limit", "records", "sensitive_records")
DISCLOSING = frozenset({"read", "search", "export"})
ALTERING = frozenset({"create", "update"})
REMOVING = frozenset({"delete"})
# A history source is asked for at most this many events; past it the count is a lower bound.
MAX_HISTORY_EVENTS = 2_000_000

METHOD = (
    "evidence: the access events stored with the incident (at most 1,000 per incident)",
    "history: the compromised actor's (or attacking addresses') access events over the incident window",
    "detector counts: counts in the findings' facts, used as a lower bound where they exceed the events",
)
LIMITS = (
    "records are the ERP's row counts per request; a row read twice is counted twice",
    "people are estimated as records of personal-data kinds, capped by the tenant's declared data subjects",
    "the account owner's own activity inside the window cannot be told apart and is counted too",
    "denied requests are listed but not counted as disclosed",
)


class CategoryCount(BaseModel):
    """Records of one resource type and sensitivity that the attacker reached in one tenant."""

    model_config = ConfigDict(frozen=True)

    resource_type: str
    sensitivity: str
    records: int = Field(ge=0)
    events: int = Field(ge=0)
    actions: tuple[str, ...] = ()


class TenantImpact(BaseModel):
    """What one tenant lost: data kinds, record and people counts, and when."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    categories: tuple[CategoryCount, ...] = ()
    data_categories: tuple[str, ...] = ()  # the duties vocabulary (personal, financial, ...)
    uncategorised: tuple[str, ...] = ()  # records whose legal categories the map does not know
    records: int | None = Field(default=None, ge=0)  # None: not known
    records_lower_bound: bool = False  # True: "at least", a detector counted more than the events
    subjects: int | None = Field(default=None, ge=0)
    subjects_basis: str = "estimate"  # estimate | declared_cap | corrected | unknown
    personal_data: bool = False
    nature: tuple[str, ...] = ()  # confidentiality | integrity | availability
    first_at: datetime | None = None
    last_at: datetime | None = None
    denied_events: int = 0
    excluded: bool = False  # a person ruled this tenant out
    corrected: bool = False


class BlastRadius(BaseModel):
    """The whole blast radius of one incident, with how it was worked out and its limits."""

    model_config = ConfigDict(frozen=True)

    incident_id: str
    window_start: datetime
    window_end: datetime
    actors: tuple[str, ...] = ()
    source_ips: tuple[str, ...] = ()
    tenants: tuple[TenantImpact, ...] = ()
    evidence_events: int = 0
    history_events: int = 0
    history_source: str = ""
    history_truncated: bool = False
    method: tuple[str, ...] = METHOD
    limits: tuple[str, ...] = LIMITS
    corrections: tuple[str, ...] = ()  # one line per correction applied, newest last

    def tenant(self, tenant_id: str) -> TenantImpact | None:
        return next((t for t in self.tenants if t.tenant_id == tenant_id), None)

    @property
    def affected(self) -> tuple[TenantImpact, ...]:
        """Tenants still counted as affected (not ruled out by a person)."""
        return tuple(t for t in self.tenants if not t.excluded)


class AccessHistory(Protocol):
    """Re-reads access events by actor or address over a time window."""

    name: str

    def access_events(
        self, *, actor_ids: Sequence[str], source_ips: Sequence[str], start: datetime, end: datetime
    ) -> Iterable[AccessEvent]: ...


def concerns(event: AccessEvent, actor_ids: Sequence[str], source_ips: Sequence[str]) -> bool:
    return event.actor_id in actor_ids or (event.ip is not None and event.ip in source_ips)


class StoreHistory:
    """The evidence of every incident in the store: always available, but only what detectors kept."""

    name = "incident store evidence"

    def __init__(self, session: Session) -> None:
        self.session = session

    def access_events(
        self, *, actor_ids: Sequence[str], source_ips: Sequence[str], start: datetime, end: datetime
    ) -> Iterator[AccessEvent]:
        stmt = (
            select(EvidenceRow.event_json)
            .where(EvidenceRow.topic == ACCESS, EvidenceRow.ts >= start, EvidenceRow.ts <= end)
            .order_by(EvidenceRow.ts, EvidenceRow.event_id)
            .execution_options(yield_per=1000)
        )
        for text in self.session.scalars(stmt):
            event = parse_access(text)
            if event is not None and concerns(event, actor_ids, source_ips):
                yield event


class DumpHistory:
    """``erp.access.jsonl`` of a topic dump (a replay's source, or an export of the topic)."""

    name = "topic dump"

    def __init__(self, dump: Path) -> None:
        self.path = Path(dump) / f"{ACCESS}.jsonl"

    def access_events(
        self, *, actor_ids: Sequence[str], source_ips: Sequence[str], start: datetime, end: datetime
    ) -> Iterator[AccessEvent]:
        if not self.path.is_file():
            return
        with self.path.open("rb") as fh:
            for line in fh:
                event = parse_access(line)
                if event is not None and start <= event.ts <= end and concerns(event, actor_ids, source_ips):
                    yield event


def parse_access(raw: str | bytes) -> AccessEvent | None:
    if not raw.strip():
        return None
    try:
        return AccessEvent.model_validate_json(raw)
    except ValidationError:
        return None  # bad lines were dead-lettered when first read; they count for nothing here


class _Tally:
    """Running counts for one tenant."""

    def __init__(self) -> None:
        self.cells: dict[tuple[str, str], list[Any]] = {}  # (type, sensitivity) -> [records, events, actions]
        self.first: datetime | None = None
        self.last: datetime | None = None
        self.denied = 0
        self.floor = 0

    def add(self, e: AccessEvent) -> None:
        self.first = e.ts if self.first is None else min(self.first, e.ts)
        self.last = e.ts if self.last is None else max(self.last, e.ts)
        if e.outcome == "denied":
            self.denied += 1
            return
        cell = self.cells.setdefault((e.resource_type, e.sensitivity), [0, 0, set()])
        cell[0] += e.records
        cell[1] += 1
        cell[2].add(e.action)

    def impact(self, tenant_id: str, tenant: Tenant | None, category_map: CategoryMap) -> TenantImpact:
        categories = tuple(
            CategoryCount(resource_type=rt, sensitivity=s, records=c[0], events=c[1], actions=tuple(sorted(c[2])))
            for (rt, s), c in sorted(self.cells.items(), key=lambda kv: (-kv[1][0], kv[0]))
        )
        reached = [c for c in categories if c.records > 0 or set(c.actions) & (ALTERING | REMOVING)]
        classified = category_map.classify((c.resource_type, c.sensitivity) for c in reached)
        personal = [c for c in reached if c.sensitivity in SENSITIVE]
        counted = sum(c.records for c in categories)
        records = max(counted, self.floor)
        subjects_raw = sum(c.records for c in personal)
        if self.floor > counted and personal:
            subjects_raw = max(subjects_raw, self.floor)
        declared = getattr(tenant, "data_subjects", None) if tenant is not None else None
        basis = "estimate"
        subjects = subjects_raw
        if declared is not None and subjects_raw > declared:
            subjects, basis = declared, "declared_cap"
        actions = {a for c in reached for a in c.actions}
        nature = tuple(
            n
            for n, acts in (("confidentiality", DISCLOSING), ("integrity", ALTERING), ("availability", REMOVING))
            if actions & acts
        )
        return TenantImpact(
            tenant_id=tenant_id,
            categories=categories,
            data_categories=tuple(sorted(classified.categories)),
            uncategorised=classified.uncategorised,
            records=records,
            records_lower_bound=self.floor > counted,
            subjects=subjects,
            subjects_basis=basis,
            personal_data=bool(personal),
            nature=nature,
            first_at=self.first,
            last_at=self.last,
            denied_events=self.denied,
        )


def _record_floor(facts: Mapping[str, Any]) -> int:
    values = [facts.get(k) for k in RECORD_FACTS]
    return max((v for v in values if isinstance(v, int) and not isinstance(v, bool) and v >= 0), default=0)


def compute(
    incident: IncidentRow,
    findings: Sequence[FindingRow],
    evidence: Sequence[EvidenceRow],
    *,
    history: AccessHistory | None = None,
    until: datetime | None = None,
    tenants: Mapping[str, Tenant] | None = None,
    max_history_events: int = MAX_HISTORY_EVENTS,
    category_map: Callable[[str], CategoryMap] | None = None,
) -> BlastRadius:
    """The blast radius of ``incident`` from its evidence, the history source and its findings.

    The window runs from the first evidence (or the incident's opening) to the later of its
    last activity and ``until`` (the confirmation: until then the account was not contained).
    ``category_map`` gives each tenant's map from resource types to legal data categories
    (default: the bundled map for everyone).
    """
    tenants = tenants or {}
    maps = category_map or (lambda tenant_id: default_category_map())
    stored = [e for e in evidence if e.topic == ACCESS]
    first = min([incident.opened_at, *(e.ts for e in evidence)])
    end = max([incident.updated_at, *(e.ts for e in evidence), *([until] if until else [])])
    actor_ids = tuple(incident.actor_ids or [])
    ips = tuple(incident.source_ips or [])
    # An actor incident follows its accounts wherever they connect from (offices share NAT
    # addresses, so the address says nothing); an address incident (credential stuffing, and
    # the takeovers it led to) also follows the attacking addresses across accounts.
    followed_ips = ips if (incident.group_key or "").startswith("ip:") or not actor_ids else ()
    by_tenant: dict[str, _Tally] = {}
    seen: set[str] = set()
    finding_tenants: dict[str, set[str]] = {}

    def take(event: AccessEvent) -> bool:
        if event.event_id in seen:
            return False
        seen.add(event.event_id)
        by_tenant.setdefault(event.tenant_id, _Tally()).add(event)
        return True

    for row in stored:
        event = parse_access(row.event_json)
        if event is not None:
            take(event)
            finding_tenants.setdefault(row.finding_id, set()).add(event.tenant_id)
    evidence_events = len(seen)

    history_events = 0  # events the history added beyond the stored evidence
    truncated = False
    if history is not None:
        for read, event in enumerate(
            history.access_events(actor_ids=actor_ids, source_ips=followed_ips, start=first, end=end), start=1
        ):
            if read > max_history_events:
                truncated = True
                break
            history_events += take(event)

    # Detector counts: credited to the one tenant a finding's evidence (or the incident) names.
    for f in findings:
        floor = _record_floor(f.facts or {})
        names = finding_tenants.get(f.finding_id) or set(incident.tenant_ids or [])
        if floor and len(names) == 1:
            tally = by_tenant.setdefault(next(iter(names)), _Tally())
            tally.floor = max(tally.floor, floor)

    for tid in incident.tenant_ids or []:
        if tid:
            by_tenant.setdefault(tid, _Tally())
    impacts = tuple(by_tenant[t].impact(t, tenants.get(t), maps(t)) for t in sorted(by_tenant))
    limits = LIMITS
    if truncated:
        limits = (*limits, f"the history source was read up to {max_history_events:,} events; counts are lower bounds")
    return BlastRadius(
        incident_id=incident.incident_id,
        window_start=first,
        window_end=end,
        actors=actor_ids,
        source_ips=ips,
        tenants=impacts,
        evidence_events=evidence_events,
        history_events=history_events,
        history_source=history.name if history is not None else "",
        history_truncated=truncated,
        limits=limits,
    )


class TenantCorrection(BaseModel):
    """A person's correction of one tenant's figures; unset fields stay as they were."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: str = Field(min_length=1, max_length=128)
    records: int | None = Field(default=None, ge=0)
    subjects: int | None = Field(default=None, ge=0)
    data_categories: tuple[str, ...] | None = None
    excluded: bool | None = None


class Correction(BaseModel):
    """A person's correction of a blast radius: tenants' figures and/or the window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenants: tuple[TenantCorrection, ...] = ()
    window_start: datetime | None = None
    window_end: datetime | None = None


def correct(radius: BlastRadius, change: Correction, *, by: str, reason: str) -> BlastRadius:
    """A copy of ``radius`` with ``change`` applied; a tenant not yet listed is added."""
    unknown = sorted({c for t in change.tenants for c in (t.data_categories or ())} - set(DATA_CATEGORIES))
    if unknown:
        raise ValueError(f"unknown data categories {unknown}; expected some of: {', '.join(DATA_CATEGORIES)}")
    start = change.window_start or radius.window_start
    end = change.window_end or radius.window_end
    if start.tzinfo is None or end.tzinfo is None or start > end:
        raise ValueError("the window needs time-zone aware times, start before end")
    impacts = {t.tenant_id: t for t in radius.tenants}
    lines = []
    for c in change.tenants:
        current = impacts.get(c.tenant_id) or TenantImpact(tenant_id=c.tenant_id, records=None, subjects=None)
        updates: dict[str, Any] = {"corrected": True}
        said = []
        if c.records is not None:
            updates.update(records=c.records, records_lower_bound=False)
            said.append(f"records {current.records} -> {c.records}")
        if c.subjects is not None:
            updates.update(subjects=c.subjects, subjects_basis="corrected")
            said.append(f"people {current.subjects} -> {c.subjects}")
        if c.data_categories is not None:
            cats = tuple(sorted(set(c.data_categories)))
            updates.update(data_categories=cats, personal_data=bool(cats))
            said.append(f"data categories {list(current.data_categories)} -> {list(cats)}")
        if c.excluded is not None:
            updates["excluded"] = c.excluded
            said.append("ruled out" if c.excluded else "ruled in")
        impacts[c.tenant_id] = current.model_copy(update=updates)
        lines.append(f"{c.tenant_id}: " + ", ".join(said or ["no change"]))
    if (start, end) != (radius.window_start, radius.window_end):
        lines.append(
            f"window {radius.window_start.isoformat()} .. {radius.window_end.isoformat()} -> "
            f"{start.isoformat()} .. {end.isoformat()}"
        )
    note = f"corrected by {by}: " + "; ".join(lines) + (f" ({reason})" if reason else "")
    return radius.model_copy(
        update={
            "tenants": tuple(impacts[t] for t in sorted(impacts)),
            "window_start": start,
            "window_end": end,
            "corrections": (*radius.corrections, note),
        }
    )


def to_json(radius: BlastRadius) -> dict[str, Any]:
    """JSON-able form for storage and the API."""
    return json.loads(radius.model_dump_json())


def from_json(data: Mapping[str, Any]) -> BlastRadius:
    return BlastRadius.model_validate(data)


def load_for(session: Session, incident_id: str) -> tuple[IncidentRow, list[FindingRow], list[EvidenceRow]]:
    """The incident, its findings and its evidence rows (KeyError if there is no such incident)."""
    incident = session.get(IncidentRow, incident_id)
    if incident is None:
        raise KeyError(incident_id)
    findings = list(session.scalars(select(FindingRow).where(FindingRow.incident_id == incident_id)))
    evidence = list(
        session.scalars(
            select(EvidenceRow)
            .where(EvidenceRow.incident_id == incident_id)
            .order_by(EvidenceRow.ts, EvidenceRow.event_id)
        )
    )
    return incident, findings, evidence
