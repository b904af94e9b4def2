"""Just-in-time approval of staff access, for tenants that opt in.

A tenant that requires approval (``require_approval``) names its approvers. Before vendor staff
touch its data, they (or the ticketing system) file an access request: who, for what purpose,
under which ticket, for which window. Each approver is e-mailed a link of their own to a page
that shows the request and asks to approve or deny it; the link is the credential
(``ApprovalLinks``): signed, expiring, and good for one decision (its secret is stored hashed,
so the decision names the approver, and every approver's link is void once one decides).

A request is ``pending`` until decided, then ``approved`` or ``denied``; one nobody decides in
time is ``expired``; an approval can be ``revoked`` while its window lasts. Every change is
audited, with the time it took effect, and the detectors read those times (``load_grants``):
an access is approved only inside an approved window, after the approval and before any
revocation, whenever the detectors learn of it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import JSON, Index, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from breachwatch.core.clock import utcnow
from breachwatch.core.ids import stable_id
from breachwatch.core.justification import PURPOSES, ApprovalPolicy, Grant
from breachwatch.core.settings import ConfigError, Settings
from breachwatch.notifier.message import is_address
from breachwatch.storage import audit
from breachwatch.storage.db import Base

MAX_WINDOW = timedelta(days=14)
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
LINK_SALT = "breachwatch.access-request.link"


class ApprovalPolicyRow(Base):
    """A tenant's requirement of approval before staff access, from ``since`` until ``until``."""

    __tablename__ = "access_approval_policies"

    policy_id: Mapped[str] = mapped_column(String(24), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128), index=True)
    since: Mapped[datetime]
    until: Mapped[datetime | None] = mapped_column(nullable=True)
    approvers: Mapped[list[str]] = mapped_column(JSON)
    locale: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_by: Mapped[str] = mapped_column(String(200))
    ended_by: Mapped[str | None] = mapped_column(String(200), nullable=True)


class AccessRequestRow(Base):
    """One request for staff access to a tenant's data, and what became of it."""

    __tablename__ = "access_requests"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    staff_ids: Mapped[list[str]] = mapped_column(JSON)
    staff_names: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    ticket_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    purpose: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    filed_at: Mapped[datetime]
    filed_by: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16), default="pending")
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(320), nullable=True)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(320), nullable=True)
    # SHA-256 of each approver's link secret -> the approver; emptied by the decision.
    links: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_access_requests_tenant", "tenant_id", "starts_at"),)

    def grant(self) -> Grant:
        return Grant(
            request_id=self.request_id,
            tenant_id=self.tenant_id,
            staff_ids=tuple(self.staff_ids),
            ticket_id=self.ticket_id,
            purpose=self.purpose,
            starts_at=self.starts_at,
            ends_at=self.ends_at,
            filed_at=self.filed_at,
            expires_at=self.expires_at,
            state=self.state,
            decided_at=self.decided_at,
            decided_by=self.decided_by,
            revoked_at=self.revoked_at,
        )


class ApprovalError(ValueError):
    """An approval request or decision that cannot be carried out; the message says why."""


class LinkInvalid(ApprovalError):
    """A link that was altered, is not ours, or is past its time."""


# --- the link ---------------------------------------------------------------------------------


class ApprovalLinks:
    """Signs and checks approvers' links: ``<console>/access-requests/<token>``.

    The token carries the request id and a random secret, signed (itsdangerous, keyed by the
    console's secret key) with the time it was made: an altered token fails the signature, an
    old one the age check, and a used one finds its secret no longer stored."""

    def __init__(self, secret_key: str, lifetime: timedelta) -> None:
        if len(secret_key) < 16:
            raise ValueError("the console secret key must have at least 16 characters")
        self._s = URLSafeTimedSerializer(secret_key, salt=LINK_SALT)
        self.lifetime = lifetime

    def make(self, request_id: str) -> tuple[str, str]:
        """A new token for the request, and the hash to store of its secret."""
        secret = secrets.token_urlsafe(24)
        return self._s.dumps({"r": request_id, "k": secret}), _hash(secret)

    def read(self, token: str) -> tuple[str, str]:
        """The request id and secret hash a token carries; ``LinkInvalid`` if altered or too old."""
        try:
            doc = self._s.loads(token, max_age=int(self.lifetime.total_seconds()))
        except SignatureExpired:
            raise LinkInvalid("this link has expired") from None
        except BadSignature:
            raise LinkInvalid("this link is not valid") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("r"), str) or not isinstance(doc.get("k"), str):
            raise LinkInvalid("this link is not valid")
        return doc["r"], _hash(doc["k"])


