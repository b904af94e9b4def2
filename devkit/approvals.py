"""A simulated dump's access approvals (``access_requests.json``) into BreachWatch's database, as
the tenants and the ticketing system would have made them: each tenant's opt-in, each request
filed, decided, revoked and expired at its own time, through ``privacy.approvals`` itself."""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.core.settings import Settings
from breachwatch.devkit.simulate import ACCESS_REQUESTS_FILE
from breachwatch.privacy import approvals

ACTOR = "ticketing-system (simulated)"


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def load_access_requests(engine: Engine, dump: Path, settings: Settings, *, until: datetime | None = None) -> int:
    """Load the dump's approvals, if it has any; expire what was left undecided by ``until``.
    Returns how many requests were loaded."""
    path = dump / ACCESS_REQUESTS_FILE
    if not path.is_file():
        return 0
    doc = json.loads(path.read_text(encoding="utf-8"))
    links = approvals.ApprovalLinks(secrets.token_urlsafe(24), timedelta(hours=settings.access_request_link_hours))
    with Session(engine) as session, session.begin():
        for p in doc.get("policies", []):
            approvals.require_approval(session, p["tenant_id"], p["approvers"], ACTOR, now=_ts(p["since"]))
        for r in sorted(doc.get("requests", []), key=lambda r: (r["filed_at"], r["request_id"])):
            _load(session, r, links)
        if until is not None:
            approvals.expire_due(session, now=until)
    return len(doc.get("requests", []))


def _load(session: Session, r: dict[str, object], links: approvals.ApprovalLinks) -> None:
    req = approvals.AccessRequestIn(
        tenant_id=str(r["tenant_id"]),
        staff_ids=tuple(r["staff_ids"]),  # type: ignore[arg-type]
        purpose=str(r["purpose"]),
        starts_at=_ts(str(r["starts_at"])),
        ends_at=_ts(str(r["ends_at"])),
        ticket_id=r.get("ticket_id"),  # type: ignore[arg-type]
        reason=str(r.get("reason") or ""),
        request_id=str(r["request_id"]),
    )
    row, tokens, _ = approvals.file_request(session, req, ACTOR, links, now=_ts(str(r["filed_at"])))
    if r.get("decision"):
        _, digest = links.read(next(iter(tokens.values())))
        approvals.decide(session, row.request_id, digest, r["decision"] == "approve", now=_ts(str(r["decided_at"])))
    if r.get("revoked_at"):
        approvals.revoke(session, row.request_id, "tenant (simulated)", now=_ts(str(r["revoked_at"])))
