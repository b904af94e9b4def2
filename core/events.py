"""Typed models of the six ERP topics, built to the JSON Schemas in ``streams/contracts``.

Models are strict (an integer must be a JSON integer, a time an RFC 3339 string with an
offset) so that what the schema rejects, the model rejects too, and they ignore unknown
fields, which the contract says may appear. Optional fields that the schema does not allow
to be ``null`` default to ``None`` when absent; an explicit ``null`` fails validation,
as it does against the schema (pydantic does not validate defaults, which is what makes
that distinction possible without a per-event Python validator).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidatorFunctionWrapHandler, WrapValidator

# Topic names exactly as the contract spells them; a deployment may put a prefix in front.
ACCESS = "erp.access"
AUTH = "erp.auth"
LOGS = "erp.logs"
TENANTS = "erp.tenants"
STAFF = "erp.staff"
TICKETS = "erp.tickets"
EVENT_TOPICS: tuple[str, ...] = (ACCESS, AUTH, LOGS)
REFERENCE_TOPICS: tuple[str, ...] = (TENANTS, STAFF, TICKETS)
ALL_TOPICS: tuple[str, ...] = EVENT_TOPICS + REFERENCE_TOPICS


def _rfc3339_utc(value: object, handler: ValidatorFunctionWrapHandler) -> datetime:
    # pydantic also reads a string of digits as Unix time ("0" is 1970-01-01T00:00:00Z); the
    # contract's "date-time" is RFC 3339 only, which always starts YYYY-MM-DD.
    # The check is ours, so the parse below may be pydantic's lax one (strict mode refuses
    # the Python string a wrap validator hands on); only strings and datetimes get to it.
    if isinstance(value, str):
        if len(value) < 20 or value[4] != "-" or value[7] != "-":
            raise ValueError("not an RFC 3339 date-time with an offset")
    elif not isinstance(value, datetime):
        raise ValueError("a date-time must be an RFC 3339 string")
    parsed: datetime = handler(value)
    # pydantic's own tzinfo makes every later comparison and timestamp() call go through
    # Python code; the stdlib UTC object keeps them in C (about 15x faster on the hot path).
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        # e.g. 0001-01-01T00:00:00+05:00 lies before year 1 in UTC: not a usable event time.
        raise ValueError("time is out of the representable range once converted to UTC") from None


# RFC 3339 with an offset, held in UTC: the same instant, whatever offset the ERP wrote.
Timestamp = Annotated[AwareDatetime, Field(strict=False), WrapValidator(_rfc3339_utc)]
Id128 = Annotated[str, Field(min_length=1, max_length=128)]
Country = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
JurisdictionCode = Annotated[str, Field(pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")]
# The schema's "format": "email" is an annotation in draft 2020-12; notices are sent to these
# addresses, so a value that cannot be an address at all is rejected here.
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)]
ActorType = Literal["customer_user", "staff", "service"]
Sensitivity = Literal["public", "internal", "personal", "financial", "payment", "credentials"]
SENSITIVE: frozenset[str] = frozenset({"personal", "financial", "payment", "credentials"})


class _Contract(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class AccessEvent(_Contract):
    """One access by one actor to records of one tenant (``erp.access``)."""

    event_id: Id128
    ts: Timestamp
    actor_id: Id128
    actor_type: ActorType
    actor_tenant: str | None = None
    tenant_id: Id128
    action: Literal["read", "search", "export", "create", "update", "delete"]
    resource_type: Annotated[str, Field(min_length=1, max_length=64)]
    sensitivity: Sensitivity = "internal"
    records: Annotated[int, Field(ge=0)]
    bytes: Annotated[int, Field(ge=0)] = None  # type: ignore[assignment]
    ip: str = None  # type: ignore[assignment]
    country: Country = None  # type: ignore[assignment]
    user_agent: Annotated[str, Field(max_length=512)] = None  # type: ignore[assignment]
    session_id: Annotated[str, Field(max_length=128)] = None  # type: ignore[assignment]
    ticket_id: str | None = None
    endpoint: Annotated[str, Field(max_length=256)] = None  # type: ignore[assignment]
    outcome: Literal["success", "denied"] = "success"


class AuthEvent(_Contract):
    """Logins, failures, MFA, password resets, role changes (``erp.auth``)."""

    event_id: Id128
    ts: Timestamp
    actor_id: Id128
    actor_type: ActorType
    actor_tenant: str | None = None
    action: Literal["login", "logout", "mfa", "password_reset", "role_change", "api_key_created"]
    outcome: Literal["success", "failure"]
    ip: str = None  # type: ignore[assignment]
    country: Country = None  # type: ignore[assignment]
    user_agent: Annotated[str, Field(max_length=512)] = None  # type: ignore[assignment]
    session_id: Annotated[str, Field(max_length=128)] = None  # type: ignore[assignment]
    roles: tuple[str, ...] = None  # type: ignore[assignment]
    detail: Annotated[str, Field(max_length=1024)] = None  # type: ignore[assignment]


class LogRecord(_Contract):
    """One application log record (``erp.logs``)."""

    event_id: Id128
    ts: Timestamp
    service: Annotated[str, Field(min_length=1, max_length=64)]
    host: Annotated[str, Field(max_length=128)] = None  # type: ignore[assignment]
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
    message: Annotated[str, Field(max_length=65536)]
    actor_id: str | None = None
    tenant_id: str | None = None
    session_id: str | None = None
    trace_id: str | None = None
    attrs: dict[str, object] = None  # type: ignore[assignment]


class Contact(_Contract):
    email: Email
    role: Literal["owner", "security", "dpo", "billing", "admin"]
    name: str = None  # type: ignore[assignment]
    locale: str = None  # type: ignore[assignment]


class Tenant(_Contract):
    """A customer directory entry (``erp.tenants``, compacted)."""

    tenant_id: Id128
    name: Annotated[str, Field(min_length=1, max_length=256)]
    jurisdiction: JurisdictionCode
    locale: str = "en"
    contacts: Annotated[tuple[Contact, ...], Field(min_length=1)]
    ai_training_opt_out: bool = False
    data_subjects: Annotated[int, Field(ge=0)] = None  # type: ignore[assignment]
    # Since contract 1.1: jurisdiction code -> persons, where the tenant's data subjects live.
    data_subjects_by_jurisdiction: dict[JurisdictionCode, Annotated[int, Field(ge=0)]] = None  # type: ignore[assignment]


class Staff(_Contract):
    """A member of the vendor's personnel (``erp.staff``, compacted)."""

    staff_id: Id128
    name: str
    email: Email
    team: Literal["support", "engineering", "operations", "security", "finance", "sales"]
    active: bool = True
    country: Country = None  # type: ignore[assignment]  # office country, since contract 1.1