def approval_links(settings: Settings) -> ApprovalLinks:
    """The link signer of this deployment; links must verify in the console process, so the
    console's secret key has to be set (a random one would differ between processes)."""
    key = settings.secret("console_secret_key")
    if not key:
        raise ConfigError("access requests need BREACHWATCH_CONSOLE_SECRET_KEY: it signs the approvers' links")
    return ApprovalLinks(key, timedelta(hours=settings.access_request_link_hours))


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# --- tenants' policies ------------------------------------------------------------------------


def policy_in_force(session: Session, tenant_id: str, at: datetime | None = None) -> ApprovalPolicyRow | None:
    at = at or utcnow()
    for p in session.scalars(select(ApprovalPolicyRow).where(ApprovalPolicyRow.tenant_id == tenant_id)):
        if p.since <= at and (p.until is None or at < p.until):
            return p
    return None


def require_approval(
    session: Session,
    tenant_id: str,
    approvers: Sequence[str],
    actor: str,
    *,
    locale: str | None = None,
    now: datetime | None = None,
) -> ApprovalPolicyRow:
    """Make ``tenant_id`` require approval before staff access from now on (or change its
    approvers); audited."""
    now = now or utcnow()
    addresses = list(dict.fromkeys(a.strip() for a in approvers if a.strip()))
    if not addresses:
        raise ApprovalError("a tenant that requires approval needs at least one approver's e-mail address")
    for a in addresses:
        if not is_address(a):
            raise ApprovalError(f"not a plain e-mail address: {a[:80]!r}")
    audit.serialize_writes(session)
    current = policy_in_force(session, tenant_id, now)
    if current is not None:
        current.approvers, current.locale = addresses, locale or current.locale
        audit.record(
            session, actor, "access_approval.update", f"tenant:{tenant_id}", {"approvers": len(addresses)}, at=now
        )
        return current
    row = ApprovalPolicyRow(
        policy_id=stable_id("approval-policy", tenant_id, now.isoformat()),
        tenant_id=tenant_id,
        since=now,
        approvers=addresses,
        locale=locale,
        created_by=actor,
    )
    session.add(row)
    session.flush()
    audit.record(
        session, actor, "access_approval.require", f"tenant:{tenant_id}", {"approvers": len(addresses)}, at=now
    )
    return row


def release_approval(session: Session, tenant_id: str, actor: str, *, now: datetime | None = None) -> bool:
    """Stop requiring approval for ``tenant_id`` from now on; audited. False if it did not."""
    now = now or utcnow()
    audit.serialize_writes(session)
    current = policy_in_force(session, tenant_id, now)
    if current is None:
        return False
    current.until, current.ended_by = now, actor
    audit.record(session, actor, "access_approval.release", f"tenant:{tenant_id}", {}, at=now)
    return True


