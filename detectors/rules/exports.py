"""Bulk export: an export (or a very large read) of sensitive data far above the tenant's norm.

Baselines are kept per data class (personal, payment, credentials, financial), because an
accountant's month-end ledger export says nothing about whether exporting the customer list is
normal. Each tenant's and each actor's export sizes of a class are a log-bucketed histogram (8
buckets per doubling, with each bucket's largest value), a few hundred bytes that give the 99th
percentile to within one bucket. An export fires when its records exceed ``max(1,000, 10 x the
tenant's p99)`` (the floor is lower at a small tenant: a quarter of the people it holds data on,
at least 100) for its class once the tenant has 20 such exports on record, ``20 x the largest``
with 5 to 19, and before that 20,000 (just the floor for card, bank and credential data, which ordinary
business does not export in bulk); or when it reaches a quarter of all the people the tenant
holds data on (personal or card data). Financial records (ledgers, journals, invoices,
payments: the company's own books) are exported in bulk at every period close, so they fire
only above 100,000 records (1,000,000 while the tenant has fewer than 5 on record); a ledger
taken at an odd hour from a new network is the learned detector's to judge. The topics are
keyed by actor, so each partition sees a share of a tenant's actors and its tenant baselines
are drawn from fewer exports; the sparse and cold limits are what make that safe. An export is
let through when it is within 3x of what the same actor has exported of that class before
(month-end reports by the finance team). Only actors who have exported a third of the floor or
more are remembered: smaller habits could never vouch for an export big enough to fire. Fired
exports do not enter the tenant's baseline (an attacker must not raise the bar for the next
theft); they enter the actor's own at most once a day, so a real monthly routine is learned
after a few months while a burst of thefts is not. A staff member's export that a ticket open
at the time asks for (an export purpose, approved where the tenant requires it) is the
customer's request, left to the staff-access rule.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import numpy as np

from breachwatch.core.batch import ACTIONS, K_ACCESS, OUTCOMES, SENSITIVITIES, EventBatch, among
from breachwatch.core.events import SENSITIVE, AccessEvent
from breachwatch.core.findings import DetectionContext, Severity
from breachwatch.detectors.rules.core import (
    DAY,
    VERB_PAST,
    Hit,
    Verdict,
    bounded_add,
    day_end,
    day_of,
    listing,
    log_bonus,
    num,
    plural,
    rule,
    when,
)
from breachwatch.detectors.rules.justification import justify

FLOOR = 1_000  # an export this small never fires, whatever the baseline...
# ...except of personal or card data at a small tenant, where a quarter of everyone it holds
# data on is less than that; never below this, though.
MIN_FLOOR = 100
TENANT_FACTOR = 10.0
MIN_TENANT_HISTORY = 20
# With a few exports on record the 99th percentile means little; the largest one, with a wider
# margin, is the bar until the history is long enough.
SPARSE_HISTORY = 5
SPARSE_FACTOR = 20.0
COLD_LIMIT = 20_000  # the limit while a tenant has too few exports of the class for a baseline
# Card numbers, bank accounts and secrets are not exported in bulk in the normal run of business:
# with no such exports on record, anything above the floor fires.
COLD_AT_FLOOR = frozenset({"payment", "credentials"})
# The company's own books are exported whole at period close; only a dump far beyond any close
# fires on size alone.
FINANCIAL_LIMIT = 100_000
# ...and with no financial exports of the tenant on record, only a dump of the books of a large
# company fires (a mid-size ledger at period close is a few hundred thousand lines).
FINANCIAL_COLD = 1_000_000
LARGE_READ = 10_000  # a read or search returning this many sensitive records counts as an export
# A staff export is the staff-access rule's to judge when a ticket open at the time (no grace:
# a ticket opened afterwards is that rule's question) asks for an export and any approval the
# tenant requires covers it: the support engineer is sending what the customer asked for.
REQUESTED_EXPORT_GRACE = timedelta(0)
# Share of all the people a tenant holds data on that fires by itself in one export of their
# personal or card data: that many people is a notifiable breach on its own.
SUBJECT_SHARE = 0.25
SUBJECT_CLASSES = frozenset({"personal", "payment"})
ACTOR_FACTOR = 3.0
MIN_ACTOR_HISTORY = 3
# An actor whose exports are all below this can never vouch for one that fires (which is above
# the floor, so above 3x theirs): such actors are not remembered until they export this much.
ACTOR_MEMO_MIN = FLOOR / ACTOR_FACTOR
BUCKETS_PER_DOUBLING = 8
DECAY_AT = 2048  # counts are halved at this total, so old habits fade and numbers stay small
MAX_TENANTS = 100_000
MAX_ACTORS = 200_000
MAX_RUNS = 50_000
TENANT_IDLE = 180 * DAY
ACTOR_IDLE = 120 * DAY  # must outlast a quarter, so quarterly routines are remembered


class LogHistogram:
    """Export sizes in logarithmic buckets; quantiles are a bucket's largest value seen."""

    __slots__ = ("buckets", "last", "n")

    def __init__(self) -> None:
        self.buckets: dict[int, list[int]] = {}  # bucket -> [count, largest value]
        self.n = 0
        self.last = float("-inf")

    def add(self, value: int, t: float) -> None:
        b = int(math.log2(value + 1) * BUCKETS_PER_DOUBLING)
        e = self.buckets.get(b)
        if e is None:
            self.buckets[b] = [1, value]
        else:
            e[0] += 1
            if value > e[1]:
                e[1] = value
        self.n += 1
        if t > self.last:
            self.last = t
        if self.n >= DECAY_AT:
            self.buckets = {k: [c // 2, m] for k, (c, m) in self.buckets.items() if c >= 2}
            self.n = sum(c for c, _ in self.buckets.values())

    def quantile(self, q: float) -> int:
        """An upper estimate of the ``q`` quantile: never below the true value."""
        target = q * self.n
        acc = 0
        largest = 0
        for b in sorted(self.buckets):
            c, largest = self.buckets[b]
            acc += c
            if acc >= target:
                return largest
        return largest

    def dump(self) -> list[Any]:
        return [self.n, self.last, [[b, c, m] for b, (c, m) in self.buckets.items()]]

    @classmethod
    def restore(cls, row: list[Any]) -> LogHistogram:
        h = cls()
        h.n, h.last, buckets = row
        h.buckets = {b: [c, m] for b, c, m in buckets}
        return h


class ExportRun:
    """One actor's over-the-limit exports from one tenant on one UTC day."""

    __slots__ = (
        "action",
        "actor_id",
        "actor_n",
        "basis",
        "day",
        "exports",
        "first",
        "floor",
        "ips",
        "largest",
        "largest_t",
        "limit",
        "own_p99",
        "records",
        "resource",
        "sensitivities",
        "sensitivity",
        "subjects",
        "tenant_id",
        "tenant_n",
        "tenant_p99",
        "until",
    )
    FIELDS = __slots__

    def __init__(self, ev: AccessEvent, t: float) -> None:
        self.actor_id = ev.actor_id
        self.tenant_id = ev.tenant_id
        self.day = day_of(t)
        self.until = day_end(t)
        self.first = t
        self.exports = 0
        self.records = 0
        self.largest = -1
        self.largest_t = t
        self.action = ev.action
        self.resource = ev.resource_type
        self.sensitivity = ev.sensitivity
        self.sensitivities: list[str] = []
        self.ips: list[str] = []
        self.limit = 0.0
        self.floor = FLOOR
        self.tenant_p99: int | None = None
        self.basis = "cold"  # what set the limit: "p99", "largest", "cold" or "financial"
        self.tenant_n = 0
        self.own_p99: int | None = None
        self.actor_n = 0
        self.subjects: int | None = None

    def add(
        self,
        ev: AccessEvent,
        t: float,
        limit: float,
        tenant: LogHistogram | None,
        tenant_p99: int | None,
        actor: LogHistogram | None,
        own_p99: int | None,
        subjects: int | None,
        basis: str,
        floor: int,
    ) -> None:
        n = ev.records
        self.exports += 1
        self.records += n
        bounded_add(self.sensitivities, ev.sensitivity, 6)
        bounded_add(self.ips, ev.ip, 10)
        if n > self.largest:
            # The finding is worded around the largest export and the baseline it broke.
            self.largest, self.largest_t = n, t
            self.action, self.resource, self.sensitivity = ev.action, ev.resource_type, ev.sensitivity
            self.limit, self.tenant_p99, self.own_p99, self.subjects = limit, tenant_p99, own_p99, subjects
            self.basis = basis
            self.floor = floor
            self.tenant_n = tenant.n if tenant else 0
            self.actor_n = actor.n if actor else 0

    def _baseline_fact(self) -> dict[str, int]:
        """The tenant figure the limit came from, named for what it is; nothing when cold."""
        if self.tenant_p99 is None or self.basis not in ("p99", "largest"):
            return {}
        return {"tenant_p99" if self.basis == "p99" else "tenant_largest": self.tenant_p99}

    def share(self) -> float:
        return self.largest / self.subjects if self.subjects else 0.0

    def verdict(self) -> Verdict:
        n = self.largest
        verb = VERB_PAST.get(self.action, self.action)
        how = "" if self.action == "export" else " in one request"
        reasons = [
            f"{self.actor_id} {verb} {num(n)} {self.resource} records ({self.sensitivity} data) of tenant"
            f" {self.tenant_id}{how} at {when(self.largest_t)}"
        ]
        cls = self.sensitivity
        # The tenant's baseline is of its users on this actor's partition (the topic is keyed by
        # actor), a sample of them: the reasons say "compared with", not "this tenant's".
        if self.basis == "financial":
            reasons.append(
                f"financial records are exported in bulk at every period close, so only an export above"
                f" {num(self.limit)} records fires on its size"
            )
        elif self.basis == "p99" and self.tenant_p99 is not None:
            reasons.append(
                f"the 99th percentile {cls} export of the tenant's users this one is compared with is"
                f" {num(self.tenant_p99)} records (over"
                f" {plural(self.tenant_n, f'past {cls} export')}); the rule fires above {num(self.limit)}"
                f" ({TENANT_FACTOR:g}x that, and never below {num(self.floor)})"
            )
        elif self.basis == "largest" and self.tenant_p99 is not None:
            reasons.append(
                f"the largest {cls} export so far of the tenant's users this one is compared with is"
                f" {num(self.tenant_p99)} records (only"
                f" {plural(self.tenant_n, f'past {cls} export')}); the rule fires above {num(self.limit)}"
                f" ({SPARSE_FACTOR:g}x that, and never below {num(self.floor)})"
            )
        else:
            few = f"only {plural(self.tenant_n, f'past {cls} export')}" if self.tenant_n else f"no past {cls} exports"
            reasons.append(
                f"{few} on record for the users of tenant {self.tenant_id} this one is compared with, too few"
                f" for a baseline, so the fixed limit of {num(self.limit)} records applies"
            )
        share = self.share()
        if share >= 1:
            reasons.append(
                f"that is more than the {num(self.subjects or 0)} data subjects tenant {self.tenant_id} holds"
            )
        elif share:
            reasons.append(
                f"that is {share:.0%} of the {num(self.subjects or 0)} data subjects tenant {self.tenant_id} holds"
            )
        if self.own_p99 is None:
            if self.actor_n:
                reasons.append(
                    f"{self.actor_id} has only {plural(self.actor_n, f'past {cls} export')} of their own, too"
                    f" few to vouch for this one"
                )
            else:
                reasons.append(f"{self.actor_id} has no {cls} export history of their own at this tenant")
        else:
            reasons.append(
                f"{self.actor_id}'s own 99th percentile {cls} export is {num(self.own_p99)} records (over"
                f" {plural(self.actor_n, f'past {cls} export')}), and this is more than {ACTOR_FACTOR:g}x that"
            )
        if self.exports > 1:
            reasons.append(
                f"{plural(self.exports, 'export')} over the limit on {self.day}, {num(self.records)} records in all"
            )
        if self.ips:
            reasons.append(f"requests came from {listing(self.ips)}")
        ratio = n / self.limit if self.limit else 1.0
        severity: Severity
        if (
            ratio >= 10
            or share >= SUBJECT_SHARE
            or "payment" in self.sensitivities
            or "credentials" in self.sensitivities
        ):
            severity, score = "critical", 90.0 + log_bonus(ratio, 5.0, 10.0)
        else:
            severity, score = "high", 70.0 + log_bonus(ratio, 10.0, 19.0)
        return Verdict(
            severity=severity,
            score=min(score, 100.0),
            title=f"{self.actor_id} {verb} {num(n)} {self.sensitivity} records of tenant {self.tenant_id}",
            reasons=tuple(reasons),
            tenant_ids=(self.tenant_id,),
            source_ips=tuple(self.ips),
            facts={
                "records": n,
                "limit": self.limit,
                "tenant_history": self.tenant_n,
                "actor_history": self.actor_n,
                "exports_over_limit": self.exports,
                "records_over_limit": self.records,
                # Baselines that do not exist yet are left out rather than set to null.
                **({"tenant_p99": self.tenant_p99} if self.tenant_p99 is not None and self.basis == "p99" else {}),
                **(
                    {"tenant_largest": self.tenant_p99}
                    if self.tenant_p99 is not None and self.basis == "largest"
                    else {}
                ),
                **({"actor_p99": self.own_p99} if self.own_p99 is not None else {}),
                **({"data_subjects": self.subjects} if self.subjects else {}),
            },
        )

    def dump(self) -> list[Any]:
        return [getattr(self, f) for f in self.FIELDS]

    @classmethod
    def restore(cls, row: list[Any]) -> ExportRun:
        obj = cls.__new__(cls)
        for f, v in zip(cls.FIELDS, row, strict=True):
            setattr(obj, f, v)
        return obj


class ExportMemory:
    """Export-size baselines per tenant and per actor, and today's over-the-limit runs."""

    def __init__(self) -> None:
        self.tenants: dict[str, LogHistogram] = {}
        self.actors: dict[str, LogHistogram] = {}
        # The day a fired export last entered the actor's history (at most one a day).
        self.learned_day: dict[str, str] = {}
        self.runs: dict[str, ExportRun] = {}

    @staticmethod
    def _get(table: dict[str, LogHistogram], key: str, cap: int) -> LogHistogram:
        h = table.get(key)
        if h is None:
            if len(table) >= cap:
                del table[next(iter(table))]
            h = table[key] = LogHistogram()
        return h

    def tenant(self, key: str) -> LogHistogram:
        return self._get(self.tenants, key, MAX_TENANTS)

    def actor(self, key: str) -> LogHistogram:
        return self._get(self.actors, key, MAX_ACTORS)

    def run(self, key: str, ev: AccessEvent, t: float) -> ExportRun:
        r = self.runs.get(key)
        if r is None:
            if len(self.runs) >= MAX_RUNS:
                del self.runs[next(iter(self.runs))]
            r = self.runs[key] = ExportRun(ev, t)
        return r

    def sweep(self, watermark: float) -> None:
        for table, idle in ((self.tenants, TENANT_IDLE), (self.actors, ACTOR_IDLE)):
            for k in [k for k, h in table.items() if h.last < watermark - idle]:
                del table[k]
        for k in [k for k in self.learned_day if k not in self.actors]:
            del self.learned_day[k]
        for k in [k for k, r in self.runs.items() if r.until < watermark]:
            del self.runs[k]

    def to_state(self) -> dict[str, Any]:
        return {
            "tenants": [[k, h.dump()] for k, h in self.tenants.items()],
            "actors": [[k, h.dump()] for k, h in self.actors.items()],
            "learned_day": self.learned_day,
            "runs": [[k, r.dump()] for k, r in self.runs.items()],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.tenants = {k: LogHistogram.restore(row) for k, row in state.get("tenants", [])}
        self.actors = {k: LogHistogram.restore(row) for k, row in state.get("actors", [])}
        self.learned_day = dict(state.get("learned_day", {}))
        # Runs saved by an older layout (another field count) are dropped: they only join
        # today's over-the-limit exports into one finding.
        self.runs = {k: ExportRun.restore(row) for k, row in state.get("runs", []) if len(row) == len(ExportRun.FIELDS)}


_SENSITIVE_DATA = among(SENSITIVITIES, *sorted(SENSITIVE))
_READ = among(ACTIONS, "read", "search")


def _may_export(b: EventBatch) -> np.ndarray:
    """The accesses ``bulk_export`` reads: sensitive data handed out, exported or in a large read."""
    action = b.column("action")
    return (
        (b.column("kinds") == K_ACCESS)
        & _SENSITIVE_DATA[b.column("sensitivity")]
        & (b.column("outcome") == OUTCOMES["success"])
        & ((action == ACTIONS["export"]) | ((b.column("records") >= LARGE_READ) & _READ[action]))
    )


@rule(
    name="bulk_export",
    kind="bulk_export",
    severity="high",
    description="An export or very large read of sensitive data far above the tenant's and the actor's norm.",
    playbook=(
        "Ask the tenant's admin whether the export was expected; if not, revoke the actor's"
        " sessions and API keys, find where the file went (download IP, integration), and treat"
        " the exported records as a likely breach for the notice."
    ),
    inputs=(AccessEvent,),
    memory=ExportMemory,
    wants=_may_export,
)
def bulk_export(ev: AccessEvent, mem: ExportMemory, ctx: DetectionContext) -> Hit | None:
    if ev.sensitivity not in SENSITIVE or ev.outcome != "success":
        return None
    n = ev.records
    action = ev.action
    if action != "export" and (n < LARGE_READ or (action != "read" and action != "search")):
        return None
    t = ev.ts.timestamp()
    tenant_id = ev.tenant_id
    cls = ev.sensitivity
    # Baselines are per data class: exporting ledgers vouches for nothing about the customer list.
    tenant_key = f"{tenant_id}|{cls}"
    actor_key = f"{ev.actor_id}|{tenant_id}|{cls}"
    tenant = ctx.tables.tenants.get(tenant_id)
    subjects = tenant.data_subjects if tenant is not None and cls in SUBJECT_CLASSES else None
    floor = max(MIN_FLOOR, min(FLOOR, int(SUBJECT_SHARE * subjects))) if subjects else FLOOR
    if n <= floor:
        # Cannot fire (every limit is at least the floor): only learn, the common case.
        mem.tenant(tenant_key).add(n, t)
        if n >= ACTOR_MEMO_MIN or actor_key in mem.actors:
            mem.actor(actor_key).add(n, t)
        return None
    th = mem.tenants.get(tenant_key)
    ah = mem.actors.get(actor_key)
    tenant_p99: int | None = None
    history = th.n if th is not None else 0
    if th is not None and history >= MIN_TENANT_HISTORY:
        tenant_p99 = th.quantile(0.99)
        limit, basis = max(float(floor), TENANT_FACTOR * tenant_p99), "p99"
    elif th is not None and history >= SPARSE_HISTORY:
        tenant_p99 = th.quantile(1.0)
        limit, basis = max(float(floor), SPARSE_FACTOR * tenant_p99), "largest"
    else:
        limit, basis = float(floor if cls in COLD_AT_FLOOR else COLD_LIMIT), "cold"
    if cls == "financial":
        least = FINANCIAL_COLD if basis == "cold" else FINANCIAL_LIMIT
        if limit < least:
            limit, basis = float(least), "financial"
    fire = n > limit
    if not fire and subjects:
        fire = n >= SUBJECT_SHARE * subjects
    own_p99: int | None = None
    if fire and ah is not None and ah.n >= MIN_ACTOR_HISTORY:
        own_p99 = ah.quantile(0.99)
        fire = n > ACTOR_FACTOR * own_p99

    if fire and ev.actor_type == "staff":
        fire = bool(justify(ev, ctx.tables, REQUESTED_EXPORT_GRACE).problems)
    if not fire:
        mem.tenant(tenant_key).add(n, t)
        mem.actor(actor_key).add(n, t)
        return None
    day = day_of(t)
    run = mem.run(f"{ev.actor_id}|{tenant_id}|{day}", ev, t)
    run.add(ev, t, limit, th, tenant_p99, ah, own_p99, subjects, basis, floor)
    if mem.learned_day.get(actor_key) != day:
        mem.actor(actor_key).add(n, t)
        mem.learned_day[actor_key] = day
    return Hit(key=f"{tenant_id}|{day}", actor_id=ev.actor_id, episode=run, events=(ev,), until=run.until)