class Ticket(_Contract):
    """A ticket that justifies staff access to one tenant (``erp.tickets``, compacted)."""

    ticket_id: Id128
    tenant_id: str
    kind: Literal["support", "maintenance", "security", "fraud"]
    staff_ids: tuple[str, ...]
    opened_at: Timestamp
    closed_at: Timestamp | None = None
    # Since contract 1.1: who opened it (the customer asked for support, or the vendor) and why.
    requested_by: Literal["customer", "vendor"] = None  # type: ignore[assignment]
    summary: Annotated[str, Field(max_length=512)] = None  # type: ignore[assignment]


Event = AccessEvent | AuthEvent | LogRecord
Reference = Tenant | Staff | Ticket

MODEL_BY_TOPIC: dict[str, type[_Contract]] = {
    ACCESS: AccessEvent,
    AUTH: AuthEvent,
    LOGS: LogRecord,
    TENANTS: Tenant,
    STAFF: Staff,
    TICKETS: Ticket,
}

# The message key the contract prescribes for each topic: an actor's events share a
# partition, so one consumer sees all of them in order.
KEY_FIELD: dict[str, str] = {
    ACCESS: "actor_id",
    AUTH: "actor_id",
    LOGS: "service",
    TENANTS: "tenant_id",
    STAFF: "staff_id",
    TICKETS: "ticket_id",
}

SCHEMA_FILE: dict[str, str] = {
    ACCESS: "access.schema.json",
    AUTH: "auth.schema.json",
    LOGS: "applog.schema.json",
    TENANTS: "tenant.schema.json",
    STAFF: "staff.schema.json",
    TICKETS: "ticket.schema.json",
}


ACTOR_TOPICS: tuple[str, ...] = (ACCESS, AUTH)


LOG_TOPICS: tuple[str, ...] = (LOGS,)