# --- requests ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccessRequestIn:
    """What staff or the ticketing system ask for."""

    tenant_id: str
    staff_ids: tuple[str, ...]
    purpose: str
    starts_at: datetime
    ends_at: datetime
    ticket_id: str | None = None
    reason: str = ""
    staff_names: dict[str, str] | None = None
    request_id: str | None = None

    def check(self, now: datetime) -> None:
        if self.purpose not in PURPOSES:
            raise ApprovalError(f"purpose must be one of {', '.join(PURPOSES)}")
        if not self.staff_ids or any(not s or len(s) > 128 for s in self.staff_ids):
            raise ApprovalError("name at least one staff member (ids of at most 128 characters)")
        if self.ends_at <= self.starts_at:
            raise ApprovalError("the requested window must end after it starts")
        if self.ends_at <= now:
            raise ApprovalError("the requested window has already ended")
        if self.ends_at - self.starts_at > MAX_WINDOW:
            raise ApprovalError(f"a requested window may last at most {MAX_WINDOW.days} days")
        if self.request_id is not None and not REQUEST_ID.fullmatch(self.request_id):
            raise ApprovalError("a request id is 1-64 characters of A-Z, a-z, 0-9, '.', '_', ':' or '-'")
        if len(self.reason) > 2000:
            raise ApprovalError("the reason may have at most 2000 characters")


def file_request(
    session: Session, req: AccessRequestIn, actor: str, links: ApprovalLinks, *, now: datetime | None = None
) -> tuple[AccessRequestRow, dict[str, str], ApprovalPolicyRow]:
    """Record a pending request (audited); returns it, each approver's link token, and the
    tenant's policy. The caller asks the approvers (``privacy.staff_mail.ask_approvers``)."""
    now = now or utcnow()
    req.check(now)
    policy = policy_in_force(session, req.tenant_id, now)
    if policy is None:
        raise ApprovalError(f"tenant {req.tenant_id} does not require approval before staff access")
    audit.serialize_writes(session)
    request_id = req.request_id or f"AR-{secrets.token_hex(5)}"
    if session.get(AccessRequestRow, request_id) is not None:
        raise ApprovalError(f"request {request_id} exists already")
    tokens: dict[str, str] = {}
    hashes: dict[str, str] = {}
    for approver in policy.approvers:
        token, digest = links.make(request_id)
        tokens[approver], hashes[digest] = token, approver
    row = AccessRequestRow(
        request_id=request_id,
        tenant_id=req.tenant_id,
        staff_ids=list(dict.fromkeys(req.staff_ids)),
        staff_names=dict(req.staff_names or {}),
        ticket_id=req.ticket_id,
        purpose=req.purpose,
        reason=req.reason,
        starts_at=req.starts_at,
        ends_at=req.ends_at,
        filed_at=now,
        filed_by=actor,
        expires_at=min(now + links.lifetime, req.ends_at),
        state="pending",
        links=hashes,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        "access_request.file",
        f"access_request:{request_id}",
        {"tenant": req.tenant_id, "staff": len(row.staff_ids), "purpose": req.purpose, "ticket": req.ticket_id},
        at=now,
    )
    return row, tokens, policy


def get(session: Session, request_id: str) -> AccessRequestRow:
    row = session.get(AccessRequestRow, request_id) if REQUEST_ID.fullmatch(request_id or "") else None
    if row is None:
        raise ApprovalError(f"no access request {request_id[:64]!r}")
    return row


def _expire_if_due(session: Session, row: AccessRequestRow, now: datetime) -> bool:
    if row.state == "pending" and row.expires_at <= now:
        row.state, row.links = "expired", {}
        audit.record(
            session,
            audit.SYSTEM_ACTOR,
            "access_request.expire",
            f"access_request:{row.request_id}",
            {"tenant": row.tenant_id},
            at=row.expires_at,
        )
        return True
    return False


def approver_of(row: AccessRequestRow, link_hash: str) -> str | None:
    """The approver whose link this is, if it is still good for a decision."""
    for digest, approver in (row.links or {}).items():
        if hmac.compare_digest(digest, link_hash):
            return str(approver)
    return None


