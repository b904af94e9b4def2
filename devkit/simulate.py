"""Synthetic multi-tenant ERP traffic with labelled attacks, written as a topic dump.

``simulate()`` builds a fictional customer base (tenants in several jurisdictions and time
zones, their users, integration keys and the vendor's support staff), plays their working
days hour by hour, plants labelled attack scenarios in the last days of the window and
labelled hard negatives (benign behaviour that looks suspicious), and writes the six topics
as ``<topic>.jsonl`` files plus ``labels.json``. The same seed gives byte-identical output.

Events are produced one local day at a time and kept in per-UTC-day buckets; a bucket is
sorted and written as soon as no later day can add to it, so memory stays at a few days of
traffic whatever the length of the window.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from random import Random
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from breachwatch.core.events import ACCESS, AUTH, LOGS, SENSITIVE, STAFF, TENANTS, TICKETS

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MIN_MS = 60_000
SEC_MS = 1000

# The default window ends here, so that with the default third of attack days the attack
# window holds a month end (the busiest time for legitimate bulk exports).
DEFAULT_END = datetime(2026, 12, 3, tzinfo=UTC)
DEFAULT_EVENTS_PER_USER_DAY = 14.0
# A new hire's workload grows from 40% to full over this many days.
NEW_HIRE_RAMP_DAYS = 14
LABELS_FILE = "labels.json"

ATTACK_KINDS: tuple[str, ...] = (
    "account_takeover",
    "credential_stuffing",
    "slow_exfiltration",
    "dormant_account",
    "service_key_misuse",
    "privilege_escalation",
    "staff_snooping",
    "cross_tenant_access",
    "bulk_export",
)
# Staff access that a ticket, its purpose or the tenant's approval does not cover; planned
# after the attacks, from a random stream of their own, so the attacks stay where they were.
STAFF_SCENARIO_KINDS: tuple[str, ...] = (
    "staff_ticket_wrong_tenant",
    "staff_ticket_expired",
    "staff_ticket_other_assignee",
    "staff_export_off_purpose",
    "staff_access_unapproved",
)
SCENARIO_KINDS: tuple[str, ...] = ATTACK_KINDS + STAFF_SCENARIO_KINDS
# Opt-in scenarios (``simulate(extra_kinds=True)``), so that every dump without them, and every
# figure measured on one, stays as it was: planned last, from random and id streams of their own.
EXTRA_KINDS: tuple[str, ...] = ("brute_force", "error_burst", "anomalous_access")
# Tenants that require approval before staff access, and the access requests filed for them:
# what BreachWatch itself would hold (the backtest loads it; it is no ERP topic).
ACCESS_REQUESTS_FILE = "access_requests.json"

_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_ABSENT: Any = object()  # a field left out of the message, as opposed to sent as null


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True, slots=True)
class SimulationSummary:
    """What a simulation wrote: message counts per topic, population, scenarios, window."""

    out: Path
    seed: int
    counts: dict[str, int]
    actors: dict[str, int]
    tenants: int
    scenarios: dict[str, int]
    hard_negatives: dict[str, int]
    start: datetime
    end: datetime
    clean_until: datetime

    @property
    def events(self) -> int:
        """Messages on the three event topics (access, auth, logs)."""
        return self.counts.get(ACCESS, 0) + self.counts.get(AUTH, 0) + self.counts.get(LOGS, 0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able view, for the command line."""
        return {
            "out": str(self.out),
            "seed": self.seed,
            "counts": dict(self.counts),
            "events": self.events,
            "actors": dict(self.actors),
            "tenants": self.tenants,
            "scenarios": dict(self.scenarios),
            "hard_negatives": dict(self.hard_negatives),
            "start": _rfc3339(self.start),
            "end": _rfc3339(self.end),
            "clean_until": _rfc3339(self.clean_until),
        }


def simulate(
    out: Path,
    *,
    seed: int = 7,
    days: int = 21,
    tenants: int = 25,
    attack_days: int | None = None,
    start: datetime | None = None,
    events_per_user_day: float = DEFAULT_EVENTS_PER_USER_DAY,
    progress: Callable[[int], None] | None = None,
    extra_kinds: bool = False,
) -> SimulationSummary:
    """Write a labelled topic dump of ``days`` days of traffic from ``tenants`` tenants to ``out``.

    Attacks are placed only in the last ``attack_days`` days (default: the last third), so
    the days before ``clean_until`` can train models. ``start`` defaults to a fixed date
    (the window ends 2026-12-03) so that output depends on the arguments alone.
    ``events_per_user_day`` is the mean number of data accesses of an average user on a
    working day. ``progress`` is called after each day is written with the number of event
    messages written so far. ``extra_kinds`` adds the scenarios of ``EXTRA_KINDS`` (brute
    force, error bursts, anomalous hours); the rest of the dump is the same with or without.
    """
    if days < 3:
        # Trips, leave and new integrations are placed strictly inside the window.
        raise ValueError("days must be at least 3 (clean days, attack days and a day between for ordinary life)")
    if tenants < 2:
        raise ValueError("tenants must be at least 2 (cross-tenant scenarios need two)")
    if attack_days is None:
        attack_days = max(1, days // 3)
    if not 1 <= attack_days < days:
        raise ValueError("attack_days must be between 1 and days - 1")
    if events_per_user_day <= 0:
        raise ValueError("events_per_user_day must be positive")
    if start is None:
        start = DEFAULT_END - timedelta(days=days)
    elif start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    start = start.astimezone(UTC).replace(microsecond=(start.microsecond // 1000) * 1000)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sim = _Simulation(out, seed, days, tenants, attack_days, start, events_per_user_day, extra_kinds)
    return sim.run(progress)


# --------------------------------------------------------------------------- world data


def _load_world() -> dict[str, Any]:
    """The bundled fictional world: jurisdictions, names, address blocks."""
    text = resources.files("breachwatch.devkit.simdata").joinpath("world.json").read_text(encoding="utf-8")
    return json.loads(text)


def _rfc3339(when: datetime) -> str:
    when = when.astimezone(UTC)
    if when.microsecond:
        return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _slug(text: str) -> str:
    """Lower-case ASCII words joined by hyphens, for ids and domains."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "-".join(w for w in re.split(r"[^a-z0-9]+", ascii_text.lower()) if w)


def _ms(when: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return int((when - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1))


def _poisson(rng: Random, lam: float) -> int:
    """A Poisson draw; the normal approximation is plenty for the large means."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit = math.exp(-lam)
    k, p = 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _cum(weights: Iterable[float]) -> list[float]:
    """Cumulative weights, for choosing with ``bisect`` on one random draw."""
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


# --------------------------------------------------------------------------- catalogue


@dataclass(frozen=True, slots=True)
class _Resource:
    """A kind of record in the ERP, its sensitivity, route and typical size."""

    name: str
    sensitivity: str
    path: str  # API route prefix, or the report's name for reports
    row_bytes: int
    table: str  # which of the tenant's table sizes bounds the records touched


_RESOURCES: dict[str, _Resource] = {
    r.name: r
    for r in (
        _Resource("customer", "personal", "/api/v2/customers", 620, "customers"),
        _Resource("prospect", "personal", "/api/v2/crm/prospects", 480, "prospects"),
        _Resource("employee", "personal", "/api/v2/hr/employees", 900, "employees"),
        _Resource("leave_request", "personal", "/api/v2/hr/leave-requests", 300, "employees"),
        _Resource("payroll", "financial", "/api/v2/hr/payroll", 750, "employees"),
        _Resource("invoice", "financial", "/api/v2/invoices", 1500, "txn"),
        _Resource("ledger", "financial", "/api/v2/gl/ledger", 400, "txn"),
        _Resource("journal_entry", "financial", "/api/v2/gl/journal-entries", 700, "txn"),
        _Resource("bank_statement", "financial", "/api/v2/banking/statements", 350, "txn"),
        _Resource("tax_return", "financial", "/api/v2/tax/returns", 4000, "config"),
        _Resource("payment", "financial", "/api/v2/payments", 520, "txn"),
        _Resource("payment_card", "payment", "/api/v2/customers/cards", 260, "customers"),
        _Resource("vendor_bank_account", "payment", "/api/v2/vendors/bank-accounts", 300, "vendors"),
        _Resource("vendor", "internal", "/api/v2/vendors", 700, "vendors"),
        _Resource("quote", "internal", "/api/v2/sales/quotes", 1100, "txn"),
        _Resource("sales_order", "internal", "/api/v2/sales/orders", 1300, "txn"),
        _Resource("purchase_order", "internal", "/api/v2/purchasing/orders", 1200, "txn"),
        _Resource("product", "public", "/api/v2/catalog/products", 900, "catalog"),
        _Resource("inventory", "internal", "/api/v2/inventory/items", 350, "catalog"),
        _Resource("document", "internal", "/api/v2/documents", 25000, "txn"),
        _Resource("user_account", "internal", "/api/v2/admin/users", 500, "config"),
        _Resource("settings", "internal", "/api/v2/admin/settings", 2000, "config"),
        _Resource("audit_log", "internal", "/api/v2/admin/audit-log", 400, "txn"),
        _Resource("api_key", "credentials", "/api/v2/admin/api-keys", 200, "config"),
        _Resource("integration_credential", "credentials", "/api/v2/admin/integrations/credentials", 300, "config"),
        _Resource("sso_config", "credentials", "/api/v2/admin/sso", 1500, "config"),
        _Resource("report", "financial", "report: aged receivables", 180, "txn"),
    )
}
_REPORTS: dict[str, _Resource] = {
    "aged receivables": _RESOURCES["report"],
    "sales by region": _Resource("report", "internal", "report: sales by region", 150, "txn"),
    "headcount": _Resource("report", "personal", "report: headcount by department", 220, "employees"),
    "stock valuation": _Resource("report", "internal", "report: stock valuation", 160, "catalog"),
    "trial balance": _Resource("report", "financial", "report: trial balance", 140, "txn"),
    "user activity": _Resource("report", "internal", "report: user activity", 120, "config"),
}

_PAGE_SIZES = (10, 20, 25, 50, 100)
_PAGE_CUM = _cum((1, 3, 5, 4, 2))


@dataclass(frozen=True, slots=True)
class _Act:
    """One kind of request a user makes: action on a resource touching ``size`` records."""

    action: str
    res: _Resource
    size: str  # one | page | search | export | report
    endpoint: str
    method: str
    route: str


def _act(action: str, res: _Resource, size: str) -> _Act:
    """The request a user makes for ``action`` on ``res``, with its API route."""
    path = res.path
    if res.name == "report":
        return _Act(action, res, "report", path, "GET", "/api/v2/reports/run")
    method, route = {
        ("read", "one"): ("GET", f"{path}/{{id}}"),
        ("read", "page"): ("GET", path),
        ("search", "search"): ("GET", f"{path}/search"),
        ("export", "export"): ("GET", f"{path}/export.csv"),
        ("create", "one"): ("POST", path),
        ("update", "one"): ("PATCH", f"{path}/{{id}}"),
        ("delete", "one"): ("DELETE", f"{path}/{{id}}"),
    }.get((action, size), ("GET", path))
    return _Act(action, res, size, f"{method} {route}", method, route)


def _acts(spec: Sequence[tuple[float, str, str, str]]) -> tuple[list[_Act], list[float]]:
    """A role's weighted request mix, ready for weighted choice."""
    items = []
    for _, action, res, size in spec:
        r = _REPORTS[res[7:]] if res.startswith("report:") else _RESOURCES[res]
        items.append(_act(action, r, size))
    return items, _cum(w for w, *_ in spec)


# What each role does in a working day, by weight: (weight, action, resource, size).
_ROLE_SPEC: dict[str, list[tuple[float, str, str, str]]] = {
    "clerk": [
        (20, "read", "inventory", "page"),
        (15, "read", "product", "page"),
        (8, "search", "product", "search"),
        (5, "search", "inventory", "search"),
        (12, "read", "sales_order", "one"),
        (10, "create", "sales_order", "one"),
        (8, "update", "inventory", "one"),
        (6, "read", "purchase_order", "page"),
        (5, "create", "purchase_order", "one"),
        (5, "read", "customer", "one"),
        (4, "search", "customer", "search"),
        (3, "read", "invoice", "one"),
        (2, "read", "document", "one"),
        (1, "delete", "sales_order", "one"),
        (1, "read", "report:stock valuation", "report"),
    ],
    "accountant": [
        (15, "read", "invoice", "page"),
        (10, "read", "invoice", "one"),
        (10, "read", "ledger", "page"),
        (8, "read", "journal_entry", "page"),
        (6, "create", "journal_entry", "one"),
        (6, "read", "payment", "page"),
        (5, "read", "bank_statement", "page"),
        (5, "search", "invoice", "search"),
        (4, "update", "invoice", "one"),
        (4, "read", "vendor", "one"),
        (3, "read", "vendor_bank_account", "one"),
        (3, "read", "report:aged receivables", "report"),
        (2, "read", "report:trial balance", "report"),
        (1.5, "export", "invoice", "export"),
        (1, "export", "ledger", "export"),
        (1, "read", "tax_return", "one"),
        (2, "read", "customer", "one"),
        (2, "create", "payment", "one"),
    ],
    "hr": [
        (15, "read", "employee", "one"),
        (12, "read", "employee", "page"),
        (8, "search", "employee", "search"),
        (8, "read", "leave_request", "page"),
        (6, "update", "leave_request", "one"),
        (5, "update", "employee", "one"),
        (4, "read", "payroll", "page"),
        (2, "create", "employee", "one"),
        (0.7, "export", "employee", "export"),
        (3, "read", "report:headcount", "report"),
        (3, "read", "document", "one"),
    ],
    "sales": [
        (18, "read", "customer", "one"),
        (12, "search", "customer", "search"),
        (10, "read", "customer", "page"),
        (10, "read", "prospect", "page"),
        (8, "update", "prospect", "one"),
        (6, "create", "prospect", "one"),
        (8, "read", "quote", "one"),
        (6, "create", "quote", "one"),
        (6, "read", "sales_order", "page"),
        (4, "update", "customer", "one"),
        (1, "export", "customer", "export"),
        (3, "read", "product", "page"),
        (2, "read", "invoice", "one"),
        (1.5, "read", "report:sales by region", "report"),
    ],
    "admin": [
        (10, "read", "user_account", "page"),
        (8, "read", "audit_log", "page"),
        (6, "read", "settings", "one"),
        (4, "update", "settings", "one"),
        (4, "update", "user_account", "one"),
        (2, "create", "user_account", "one"),
        (2, "read", "api_key", "page"),
        (0.6, "read", "integration_credential", "one"),
        (0.4, "read", "sso_config", "one"),
        (3, "read", "report:user activity", "report"),
        (5, "read", "invoice", "page"),
        (5, "read", "customer", "page"),
        (3, "read", "employee", "page"),
        (2, "read", "sales_order", "page"),
    ],
    "auditor": [
        (15, "read", "ledger", "page"),
        (12, "read", "journal_entry", "page"),
        (10, "read", "invoice", "page"),
        (6, "read", "payment", "page"),
        (3, "export", "ledger", "export"),
        (3, "export", "journal_entry", "export"),
        (5, "read", "bank_statement", "page"),
        (3, "read", "audit_log", "page"),
        (3, "read", "vendor_bank_account", "page"),
        (2, "read", "report:trial balance", "report"),
    ],
}
_ROLE_ACTS = {role: _acts(spec) for role, spec in _ROLE_SPEC.items()}
_ROLE_VOLUME = {"clerk": 1.3, "accountant": 1.0, "hr": 0.7, "sales": 1.0, "admin": 0.6, "auditor": 1.6}
_ROLE_MIX = (("clerk", 35.0), ("sales", 25.0), ("accountant", 20.0), ("hr", 10.0))
_WEEKDAY_VOLUME = (1.12, 1.05, 1.0, 0.98, 0.85, 0.5, 0.5)

_CHROME_WIN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)"
_BROWSERS = (
    _CHROME_WIN + " Chrome/{v}.0.0.0 Safari/537.36",
    _CHROME_WIN + " Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.0.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{f}.0) Gecko/20100101 Firefox/{f}.0",
    _MAC + " AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    _MAC + " AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
)
_BROWSER_CUM = _cum((45, 20, 10, 15, 10))
_MOBILE_UA = (
    "UnisenERP/5.4.1 (iOS 18.1; iPhone15,3)",
    "UnisenERP/5.4.0 (Android 14; SM-S918B)",
    "UnisenERP/5.3.7 (Android 13; Pixel 7)",
)
_TOOL_UA = ("python-requests/2.32.3", "curl/8.5.0", "Go-http-client/1.1", "python-httpx/0.27.0")
_ATTACK_BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 Firefox/115.0",
)

# Integration keys: what a nightly (or hourly) sync does, as (action, resource, size, min, max).
_INTEGRATIONS: dict[str, dict[str, Any]] = {
    "bank-feed": {
        "ua": "BankLink-Connector/3.2 (+https://banklink.example/connector)",
        "cadence": "nightly",
        "steps": [
            ("read", "bank_statement", "page", 2, 6),
            ("create", "payment", "one", 3, 20),
            ("update", "invoice", "one", 2, 12),
        ],
    },
    "bi-warehouse": {
        "ua": "WarehouseLoader/1.9 python-requests/2.31.0",
        "cadence": "nightly",
        "steps": [
            ("export", "ledger", "delta", 1, 1),
            ("export", "invoice", "delta", 1, 1),
            ("export", "sales_order", "delta", 1, 1),
            ("export", "customer", "delta", 1, 1),
            ("read", "product", "page", 2, 8),
        ],
    },
    "ecommerce": {
        "ua": "ShopBridge/5.1 (+https://shopbridge.example)",
        "cadence": "hourly",
        "steps": [
            ("read", "product", "page", 1, 2),
            ("update", "inventory", "one", 0, 6),
            ("create", "sales_order", "one", 0, 4),
            ("create", "customer", "one", 0, 2),
        ],
    },
    "payroll": {
        "ua": "PayRun-Sync/2.4",
        "cadence": "nightly",
        "steps": [
            ("read", "payroll", "page", 1, 4),
            ("read", "employee", "page", 1, 3),
            ("update", "payroll", "one", 0, 5),
        ],
    },
    "tax-filing": {
        "ua": "TaxBridge/7.0.2 (Java/17.0.9)",
        "cadence": "nightly",
        "steps": [("read", "invoice", "page", 1, 4), ("read", "tax_return", "one", 0, 1)],
    },
    "crm-sync": {
        "ua": "CRM-Connector/2.8 okhttp/4.12.0",
        "cadence": "two-hourly",
        "steps": [
            ("search", "customer", "search", 1, 3),
            ("update", "customer", "one", 0, 5),
            ("read", "prospect", "page", 1, 1),
        ],
    },
}
_INTEGRATION_CUM = _cum((3, 2.5, 1, 1.5, 1.2, 1.2))


# --------------------------------------------------------------------------- ids and times


class _Ids:
    """Deterministic random ids: version-4-style UUIDs for events, shorter hex for sessions and traces.

    128 random bits make a collision vanishingly unlikely; the tests check uniqueness anyway.
    """

    def __init__(self, seed: int, stream: str = "") -> None:
        # The default stream's name is the one every existing dump was written with.
        self._bits = Random(f"breachwatch-simulate-ids:{seed}{':' + stream if stream else ''}").getrandbits

    def event(self) -> str:
        h = f"{self._bits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"

    def session(self) -> str:
        return f"s-{self._bits(64):016x}"

    def trace(self) -> str:
        return f"{self._bits(128):032x}"


_HMS = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]
_MILLIS = [f".{f:03d}Z" for f in range(1000)]


