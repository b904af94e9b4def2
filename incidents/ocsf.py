"""An incident and its findings as an OCSF Detection Finding (class 2004): the form security
teams' SIEMs take in. One record per incident change (published by the notifier's outbox) and
the incident's current record (the API).

The record validates against the OCSF schema of ``VERSION`` with the ``incident`` profile
(verdict and suspected breach); what OCSF has no attribute for (BreachWatch's own status word,
the change, who made it) goes in ``unmapped.breachwatch``. Times are epoch milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from breachwatch.core.attack import ATTACK_VERSION, Technique, techniques_of
from breachwatch.core.ids import stable_id, unique
from breachwatch.incidents.lifecycle import BreachRow, Change
from breachwatch.incidents.model import CLOSED_STATUSES
from breachwatch.incidents.tables import FindingRow, IncidentRow

VERSION = "1.8.0"
CLASS_UID = 2004
CATEGORY_UID = 2  # Findings
PROFILES = ["incident"]
CREATE, UPDATE, CLOSE = 1, 2, 3
ACTIVITY_NAMES = {CREATE: "Create", UPDATE: "Update", CLOSE: "Close"}
SEVERITY_IDS = {"low": 2, "medium": 3, "high": 4, "critical": 5}
SEVERITY_NAMES = {2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
# OCSF finding status: 1 New, 2 In Progress, 3 Suppressed (judged benign), 4 Resolved.
STATUS_IDS = {
    "open": (1, "New"),
    "acknowledged": (2, "In Progress"),
    "investigating": (2, "In Progress"),
    "contained": (2, "In Progress"),
    "resolved": (4, "Resolved"),
    "false_positive": (3, "Suppressed"),
}
# Changes that make a finding: the incident opened, or findings split off into a new one.
CREATING = frozenset({"opened", "split_from"})
CLOSING = frozenset({"resolve", "false_positive", "merged_into"})
# OCSF analytic types by the family of the detector.
ANALYTIC_TYPES = {"rules": (1, "Rule"), "learned": (4, "Learning (ML/DL)"), "logs": (2, "Behavioral")}
MAX_FINDINGS = 100
MAX_LIST = 100
MAX_TEXT = 4000


def _ms(at: datetime) -> int:
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return int(aware.timestamp() * 1000)


def _product() -> dict[str, str]:
    try:
        release = version("breachwatch")
    except PackageNotFoundError:  # run from a checkout that was never installed
        release = "unknown"
    return {"name": "BreachWatch", "vendor_name": "BreachWatch", "version": release}


def activity_of(incident: IncidentRow, change: Change | None) -> int:
    """Create when the change made the incident, Close when it closed it, else Update; with no
    change (the current record), Close for a closed incident and Update otherwise."""
    if change is None:
        return CLOSE if incident.status in CLOSED_STATUSES else UPDATE
    if change.action in CREATING:
        return CREATE
    return CLOSE if change.action in CLOSING else UPDATE


def _analytic(detector: str) -> dict[str, Any]:
    type_id, type_name = ANALYTIC_TYPES.get(detector.split(".", 1)[0], (99, "Other"))
    return {"name": detector, "uid": detector, "type_id": type_id, "type": type_name}


def _attack(t: Technique) -> dict[str, Any]:
    """OCSF's shape: a sub-technique (T1110.004) under its parent technique (T1110)."""
    parent, _, sub = t.technique_id.partition(".")
    parent_name, _, sub_name = t.technique.partition(": ")
    out: dict[str, Any] = {
        "version": ATTACK_VERSION,
        "tactic": {"uid": t.tactic_id, "name": t.tactic},
        "technique": {"uid": parent, "name": parent_name},
    }
    if sub:
        out["sub_technique"] = {"uid": t.technique_id, "name": sub_name or t.technique}
    return out


def _evidence(f: FindingRow) -> dict[str, Any]:
    data = {
        "finding_id": f.finding_id,
        "detector": f.detector,
        "kind": f.kind,
        "severity": f.severity,
        "score": f.score,
        "time": _ms(f.ts),
        "reasons": [r[:500] for r in (f.reasons or [])[:10]],
        "suppressed": bool(f.suppressed),
    }
    out: dict[str, Any] = {"uid": f.finding_id, "name": f.title[:200], "data": data}
    if f.actor_id:
        out["user"] = {"uid": f.actor_id}
    return out