def decide(
    session: Session,
    request_id: str,
    link_hash: str,
    approve: bool,
    *,
    comment: str | None = None,
    now: datetime | None = None,
) -> AccessRequestRow:
    """Approve or deny through an approver's link (audited, naming the approver). A link works
    once: a request already decided, expired or revoked refuses, naming its state."""
    now = now or utcnow()
    audit.serialize_writes(session)
    row = get(session, request_id)
    by = approver_of(row, link_hash)
    if by is None:
        if row.state == "pending" and row.expires_at > now:
            raise LinkInvalid("this link is not valid")
        _expire_if_due(session, row, now)
        raise ApprovalError(f"this request was {row.state} already")
    if _expire_if_due(session, row, now):
        raise ApprovalError("this request expired before it was decided")
    row.state = "approved" if approve else "denied"
    row.decided_at, row.decided_by = now, by
    row.comment = (comment or "").strip()[:2000] or None
    row.links = {}
    session.flush()
    audit.record(
        session,
        by,
        f"access_request.{'approve' if approve else 'deny'}",
        f"access_request:{row.request_id}",
        {"tenant": row.tenant_id},
        at=now,
    )
    return row


def revoke(session: Session, request_id: str, by: str, *, now: datetime | None = None) -> AccessRequestRow:
    """End an approval before its window does (audited); from now on its staff are not let in."""
    now = now or utcnow()
    audit.serialize_writes(session)
    row = get(session, request_id)
    if row.state != "approved":
        raise ApprovalError(f"only an approved request can be revoked; this one is {row.state}")
    if row.ends_at <= now:
        raise ApprovalError("this approval's window has ended already")
    row.state, row.revoked_at, row.revoked_by = "revoked", now, by
    session.flush()
    audit.record(
        session, by, "access_request.revoke", f"access_request:{row.request_id}", {"tenant": row.tenant_id}, at=now
    )
    return row


def expire_due(session: Session, *, now: datetime | None = None) -> list[str]:
    """Mark every pending request whose time is up as expired (audited); their ids."""
    now = now or utcnow()
    due = list(
        session.scalars(
            select(AccessRequestRow).where(AccessRequestRow.state == "pending", AccessRequestRow.expires_at <= now)
        )
    )
    if due:
        audit.serialize_writes(session)
    return [row.request_id for row in due if _expire_if_due(session, row, now)]


def requests_of(session: Session, tenant_id: str | None = None, *, limit: int = 200) -> list[AccessRequestRow]:
    stmt = select(AccessRequestRow).order_by(AccessRequestRow.filed_at.desc(), AccessRequestRow.request_id)
    if tenant_id is not None:
        stmt = stmt.where(AccessRequestRow.tenant_id == tenant_id)
    return list(session.scalars(stmt.limit(limit)))


def state_now(row: AccessRequestRow, now: datetime | None = None) -> str:
    """The state as a reader should see it: a pending request past its time reads as expired."""
    if row.state == "pending" and row.expires_at <= (now or utcnow()):
        return "expired"
    return row.state


def as_dict(row: AccessRequestRow, now: datetime | None = None) -> dict[str, Any]:
    def iso(v: datetime | None) -> str | None:
        return None if v is None else v.isoformat().replace("+00:00", "Z")

    return {
        "request_id": row.request_id,
        "tenant_id": row.tenant_id,
        "staff_ids": list(row.staff_ids),
        "ticket_id": row.ticket_id,
        "purpose": row.purpose,
        "reason": row.reason,
        "starts_at": iso(row.starts_at),
        "ends_at": iso(row.ends_at),
        "filed_at": iso(row.filed_at),
        "filed_by": row.filed_by,
        "expires_at": iso(row.expires_at),
        "state": state_now(row, now),
        "decided_at": iso(row.decided_at),
        "decided_by": row.decided_by,
        "comment": row.comment,
        "revoked_at": iso(row.revoked_at),
        "revoked_by": row.revoked_by,
    }


# --- what the detectors read ------------------------------------------------------------------


def load_grants(session: Session) -> tuple[list[ApprovalPolicy], list[Grant]]:
    """Every policy and request, as the detectors judge staff accesses against them."""
    policies = [
        ApprovalPolicy(p.tenant_id, p.since, p.until)
        for p in session.scalars(select(ApprovalPolicyRow).order_by(ApprovalPolicyRow.since))
    ]
    grants = [r.grant() for r in session.scalars(select(AccessRequestRow).order_by(AccessRequestRow.request_id))]
    return policies, grants