class _Clock:
    """RFC 3339 formatting of epoch milliseconds (UTC), from cached date and time-of-day parts."""

    def __init__(self) -> None:
        self._prefix: dict[int, str] = {}

    def fmt(self, ms: int) -> str:
        day, rem = divmod(ms, DAY_MS)
        p = self._prefix.get(day)
        if p is None:
            p = (date(1970, 1, 1) + timedelta(days=day)).isoformat() + "T"
            self._prefix[day] = p
        sec, frac = divmod(rem, SEC_MS)
        return p + _HMS[sec] + _MILLIS[frac]


# --------------------------------------------------------------------------- labels


class _Label:
    """One labelled scenario or hard negative, collecting the ids of its events as they are written."""

    __slots__ = (
        "actors",
        "description",
        "drop_before",
        "event_ids",
        "first",
        "ips",
        "kind",
        "last",
        "min_ts",
        "records",
        "tenants",
    )

    def __init__(self, kind: str, description: str, min_ts: int = 0, drop_before: int = 0) -> None:
        self.kind = kind
        self.description = description
        self.min_ts = min_ts  # hard negatives keep only their events in the attack window
        # Attacks never leak into the clean training days: such events are not written at all.
        self.drop_before = drop_before
        self.event_ids: list[str] = []
        self.actors: dict[str, None] = {}
        self.tenants: dict[str, None] = {}
        self.ips: dict[str, None] = {}
        self.first = 0
        self.last = 0
        self.records = 0

    def add(
        self, eid: str, ts: int, actor: str | None, tenants: Sequence[str | None], ip: str | None, records: int = 0
    ) -> None:
        if ts < self.min_ts:
            return
        if not self.event_ids or ts < self.first:
            self.first = ts
        if ts > self.last:
            self.last = ts
        self.event_ids.append(eid)
        if actor:
            self.actors[actor] = None
        for t in tenants:
            if t:
                self.tenants[t] = None
        if ip:
            self.ips[ip] = None
        self.records += records


# --------------------------------------------------------------------------- population


@dataclass(slots=True, eq=False)
class _Trip:
    """A business trip: local days abroad, worked from a hotel or partner network."""

    start: int
    days: int
    country: str
    tz: ZoneInfo
    ip: str
    label: _Label | None = None


@dataclass(slots=True, eq=False)
class _Tenant:
    """One customer of the ERP, its directory record and the people and keys that use it."""

    tenant_id: str
    name: str
    jurisdiction: str
    country: str
    tz: ZoneInfo
    locale: str
    domain: str
    weekend: tuple[int, ...]
    mfa: bool
    record: dict[str, Any]
    tables: dict[str, int]
    offices: list[str]
    users: list[_User] = field(default_factory=list)
    services: list[_Service] = field(default_factory=list)
    ticket_rate: float = 0.1


@dataclass(slots=True, eq=False)
class _User:
    """A customer user with a role, working habits, networks and planned life events."""

    actor_id: str
    tenant: _Tenant
    role: str
    name: str
    volume: float
    start_min: float
    work_min: float
    lunch_min: float
    lunch_len: float
    ua: str
    mobile_ua: str | None
    office_ip: str
    home_ip: str
    wfh: tuple[int, ...]
    weekend_worker: bool
    active_from: int = -100
    active_until: int | None = None
    holiday: tuple[int, int] | None = None
    trip: _Trip | None = None
    reserved: bool = False
    injections: dict[int, list[tuple[str, _Label, dict[str, Any]]]] = field(default_factory=dict)
    day_labels: dict[int, _Label] = field(default_factory=dict)
    sens_sum: int = 0
    sens_days: int = 0

    def scheduled(self, d: int, weekday: int) -> bool:
        """Whether the user is planned to work on local day ``d`` (before sick days)."""
        if d < self.active_from or (self.active_until is not None and d >= self.active_until):
            return False
        if self.holiday and self.holiday[0] <= d < self.holiday[0] + self.holiday[1]:
            return False
        return weekday not in self.tenant.weekend or self.weekend_worker

    def on_trip(self, d: int) -> _Trip | None:
        t = self.trip
        return t if t is not None and t.start <= d < t.start + t.days else None


@dataclass(slots=True, eq=False)
class _Service:
    """An integration key of a tenant, run on a schedule from fixed cloud addresses."""

    actor_id: str
    tenant: _Tenant
    kind: str
    ua: str
    ips: list[str]
    country: str
    hour: int
    minute: int
    cadence: str
    active_from: int = -100
    label: _Label | None = None
    reserved: bool = False


@dataclass(slots=True, eq=False)
class _StaffMember:
    """One of the vendor's personnel, working from the vendor's office or VPN."""

    staff_id: str
    name: str
    email: str
    team: str
    ip: str
    ua: str
    active: bool = True
    country: str = ""  # office country (contract 1.1); the vendor's own unless set


@dataclass(slots=True, eq=False)
class _TicketVersion:
    """One published version of a ticket record and when it was published."""

    at: int
    record: dict[str, Any]


@dataclass(slots=True, eq=False)
class _Ticket:
    """A support or maintenance ticket: which tenant, which staff, when open."""

    ticket_id: str
    tenant: _Tenant
    kind: str
    topic: str
    staff: list[str]
    opened: int
    closed: int | None
    versions: list[_TicketVersion] = field(default_factory=list)
    # (staff_id, from_ms): when each named member was added
    added: dict[str, int] = field(default_factory=dict)
    requested_by: str | None = None  # contract 1.1: customer (support on request) or vendor
    summary: str | None = None
    sessions: list[tuple[int, int, str]] = field(default_factory=list)  # (begin, end, staff_id) worked under it


# --------------------------------------------------------------------------- output


class _DumpWriter:
    """Per-UTC-day buckets of event lines, sorted and appended to the topic files day by day."""

    TOPICS = (ACCESS, AUTH, LOGS)

    def __init__(self, out: Path, start_ms: int, days: int) -> None:
        self.start_ms = start_ms
        self.end_ms = start_ms + days * DAY_MS
        self.days = days
        self._files: list[TextIO] = [
            (out / f"{t}.jsonl").open("w", encoding="utf-8", newline="\n") for t in self.TOPICS
        ]
        self._buckets: dict[int, tuple[list[tuple[int, str]], ...]] = {}
        self._next = 0
        self.counts = [0, 0, 0]

    def keeps(self, ts: int) -> bool:
        return self.start_ms <= ts < self.end_ms

    def put(self, topic: int, ts: int, line: str) -> None:
        b = (ts - self.start_ms) // DAY_MS
        if b < self._next:
            raise RuntimeError(f"event at {ts} arrived after its day was written")
        bucket = self._buckets.get(b)
        if bucket is None:
            bucket = self._buckets[b] = ([], [], [])
        bucket[topic].append((ts, line))

    def flush_through(self, last: int) -> None:
        while self._next <= min(last, self.days - 1):
            bucket = self._buckets.pop(self._next, None)
            if bucket is not None:
                for i, rows in enumerate(bucket):
                    rows.sort()
                    if rows:
                        self._files[i].write("\n".join(line for _, line in rows))
                        self._files[i].write("\n")
                    self.counts[i] += len(rows)
            self._next += 1

    @property
    def written(self) -> int:
        return sum(self.counts)

    def close(self) -> None:
        for f in self._files:
            f.close()


# --------------------------------------------------------------------------- the simulation