def _finding_info(incident: IncidentRow, findings: Sequence[FindingRow], modified: int) -> dict[str, Any]:
    detectors = list(unique([*(incident.detectors or []), *(f.detector for f in findings)]))
    kinds = list(unique([incident.kind, *(f.kind for f in findings)]))
    info: dict[str, Any] = {
        "uid": incident.incident_id,
        "title": incident.title[:500],
        "desc": "; ".join(incident.reasons or [])[:MAX_TEXT] or incident.title[:500],
        "types": kinds[:MAX_LIST],
        "created_time": _ms(incident.created_at or incident.opened_at),
        "first_seen_time": _ms(incident.opened_at),
        "last_seen_time": _ms(incident.updated_at),
        "modified_time": modified,
    }
    if detectors:
        info["analytic"] = _analytic(detectors[0])
        if len(detectors) > 1:
            info["related_analytics"] = [_analytic(d) for d in detectors[1:MAX_LIST]]
    attacks = techniques_of(kinds)
    if attacks:
        info["attacks"] = [_attack(a) for a in attacks]
    return info


def _observables(incident: IncidentRow) -> list[dict[str, Any]]:
    users = [{"name": "actor.user.uid", "type_id": 31, "value": a} for a in (incident.actor_ids or [])[:MAX_LIST]]
    ips = [{"name": "src_endpoint.ip", "type_id": 2, "value": ip} for ip in (incident.source_ips or [])[:MAX_LIST]]
    return users + ips


def detection_finding(
    incident: IncidentRow,
    findings: Sequence[FindingRow],
    *,
    change: Change | None = None,
    breach: BreachRow | None = None,
) -> dict[str, Any]:
    """The OCSF Detection Finding of ``incident`` with ``findings`` (as evidences), as of
    ``change`` (the record sent for that change) or as it stands (``change`` None)."""
    activity = activity_of(incident, change)
    at = change.at if change is not None else incident.modified_at or incident.updated_at
    time = _ms(at)
    severity = SEVERITY_IDS.get(incident.severity, 99)
    status_id, status = STATUS_IDS.get(incident.status, (99, "Other"))
    record: dict[str, Any] = {
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "activity_id": activity,
        "activity_name": ACTIVITY_NAMES[activity],
        "type_uid": CLASS_UID * 100 + activity,
        "type_name": f"Detection Finding: {ACTIVITY_NAMES[activity]}",
        "time": time,
        "severity_id": severity,
        "severity": SEVERITY_NAMES.get(severity, incident.severity),
        "status_id": status_id,
        "status": status,
        "is_alert": True,
        "message": incident.title[:500],
        "risk_score": round(incident.score),
        "metadata": {
            "version": VERSION,
            "profiles": list(PROFILES),
            "product": _product(),
            "uid": stable_id("ocsf", incident.incident_id, change.key if change else f"now:{time}"),
            "correlation_uid": incident.incident_id,
        },
        "finding_info": _finding_info(incident, findings, time),
        "evidences": [_evidence(f) for f in findings[:MAX_FINDINGS]],
        "unmapped": {"breachwatch": _own(incident, findings, change, breach)},
    }
    if not record["evidences"]:
        del record["evidences"]  # a merged-away incident holds no findings any more
    observables = _observables(incident)
    if observables:
        record["observables"] = observables
    if incident.tenant_ids:
        record["resources"] = [{"uid": t, "type": "tenant"} for t in incident.tenant_ids[:MAX_LIST]]
    if incident.status == "false_positive":
        record["verdict_id"], record["verdict"] = 1, "False Positive"
    elif breach is not None:
        record["verdict_id"], record["verdict"] = 2, "True Positive"
    record["is_suspected_breach"] = breach is not None
    return record


def _own(
    incident: IncidentRow, findings: Sequence[FindingRow], change: Change | None, breach: BreachRow | None
) -> dict[str, Any]:
    own: dict[str, Any] = {
        "incident_id": incident.incident_id,
        "status": incident.status,
        "kind": incident.kind,
        "score": incident.score,
        "findings": len(findings),
        "evidence_count": incident.evidence_count,
    }
    if change is not None:
        own["change"] = {
            "action": change.action,
            "actor": change.actor,
            "at": _ms(change.at),
            "reason": change.reason[:MAX_TEXT],
        }
    if breach is not None:
        own["breach_confirmed_at"] = _ms(breach.confirmed_at)
    return own
