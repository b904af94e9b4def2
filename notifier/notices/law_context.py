"""What a notice and the console show of the law beyond each duty's deadline: the moments the
clocks start from, each jurisdiction where data subjects live with its head count, the duties
that could not be decided and the missing fact, draft bills' advisories, duties lifted by a
safe harbour, clocks held by law enforcement, substitute notice and no-notify decisions.

Plain data read from the stored rows, so the templates and the console render the same thing.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.notifier.duties import ENTITY_TRAITS, default_rules
from breachwatch.notifier.notices.models import NoticeDutyRow, NoticeRow
from breachwatch.notifier.notices.moments import moment_rows
from breachwatch.notifier.notices.records import JurisdictionRow

_TRAIT = re.compile(r"\(trait ([a-z0-9_]+)\)")


def missing_keys(missing: list[str]) -> list[str]:
    """The engine's missing facts as keys templates can word in any language: ``trait:<name>``,
    ``count`` (the number of affected individuals) or ``categories`` (the data categories)."""
    keys = []
    for text in missing:
        trait = _TRAIT.search(text)
        if trait and trait.group(1) in ENTITY_TRAITS:
            keys.append(f"trait:{trait.group(1)}")
        elif "number of affected" in text:
            keys.append("count")
        elif "categories" in text:
            keys.append("categories")
        else:
            keys.append("other")
    return keys


def whom_kind(rule_id: str) -> str:
    """Whom a rule's duty is owed to (its recipient kind), for wording it in the notice's language."""
    try:
        return default_rules().rule(rule_id.split(":")[0]).recipient.kind
    except KeyError:
        return ""


def paused(row: NoticeDutyRow, now: datetime) -> bool:
    """Whether a law-enforcement request holds this duty's clock at ``now``."""
    for held in (row.hold or {}).get("holds", []):
        end = held.get("end")
        if end is None or now < datetime.fromisoformat(end):
            return True
    return False


def _jurisdictions(session: Session, notice_id: str) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(JurisdictionRow).where(JurisdictionRow.notice_id == notice_id).order_by(JurisdictionRow.position)
    )
    return [
        {
            "code": r.jurisdiction,
            "own": r.position == 0,
            "affected_low": r.affected_low,
            "affected_high": r.affected_high,
            "duties": list(r.duties or []),
            "undecided": list(r.undecided or []),
            "advisories": list(r.advisories or []),
            "exempted": list(r.exempted or []),
        }
        for r in rows
    ]


def _unique(blocks: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for block in blocks:
        for item in block[key]:
            entry = seen.setdefault(
                f"{item['rule_id']}|{item.get('role', '')}",
                {**item, "jurisdictions": [], "whom_kind": whom_kind(item["rule_id"])},
            )
            if "missing" in item:
                entry["missing_keys"] = missing_keys(list(item["missing"]))
            entry["jurisdictions"].append(block["code"])
    return list(seen.values())


def law_context(session: Session, notice_id: str, now: datetime) -> dict[str, Any]:
    """The ``law`` part of a notice's template context (and of the console's incident page)."""
    notice = session.get(NoticeRow, notice_id)
    blocks = _jurisdictions(session, notice_id)
    duties = list(
        session.scalars(
            select(NoticeDutyRow)
            .where(NoticeDutyRow.notice_id == notice_id, NoticeDutyRow.active.is_(True))
            .order_by(NoticeDutyRow.target_at, NoticeDutyRow.rule_id)
        )
    )
    holds = [
        {
            "rule_id": d.rule_id,
            "title": d.title,
            "owner": d.owner,
            "whom_kind": d.whom_kind,
            "provision": h["provision"],
            "start": h["start"],
            "end": h["end"],
            "capped": h["capped"],
            "paused": paused(d, now),
            "original_due_at": (d.hold or {}).get("original_due_at"),
        }
        for d in duties
        for h in (d.hold or {}).get("holds", [])
    ]
    substitute = [
        {"rule_id": d.rule_id, "title": d.title, "owner": d.owner, "whom_kind": d.whom_kind, **d.substitute}
        for d in duties
        if d.substitute
    ]
    waived = [
        {"rule_id": d.rule_id, "title": d.title, "owner": d.owner, "whom_kind": d.whom_kind, **d.waived}
        for d in duties
        if d.waived
    ]
    return {
        "moments": moment_rows(session, notice.incident_id) if notice is not None else [],
        "jurisdictions": blocks,
        "undecided": _unique(blocks, "undecided"),
        "advisories": _unique(blocks, "advisories"),
        "exempted": _unique(blocks, "exempted"),
        "holds": holds,
        "substitute": substitute,
        "waived": waived,
    }