class _Simulation:
    """Holds the population, the plan of scenarios and the writer for one run."""

    def __init__(
        self,
        out: Path,
        seed: int,
        days: int,
        n_tenants: int,
        attack_days: int,
        start: datetime,
        events_per_user_day: float,
        extra_kinds: bool = False,
    ) -> None:
        self.out = out
        self.extra_kinds = extra_kinds
        self._burst_services: set[str] = set()
        self.seed = seed
        self.days = days
        self.n_tenants = n_tenants
        self.attack_days = attack_days
        self.clean_days = days - attack_days
        self.start = start
        self.start_ms = _ms(start)
        self.end_ms = self.start_ms + days * DAY_MS
        self.clean_ms = self.start_ms + self.clean_days * DAY_MS
        self.start_date = start.date()
        self.epud = events_per_user_day
        self.world = _load_world()
        self.rng = Random(f"breachwatch-simulate:{seed}")
        self.ids = _Ids(seed)
        self.clock = _Clock()
        self.writer = _DumpWriter(out, self.start_ms, days)
        self.tenants: list[_Tenant] = []
        self.staff: list[_StaffMember] = []
        self.tickets: list[_Ticket] = []
        self.scenarios: list[_Label] = []
        self.hard_negatives: list[_Label] = []
        self.approval_policies: list[dict[str, Any]] = []
        self.access_requests: list[dict[str, Any]] = []
        self.extra_tickets: list[_Ticket] = []
        self._actor_ids: set[str] = set()
        self._tz_cache: dict[str, ZoneInfo] = {}
        self._midnight: dict[tuple[str, int], int] = {}
        self._hosts: dict[str, list[str]] = {}
        n_api = 2 + n_tenants // 20
        for svc, n in (
            ("api", n_api),
            ("auth", max(2, n_api // 3)),
            ("export-worker", max(1, n_api // 4)),
            ("scheduler", 1),
            ("integration-gw", max(1, n_api // 4)),
            ("db-proxy", max(1, n_api // 3)),
            ("web", max(1, n_api // 2)),
        ):
            self._hosts[svc] = [f"{svc}-{i + 1}" for i in range(n)]

    # ------------------------------------------------------------------ calendar

    def tz(self, name: str) -> ZoneInfo:
        z = self._tz_cache.get(name)
        if z is None:
            z = self._tz_cache[name] = ZoneInfo(name)
        return z

    def local_date(self, d: int) -> date:
        return self.start_date + timedelta(days=d)

    def midnight(self, tz: ZoneInfo, d: int) -> int:
        """UTC epoch ms of local midnight of day ``d`` in ``tz`` (offset taken at local noon)."""
        key = (tz.key, d)
        v = self._midnight.get(key)
        if v is None:
            day = self.local_date(d)
            offset = datetime(day.year, day.month, day.day, 12, tzinfo=tz).utcoffset() or timedelta(0)
            v = (day - date(1970, 1, 1)).days * DAY_MS - int(offset / timedelta(milliseconds=1))
            self._midnight[key] = v
        return v

    def weekday(self, d: int) -> int:
        return self.local_date(d).weekday()

    def in_attack_window(self, ts: int) -> bool:
        return ts >= self.clean_ms

    def month_close(self, d: int, weekend: tuple[int, ...]) -> bool:
        """Whether local day ``d`` is one of the last two or first three business days of a month."""
        day = self.local_date(d)
        if day.weekday() in weekend:
            return False
        nxt, later = day, 0
        while True:  # business days left in this month after today
            nxt += timedelta(days=1)
            if nxt.month != day.month:
                break
            if nxt.weekday() not in weekend:
                later += 1
        if later <= 1:
            return True
        prev, earlier = day, 0
        while True:
            prev -= timedelta(days=1)
            if prev.month != day.month:
                break
            if prev.weekday() not in weekend:
                earlier += 1
        return earlier <= 2

    # ------------------------------------------------------------------ emitters

    def access(
        self,
        ts: int,
        actor: str,
        atype: str,
        atenant: str | None,
        tenant_id: str,
        act: _Act,
        records: int,
        ip: str,
        country: str,
        ua: str,
        sid: str | None,
        *,
        rng: Random,
        ticket: Any = _ABSENT,
        outcome: str = "success",
        endpoint: str | None = None,
        label: _Label | None = None,
        logs: bool = True,
        nbytes: int | None = None,
    ) -> str | None:
        """Write one ``erp.access`` event and the application logs its request leaves."""
        if not self.writer.keeps(ts) or (label is not None and ts < label.drop_before):
            return None
        eid = self.ids.event()
        res = act.res
        if nbytes is None:
            nbytes = (
                0 if outcome == "denied" else int(max(records, 1) * res.row_bytes * (0.75 + rng.random() * 0.5)) + 280
            )
        ev: dict[str, Any] = {
            "event_id": eid,
            "ts": self.clock.fmt(ts),
            "actor_id": actor,
            "actor_type": atype,
            "actor_tenant": atenant,
            "tenant_id": tenant_id,
            "action": act.action,
            "resource_type": res.name,
            "sensitivity": res.sensitivity,
            "records": records,
            "bytes": nbytes,
            "ip": ip,
            "country": country,
            "user_agent": ua,
        }
        if sid is not None:
            ev["session_id"] = sid
        if ticket is not _ABSENT:
            ev["ticket_id"] = ticket
        ev["endpoint"] = endpoint or act.endpoint
        if outcome != "success":
            ev["outcome"] = outcome
        self.writer.put(0, ts, _ENCODE(ev))
        if label is not None:
            label.add(eid, ts, actor, (tenant_id, atenant), ip, records)
        if logs:
            self.request_logs(ts, actor, tenant_id, sid, act, records, outcome, rng, label)
        return eid

    def auth(
        self,
        ts: int,
        actor: str,
        atype: str,
        atenant: str | None,
        action: str,
        outcome: str,
        ip: str,
        country: str,
        ua: str,
        sid: str | None,
        *,
        rng: Random,
        roles: Sequence[str] | None = None,
        detail: str | None = None,
        label: _Label | None = None,
    ) -> str | None:
        """Write one ``erp.auth`` event and the auth service's log line for it."""
        if not self.writer.keeps(ts) or (label is not None and ts < label.drop_before):
            return None
        eid = self.ids.event()
        ev: dict[str, Any] = {
            "event_id": eid,
            "ts": self.clock.fmt(ts),
            "actor_id": actor,
            "actor_type": atype,
            "actor_tenant": atenant,
            "action": action,
            "outcome": outcome,
            "ip": ip,
            "country": country,
            "user_agent": ua,
        }
        if sid is not None and outcome == "success":
            ev["session_id"] = sid
        if roles is not None:
            ev["roles"] = list(roles)
        if detail is not None:
            ev["detail"] = detail
        self.writer.put(1, ts, _ENCODE(ev))
        if label is not None:
            label.add(eid, ts, actor, (atenant,), ip)
        if action == "login":
            if outcome == "success":
                msg, level = f"login succeeded user={actor} method=password", "INFO"
            else:
                reason = "unknown_user" if detail == "unknown user" else "bad_password"
                msg, level = f"login failed user={actor} reason={reason} ip={ip}", "INFO"
        elif action == "mfa":
            msg = (
                f"mfa verified user={actor} factor=totp"
                if outcome == "success"
                else f"mfa challenge failed user={actor} factor=push"
            )
            level = "INFO" if outcome == "success" else "WARNING"
        elif action == "logout":
            msg, level = f"session closed user={actor} session={sid}", "INFO"
        elif action == "role_change":
            msg, level = f"roles updated user={actor} roles={','.join(roles or ())}", "INFO"
        elif action == "password_reset":
            msg, level = f"password reset completed user={actor}", "INFO"
        else:
            msg, level = f"api key created key={actor}", "INFO"
        self.log(
            ts + rng.randint(2, 40),
            "auth",
            level,
            msg,
            actor=actor,
            tenant=atenant,
            sid=sid if outcome == "success" else None,
            rng=rng,
            label=label,
        )
        return eid

    def log(
        self,
        ts: int,
        service: str,
        level: str,
        message: str,
        *,
        rng: Random,
        actor: str | None = None,
        tenant: str | None = None,
        sid: str | None = None,
        trace: str | None = None,
        attrs: dict[str, Any] | None = None,
        label: _Label | None = None,
    ) -> None:
        """Write one ``erp.logs`` record."""
        if not self.writer.keeps(ts) or (label is not None and ts < label.drop_before):
            return
        eid = self.ids.event()
        hosts = self._hosts[service]
        ev: dict[str, Any] = {
            "event_id": eid,
            "ts": self.clock.fmt(ts),
            "service": service,
            "host": hosts[int(rng.random() * len(hosts))],
            "level": level,
            "message": message,
        }
        if actor is not None:
            ev["actor_id"] = actor
        if tenant is not None:
            ev["tenant_id"] = tenant
        if sid is not None:
            ev["session_id"] = sid
        if trace is not None:
            ev["trace_id"] = trace
        if attrs is not None:
            ev["attrs"] = attrs
        self.writer.put(2, ts, _ENCODE(ev))
        if label is not None:
            label.add(eid, ts, None, (), None)

    def request_logs(
        self,
        ts: int,
        actor: str,
        tenant: str,
        sid: str | None,
        act: _Act,
        records: int,
        outcome: str,
        rng: Random,
        label: _Label | None,
    ) -> None:
        """The records one API request leaves in the application logs, tied by a trace id."""
        r = rng.random()
        if outcome == "denied":
            trace = self.ids.trace()
            self.log(
                ts + 3,
                "api",
                "WARNING",
                f"authorization denied actor={actor} tenant={tenant} route={act.route}",
                actor=actor,
                tenant=tenant,
                sid=sid,
                trace=trace,
                rng=rng,
                label=label,
                attrs={"http.method": act.method, "http.route": act.route, "http.status_code": 403},
            )
            return
        if act.action == "export":
            trace = self.ids.trace()
            fmt = "csv" if r < 0.8 else "xlsx"
            dur = int(40 + records * (0.02 + rng.random() * 0.05))
            self.log(
                ts + 2,
                "export-worker",
                "INFO",
                f"export started resource={act.res.name} format={fmt}",
                actor=actor,
                tenant=tenant,
                sid=sid,
                trace=trace,
                rng=rng,
                label=label,
            )
            self.log(
                ts + dur,
                "export-worker",
                "INFO",
                f"export finished rows={records} format={fmt}",
                actor=actor,
                tenant=tenant,
                sid=sid,
                trace=trace,
                rng=rng,
                label=label,
                attrs={"rows": records, "duration_ms": dur},
            )
            return
        if r > 0.85:  # not every request is logged at INFO (sampling)
            return
        trace = self.ids.trace()
        dur = int(8 + rng.expovariate(1 / 45) + records * 0.4)
        status = 201 if act.action == "create" else 200
        if dur > 1500:
            self.log(
                ts + dur,
                "api",
                "WARNING",
                f"slow request route={act.route} duration_ms={dur}",
                actor=actor,
                tenant=tenant,
                sid=sid,
                trace=trace,
                rng=rng,
                label=label,
            )
        self.log(
            ts + dur,
            "api",
            "INFO",
            f"request handled method={act.method} route={act.route} status={status} duration_ms={dur}",
            actor=actor,
            tenant=tenant,
            sid=sid,
            trace=trace,
            rng=rng,
            label=label,
            attrs={"http.method": act.method, "http.route": act.route, "http.status_code": status, "duration_ms": dur},
        )
        if r < 0.22:
            q = max(1, int(dur * 0.6))
            table = act.res.name + "s"
            self.log(
                ts + q,
                "db-proxy",
                "DEBUG",
                f"query ms={q} table={table} rows={records}",
                tenant=tenant,
                trace=trace,
                rng=rng,
                label=label,
            )
        elif r < 0.26:
            self.log(
                ts + 1,
                "api",
                "DEBUG",
                f"cache miss key=tenant:{tenant}:{act.res.name}",
                tenant=tenant,
                sid=sid,
                trace=trace,
                rng=rng,
                label=label,
            )

    def records_for(self, act: _Act, t: _Tenant, rng: Random) -> int:
        """How many records one such request touches in this tenant."""
        table = t.tables[act.res.table]
        size = act.size
        if size == "one":
            return 1
        if size == "page":
            return min(table, _PAGE_SIZES[bisect_right(_PAGE_CUM, rng.random() * _PAGE_CUM[-1])])
        if size == "search":
            return min(table, int(rng.expovariate(0.15)))
        if size == "export":
            return max(1, int(table * (0.004 + rng.random() * 0.046)))
        return rng.randint(5, 400)

    # ------------------------------------------------------------------ population

    def build_population(self) -> None:
        """Tenants with their users and integration keys, then the vendor's staff."""
        rng = self.rng
        world = self.world
        jur = world["jurisdictions"]
        forced = ["PK", "DE", *sorted(set(jur) - {"PK", "DE"})]
        rest = forced[2:]
        rng.shuffle(rest)
        forced[2:] = rest
        names = list(jur)
        cum = _cum(jur[j]["weight"] for j in names)
        used_names: set[str] = set()
        used_ids: set[str] = set()
        for i in range(self.n_tenants):
            code = forced[i] if i < len(forced) else names[bisect_right(cum, rng.random() * cum[-1])]
            self.tenants.append(self._make_tenant(code, jur[code], rng, used_names, used_ids))
        # Integration keys of a new integration set up during the window: a hard negative.
        candidates = [t for t in self.tenants if t.users]
        for _ in range(max(1, self.n_tenants // 12)):
            t = candidates[int(rng.random() * len(candidates))]
            d = rng.randint(1, self.days - 2)
            self._add_service(t, rng, active_from=d)
        self._make_staff(rng)

    def _make_tenant(
        self, code: str, j: dict[str, Any], rng: Random, used_names: set[str], used_ids: set[str]
    ) -> _Tenant:
        """One customer: directory entry, table sizes, office networks, users and integrations."""
        world = self.world
        country = j["country"]
        cinfo = world["countries"][country]
        tzname = world["tz_by_jurisdiction"].get(code, cinfo["tz"])
        while True:
            first, second = rng.choice(j["first"]), rng.choice(j["second"])
            name = f"{first} {second} {rng.choice(j['suffix'])}"
            if name not in used_names:
                break
        used_names.add(name)
        base, full = _slug(first), f"{_slug(first)}-{_slug(second)}"
        tid = f"t-{base}" if f"t-{base}" not in used_ids else f"t-{full}"
        n = 2
        while tid in used_ids:
            tid = f"t-{full}-{n}"
            n += 1
        used_ids.add(tid)
        # Tenant ids are unique, and every id maps to a distinct domain.
        domain = f"{full}.example" if tid in (f"t-{base}", f"t-{full}") else f"{tid[2:]}.example"
        n_users = int(min(150, max(2, rng.lognormvariate(math.log(8), 0.75))))
        employees = int(n_users * rng.uniform(2.5, 12))
        customers = int(rng.lognormvariate(math.log(2500), 1.0)) + 50
        prospects = int(customers * rng.uniform(0.2, 1.5))
        txn = int((customers + 200) * rng.uniform(1.5, 6))
        people = world["people"][j["people"]]
        owner_first, owner_last = rng.choice(people["first"]), rng.choice(people["last"])
        owner_email = f"{_slug(owner_first).replace('-', '')}.{_slug(owner_last).replace('-', '')}@{domain}"
        contacts: list[dict[str, Any]] = [
            {"name": f"{owner_first} {owner_last}", "email": owner_email, "role": "owner"}
        ]
        security: dict[str, Any] = {"email": f"{rng.choice(['security', 'it', 'itsec'])}@{domain}", "role": "security"}
        if rng.random() < 0.5:
            security["locale"] = rng.choice(j["contact_locales"])
        contacts.append(security)
        if rng.random() < j["dpo"]:
            local = "datenschutz" if country == "DE" else rng.choice(["dpo", "privacy"])
            contacts.append({"email": f"{local}@{domain}", "role": "dpo"})
        if rng.random() < 0.3:
            contacts.append({"email": f"accounts@{domain}", "role": "billing"})
        eu = country in ("DE", "FR", "NL")
        record = {
            "tenant_id": tid,
            "name": name,
            "jurisdiction": code,
            "locale": j["locale"],
            "contacts": contacts,
            "ai_training_opt_out": rng.random() < (0.4 if eu else 0.15),
            "data_subjects": customers + employees + prospects,
        }
        offices = []
        for _ in range(1 + (n_users > 25) + (n_users > 60)):
            prefix = f"{rng.choice(cinfo['office'])}.{rng.randint(0, 255)}"
            offices.append(f"{prefix}.{rng.randint(2, 250)}")
        t = _Tenant(
            tenant_id=tid,
            name=name,
            jurisdiction=code,
            country=country,
            tz=self.tz(tzname),
            locale=j["locale"],
            domain=domain,
            weekend=(4, 5) if country == "SA" else (5, 6),
            mfa=rng.random() < 0.55,
            record=record,
            tables={
                "customers": customers,
                "employees": employees,
                "prospects": prospects,
                "txn": txn,
                "catalog": int(rng.lognormvariate(math.log(800), 0.8)) + 20,
                "vendors": int(rng.uniform(20, 400)),
                "config": 60,
            },
            offices=offices,
            ticket_rate=rng.lognormvariate(math.log(0.12), 0.6),
        )
        self._make_users(t, n_users, people, cinfo, rng)
        n_services = bisect_right((0.22, 0.62, 0.88), rng.random())
        for _ in range(n_services):
            self._add_service(t, rng)
        return t

    def _new_actor_id(self, base: str) -> str:
        """A globally unique actor id, numbered when the base is taken."""
        aid, n = base, 2
        while aid in self._actor_ids:
            aid = f"{base}{n}"
            n += 1
        self._actor_ids.add(aid)
        return aid

    def _browser(self, rng: Random) -> str:
        """A current desktop browser user agent."""
        tpl = _BROWSERS[bisect_right(_BROWSER_CUM, rng.random() * _BROWSER_CUM[-1])]
        return tpl.format(v=rng.choice((129, 130, 131, 131, 131)), f=rng.choice((131, 132, 133)))

    def _make_users(
        self, t: _Tenant, n_users: int, people: dict[str, list[str]], cinfo: dict[str, Any], rng: Random
    ) -> None:
        """The tenant's users with roles, habits and networks, and their life events."""
        roles = ["admin"] + (["admin"] if n_users > 30 else [])
        mix_cum = _cum(w for _, w in _ROLE_MIX)
        while len(roles) < n_users:
            roles.append(_ROLE_MIX[bisect_right(mix_cum, rng.random() * mix_cum[-1])][0])
        for role in roles:
            first, last = rng.choice(people["first"]), rng.choice(people["last"])
            aid = self._new_actor_id(f"u-{_slug(first).replace('-', '')}.{_slug(last).replace('-', '')}")
            late = 30.0 if role == "sales" else 0.0
            u = _User(
                actor_id=aid,
                tenant=t,
                role=role,
                name=f"{first} {last}",
                volume=rng.lognormvariate(-0.18, 0.6),
                start_min=min(11 * 60, max(6.5 * 60, rng.gauss(8.6 * 60 + late, 40))),
                work_min=rng.gauss(8.6 * 60, 35),
                lunch_min=rng.gauss(12.6 * 60, 20),
                lunch_len=rng.uniform(25, 70),
                ua=self._browser(rng),
                mobile_ua=rng.choice(_MOBILE_UA) if role == "sales" and rng.random() < 0.5 else None,
                office_ip=rng.choice(t.offices),
                home_ip=f"{rng.choice(cinfo['residential'])}.{rng.randint(0, 255)}.{rng.randint(2, 250)}",
                wfh=tuple(sorted(rng.sample(range(5), rng.randint(1, 2)))) if rng.random() < 0.4 else (),
                weekend_worker=rng.random() < 0.05,
            )
            t.users.append(u)
        self._life_events(t, rng)
        if len(t.users) >= 8 and rng.random() < 0.2:
            self._add_auditor(t, people, rng)

    def _life_events(self, t: _Tenant, rng: Random) -> None:
        """Leavers (dormant accounts), new joiners, holidays and business trips."""
        days, clean = self.days, self.clean_days
        for u in t.users:
            if u.role == "admin":
                continue
            r = rng.random()
            if r < 0.07:
                # A leaver: seen in the first days of the window, then never again. With 30 or
                # more clean days, the last day lies at least 30 days before the attack window.
                self._retire(
                    u, rng.randint(0, clean - 30) if clean >= 30 else rng.randint(0, max(0, min(2, clean - 2)))
                )
            elif r < 0.10:
                u.active_from = rng.randint(1, days - 1)
                while self.weekday(u.active_from) in t.weekend:
                    u.active_from += 1
                if u.active_from + NEW_HIRE_RAMP_DAYS > clean:
                    # The first weeks: light days growing to a full workload, every one of them
                    # more than the days before (against the new hire's own short history).
                    label = self._hard_negative(
                        "new_employee",
                        f"{u.actor_id} joined {t.tenant_id} as {u.role}: account set up, first "
                        f"login, then {NEW_HIRE_RAMP_DAYS} days growing from a light first day to "
                        "a full workload, from the office",
                        min_ts=self.clean_ms,
                    )
                    for d in range(max(u.active_from, clean), min(u.active_from + NEW_HIRE_RAMP_DAYS, days)):
                        u.day_labels[d] = label
            elif r < 0.25:
                length = rng.randint(5, 14)
                begin = rng.randint(-length + 2, days - 2)
                u.holiday = (begin, length)
                back = begin + length
                if clean <= back < days:
                    u.day_labels[back] = self._hard_negative(
                        "holiday_return",
                        f"{u.actor_id} of {t.tenant_id} back from {length} days of leave; "
                        "normal work from the usual network",
                    )
            elif r < 0.30 and u.role in ("sales", "accountant", "clerk", "hr"):
                dests = self.world["trip_destinations"].get(t.country, ["GB", "AE", "US"])
                dest = rng.choice(dests)
                cinfo = self.world["countries"][dest]
                length = rng.randint(2, 6)
                begin = rng.randint(1, days - 2)
                ip = f"{rng.choice(cinfo['residential'] + cinfo['office'])}.{rng.randint(0, 255)}.{rng.randint(2, 250)}"
                trip = _Trip(begin, length, dest, self.tz(cinfo["tz"]), ip)
                if begin + length > clean:
                    trip.label = self._hard_negative(
                        "business_trip",
                        f"{u.actor_id} of {t.tenant_id} travelling in {dest} for {length} days; "
                        "logs in through the normal flow and works normal hours and volumes",
                        min_ts=self.clean_ms,
                    )
                u.trip = trip

    def _retire(self, u: _User, last: int) -> None:
        """Make ``last`` (moved to a working day) the user's final day of activity."""
        weekend = u.tenant.weekend
        day = last
        while day > 0 and self.weekday(day) in weekend:
            day -= 1
        if self.weekday(day) in weekend:
            day = last
            while day < self.clean_days - 1 and self.weekday(day) in weekend:
                day += 1
        u.active_until = day + 1

    def _add_auditor(self, t: _Tenant, people: dict[str, list[str]], rng: Random) -> None:
        """An external auditor who reviews the books for a few days of the window."""
        first, last = rng.choice(people["first"]), rng.choice(people["last"])
        aid = self._new_actor_id(f"u-{_slug(first).replace('-', '')}.{_slug(last).replace('-', '')}.audit")
        begin = rng.randint(0, self.days - 3)
        length = rng.randint(3, 6)
        cinfo = self.world["countries"][t.country]
        u = _User(
            actor_id=aid,
            tenant=t,
            role="auditor",
            name=f"{first} {last}",
            volume=rng.uniform(1.0, 2.0),
            start_min=rng.gauss(9 * 60, 20),
            work_min=rng.gauss(8 * 60, 30),
            lunch_min=12.5 * 60,
            lunch_len=45,
            ua=self._browser(rng),
            mobile_ua=None,
            office_ip=rng.choice(t.offices),
            home_ip=f"{rng.choice(cinfo['residential'])}.{rng.randint(0, 255)}.{rng.randint(2, 250)}",
            wfh=(),
            weekend_worker=False,
            active_from=begin,
            active_until=begin + length,
            reserved=True,
        )
        t.users.append(u)
        if begin + length > self.clean_days:
            lab = self._hard_negative(
                "audit_fieldwork",
                f"external auditor {aid} reviews {t.tenant_id}'s books for {length} days: "
                "heavy reads and exports of ledgers and journals",
                min_ts=self.clean_ms,
            )
            for d in range(begin, begin + length):
                u.day_labels[d] = lab

    def _add_service(self, t: _Tenant, rng: Random, active_from: int = -100) -> _Service:
        """An integration key with a fixed schedule and fixed cloud addresses."""
        kinds = list(_INTEGRATIONS)
        taken = {s.kind for s in t.services}
        kind = kinds[bisect_right(_INTEGRATION_CUM, rng.random() * _INTEGRATION_CUM[-1])]
        if kind in taken:
            free = [k for k in kinds if k not in taken]
            kind = rng.choice(free) if free else kind
        spec = _INTEGRATIONS[kind]
        regions = {r["region"]: r for r in self.world["cloud"]}
        home = self.world["home_region"].get(t.country, "us-east-1")
        region = regions[home] if rng.random() < 0.7 else rng.choice(self.world["cloud"])
        ips = [
            f"{rng.choice(region['prefixes'])}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
            for _ in range(rng.randint(1, 3))
        ]
        aid = self._new_actor_id(f"svc-{kind}-{rng.getrandbits(16):04x}")
        s = _Service(
            actor_id=aid,
            tenant=t,
            kind=kind,
            ua=spec["ua"],
            ips=ips,
            country=region["country"],
            hour=rng.randint(1, 4) if kind != "tax-filing" else 5,
            minute=rng.choice((0, 0, 15, 30, 45)),
            cadence=spec["cadence"],
            active_from=active_from,
        )
        if active_from > -100:
            s.reserved = True
            if active_from >= self.clean_days:
                s.label = self._hard_negative(
                    "new_integration",
                    f"{t.tenant_id} set up a new {kind} integration ({aid}): key created by an "
                    "admin, then its first scheduled syncs from a cloud network",
                )
        t.services.append(s)
        return s

    def _make_staff(self, rng: Random) -> None:
        """The vendor's personnel; support, engineering and operations work on tenants' data."""
        vendor = self.world["vendor"]
        people = self.world["people"]["PK"]
        n = max(8, 5 + self.n_tenants // 5)
        teams = ["support"] * 11 + ["engineering"] * 4 + ["operations"] * 2 + ["security"] * 2 + ["finance", "sales"]
        used: set[str] = set()
        for i in range(n):
            team = teams[i % len(teams)] if i < len(teams) else rng.choice(teams)
            first, last = rng.choice(people["first"]), rng.choice(people["last"])
            base = f"st-{_slug(first)}"
            sid, k = base, 2
            while sid in used:
                sid = f"{base}{k}"
                k += 1
            used.add(sid)
            prefix = rng.choice(vendor["office_prefixes"] if rng.random() < 0.8 else vendor["vpn_prefixes"])
            local = f"{_slug(first).replace('-', '.')}.{_slug(last).replace('-', '')}"
            email = f"{local}@{vendor['domain']}" if sid == base else f"{local}.{sid[len(base) :]}@{vendor['domain']}"
            self.staff.append(
                _StaffMember(
                    staff_id=sid,
                    name=f"{first} {last}",
                    email=email,
                    team=team,
                    ip=f"{prefix}.{rng.randint(5, 250)}",
                    ua=self._browser(rng),
                )
            )
        # People who left the vendor keep a directory entry marked inactive.
        for m in self.staff[-2:]:
            m.active = False

    # ------------------------------------------------------------------ labels

    def _hard_negative(self, kind: str, description: str, min_ts: int | None = None) -> _Label:
        lab = _Label(kind, description, self.clean_ms if min_ts is None else min_ts)
        self.hard_negatives.append(lab)
        return lab

    def _scenario(self, kind: str, description: str) -> _Label:
        lab = _Label(kind, description, drop_before=self.clean_ms)
        self.scenarios.append(lab)
        return lab

    # ------------------------------------------------------------------ the run

    def run(self, progress: Callable[[int], None] | None) -> SimulationSummary:
        """Plan everything, play the days in order, write the topics and the labels."""
        self.build_population()
        self.write_reference()
        self.plan_tickets()
        self.plan_scenarios()
        self.plan_staff_access()
        if self.extra_kinds:
            self.plan_extra_scenarios()
        try:
            for d in range(-1, self.days + 1):
                for t in self.tenants:
                    rng = Random(f"{self.seed}:{t.tenant_id}:{d}")
                    weekday = self.weekday(d)
                    for u in t.users:
                        self.user_day(u, t, d, weekday, rng)
                    for s in t.services:
                        self.service_day(s, t, d, weekday, rng)
                    self.tenant_jobs(t, d, rng)
                if 0 <= d < self.days:
                    self.background_logs(d, Random(f"{self.seed}:background:{d}"))
                before = self.writer.written
                self.writer.flush_through(d - 1)
                if progress is not None and self.writer.written != before:
                    progress(self.writer.written)
            self.writer.flush_through(self.days - 1)
            if progress is not None:
                progress(self.writer.written)
        finally:
            self.writer.close()
        self.write_tickets()
        self.write_access_requests()
        return self.write_labels()

    def write_reference(self) -> None:
        """The compacted tenant and staff topics, one record per key."""
        with (self.out / f"{TENANTS}.jsonl").open("w", encoding="utf-8", newline="\n") as f:
            for t in self.tenants:
                f.write(_ENCODE(self._tenant_record(t)) + "\n")
        with (self.out / f"{STAFF}.jsonl").open("w", encoding="utf-8", newline="\n") as f:
            for m in self.staff:
                f.write(_ENCODE(self._staff_record(m)) + "\n")

    def write_tickets(self) -> None:
        """Every version of every ticket, in the order the ERP would publish them."""
        rows: list[tuple[int, str]] = []
        for tk in self.tickets:
            for v in tk.versions:
                rows.append((v.at, _ENCODE(v.record)))
        rows.sort()
        with (self.out / f"{TICKETS}.jsonl").open("w", encoding="utf-8", newline="\n") as f:
            for _, line in rows:
                f.write(line + "\n")

    def write_labels(self) -> SimulationSummary:
        """``labels.json`` and the summary of what was written."""

        def entry(i: int, prefix: str, lab: _Label) -> dict[str, Any]:
            return {
                "scenario_id": f"{prefix}-{i:03d}",
                "kind": lab.kind,
                "start": self.clock.fmt(lab.first),
                "end": self.clock.fmt(lab.last),
                "actor_ids": list(lab.actors),
                "tenant_ids": list(lab.tenants),
                "source_ips": list(lab.ips),
                "event_ids": lab.event_ids,
                "description": lab.description.replace("{records}", f"{lab.records:,}"),
            }

        scenarios = [lab for lab in self.scenarios if lab.event_ids]
        negatives = [lab for lab in self.hard_negatives if lab.event_ids]
        scenarios.sort(key=lambda lab: (lab.first, lab.kind))
        negatives.sort(key=lambda lab: (lab.first, lab.kind))
        clean_until = self.start + timedelta(days=self.clean_days)
        end = self.start + timedelta(days=self.days)
        doc = {
            "seed": self.seed,
            "days": self.days,
            "tenants": self.n_tenants,
            "attack_days": self.attack_days,
            "start": _rfc3339(self.start),
            "end": _rfc3339(end),
            "clean_until": _rfc3339(clean_until),
            "scenarios": [entry(i + 1, "sc", lab) for i, lab in enumerate(scenarios)],
            "hard_negatives": [entry(i + 1, "hn", lab) for i, lab in enumerate(negatives)],
        }
        (self.out / LABELS_FILE).write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        n_tickets = sum(len(tk.versions) for tk in self.tickets)
        counts = dict(zip(_DumpWriter.TOPICS, self.writer.counts, strict=True))
        counts.update({TENANTS: len(self.tenants), STAFF: len(self.staff), TICKETS: n_tickets})
        by_kind: dict[str, int] = {k: 0 for k in SCENARIO_KINDS + (EXTRA_KINDS if self.extra_kinds else ())}
        for lab in scenarios:
            by_kind[lab.kind] += 1
        hn: dict[str, int] = {}
        for lab in negatives:
            hn[lab.kind] = hn.get(lab.kind, 0) + 1
        return SimulationSummary(
            out=self.out,
            seed=self.seed,
            counts=counts,
            actors={
                "customer_user": sum(len(t.users) for t in self.tenants),
                "service": sum(len(t.services) for t in self.tenants),
                "staff": len(self.staff),
            },
            tenants=len(self.tenants),
            scenarios=by_kind,
            hard_negatives=hn,
            start=self.start,
            end=end,
            clean_until=clean_until,
        )

    # ------------------------------------------------------------------ customer users

    def user_day(self, u: _User, t: _Tenant, d: int, weekday: int, rng: Random) -> None:
        """One local day of a customer user: sessions, the day's attacks, month-end duties."""
        inj = u.injections.get(d)
        if not u.scheduled(d, weekday) and not inj:
            return
        # Sick days and days off; a leaver's last day is always worked, so the account has history.
        if inj is None and d + 1 != u.active_until and rng.random() < 0.035:
            return
        trip = u.on_trip(d)
        weekend = weekday in t.weekend
        hn = u.day_labels.get(d) or (trip.label if trip else None)
        mean = self.epud * u.volume * _ROLE_VOLUME[u.role] * _WEEKDAY_VOLUME[weekday]
        if weekend:
            mean *= 0.35
        if trip:
            mean *= 0.6
        if 0 <= d - u.active_from < NEW_HIRE_RAMP_DAYS:
            mean *= 0.4 + 0.6 * (d - u.active_from) / NEW_HIRE_RAMP_DAYS
        n = max(1, _poisson(rng, mean * rng.lognormvariate(-0.05, 0.3)))
        tz = trip.tz if trip else t.tz
        midnight = self.midnight(tz, d)
        if weekend:
            begin = rng.uniform(9 * 60, 15 * 60)
            spans = [(begin, begin + rng.uniform(25, 150))]
        else:
            begin = u.start_min + rng.gauss(0, 15)
            end = begin + u.work_min + rng.gauss(0, 25)
            lunch = u.lunch_min + rng.gauss(0, 10)
            back = lunch + u.lunch_len * rng.uniform(0.8, 1.2)
            spans = [(begin, lunch), (back, end)]
            if rng.random() < 0.25:  # a meeting or a break splits the afternoon
                mid = rng.uniform(back + 45, end - 45) if end - back > 120 else None
                if mid is not None:
                    spans = [(begin, lunch), (back, mid), (mid + rng.uniform(20, 60), end)]
            if rng.random() < 0.08:
                evening = rng.uniform(19.5 * 60, 22 * 60)
                spans.append((evening, evening + rng.uniform(10, 45)))
        spans = [(a, b) for a, b in spans if b - a >= 3] or [(begin, begin + 30.0)]
        total = sum(b - a for a, b in spans)
        counts = [int(n * (b - a) / total) for a, b in spans]
        for _ in range(n - sum(counts)):
            counts[int(rng.random() * len(counts))] += 1
        primary = max(range(len(spans)), key=lambda i: spans[i][1] - spans[i][0])
        sens = 0
        opened: list[tuple[str, int, int, str, str, str]] = []
        for i, ((a, b), k) in enumerate(zip(spans, counts, strict=True)):
            evening = a >= 19 * 60
            if trip:
                ip, country, ua = trip.ip, trip.country, u.ua
            elif evening or weekday in u.wfh:
                ip, country, ua = u.home_ip, t.country, u.ua
            else:
                ip, country, ua = u.office_ip, t.country, u.ua
            if u.mobile_ua and not trip and rng.random() < 0.3:
                cinfo = self.world["countries"][t.country]
                ip = f"{rng.choice(cinfo['mobile'])}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
                ua = u.mobile_ua
            sens += self.user_session(
                u,
                t,
                d,
                rng,
                midnight + int(a * MIN_MS) + rng.randint(0, 59_999),
                midnight + int(b * MIN_MS),
                k,
                ip,
                country,
                ua,
                hn,
                inj if i == primary else None,
                opened,
            )
        for kind, label, params in inj or ():
            if kind == "slow_exfiltration":
                self.exfiltrate(u, t, label, params["factor"], sens, opened, rng)
        if self.month_end_duty(u, t, d):
            self.month_end_exports(u, t, d, rng, midnight, hn)
        if 0 <= d < self.clean_days:  # the baseline a detector could learn from the dump's clean days
            u.sens_sum += sens
            u.sens_days += 1

    def month_end_duty(self, u: _User, t: _Tenant, d: int) -> bool:
        """Whether the user closes the month on local day ``d``."""
        return u.role in ("accountant", "hr") and self.month_close(d, t.weekend)

    def user_session(
        self,
        u: _User,
        t: _Tenant,
        d: int,
        rng: Random,
        login: int,
        logout: int,
        n: int,
        ip: str,
        country: str,
        ua: str,
        hn: _Label | None,
        inj: list[tuple[str, _Label, dict[str, Any]]] | None,
        opened: list[tuple[str, int, int, str, str, str]],
    ) -> int:
        """One login-to-logout session: returns the sensitive records it read (for baselines).

        ``inj`` are attacks that happen inside this session; the session is appended to ``opened``
        so that attacks spread over the whole day can use it afterwards.
        """
        actor, tid = u.actor_id, t.tenant_id
        sid = self.ids.session()
        first_day = d == u.active_from and d > 0
        if first_day:
            # First day of a new account: the invitation sets the password, then MFA enrolment.
            self.auth(
                login - rng.randint(60_000, 600_000),
                actor,
                "customer_user",
                tid,
                "password_reset",
                "success",
                ip,
                country,
                ua,
                None,
                rng=rng,
                detail="initial password set from invitation",
                label=hn,
            )
        lab = hn
        if rng.random() < 0.03:
            if lab is None and self.in_attack_window(login):
                lab = self._hard_negative(
                    "password_typo", f"{actor} of {tid} mistyped the password, then logged in from the usual network"
                )
            k = 1 if rng.random() < 0.75 else 2
            for j in range(k, 0, -1):
                self.auth(
                    login - j * rng.randint(6_000, 30_000),
                    actor,
                    "customer_user",
                    tid,
                    "login",
                    "failure",
                    ip,
                    country,
                    ua,
                    None,
                    rng=rng,
                    detail="bad password",
                    label=lab,
                )
        self.auth(login, actor, "customer_user", tid, "login", "success", ip, country, ua, sid, rng=rng, label=lab)
        ts = login
        if t.mfa:
            ts += rng.randint(4_000, 35_000)
            if rng.random() < 0.01:  # an expired or mistyped one-time code
                self.auth(
                    ts,
                    actor,
                    "customer_user",
                    tid,
                    "mfa",
                    "failure",
                    ip,
                    country,
                    ua,
                    None,
                    rng=rng,
                    detail="invalid code",
                    label=lab,
                )
                ts += rng.randint(10_000, 40_000)
            self.auth(
                ts,
                actor,
                "customer_user",
                tid,
                "mfa",
                "success",
                ip,
                country,
                ua,
                sid,
                rng=rng,
                detail="enrolled totp" if first_day else "totp",
                label=lab,
            )
        lab = hn
        span = max(logout - ts - 4_000, 1_000)
        times = sorted(ts + 2_000 + int(rng.random() * span) for _ in range(n))
        acts, cum = _ROLE_ACTS[u.role]
        top = cum[-1]
        sens = 0
        for when in times:
            act = acts[bisect_right(cum, rng.random() * top)]
            rec = self.records_for(act, t, rng)
            outcome = "denied" if rng.random() < 0.003 else "success"
            if outcome == "denied":
                rec = 0
            elif act.res.sensitivity in SENSITIVE and act.action in ("read", "search"):
                sens += rec
            self.access(
                when,
                actor,
                "customer_user",
                tid,
                tid,
                act,
                rec,
                ip,
                country,
                ua,
                sid,
                rng=rng,
                outcome=outcome,
                label=lab,
            )
            if rng.random() < 0.004:
                trace = self.ids.trace()
                self.log(
                    when + rng.randint(5000, 30000),
                    "api",
                    "ERROR",
                    f"unhandled exception in {act.route}: {rng.choice(_ERRORS)}",
                    actor=actor,
                    tenant=tid,
                    sid=sid,
                    trace=trace,
                    rng=rng,
                    attrs={"http.status_code": rng.choice((500, 502, 504))},
                )
        end = times[-1] if times else ts
        for kind, slab, params in inj or ():
            if kind != "slow_exfiltration":
                end = max(end, self.inject(kind, slab, params, u, t, sid, ts, logout, ip, country, ua, rng))
        opened.append((sid, ts, max(logout, end), ip, country, ua))
        if rng.random() < 0.7:
            self.auth(
                max(logout, end + 5_000),
                actor,
                "customer_user",
                tid,
                "logout",
                "success",
                ip,
                country,
                ua,
                sid,
                rng=rng,
                label=lab,
            )
        else:
            self.log(
                end + 30 * MIN_MS + rng.randint(0, 60_000),
                "auth",
                "INFO",
                f"session expired session={sid}",
                actor=actor,
                tenant=tid,
                sid=sid,
                rng=rng,
                label=lab,
            )
        return sens

    def month_end_exports(self, u: _User, t: _Tenant, d: int, rng: Random, midnight: int, hn: _Label | None) -> None:
        """Month-end close: finance exports whole ledgers and invoice runs, HR the payroll."""
        if rng.random() < 0.35:
            return
        when = midnight + int((u.start_min + rng.uniform(60, 420)) * MIN_MS)
        lab = hn
        if lab is None and self.in_attack_window(when):
            lab = self._hard_negative(
                "month_end_export",
                f"{u.actor_id} ({u.role}) of {t.tenant_id} exports {{records}} records at month-end close",
            )
        sid = self.ids.session()
        ip = u.home_ip if self.weekday(d) in u.wfh else u.office_ip
        self.auth(
            when - rng.randint(20_000, 90_000),
            u.actor_id,
            "customer_user",
            t.tenant_id,
            "login",
            "success",
            ip,
            t.country,
            u.ua,
            sid,
            rng=rng,
            label=lab,
        )
        picks = ("ledger", "journal_entry", "invoice", "payment") if u.role == "accountant" else ("payroll", "employee")
        for name in rng.sample(picks, rng.randint(1, len(picks))):
            act = _act("export", _RESOURCES[name], "export")
            table = t.tables[act.res.table]
            rec = max(1, int(table * rng.uniform(0.15, 0.6))) if act.res.table == "txn" else table
            self.access(
                when,
                u.actor_id,
                "customer_user",
                t.tenant_id,
                t.tenant_id,
                act,
                rec,
                ip,
                t.country,
                u.ua,
                sid,
                rng=rng,
                label=lab,
            )
            when += rng.randint(40_000, 600_000)
        self.auth(
            when + rng.randint(60_000, 900_000),
            u.actor_id,
            "customer_user",
            t.tenant_id,
            "logout",
            "success",
            ip,
            t.country,
            u.ua,
            sid,
            rng=rng,
            label=lab,
        )

    # ------------------------------------------------------------------ services and jobs

    def service_day(self, s: _Service, t: _Tenant, d: int, weekday: int, rng: Random) -> None:
        """The scheduled sync runs of an integration key on one local day."""
        if d < s.active_from:
            return
        midnight = self.midnight(t.tz, d)
        if d == s.active_from:
            admin = next((u for u in t.users if u.role == "admin"), t.users[0])
            when = midnight + int((admin.start_min + rng.uniform(30, 300)) * MIN_MS)
            self.auth(
                when,
                s.actor_id,
                "service",
                t.tenant_id,
                "api_key_created",
                "success",
                admin.office_ip,
                t.country,
                admin.ua,
                None,
                rng=rng,
                detail=f"created by {admin.actor_id} for {s.kind}",
                label=s.label,
            )
            return  # the key is created during the day; its first run is the night after
        if s.cadence == "nightly":
            runs = [s.hour * 60 + s.minute]
        elif s.cadence == "hourly":
            runs = [h * 60 + s.minute for h in range(7, 23)]
        else:
            runs = [h * 60 + s.minute for h in range(6, 21, 2)]
        if s.kind in ("payroll", "crm-sync", "ecommerce") and weekday in t.weekend:
            runs = runs[: len(runs) // 3]
        label = s.label if s.label is not None and d <= s.active_from + 2 else None
        for m in runs:
            self.service_run(s, t, midnight + int(m * MIN_MS) + rng.randint(0, 150_000), rng, label)

    def service_run(self, s: _Service, t: _Tenant, start: int, rng: Random, label: _Label | None) -> None:
        """One sync run: token, the integration's usual steps, gateway logs."""
        ip = s.ips[int(rng.random() * len(s.ips))]
        sid = self.ids.session()
        ts = start
        self.auth(
            ts,
            s.actor_id,
            "service",
            t.tenant_id,
            "login",
            "success",
            ip,
            s.country,
            s.ua,
            sid,
            rng=rng,
            detail="client_credentials",
            label=label,
        )
        gw = rng.choice(self._hosts["integration-gw"])
        self.log(
            ts + 5,
            "integration-gw",
            "INFO",
            f"sync run started integration={s.kind} key={s.actor_id}",
            actor=s.actor_id,
            tenant=t.tenant_id,
            sid=sid,
            rng=rng,
            attrs={"gateway": gw},
            label=label,
        )
        total = 0
        for action, res, size, lo, hi in _INTEGRATIONS[s.kind]["steps"]:
            act = _act(action, _RESOURCES[res], "export" if size == "delta" else size)
            for _ in range(rng.randint(lo, hi)):
                ts += rng.randint(300, 4_000)
                if size == "delta":
                    rec = max(1, int(t.tables[act.res.table] * rng.uniform(0.002, 0.02)))
                else:
                    rec = self.records_for(act, t, rng)
                total += rec
                self.access(
                    ts,
                    s.actor_id,
                    "service",
                    t.tenant_id,
                    t.tenant_id,
                    act,
                    rec,
                    ip,
                    s.country,
                    s.ua,
                    sid,
                    rng=rng,
                    label=label,
                )
        if rng.random() < 0.01:
            self.log(
                ts + 100,
                "integration-gw",
                "WARNING",
                f"rate limit exceeded for key {s.actor_id} on {act.route}",
                actor=s.actor_id,
                tenant=t.tenant_id,
                rng=rng,
                label=label,
            )
        self.log(
            ts + rng.randint(200, 2_000),
            "integration-gw",
            "INFO",
            f"sync run finished integration={s.kind} key={s.actor_id} records={total}",
            actor=s.actor_id,
            tenant=t.tenant_id,
            sid=sid,
            rng=rng,
            attrs={"records": total, "gateway": gw},
            label=label,
        )

    def tenant_jobs(self, t: _Tenant, d: int, rng: Random) -> None:
        """The tenant's nightly scheduler jobs, as application logs."""
        midnight = self.midnight(t.tz, d)
        for job, hour in (("recurring-invoices", 0), ("nightly-aging-report", 1), ("search-reindex", 3)):
            if job == "search-reindex" and rng.random() < 0.7:
                continue
            ts = midnight + hour * HOUR_MS + rng.randint(0, 20 * MIN_MS)
            trace = self.ids.trace()
            self.log(
                ts,
                "scheduler",
                "INFO",
                f"job started name={job} tenant={t.tenant_id}",
                tenant=t.tenant_id,
                trace=trace,
                rng=rng,
            )
            if rng.random() < 0.02:
                self.log(
                    ts + rng.randint(1_000, 30_000),
                    "scheduler",
                    "WARNING",
                    f"job retry name={job} tenant={t.tenant_id} attempt=2 reason=lock timeout",
                    tenant=t.tenant_id,
                    trace=trace,
                    rng=rng,
                )
            dur = int(rng.lognormvariate(math.log(4_000), 0.8))
            self.log(
                ts + dur,
                "scheduler",
                "INFO",
                f"job finished name={job} tenant={t.tenant_id} duration_ms={dur} status=ok",
                tenant=t.tenant_id,
                trace=trace,
                rng=rng,
                attrs={"duration_ms": dur},
            )

    def background_logs(self, d: int, rng: Random) -> None:
        """Health checks, pool statistics and the odd infrastructure warning, per UTC day."""
        day0 = self.start_ms + d * DAY_MS
        for service in ("api", "auth", "web"):
            for host in self._hosts[service]:
                for k in range(0, DAY_MS, 10 * MIN_MS):
                    ts = day0 + k + rng.randint(0, 30_000)
                    if self.writer.keeps(ts):
                        self._host_log(
                            ts, service, host, "DEBUG", f"health check ok status=200 latency_ms={rng.randint(1, 9)}"
                        )
                for h in range(24):
                    active = rng.randint(1, 30)
                    self._host_log(
                        day0 + h * HOUR_MS + rng.randint(0, 60_000),
                        service,
                        host,
                        "INFO",
                        f"db pool stats active={active} idle={rng.randint(0, 20)} "
                        f"waiting={0 if active < 25 else rng.randint(0, 6)}",
                    )
        for _ in range(_poisson(rng, 3 + len(self._hosts["api"]))):
            ts = day0 + rng.randint(0, DAY_MS - 1)
            service = rng.choice(("api", "auth", "db-proxy", "export-worker", "web"))
            level, msg = rng.choice(_INFRA_MESSAGES)
            self._host_log(
                ts,
                service,
                rng.choice(self._hosts[service]),
                level,
                msg.format(
                    n=rng.randint(2, 9),
                    ms=rng.randint(120, 9000),
                    ip=f"{rng.randint(20, 220)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                ),
            )
        if rng.random() < 0.25:
            ts = day0 + rng.choice((10, 11, 14)) * HOUR_MS + rng.randint(0, HOUR_MS)
            version = f"2026.{self.local_date(d).month}.{d + 5}"
            self._host_log(ts, "web", "web-1", "INFO", f"deployment started version={version}")
            self._host_log(
                ts + rng.randint(120_000, 900_000),
                "web",
                "web-1",
                "INFO",
                f"deployment finished version={version} status=ok",
            )

    def _host_log(self, ts: int, service: str, host: str, level: str, message: str) -> None:
        """A log record that belongs to no request (health, pools, deployments)."""
        if not self.writer.keeps(ts):
            return
        ev = {
            "event_id": self.ids.event(),
            "ts": self.clock.fmt(ts),
            "service": service,
            "host": host,
            "level": level,
            "message": message,
        }
        self.writer.put(2, ts, _ENCODE(ev))

    # ------------------------------------------------------------------ staff and tickets

    def plan_tickets(self) -> None:
        """Support and maintenance tickets, and the staff sessions worked under them."""
        rng = Random(f"{self.seed}:tickets")
        vendor_tz = self.tz(self.world["vendor"]["tz"])
        by_team: dict[str, list[_StaffMember]] = {}
        for m in self.staff:
            if m.active:
                by_team.setdefault(m.team, []).append(m)
        number = 4000 + rng.randint(0, 900)
        for d in range(-10, self.days):
            for t in self.tenants:
                weekday = self.weekday(d)
                rate = t.ticket_rate * (0.2 if weekday in t.weekend else 1.0)
                kinds = ["support"] * _poisson(rng, rate)
                if rng.random() < 0.02:
                    kinds.append(rng.choice(("maintenance", "maintenance", "security", "fraud")))
                for kind in kinds:
                    number += rng.randint(1, 4)
                    self._ticket(t, kind, number, d, rng, by_team, vendor_tz)

    def _ticket(
        self,
        t: _Tenant,
        kind: str,
        number: int,
        d: int,
        rng: Random,
        by_team: dict[str, list[_StaffMember]],
        vendor_tz: ZoneInfo,
    ) -> None:
        """One ticket with its work sessions, its versions and the staff accesses under it."""
        prefix = {"support": "SUP", "maintenance": "MNT", "security": "SEC", "fraud": "FRD"}[kind]
        team = {
            "support": "support",
            "maintenance": rng.choice(("engineering", "operations")),
            "security": "security",
            "fraud": "security",
        }[kind]
        pool = by_team.get(team) or by_team["support"]
        owner = rng.choice(pool)
        opened = self.midnight(t.tz, d) + int(rng.uniform(8.5, 17.5) * HOUR_MS)
        topic = {
            "support": rng.choice(("billing", "inventory", "hr", "access", "reports")),
            "maintenance": "maintenance",
            "security": "security",
            "fraud": "fraud",
        }[kind]
        tk = _Ticket(
            ticket_id=f"{prefix}-{number}",
            tenant=t,
            kind=kind,
            topic=topic,
            staff=[owner.staff_id],
            opened=opened,
            closed=None,
        )
        tk.added[owner.staff_id] = opened
        # Work sessions in the vendor's office hours (maintenance runs in a night window).
        sessions: list[tuple[int, _StaffMember]] = []
        n_sessions = 0 if rng.random() < 0.2 else min(4, 1 + _poisson(rng, 0.8))
        cursor = opened + rng.randint(5, 150) * MIN_MS
        second: _StaffMember | None = None
        for i in range(n_sessions):
            cursor = self._vendor_hours(cursor, vendor_tz, night=kind == "maintenance", rng=rng)
            who = owner
            if i >= 1 and second is None and rng.random() < 0.3 and len(pool) > 1:
                second = rng.choice([m for m in pool if m is not owner])
                tk.staff.append(second.staff_id)
                tk.added[second.staff_id] = cursor - rng.randint(2, 30) * MIN_MS
            if second is not None and rng.random() < 0.5:
                who = second
            sessions.append((cursor, who))
            cursor += rng.randint(2, 30) * HOUR_MS
        early = bool(sessions) and rng.random() < 0.06
        if early:
            # The engineer looked while on the phone and logged the ticket a few minutes later.
            first, who = sessions[0]
            sessions[0] = (first, who)
            tk.opened = first + rng.randint(1, 10) * MIN_MS
            tk.added[owner.staff_id] = tk.opened
        last_end = 0
        session_ranges: list[tuple[int, int, _StaffMember]] = []
        for begin, who in sessions:
            length = rng.randint(5, 60) * MIN_MS
            session_ranges.append((begin, begin + length, who))
            last_end = max(last_end, begin + length)
        if sessions:
            late = rng.random() < 0.06
            closed = last_end - rng.randint(1, 10) * MIN_MS if late else last_end + rng.randint(10, 36 * 60) * MIN_MS
        else:
            closed = tk.opened + rng.randint(30, 48 * 60) * MIN_MS
        tk.closed = closed if closed < self.end_ms else None
        tk.sessions = [(begin, end, who.staff_id) for begin, end, who in session_ranges]
        self._ticket_meta(tk)
        self._ticket_versions(tk)
        self.tickets.append(tk)
        for begin, end, who in session_ranges:
            self.staff_session(t, topic, who, begin, end, rng, ticket=tk)

    def _ticket_versions(self, tk: _Ticket) -> None:
        """The records the ERP publishes for a ticket: opened, staff added, closed."""
        first_staff = [s for s in tk.staff if tk.added[s] <= tk.opened] or tk.staff[:1]

        def rec(staff: list[str], closed: int | None) -> dict[str, Any]:
            out = {
                "ticket_id": tk.ticket_id,
                "tenant_id": tk.tenant.tenant_id,
                "kind": tk.kind,
                "staff_ids": list(staff),
                "opened_at": self.clock.fmt(tk.opened),
                "closed_at": None if closed is None else self.clock.fmt(closed),
            }
            if tk.requested_by is not None:
                out["requested_by"] = tk.requested_by
            if tk.summary is not None:
                out["summary"] = tk.summary
            return out

        tk.versions.append(_TicketVersion(tk.opened, rec(first_staff, None)))
        for s in tk.staff:
            if s not in first_staff and (tk.closed is None or tk.added[s] < tk.closed):
                tk.versions.append(_TicketVersion(tk.added[s], rec(tk.staff[: tk.staff.index(s) + 1], None)))
        if tk.closed is not None:
            tk.versions.append(_TicketVersion(tk.closed, rec(tk.staff, tk.closed)))

    def _vendor_hours(self, ts: int, tz: ZoneInfo, *, night: bool, rng: Random) -> int:
        """The first time at or after ``ts`` when the vendor's people would pick work up."""
        d = (ts - self.start_ms) // DAY_MS - 1
        while True:
            midnight = self.midnight(tz, d)
            if night:
                lo, hi = midnight + 22 * HOUR_MS, midnight + 23 * HOUR_MS + 30 * MIN_MS
            else:
                lo, hi = midnight + 9 * HOUR_MS + 30 * MIN_MS, midnight + 18 * HOUR_MS + 30 * MIN_MS
            if self.weekday(d) < 5 or night:
                if ts <= lo:
                    return lo + rng.randint(0, 90) * MIN_MS
                if ts < hi:
                    return ts
            d += 1

    def staff_session(
        self,
        t: _Tenant,
        topic: str,
        m: _StaffMember,
        begin: int,
        end: int,
        rng: Random,
        *,
        ticket: _Ticket | None = None,
        label: _Label | None = None,
        ticket_field: Any = _ABSENT,
    ) -> None:
        """A staff member's admin-console session on a tenant's data: work on ``ticket``, or
        (``ticket`` None) access that no ticket justifies, citing ``ticket_field`` if anything."""
        sid = self.ids.session()
        self.auth(
            begin - rng.randint(10_000, 120_000),
            m.staff_id,
            "staff",
            None,
            "login",
            "success",
            m.ip,
            "PK",
            m.ua,
            sid,
            rng=rng,
            label=label,
        )
        acts = _STAFF_WORK[topic]
        endpoint = rng.choice(_STAFF_TOOLS)
        hn = None
        if ticket is None:
            ticket_value = ticket_field
        elif rng.random() < 0.4:
            # Some admin tools do not record the ticket at all: the access is covered, the field is not.
            ticket_value = None if endpoint in ("admin: tenant inspector", "admin: impersonate user") else _ABSENT
            if self.in_attack_window(end):
                hn = self._hard_negative(
                    "staff_ticket_without_id",
                    f"{m.staff_id} works ticket {ticket.ticket_id} for "
                    f"{t.tenant_id} through '{endpoint}', which does not record the ticket id",
                )
        else:
            ticket_value = ticket.ticket_id
        n = rng.randint(3, 25) if ticket is not None else rng.randint(6, 30)
        times = sorted(begin + int(rng.random() * (end - begin)) for _ in range(n))
        for i, when in enumerate(times):
            # Browsing without a reason starts by looking someone up.
            action, res_name, size = acts[0] if ticket is None and i == 0 else acts[int(rng.random() * len(acts))]
            act = _act(action, _RESOURCES[res_name], size)
            rec = self.records_for(act, t, rng)
            if topic == "maintenance" and action == "update":
                rec = rng.randint(50, 5000)
            self.access(
                when,
                m.staff_id,
                "staff",
                None,
                t.tenant_id,
                act,
                rec,
                m.ip,
                "PK",
                m.ua,
                sid,
                rng=rng,
                ticket=ticket_value,
                endpoint=endpoint,
                label=label or hn,
            )
        self.auth(
            end + rng.randint(5_000, 60_000),
            m.staff_id,
            "staff",
            None,
            "logout",
            "success",
            m.ip,
            "PK",
            m.ua,
            sid,
            rng=rng,
            label=label,
        )

    def covered(self, staff_id: str, tenant_id: str, lo: int, hi: int) -> bool:
        """Whether any ticket for the tenant names the staff member near [lo, hi] (with slack)."""
        slack = 2 * HOUR_MS
        for tk in self.tickets:
            if tk.tenant.tenant_id == tenant_id and staff_id in tk.staff:
                closed = tk.closed if tk.closed is not None else self.end_ms + DAY_MS
                if tk.opened - slack <= hi and lo <= closed + slack:
                    return True
        return False

    # ------------------------------------------------------------------ staff access: contract 1.1, approvals

    def _ticket_meta(self, tk: _Ticket) -> None:
        """Who opened a ticket and what it says (contract 1.1), from a stream of its own: most
        support tickets are the customer's; the vendor opens the rest, and every other kind."""
        rng = Random(f"{self.seed}:ticket-meta:{tk.ticket_id}")
        if tk.kind == "support":
            tk.requested_by = "customer" if rng.random() < 0.85 else "vendor"
        else:
            tk.requested_by = "vendor"
        tk.summary = rng.choice(_TICKET_SUMMARIES[tk.topic])

    def _tenant_record(self, t: _Tenant) -> dict[str, Any]:
        """The directory entry, with where its data subjects live (contract 1.1): most at home,
        some in one or two other jurisdictions."""
        record = dict(t.record)
        rng = Random(f"{self.seed}:subjects:{t.tenant_id}")
        total = int(record["data_subjects"])
        abroad = [j for j in sorted(self.world["jurisdictions"]) if j != t.jurisdiction]
        split: dict[str, int] = {}
        rest = total
        for j in rng.sample(abroad, rng.randint(0, 2)):
            n = int(total * rng.uniform(0.01, 0.15))
            split[j], rest = n, rest - n
        record["data_subjects_by_jurisdiction"] = {t.jurisdiction: rest, **split}
        return record

    def _staff_record(self, m: _StaffMember) -> dict[str, Any]:
        return {
            "staff_id": m.staff_id,
            "name": m.name,
            "email": m.email,
            "team": m.team,
            "active": m.active,
            "country": m.country or self.world["vendor"]["country"],
        }

    def plan_staff_access(self) -> None:
        """Tenants that require approval (every ticket session there gets an approved request),
        and staff access that a ticket, its purpose or an approval does not cover."""
        rng = Random(f"{self.seed}:staff-access")
        self._approval_tenants(rng)
        self._plan_kinds(rng, STAFF_SCENARIO_KINDS, 3.0)
        for _ in range(max(2, self.n_tenants // 8)):
            self.plan_staff_export_on_request(rng)
        for t in [t for t in self.tenants if self.requires_approval(t)]:
            for _ in range(2):
                self.plan_staff_access_approved(rng, t)

    def _approval_tenants(self, rng: Random) -> None:
        n = max(1, round(self.n_tenants * 2 / 25))
        since = self.start_ms - 12 * DAY_MS  # before the first ticket is opened
        for t in rng.sample(self.tenants, min(n, len(self.tenants))):
            approver = next(c["email"] for c in t.record["contacts"] if c["role"] == "security")
            self.approval_policies.append(
                {"tenant_id": t.tenant_id, "since": self.clock.fmt(since), "approvers": [approver]}
            )
        required = {p["tenant_id"] for p in self.approval_policies}
        for tk in self.tickets:
            if tk.tenant.tenant_id in required:
                for begin, end, staff_id in tk.sessions:
                    self._approved(rng, tk, staff_id, begin, end)

    def requires_approval(self, t: _Tenant) -> bool:
        return any(p["tenant_id"] == t.tenant_id for p in self.approval_policies)

    def _approved(self, rng: Random, tk: _Ticket, staff_id: str, begin: int, end: int) -> dict[str, Any]:
        """An approved request covering one work session (filed hours before, decided before it)."""
        filed = begin - rng.randint(60, 6 * 60) * MIN_MS
        return self._request(
            tk,
            staff_id,
            begin - 15 * MIN_MS,
            end + 30 * MIN_MS,
            filed,
            decision="approve",
            decided=filed + (begin - filed) // 2,
        )

    def _request(
        self,
        tk: _Ticket,
        staff_id: str,
        starts: int,
        ends: int,
        filed: int,
        *,
        decision: str | None,
        decided: int | None = None,
        revoked: int | None = None,
    ) -> dict[str, Any]:
        purpose = {"support": "support_on_request" if tk.requested_by == "customer" else "troubleshooting"}.get(
            tk.kind, "maintenance" if tk.kind == "maintenance" else "security"
        )
        req = {
            "request_id": f"AR-{len(self.access_requests) + 1:05d}",
            "tenant_id": tk.tenant.tenant_id,
            "staff_ids": [staff_id],
            "ticket_id": tk.ticket_id,
            "purpose": purpose,
            "reason": tk.summary or "",
            "starts_at": self.clock.fmt(starts),
            "ends_at": self.clock.fmt(ends),
            "filed_at": self.clock.fmt(filed),
            "decision": decision,
            "decided_at": None if decided is None else self.clock.fmt(decided),
            "revoked_at": None if revoked is None else self.clock.fmt(revoked),
        }
        self.access_requests.append(req)
        return req

    def write_access_requests(self) -> None:
        doc = {"policies": self.approval_policies, "requests": self.access_requests}
        text = json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
        (self.out / ACCESS_REQUESTS_FILE).write_text(text, encoding="utf-8")

    def _extra_ticket(
        self, t: _Tenant, kind: str, staff: list[str], opened: int, closed: int | None, requested_by: str, topic: str
    ) -> _Ticket:
        """A ticket of a staff scenario, numbered apart from the everyday ones."""
        prefix = {"support": "SUP", "maintenance": "MNT", "security": "SEC"}[kind]
        tk = _Ticket(
            ticket_id=f"{prefix}-{90001 + len(self.extra_tickets)}",
            tenant=t,
            kind=kind,
            topic=topic,
            staff=list(staff),
            opened=opened,
            closed=closed,
            added=dict.fromkeys(staff, opened),
            requested_by=requested_by,
            summary=_TICKET_SUMMARIES[topic][0],
        )
        self._ticket_versions(tk)
        self.tickets.append(tk)
        self.extra_tickets.append(tk)
        return tk

    def _free_staff(self, rng: Random, teams: Sequence[str] = ("support", "engineering", "operations")) -> _StaffMember:
        return rng.choice([m for m in self.staff if m.active and m.team in teams])

    def _work_hours(self, rng: Random) -> int:
        """A moment in the vendor's office hours on an attack day."""
        vendor_tz = self.tz(self.world["vendor"]["tz"])
        d = self._attack_day(rng)
        return self.midnight(vendor_tz, d) + int(rng.uniform(10, 16.5) * HOUR_MS)

    def _ordinary_tenant(self, rng: Random, avoid: Sequence[_Tenant] = ()) -> _Tenant:
        pool = [t for t in self.tenants if not self.requires_approval(t) and t not in avoid]
        return rng.choice(pool or self.tenants)

    def plan_staff_ticket_wrong_tenant(self, rng: Random) -> bool:
        """Working a ticket of one tenant, a staff member opens another tenant's records under it."""
        own = [tk for tk in self.tickets if tk.closed is None or tk.closed > self.clean_ms]
        if not own:
            return False
        tk = rng.choice(own)
        m = next(x for x in self.staff if x.staff_id == tk.staff[0])
        t = self._ordinary_tenant(rng, avoid=[tk.tenant])
        begin = max(self._work_hours(rng), tk.opened + HOUR_MS)
        end = begin + rng.randint(5, 30) * MIN_MS
        if (
            end >= self.end_ms
            or (tk.closed is not None and end > tk.closed)
            or self.covered(m.staff_id, t.tenant_id, begin, end)
        ):
            return False
        label = self._scenario(
            "staff_ticket_wrong_tenant",
            f"{m.staff_id} opened {t.tenant_id}'s records citing {tk.ticket_id}, a ticket of {tk.tenant.tenant_id}"
            " ({records} records)",
        )
        self.staff_session(t, tk.topic, m, begin, end, rng, label=label, ticket_field=tk.ticket_id)
        return True

    def plan_staff_ticket_expired(self, rng: Random) -> bool:
        """Days after a ticket was closed, its engineer goes back into the tenant's data under it."""
        closed = [
            tk
            for tk in self.tickets
            if tk.closed is not None
            and self.clean_ms - 4 * DAY_MS <= tk.closed < self.end_ms - 2 * DAY_MS
            and not self.requires_approval(tk.tenant)
        ]
        if not closed:
            return False
        tk = rng.choice(closed)
        m = next(x for x in self.staff if x.staff_id == tk.staff[0])
        begin = max(self._work_hours(rng), (tk.closed or 0) + rng.randint(1, 5) * DAY_MS)
        end = begin + rng.randint(5, 40) * MIN_MS
        if end >= self.end_ms or self.covered(m.staff_id, tk.tenant.tenant_id, begin, end):
            return False
        label = self._scenario(
            "staff_ticket_expired",
            f"{m.staff_id} accessed {tk.tenant.tenant_id}'s data citing {tk.ticket_id}, closed days before"
            " ({records} records)",
        )
        self.staff_session(tk.tenant, tk.topic, m, begin, end, rng, label=label, ticket_field=tk.ticket_id)
        return True

    def plan_staff_ticket_other_assignee(self, rng: Random) -> bool:
        """A colleague's open ticket: a staff member not named on it works the tenant's data under it."""
        t = self._ordinary_tenant(rng)
        m = self._free_staff(rng, ("support",))
        colleague = self._free_staff(rng, ("support",))
        if colleague is m:
            return False
        begin = self._work_hours(rng)
        end = begin + rng.randint(10, 40) * MIN_MS
        if end >= self.end_ms or self.covered(m.staff_id, t.tenant_id, begin - DAY_MS, end + DAY_MS):
            return False
        tk = self._extra_ticket(
            t, "support", [colleague.staff_id], begin - 2 * HOUR_MS, end + DAY_MS, "customer", "billing"
        )
        label = self._scenario(
            "staff_ticket_other_assignee",
            f"{m.staff_id} worked {t.tenant_id}'s data under {tk.ticket_id}, which is assigned to"
            f" {colleague.staff_id} ({{records}} records)",
        )
        self.staff_session(t, tk.topic, m, begin, end, rng, label=label, ticket_field=tk.ticket_id)
        return True

    def plan_staff_export_off_purpose(self, rng: Random) -> bool:
        """Under a ticket the vendor opened (troubleshooting) or a maintenance ticket, an engineer
        exports the tenant's personal data: the ticket's purpose does not cover that."""
        t = self._ordinary_tenant(rng)
        m = self._free_staff(rng, ("support", "engineering"))
        begin = self._work_hours(rng)
        if begin + HOUR_MS >= self.end_ms or self.covered(m.staff_id, t.tenant_id, begin - DAY_MS, begin + DAY_MS):
            return False
        kind, topic = ("maintenance", "maintenance") if rng.random() < 0.4 else ("support", "billing")
        tk = self._extra_ticket(t, kind, [m.staff_id], begin - HOUR_MS, begin + 6 * HOUR_MS, "vendor", topic)
        label = self._scenario(
            "staff_export_off_purpose",
            f"{m.staff_id} exported {t.tenant_id}'s personal data under {tk.ticket_id}, a {kind} ticket the"
            " vendor opened, whose purpose does not cover exports ({records} records)",
        )
        self._staff_exports(t, m, begin, rng, tk.ticket_id, label)
        return True

    def plan_staff_export_on_request(self, rng: Random) -> None:
        """A hard negative: the customer asked for an export, and support sends it."""
        t = self._ordinary_tenant(rng)
        m = self._free_staff(rng, ("support",))
        begin = self._work_hours(rng)
        if begin + HOUR_MS >= self.end_ms or self.covered(m.staff_id, t.tenant_id, begin - DAY_MS, begin + DAY_MS):
            return
        tk = self._extra_ticket(t, "support", [m.staff_id], begin - HOUR_MS, begin + 6 * HOUR_MS, "customer", "reports")
        label = self._hard_negative(
            "staff_export_on_request", f"{m.staff_id} exports {t.tenant_id}'s customers as {tk.ticket_id} asked"
        )
        self._staff_exports(t, m, begin, rng, tk.ticket_id, label)

    def plan_staff_access_approved(self, rng: Random, t: _Tenant) -> None:
        """A hard negative: at a tenant that requires approval, staff work a customer's ticket
        inside the window its approver approved."""
        m = self._free_staff(rng, ("support",))
        begin = self._work_hours(rng)
        end = begin + rng.randint(10, 40) * MIN_MS
        if end + HOUR_MS >= self.end_ms or self.covered(m.staff_id, t.tenant_id, begin - DAY_MS, end + DAY_MS):
            return
        tk = self._extra_ticket(t, "support", [m.staff_id], begin - 2 * HOUR_MS, end + DAY_MS, "customer", "hr")
        self._approved(rng, tk, m.staff_id, begin, end)
        label = self._hard_negative(
            "staff_access_approved", f"{m.staff_id} works {tk.ticket_id} at {t.tenant_id} inside the approved window"
        )
        self.staff_session(t, tk.topic, m, begin, end, rng, label=label, ticket_field=tk.ticket_id)

    def _staff_exports(self, t: _Tenant, m: _StaffMember, begin: int, rng: Random, ticket: str, label: _Label) -> None:
        """A short admin-console session of one to three modest exports of personal data."""
        sid = self.ids.session()
        self.auth(begin - 30_000, m.staff_id, "staff", None, "login", "success", m.ip, "PK", m.ua, sid, rng=rng)
        when = begin
        for _ in range(rng.randint(1, 3)):
            when += rng.randint(1, 8) * MIN_MS
            act = _act("export", _RESOURCES[rng.choice(("customer", "employee"))], "export")
            self.access(
                when,
                m.staff_id,
                "staff",
                None,
                t.tenant_id,
                act,
                rng.randint(40, 600),
                m.ip,
                "PK",
                m.ua,
                sid,
                rng=rng,
                ticket=ticket,
                endpoint="admin: tenant inspector",
                label=label,
            )

    def plan_staff_access_unapproved(self, rng: Random) -> bool:
        """At a tenant that requires approval, staff access its data although the request was
        denied, expired unanswered, was revoked, or its approved window had ended."""
        tenants = [t for t in self.tenants if self.requires_approval(t)]
        if not tenants:
            return False
        t = rng.choice(tenants)
        m = self._free_staff(rng, ("support",))
        begin = self._work_hours(rng)
        if begin + 6 * HOUR_MS >= self.end_ms or self.covered(m.staff_id, t.tenant_id, begin - DAY_MS, begin + DAY_MS):
            return False
        tk = self._extra_ticket(t, "support", [m.staff_id], begin - 3 * DAY_MS, begin + DAY_MS, "customer", "inventory")
        how = rng.choice(("denied", "expired", "revoked", "window_ended"))
        filed = begin - rng.randint(2, 5) * HOUR_MS
        if how == "denied":
            self._request(tk, m.staff_id, begin, begin + 2 * HOUR_MS, filed, decision="deny", decided=filed + HOUR_MS)
            start = begin
        elif how == "expired":
            # Nobody answered within the link's 72 hours; the engineer went ahead on the fourth day.
            filed = begin - 80 * HOUR_MS
            self._request(tk, m.staff_id, filed + HOUR_MS, begin + DAY_MS, filed, decision=None)
            start = begin
        elif how == "revoked":
            self._request(
                tk,
                m.staff_id,
                begin - HOUR_MS,
                begin + 3 * HOUR_MS,
                filed,
                decision="approve",
                decided=filed + HOUR_MS,
                revoked=begin - 20 * MIN_MS,
            )
            start = begin
        else:
            self._request(
                tk,
                m.staff_id,
                begin - 2 * HOUR_MS,
                begin - 45 * MIN_MS,
                filed,
                decision="approve",
                decided=filed + 30 * MIN_MS,
            )
            start = begin
        end = start + rng.randint(10, 40) * MIN_MS
        label = self._scenario(
            "staff_access_unapproved",
            f"{m.staff_id} accessed {t.tenant_id}'s data, which requires approval, although the request"
            f" for it was {how.replace('_', ' ')} ({{records}} records)",
        )
        self.staff_session(t, tk.topic, m, start, end, rng, label=label, ticket_field=tk.ticket_id)
        return True

    # ------------------------------------------------------------------ scenario planning

    def plan_scenarios(self) -> None:
        """Place the labelled attacks (about 2-3 of each kind per 25 tenants) and role changes."""
        rng = Random(f"{self.seed}:scenarios")
        # Dormant accounts are chosen first, so that no other scenario touches them while they sleep.
        order = ["dormant_account", *(k for k in ATTACK_KINDS if k != "dormant_account")]
        self._plan_kinds(rng, order, 3.4)
        for _ in range(max(2, self.n_tenants // 10)):
            self.plan_role_change(rng)

    def _plan_kinds(self, rng: Random, kinds: Iterable[str], most: float) -> None:
        """Between 2 and ``most`` scenarios of each kind per 25 tenants (at least 2), each
        planner (``plan_<kind>``, which says whether it placed one) given four tries per scenario."""
        for kind in kinds:
            n = max(2, round(self.n_tenants * rng.uniform(2.0, most) / 25))
            planner = getattr(self, f"plan_{kind}")
            made = 0
            for _ in range(n * 4):
                if made >= n:
                    break
                if planner(rng):
                    made += 1

    def plan_role_change(self, rng: Random) -> None:
        """An admin legitimately changes a colleague's roles (sometimes making them an admin too),
        and the colleague then looks around the admin pages: a hard negative for privilege escalation."""
        tenants = [t for t in self.tenants if any(u.role == "admin" for u in t.users) and len(t.users) > 2]
        if not tenants:
            return
        t = tenants[int(rng.random() * len(tenants))]
        admin = next(u for u in t.users if u.role == "admin")
        pool = [
            u
            for u in t.users
            if u.role not in ("admin", "auditor") and not u.reserved and u.active_from < 0 and u.active_until is None
        ]
        if not pool:
            return
        u = pool[int(rng.random() * len(pool))]
        u.reserved = True
        d = rng.randint(0, self.days - 1)
        while d < self.days - 1 and self.weekday(d) in t.weekend:
            d += 1
        when = self.midnight(t.tz, d) + int((admin.start_min + rng.uniform(60, 360)) * MIN_MS)
        promote = rng.random() < 0.4
        extra = rng.choice([r for r in ("accountant", "sales", "hr", "clerk") if r != u.role])
        roles = ("admin",) if promote else (u.role, extra)
        lab = (
            self._hard_negative(
                "legit_role_change",
                f"{admin.actor_id} gave {u.actor_id} of {t.tenant_id} the "
                f"roles {', '.join(roles)} from the office during working hours",
            )
            if self.in_attack_window(when)
            else None
        )
        self.auth(
            when,
            u.actor_id,
            "customer_user",
            t.tenant_id,
            "role_change",
            "success",
            admin.office_ip,
            t.country,
            admin.ua,
            None,
            rng=rng,
            roles=roles,
            detail=f"changed_by={admin.actor_id} via PATCH /api/v2/admin/users/{{id}}/roles",
            label=lab,
        )
        if promote:
            start = when + rng.randint(10, 90) * MIN_MS
            steps = [
                ("read", "user_account", "page", rng.randint(1, 3)),
                ("read", "settings", "one", rng.randint(1, 4)),
                ("read", "audit_log", "page", rng.randint(0, 2)),
                ("read", "api_key", "page", rng.randint(0, 1)),
            ]
            sid = self.ids.session()
            self.auth(
                start,
                u.actor_id,
                "customer_user",
                t.tenant_id,
                "login",
                "success",
                u.office_ip,
                t.country,
                u.ua,
                sid,
                rng=rng,
                label=lab,
            )
            ts = start
            for action, res, size, count in steps:
                act = _act(action, _RESOURCES[res], size)
                for _ in range(count):
                    ts += rng.randint(20_000, 300_000)
                    self.access(
                        ts,
                        u.actor_id,
                        "customer_user",
                        t.tenant_id,
                        t.tenant_id,
                        act,
                        self.records_for(act, t, rng),
                        u.office_ip,
                        t.country,
                        u.ua,
                        sid,
                        rng=rng,
                        label=lab,
                    )
            self.auth(
                ts + rng.randint(30_000, 600_000),
                u.actor_id,
                "customer_user",
                t.tenant_id,
                "logout",
                "success",
                u.office_ip,
                t.country,
                u.ua,
                sid,
                rng=rng,
                label=lab,
            )

    def _attack_day(self, rng: Random, span: int = 1, tz: ZoneInfo | None = None) -> int:
        """A local day in the attack window; ``tz`` keeps the local day's hours inside the window."""
        lo, hi = self.clean_days, self.days - span
        if tz is not None:
            day = self.local_date(self.clean_days)
            offset = datetime(day.year, day.month, day.day, 12, tzinfo=tz).utcoffset() or timedelta(0)
            if offset > timedelta(0):
                lo += 1  # local working hours of the first attack day start before it in UTC
            elif offset < timedelta(0):
                hi -= 1  # and those of the last day end after the window
        hi = max(min(hi, self.days - 1), self.clean_days)
        lo = min(lo, hi)
        return rng.randint(lo, hi)

    def _inside(self, start: int, span: int = 2 * HOUR_MS) -> int:
        """Move a planned start by whole days until the attack (about ``span`` long) fits the attack window."""
        while start < self.clean_ms:
            start += DAY_MS
        while start + span > self.end_ms and start - DAY_MS >= self.clean_ms:
            start -= DAY_MS
        return start

    def _pick_user(
        self, rng: Random, roles: Sequence[str], pred: Callable[[_User], bool] | None = None
    ) -> _User | None:
        """Reserve an ordinary, always-present user of one of ``roles`` for a scenario."""
        pool = [
            u
            for t in self.tenants
            for u in t.users
            if u.role in roles
            and not u.reserved
            and u.active_from < 0
            and u.active_until is None
            and u.holiday is None
            and u.trip is None
            and (pred is None or pred(u))
        ]
        if not pool:
            return None
        u = pool[int(rng.random() * len(pool))]
        u.reserved = True
        return u

    def _attacker_network(self, rng: Random, avoid: Sequence[str]) -> tuple[str, str]:
        """An address from a hosting provider or a residential proxy outside ``avoid``."""
        hosting = self.world["hosting"]
        if rng.random() < 0.6:
            country = rng.choice([c for c in hosting if c not in avoid])
            prefix = rng.choice(hosting[country])
        else:
            countries = self.world["countries"]
            country = rng.choice([c for c in countries if c not in avoid])
            prefix = rng.choice(countries[country]["residential"])
        return f"{prefix}.{rng.randint(0, 255)}.{rng.randint(2, 250)}", country

    def _attacker_session(
        self,
        label: _Label,
        rng: Random,
        actor: str,
        atype: str,
        t: _Tenant,
        ip: str,
        country: str,
        ua: str,
        start: int,
        steps: Sequence[tuple[str, str, str, int]],
        *,
        failures: int = 0,
        mfa_fatigue: int = 0,
        gap: tuple[int, int] = (4_000, 90_000),
        logout: bool = True,
        records: Callable[[_Act], int] | None = None,
    ) -> int:
        """Login (after failures), optional MFA, then ``steps`` of (action, resource, size, count)."""
        tid = t.tenant_id
        ts = start
        for _ in range(failures):
            self.auth(
                ts,
                actor,
                atype,
                tid,
                "login",
                "failure",
                ip,
                country,
                ua,
                None,
                rng=rng,
                detail="bad password",
                label=label,
            )
            ts += rng.randint(3_000, 40_000)
        sid = self.ids.session()
        self.auth(
            ts,
            actor,
            atype,
            tid,
            "login",
            "success",
            ip,
            country,
            ua,
            sid,
            rng=rng,
            detail="client_credentials" if atype == "service" else None,
            label=label,
        )
        if t.mfa and atype == "customer_user":
            for _ in range(mfa_fatigue):
                ts += rng.randint(15_000, 120_000)
                self.auth(
                    ts,
                    actor,
                    atype,
                    tid,
                    "mfa",
                    "failure",
                    ip,
                    country,
                    ua,
                    None,
                    rng=rng,
                    detail="push denied",
                    label=label,
                )
            ts += rng.randint(5_000, 60_000)
            self.auth(
                ts,
                actor,
                atype,
                tid,
                "mfa",
                "success",
                ip,
                country,
                ua,
                sid,
                rng=rng,
                detail="push approved" if mfa_fatigue else "totp",
                label=label,
            )
        for action, res, size, count in steps:
            act = _act(action, _RESOURCES[res], size)
            for _ in range(count):
                ts += rng.randint(*gap)
                rec = records(act) if records else self.records_for(act, t, rng)
                self.access(ts, actor, atype, tid, tid, act, rec, ip, country, ua, sid, rng=rng, label=label)
        if logout:
            ts += rng.randint(5_000, 120_000)
            self.auth(ts, actor, atype, tid, "logout", "success", ip, country, ua, sid, rng=rng, label=label)
        return ts

    @staticmethod
    def _usual_personal_export(t: _Tenant) -> int:
        """The largest personal or payment export the tenant's normal traffic can produce."""
        tables = t.tables
        return max(tables["employees"], int(tables["customers"] * 0.05), int(tables["prospects"] * 0.05))

    def _bulk(self, t: _Tenant, rng: Random, lo: float, hi: float) -> Callable[[_Act], int]:
        """Record counts for an attacker: pages of 100, exports of a large share of the table."""

        def records(act: _Act) -> int:
            table = t.tables[act.res.table]
            if act.size == "export":
                return max(1, int(table * rng.uniform(lo, hi)))
            if act.size in ("page", "search"):
                return min(table, rng.choice((100, 100, 200, 250)))
            return 1

        return records

    def plan_account_takeover(self, rng: Random) -> bool:
        """Night sign-in from a new country and network, then bulk reads and exports."""
        u = self._pick_user(rng, ("sales", "hr", "accountant", "clerk", "admin"))
        if u is None:
            return False
        t = u.tenant
        ip, country = self._attacker_network(rng, [t.country])
        # Half the intruders use an up-to-date mainstream browser, half an older or headless one.
        ua = self._browser(rng) if rng.random() < 0.5 else rng.choice(_ATTACK_BROWSER_UA)
        d = self._attack_day(rng, 2, t.tz)
        start = self._inside(self.midnight(t.tz, d) + int(rng.uniform(0.5, 4.8) * HOUR_MS))
        steps_pool = [
            ("search", "customer", "search", rng.randint(1, 4)),
            ("read", "customer", "page", rng.randint(3, 12)),
            ("export", "customer", "export", 1),
        ]
        if rng.random() < 0.5:
            steps_pool.append(("read", "employee", "page", rng.randint(2, 8)))
            steps_pool.append(("export", "employee", "export", 1))
        if rng.random() < 0.4:
            steps_pool.append(("read", "payment_card", "page", rng.randint(1, 5)))
        if rng.random() < 0.3:
            steps_pool.append(("update", "user_account", "one", 1))  # a mail forwarding rule
        label = self._scenario(
            "account_takeover",
            f"{u.actor_id} ({u.role}) of {t.tenant_id} signed in at night "
            f"local time from {country} ({ip}), a country and network never used before, and "
            "read or exported {records} personal records",
        )
        fatigue = rng.randint(2, 5) if t.mfa and rng.random() < 0.4 else 0
        end = self._attacker_session(
            label,
            rng,
            u.actor_id,
            "customer_user",
            t,
            ip,
            country,
            ua,
            start,
            steps_pool,
            failures=rng.randint(0, 2) if rng.random() < 0.3 else 0,
            mfa_fatigue=fatigue,
            logout=rng.random() < 0.4,
            records=self._bulk(t, rng, 0.3, 1.0),
        )
        again = start + DAY_MS + rng.randint(-HOUR_MS, HOUR_MS)
        if rng.random() < 0.4 and end < again < self.end_ms - 2 * HOUR_MS:
            self._attacker_session(
                label,
                rng,
                u.actor_id,
                "customer_user",
                t,
                ip,
                country,
                ua,
                again,
                [("read", "customer", "page", rng.randint(2, 6)), ("read", "invoice", "page", rng.randint(1, 4))],
                records=self._bulk(t, rng, 0.3, 1.0),
            )
        return True

    def plan_credential_stuffing(self, rng: Random) -> bool:
        """Many logins over many tenants' accounts from a few hosting addresses."""
        hosting = self.world["hosting"]
        country = rng.choice(list(hosting))
        prefix = f"{rng.choice(hosting[country])}.{rng.randint(0, 255)}"
        ips = [f"{prefix}.{rng.randint(2, 250)}" for _ in range(rng.randint(1, 4))]
        ua_pool = rng.sample(_ATTACK_BROWSER_UA + _TOOL_UA[:1], rng.randint(1, 3))
        targets = rng.sample(self.tenants, min(len(self.tenants), rng.randint(3, 8)))
        # Leavers' accounts are kept out so that a dormant account's silence stays unbroken.
        known = [u for t in targets for u in t.users if u.role != "auditor" and u.active_until is None]
        eligible = [u for u in known if not u.reserved and u.active_until is None and u.active_from < 0]
        if not eligible:
            return False
        # Reused passwords: a few of the tried accounts really open.
        winners = rng.sample(eligible, min(len(eligible), rng.randint(1, 3)))
        for u in winners:
            u.reserved = True
        n_attempts = rng.randint(60, 400)
        label = self._scenario(
            "credential_stuffing",
            f"{len(ips)} address(es) in {prefix}.0/24 ({country}) tried "
            f"{n_attempts} logins against accounts of {len(targets)} tenants; {len(winners)} "
            "succeeded and the attacker read data with them ({records} records)",
        )
        d = self._attack_day(rng)
        ts = self.start_ms + d * DAY_MS + rng.randint(0, 20 * HOUR_MS)
        pace = rng.randint(1_500, 9_000)
        first = True
        compromised = [u.actor_id for u in winners]
        win_at = sorted(rng.sample(range(n_attempts // 3, n_attempts), len(winners)))
        failures_by_ip: dict[str, int] = {}
        for i in range(n_attempts):
            ts += int(rng.expovariate(1 / pace)) + 200
            ip = ips[i % len(ips)]
            ua = rng.choice(ua_pool)
            if win_at and i == win_at[0]:
                win_at.pop(0)
                u = winners.pop(0)
                self._stuffing_success(label, u, ip, country, ua, ts, rng, blockable=not first)
                first = False
                continue
            if rng.random() < 0.65 and known:
                u = known[int(rng.random() * len(known))]
                actor, tid, detail = u.actor_id, u.tenant.tenant_id, "bad password"
            else:
                tgt = targets[int(rng.random() * len(targets))]
                actor = f"u-{rng.choice(_COMMON_LOGINS)}"
                tid, detail = tgt.tenant_id, "unknown user"
            self.auth(
                ts,
                actor,
                "customer_user",
                tid,
                "login",
                "failure",
                ip,
                country,
                ua,
                None,
                rng=rng,
                detail=detail,
                label=label,
            )
            failures_by_ip[ip] = failures_by_ip.get(ip, 0) + 1
            if failures_by_ip[ip] % 50 == 0:
                self.log(
                    ts + 50,
                    "auth",
                    "WARNING",
                    f"throttling login attempts ip={ip} failures={failures_by_ip[ip]} window=600s",
                    rng=rng,
                    label=label,
                )
        # The accounts the attacker got into; the many names merely tried stay in the events.
        label.actors = dict.fromkeys(compromised)
        return True

    def _stuffing_success(
        self, label: _Label, u: _User, ip: str, country: str, ua: str, ts: int, rng: Random, *, blockable: bool
    ) -> None:
        """A tried password that works: MFA may stop it, otherwise data is read."""
        t = u.tenant
        sid = self.ids.session()
        self.auth(
            ts, u.actor_id, "customer_user", t.tenant_id, "login", "success", ip, country, ua, sid, rng=rng, label=label
        )
        if t.mfa and blockable and rng.random() < 0.6:
            # MFA stops the attacker: the password worked, the second factor did not.
            self.auth(
                ts + rng.randint(20_000, 90_000),
                u.actor_id,
                "customer_user",
                t.tenant_id,
                "mfa",
                "failure",
                ip,
                country,
                ua,
                None,
                rng=rng,
                detail="invalid code",
                label=label,
            )
            return
        if t.mfa:
            ts += rng.randint(20_000, 60_000)
            self.auth(
                ts,
                u.actor_id,
                "customer_user",
                t.tenant_id,
                "mfa",
                "success",
                ip,
                country,
                ua,
                sid,
                rng=rng,
                detail="sms",
                label=label,
            )
        for res, size in rng.sample(
            [
                ("customer", "page"),
                ("invoice", "page"),
                ("payment", "page"),
                ("employee", "page"),
                ("customer", "export"),
            ],
            rng.randint(2, 4),
        ):
            act = _act("export" if size == "export" else "read", _RESOURCES[res], size)
            for _ in range(rng.randint(1, 5)):
                ts += rng.randint(2_000, 30_000)
                rec = self._bulk(t, rng, 0.2, 0.8)(act)
                self.access(
                    ts,
                    u.actor_id,
                    "customer_user",
                    t.tenant_id,
                    t.tenant_id,
                    act,
                    rec,
                    ip,
                    country,
                    ua,
                    sid,
                    rng=rng,
                    label=label,
                )

    def plan_slow_exfiltration(self, rng: Random) -> bool:
        """An insider reads several times their usual volume on one to three working days."""
        u = self._pick_user(rng, ("sales", "hr", "accountant"), lambda u: u.volume > 0.5)
        if u is None:
            return False
        t = u.tenant
        span = min(self.attack_days, rng.randint(1, 3))
        d0 = self._attack_day(rng, span, t.tz)
        factor = rng.uniform(3.0, 6.0)
        days = [d for d in range(d0, min(self.days, d0 + span + 2)) if self.weekday(d) not in t.weekend][:span]
        if not days:
            days = [d0]
        label = self._scenario(
            "slow_exfiltration",
            f"{u.actor_id} ({u.role}) of {t.tenant_id} read about "
            f"{factor:.1f}x their usual volume of personal and financial records over {len(days)} "
            "working days in ordinary sessions from the usual network ({records} records)",
        )
        for d in days:
            u.injections.setdefault(d, []).append(("slow_exfiltration", label, {"factor": factor}))
        return True

    def plan_dormant_account(self, rng: Random) -> bool:
        """A long-unused (former employee's) account signs in again and reads sensitive data."""
        leavers = [
            u
            for t in self.tenants
            for u in t.users
            if u.active_until is not None and not u.reserved and u.active_until <= self.clean_days
        ]
        if leavers:
            # Prefer an account whose last use lies at least 30 days before the wake-up day.
            u = leavers[int(rng.random() * len(leavers))]
            d = self._attack_day(rng, 1, u.tenant.tz)
            long_idle = [x for x in leavers if d - (x.active_until - 1) >= 30]
            if long_idle:
                u = long_idle[int(rng.random() * len(long_idle))]
        else:
            # Every leaver is taken: retire a fresh account at the start of the window.
            picked = self._pick_user(rng, ("sales", "clerk", "accountant", "hr"))
            if picked is None:
                return False
            u = picked
            self._retire(u, 0)
            d = self._attack_day(rng, 1, u.tenant.tz)
        u.reserved = True
        t = u.tenant
        idle = d - (u.active_until - 1)
        abroad = rng.random() < 0.3
        if abroad:
            ip, country = self._attacker_network(rng, [t.country])
        else:
            cinfo = self.world["countries"][t.country]
            ip, country = f"{rng.choice(cinfo['residential'])}.{rng.randint(0, 255)}.{rng.randint(2, 250)}", t.country
        hour = rng.choice((rng.uniform(19.5, 23.5), rng.uniform(6.0, 7.5), rng.uniform(10, 16)))
        start = self._inside(self.midnight(t.tz, d) + int(hour * HOUR_MS))
        label = self._scenario(
            "dormant_account",
            f"{u.actor_id} ({u.role}) of {t.tenant_id}, unused for {idle} days "
            f"in this window (a former employee's account), signed in again from {country} "
            f"({ip}) and read {{records}} sensitive records",
        )
        steps = [("search", "customer", "search", rng.randint(1, 3)), ("read", "customer", "page", rng.randint(2, 8))]
        steps += rng.sample(
            [
                ("export", "customer", "export", 1),
                ("read", "employee", "page", rng.randint(1, 5)),
                ("read", "payroll", "page", rng.randint(1, 3)),
                ("read", "invoice", "page", 3),
            ],
            2,
        )
        self._attacker_session(
            label,
            rng,
            u.actor_id,
            "customer_user",
            t,
            ip,
            country,
            self._browser(rng) if not abroad else rng.choice(_ATTACK_BROWSER_UA),
            start,
            steps,
            failures=rng.randint(0, 2),
            records=self._bulk(t, rng, 0.2, 0.9),
        )
        return True

    def plan_service_key_misuse(self, rng: Random) -> bool:
        """An integration key used from a new network at an odd hour for odd resources."""
        pool = [s for t in self.tenants for s in t.services if not s.reserved]
        if not pool:
            t = rng.choice(self.tenants)
            s = self._add_service(t, rng)
        else:
            s = pool[int(rng.random() * len(pool))]
        s.reserved = True
        t = s.tenant
        ip, country = self._attacker_network(rng, [s.country])
        d = self._attack_day(rng, 1, t.tz)
        if s.cadence == "nightly":
            hour = (s.hour + rng.randint(7, 15)) % 24 + rng.random()
            usual = f"its nightly {s.hour:02d}h sync"
        else:
            hour = rng.uniform(0.5, 5.5)  # daytime syncs never run at night
            usual = "its daytime syncs"
        start = self._inside(self.midnight(t.tz, d) + int(hour * HOUR_MS))
        unusual = [
            ("read", "customer", "page", rng.randint(4, 20)),
            ("export", "customer", "export", 1),
            ("read", "employee", "page", rng.randint(2, 8)),
            ("export", "employee", "export", 1),
            ("read", "payment_card", "page", rng.randint(2, 6)),
            ("read", "api_key", "page", 1),
            ("read", "integration_credential", "one", rng.randint(1, 3)),
            ("read", "vendor_bank_account", "page", rng.randint(1, 4)),
        ]
        steps = rng.sample(unusual, rng.randint(3, 5))
        label = self._scenario(
            "service_key_misuse",
            f"integration key {s.actor_id} ({s.kind}) of {t.tenant_id} used "
            f"from {country} ({ip}) at {int(hour):02d}h local instead of {usual} from {s.country}, "
            "reading resources it never reads "
            "({records} records)",
        )
        self._attacker_session(
            label,
            rng,
            s.actor_id,
            "service",
            t,
            ip,
            country,
            rng.choice(_TOOL_UA),
            start,
            steps,
            gap=(300, 8_000),
            logout=False,
            records=self._bulk(t, rng, 0.5, 1.0),
        )
        return True

    def plan_privilege_escalation(self, rng: Random) -> bool:
        """A clerk gains the admin role and goes for credentials and payment data."""
        u = self._pick_user(rng, ("clerk",))
        if u is None:
            u = self._pick_user(rng, ("sales",))
            if u is None:
                return False
        t = u.tenant
        d = next((x for x in range(self._attack_day(rng, 1, t.tz), self.days) if u.scheduled(x, self.weekday(x))), None)
        if d is None:
            u.reserved = False
            return False
        label = self._scenario(
            "privilege_escalation",
            f"{u.actor_id} ({u.role}) of {t.tenant_id} was given the "
            "admin role and right after read API keys, integration credentials and payment data "
            "({records} records)",
        )
        u.injections.setdefault(d, []).append(("privilege_escalation", label, {}))
        return True

    def plan_staff_snooping(self, rng: Random) -> bool:
        """Vendor staff browse a tenant's personal data that no ticket lets them see."""
        staff = [m for m in self.staff if m.active and m.team in ("support", "engineering", "operations")]
        m = rng.choice(staff)
        vendor_tz = self.tz(self.world["vendor"]["tz"])
        for _ in range(20):
            t = rng.choice(self.tenants)
            d = self._attack_day(rng)
            evening = rng.random() < 0.4
            local = self.midnight(vendor_tz, d) + int(
                (rng.uniform(19, 23) if evening else rng.uniform(10, 17.5)) * HOUR_MS
            )
            begin, end = local, local + rng.randint(8, 60) * MIN_MS
            if end >= self.end_ms or self.covered(m.staff_id, t.tenant_id, begin, end):
                continue
            own = [tk for tk in self.tickets if m.staff_id in tk.staff and tk.tenant is not t]
            r = rng.random()
            if r < 0.5 or not own:
                ticket_field: Any = _ABSENT if rng.random() < 0.5 else None
                why = "with no ticket"
            else:
                ticket_field = rng.choice(own).ticket_id
                why = f"citing {ticket_field}, a ticket of another tenant"
            label = self._scenario(
                "staff_snooping",
                f"vendor staff {m.staff_id} browsed {t.tenant_id}'s personal "
                f"data {why}; no ticket for {t.tenant_id} names them ({{records}} records)",
            )
            self.staff_session(t, "snoop", m, begin, end, rng, label=label, ticket_field=ticket_field)
            return True
        return False

    def plan_cross_tenant_access(self, rng: Random) -> bool:
        """A user reads another tenant's records after probing record ids."""
        u = self._pick_user(rng, ("sales", "accountant", "clerk", "admin"))
        if u is None:
            return False
        t = u.tenant
        others = [x for x in self.tenants if x is not t]
        same = [x for x in others if x.country == t.country]
        victim = rng.choice(same if same and rng.random() < 0.6 else others)
        d = next((x for x in range(self._attack_day(rng, 1, t.tz), self.days) if u.scheduled(x, self.weekday(x))), None)
        if d is None:
            u.reserved = False
            return False
        label = self._scenario(
            "cross_tenant_access",
            f"{u.actor_id} of {t.tenant_id} read records of "
            f"{victim.tenant_id} from an ordinary session, after denied attempts while guessing "
            "record ids ({records} records)",
        )
        u.injections.setdefault(d, []).append(("cross_tenant_access", label, {"victim": victim}))
        return True

    def plan_bulk_export(self, rng: Random) -> bool:
        """A one-shot export of a tenant's customers and cards, far above its usual exports."""
        # Only where a full customer export is far above anything the tenant exports in
        # normal business (HR's full staff list, sales' segments, the warehouse's deltas).
        roomy = [t for t in self.tenants if t.tables["customers"] * 0.85 > 6 * self._usual_personal_export(t)]
        u = self._pick_user(rng, ("sales", "accountant", "admin", "hr"), lambda u: not roomy or u.tenant in roomy)
        if u is None:
            return False
        t = u.tenant
        d = next((x for x in range(self._attack_day(rng, 1, t.tz), self.days) if u.scheduled(x, self.weekday(x))), None)
        if d is None:
            u.reserved = False
            return False
        after_hours = rng.random() < 0.5
        label = self._scenario(
            "bulk_export",
            f"{u.actor_id} ({u.role}) of {t.tenant_id} exported {{records}} "
            "records of personal and payment data in one go"
            + (" from home after hours" if after_hours else " during the working day"),
        )
        if after_hours:
            start = self._inside(self.midnight(t.tz, d) + int(rng.uniform(18.5, 22.5) * HOUR_MS))
            steps = [
                ("search", "customer", "search", rng.randint(0, 2)),
                ("export", "customer", "export", 1),
                ("export", "payment_card", "export", rng.randint(0, 1)),
                ("export", "prospect", "export", rng.randint(0, 1)),
            ]
            self._attacker_session(
                label,
                rng,
                u.actor_id,
                "customer_user",
                t,
                u.home_ip,
                t.country,
                u.ua,
                start,
                steps,
                records=self._bulk(t, rng, 0.85, 1.0),
            )
        else:
            u.injections.setdefault(d, []).append(("bulk_export", label, {}))
        return True

    # ------------------------------------------------------------------ opt-in scenarios

    def plan_extra_scenarios(self) -> None:
        """Brute force, error bursts and anomalous hours (``simulate(extra_kinds=True)``):
        planned last, from a random stream and an id stream of their own, so that every event
        the other scenarios and ordinary life write is the same with or without them."""
        rng = Random(f"{self.seed}:extra-scenarios")
        ids, self.ids = self.ids, _Ids(self.seed, stream="extra")
        try:
            self._plan_kinds(rng, EXTRA_KINDS, 3.0)
        finally:
            self.ids = ids

    def plan_brute_force(self, rng: Random) -> bool:
        """Password after password against one account, from one address, in a few minutes."""
        u = self._pick_user(rng, ("sales", "hr", "accountant", "clerk", "admin"))
        if u is None:
            return False
        t = u.tenant
        ip, country = self._attacker_network(rng, [t.country])
        ua = rng.choice(_TOOL_UA)
        n = rng.randint(25, 90)
        ts = next((x for x in self._brute_force_times(rng) if self._clear_of_stuffing(t, x)), None)
        if ts is None:
            u.reserved = False
            return False
        label = self._scenario(
            "brute_force",
            f"{ip} ({country}) tried {n} passwords against {u.actor_id} of {t.tenant_id} within minutes; none worked",
        )
        for _ in range(n):
            ts += rng.randint(1_500, 12_000)
            self.auth(
                ts,
                u.actor_id,
                "customer_user",
                t.tenant_id,
                "login",
                "failure",
                ip,
                country,
                ua,
                None,
                rng=rng,
                detail="bad password",
                label=label,
            )
        return True

    def _brute_force_times(self, rng: Random, tries: int = 8) -> Iterator[int]:
        for _ in range(tries):
            yield self.start_ms + self._attack_day(rng) * DAY_MS + rng.randint(0, 22 * HOUR_MS)

    def _clear_of_stuffing(self, t: _Tenant, ts: int) -> bool:
        """Whether a brute force at ``ts`` is half a day from every credential-stuffing wave that
        tried ``t``'s accounts: a wave may try the same account, and the two would then be one
        incident, named by whichever came first."""
        return all(
            t.tenant_id not in lab.tenants or ts + HOUR_MS < lab.first - 12 * HOUR_MS or ts > lab.last + 12 * HOUR_MS
            for lab in self.scenarios
            if lab.kind == "credential_stuffing"
        )

    def plan_error_burst(self, rng: Random) -> bool:
        """A service starts failing in ways it never has: many new error messages in minutes
        (a bad release, or input crafted to break it), on no one's session."""
        # One burst per service: a second would repeat messages the service has learned by then.
        free = [s for s in _BURST_SERVICES if s not in self._burst_services]
        if not free:
            return False
        service = rng.choice(free)
        self._burst_services.add(service)
        messages = rng.sample(_BURST_ERRORS, rng.randint(7, len(_BURST_ERRORS)))
        label = self._scenario(
            "error_burst",
            f"service {service} logged {len(messages)} error messages it had never logged, within minutes",
        )
        ts = self.start_ms + self._attack_day(rng) * DAY_MS + rng.randint(HOUR_MS, 22 * HOUR_MS)
        for _ in range(rng.randint(2, 4)):  # each failure recurs as requests keep arriving
            for level, message in messages:
                ts += rng.randint(500, 6_000)
                text = message.format(n=rng.randint(2, 900), ms=rng.randint(5_000, 30_000))
                self.log(ts, service, level, text, rng=rng, label=label)
        return True

    def plan_anomalous_access(self, rng: Random) -> bool:
        """A user's account, from the user's own home network and browser, at an hour no one
        works: failed passwords, then many kinds of data the user never touched, a page each.
        Nothing new about the place or the device, no role change, no idleness: no kind of
        attack the learned detector knows, only an hour unlike any in the population's history."""
        u = self._pick_user(rng, ("clerk", "sales"))
        if u is None:
            return False
        t = u.tenant
        d = self._attack_day(rng, 2, t.tz)
        start = self._inside(self.midnight(t.tz, d) + int(rng.uniform(2.0, 4.0) * HOUR_MS))
        resources = rng.sample(_UNUSUAL_READS, rng.randint(6, len(_UNUSUAL_READS)))
        label = self._scenario(
            "anomalous_access",
            f"{u.actor_id} ({u.role}) of {t.tenant_id} signed in at night local time after failed"
            f" passwords, from its usual home network and browser, and read {len(resources)} kinds"
            " of data it never used ({records} records)",
        )
        self._attacker_session(
            label,
            rng,
            u.actor_id,
            "customer_user",
            t,
            u.home_ip,
            t.country,
            u.ua,
            start,
            [("read", res, "page", rng.randint(1, 3)) for res in resources],
            failures=rng.randint(4, 7),  # fewer than brute force counts
            gap=(3_000, 40_000),
        )
        return True

    # ------------------------------------------------------------------ injected behaviour

    def exfiltrate(
        self,
        u: _User,
        t: _Tenant,
        label: _Label,
        factor: float,
        today: int,
        sessions: Sequence[tuple[str, int, int, str, str, str]],
        rng: Random,
    ) -> None:
        """Top the day's sensitive reads up to ``factor`` times the user's clean-period daily mean,
        spread over the day's ordinary sessions."""
        baseline = u.sens_sum / u.sens_days if u.sens_days else 600.0
        # On a day that was busy anyway, still take at least (factor - 1) baselines more.
        target = max(int(baseline * factor) - today, int(baseline * (factor - 1)), 50)
        total = sum(hi - lo for _, lo, hi, *_ in sessions)
        if total <= 0:
            return
        pool = _EXFIL_ACTS[u.role]
        for sid, lo, hi, ip, country, ua in sessions:
            share, got = target * (hi - lo) / total, 0
            while got < share:
                act = pool[int(rng.random() * len(pool))]
                table = t.tables[act.res.table]
                rec = min(table, rng.choice((50, 100, 100, 200)))
                self.access(
                    lo + int(rng.random() * (hi - lo)),
                    u.actor_id,
                    "customer_user",
                    t.tenant_id,
                    t.tenant_id,
                    act,
                    rec,
                    ip,
                    country,
                    ua,
                    sid,
                    rng=rng,
                    label=label,
                )
                got += rec

    def inject(
        self,
        kind: str,
        label: _Label,
        params: dict[str, Any],
        u: _User,
        t: _Tenant,
        sid: str,
        lo: int,
        hi: int,
        ip: str,
        country: str,
        ua: str,
        rng: Random,
    ) -> int:
        """Malicious requests inside a user's ordinary session; returns the time of the last one."""
        actor, tid = u.actor_id, t.tenant_id
        span = max(hi - lo, 60_000)
        ts = lo + int(rng.uniform(0.1, 0.6) * span)
        if kind == "privilege_escalation":
            admin = next((x for x in t.users if x.role == "admin"), None)
            by = actor if admin is None or rng.random() < 0.6 else admin.actor_id
            self.auth(
                ts,
                actor,
                "customer_user",
                tid,
                "role_change",
                "success",
                ip,
                country,
                ua,
                sid,
                rng=rng,
                roles=(u.role, "admin"),
                detail=f"changed_by={by} via PATCH /api/v2/admin/users/{{id}}/roles",
                label=label,
            )
            steps = [
                ("read", "user_account", "page", rng.randint(1, 3)),
                ("read", "api_key", "page", rng.randint(1, 2)),
                ("read", "integration_credential", "one", rng.randint(1, 4)),
                ("read", "sso_config", "one", 1),
                ("read", "payment_card", "page", rng.randint(1, 4)),
                ("read", "vendor_bank_account", "page", rng.randint(1, 3)),
                ("update", "vendor_bank_account", "one", rng.randint(0, 2)),
            ]
            for action, res, size, count in rng.sample(steps, rng.randint(4, len(steps))):
                act = _act(action, _RESOURCES[res], size)
                for _ in range(count):
                    ts += rng.randint(10_000, 240_000)
                    rec = self.records_for(act, t, rng) if size != "one" else 1
                    self.access(
                        ts, actor, "customer_user", tid, tid, act, rec, ip, country, ua, sid, rng=rng, label=label
                    )
            if rng.random() < 0.4:
                ts += rng.randint(30_000, 300_000)
                self.auth(
                    ts,
                    actor,
                    "customer_user",
                    tid,
                    "api_key_created",
                    "success",
                    ip,
                    country,
                    ua,
                    sid,
                    rng=rng,
                    detail=f"personal access token created by {actor}",
                    label=label,
                )
            if rng.random() < 0.3:
                ts += rng.randint(60_000, 600_000)
                self.auth(
                    ts,
                    actor,
                    "customer_user",
                    tid,
                    "role_change",
                    "success",
                    ip,
                    country,
                    ua,
                    sid,
                    rng=rng,
                    roles=(u.role,),
                    detail=f"changed_by={actor} via PATCH /api/v2/admin/users/{{id}}/roles",
                    label=label,
                )
            return ts
        if kind == "cross_tenant_access":
            victim: _Tenant = params["victim"]
            probes = rng.randint(2, 10)
            reads = rng.randint(3, 25)
            pool = [
                _act("read", _RESOURCES["customer"], "one"),
                _act("read", _RESOURCES["invoice"], "one"),
                _act("read", _RESOURCES["customer"], "page"),
                _act("read", _RESOURCES["employee"], "one"),
                _act("read", _RESOURCES["payment"], "one"),
            ]
            for i in range(probes + reads):
                ts += rng.randint(2_000, 45_000)
                act = pool[int(rng.random() * len(pool))]
                denied = i < probes and rng.random() < 0.85
                rec = 0 if denied else (1 if act.size == "one" else rng.choice((25, 50, 100)))
                self.access(
                    ts,
                    actor,
                    "customer_user",
                    tid,
                    victim.tenant_id,
                    act,
                    rec,
                    ip,
                    country,
                    ua,
                    sid,
                    rng=rng,
                    outcome="denied" if denied else "success",
                    label=label,
                )
            return ts
        if kind == "bulk_export":
            for action, res, size in (
                ("search", "customer", "search"),
                ("read", "customer", "page"),
                ("export", "customer", "export"),
                ("export", "payment_card", "export"),
            ):
                if res == "payment_card" and rng.random() < 0.4:
                    act = _act("export", _RESOURCES["employee"], "export")
                else:
                    act = _act(action, _RESOURCES[res], size)
                ts += rng.randint(5_000, 120_000)
                self.access(
                    ts,
                    actor,
                    "customer_user",
                    tid,
                    tid,
                    act,
                    self._bulk(t, rng, 0.85, 1.0)(act),
                    ip,
                    country,
                    ua,
                    sid,
                    rng=rng,
                    label=label,
                )
            return ts
        raise ValueError(f"unknown injected behaviour: {kind}")


# Reads an insider uses to pull more than usual without standing out: ordinary list pages and searches.
_EXFIL_ACTS: dict[str, list[_Act]] = {
    "sales": [
        _act("read", _RESOURCES["customer"], "page"),
        _act("read", _RESOURCES["prospect"], "page"),
        _act("search", _RESOURCES["customer"], "search"),
        _act("read", _RESOURCES["invoice"], "page"),
    ],
    "hr": [
        _act("read", _RESOURCES["employee"], "page"),
        _act("read", _RESOURCES["payroll"], "page"),
        _act("search", _RESOURCES["employee"], "search"),
    ],
    "accountant": [
        _act("read", _RESOURCES["invoice"], "page"),
        _act("read", _RESOURCES["payment"], "page"),
        _act("read", _RESOURCES["customer"], "page"),
        _act("read", _RESOURCES["ledger"], "page"),
    ],
}

# What a ticket says it is about (contract 1.1 ``summary``), by topic.
_TICKET_SUMMARIES: dict[str, tuple[str, ...]] = {
    "billing": ("Invoice totals off by a cent after currency conversion", "Duplicate payment run for one supplier"),
    "inventory": ("Stock counts differ between warehouse and ledger", "Negative stock after a returned delivery"),
    "hr": ("Leave balance wrong after the carry-over", "Payslip shows last month's allowance"),
    "access": ("New manager cannot see the team's approvals", "Single sign-on rejects two users"),
    "reports": ("Aged receivables report times out", "Customer asked for an export of their customer list"),
    "maintenance": ("Database index rebuild for the ledger", "Migration of attachments to the new store"),
    "security": ("Review of suspicious sign-ins", "Rotation of integration credentials"),
    "fraud": ("Payment to a changed bank account flagged", "Refund pattern flagged by the bank"),
}

_STAFF_TOOLS = (
    "admin: tenant inspector",
    "admin: tenant inspector",
    "admin: impersonate user",
    "admin: data repair",
    "admin: sql console",
)
_STAFF_WORK: dict[str, list[tuple[str, str, str]]] = {
    "billing": [
        ("read", "invoice", "one"),
        ("read", "invoice", "page"),
        ("read", "payment", "one"),
        ("read", "customer", "one"),
        ("update", "invoice", "one"),
    ],
    "inventory": [
        ("read", "inventory", "page"),
        ("read", "product", "one"),
        ("read", "sales_order", "one"),
        ("update", "inventory", "one"),
    ],
    "hr": [("read", "employee", "one"), ("read", "payroll", "page"), ("read", "leave_request", "page")],
    "access": [
        ("read", "user_account", "page"),
        ("read", "settings", "one"),
        ("read", "audit_log", "page"),
        ("update", "user_account", "one"),
    ],
    "reports": [("read", "report", "report"), ("read", "ledger", "page"), ("read", "settings", "one")],
    "maintenance": [
        ("update", "invoice", "one"),
        ("update", "inventory", "one"),
        ("read", "settings", "one"),
        ("read", "audit_log", "page"),
    ],
    "security": [("read", "audit_log", "page"), ("read", "user_account", "page"), ("read", "api_key", "page")],
    "fraud": [
        ("read", "payment", "page"),
        ("read", "invoice", "page"),
        ("read", "vendor_bank_account", "page"),
        ("read", "audit_log", "page"),
    ],
    "snoop": [
        ("search", "customer", "search"),
        ("read", "customer", "one"),
        ("read", "customer", "one"),
        ("read", "employee", "one"),
        ("read", "employee", "page"),
        ("read", "payment_card", "one"),
        ("read", "payroll", "page"),
    ],
}

_COMMON_LOGINS = (
    "admin",
    "administrator",
    "test",
    "info",
    "john.smith",
    "j.doe",
    "accounts",
    "finance",
    "sales",
    "office",
    "manager",
    "support",
    "maria.garcia",
    "david.jones",
    "hr",
    "user1",
    "demo",
)

_ERRORS = (
    "TimeoutError: upstream tax-service did not answer within 5000 ms",
    "OperationalError: deadlock detected while updating row",
    "KeyError: 'currency'",
    "ValueError: invalid literal for int() with base 10: ''",
    "ConnectionResetError: [Errno 104] Connection reset by peer",
)

_INFRA_MESSAGES = (
    ("WARNING", "connection pool near capacity active=47 max=50"),
    ("WARNING", "GC pause ms={ms}"),
    ("WARNING", "retrying upstream call to currency-rates attempt={n}"),
    ("ERROR", "upstream timeout calling tax-service after 5000 ms"),
    ("WARNING", "TLS handshake failed from ip={ip}: unknown ca"),
    ("INFO", "config reloaded keys={n}"),
    ("WARNING", "kafka producer retry topic=erp.access attempt={n}"),
    ("ERROR", "failed to send notification email: 421 try again later"),
    ("INFO", "certificate expires in {n} days, renewal scheduled"),
)
# New error messages of a failing service (an error burst): each a template of its own.
_BURST_ERRORS = (
    ("ERROR", "unhandled exception in invoice renderer: KeyError currency_code"),
    ("ERROR", "column ledger_entries.fx_rate does not exist"),
    ("ERROR", "TypeError unsupported operand NoneType and Decimal in tax totals"),
    ("CRITICAL", "worker process {n} exited with signal 11 segmentation fault"),
    ("ERROR", "template quote_pdf failed: undefined variable customer vat_id"),
    ("ERROR", "ZeroDivisionError in margin report compute"),
    ("ERROR", "duplicate key value violates unique constraint payments_pkey"),
    ("ERROR", "request handler crashed after {ms} ms with status 500"),
    ("ERROR", "deserialization of order payload failed at field lines[{n}].qty"),
    ("CRITICAL", "out of memory while building export batch {n}"),
)
_BURST_SERVICES = ("api", "export-worker", "integration-gw", "db-proxy", "web")
# Data a clerk or a salesperson has no business reading (an anomalous hour reads a page of each).
_UNUSUAL_READS = (
    "payroll",
    "bank_statement",
    "tax_return",
    "vendor_bank_account",
    "audit_log",
    "journal_entry",
    "leave_request",
    "settings",
    "ledger",
)
