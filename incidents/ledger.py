"""Risk ledgers: findings below the incident threshold add risk to their actor and tenant.

Each signal (``Finding.signal``) is one contribution: its points decay by half every
``half_life`` of event time, one source (a kind of finding) adds at most ``source_cap`` to a
ledger however often it fires, and a ledger at ``threshold`` (a tenant's at 1.5 times it, each
actor adding at most ``threshold`` to it) opens an incident of kind ``accumulated_risk`` that
lists every contribution: what, when, how much. Weak signals of one actor, none worth a page,
add up to one incident; a noisy source alone never does.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Float, String, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from breachwatch.core.findings import Finding
from breachwatch.storage.db import Base, aggregate_time

KIND = "accumulated_risk"
TENANT_FACTOR = 1.5
# Contributions older than this many half-lives are worth under 1/64 of their points.
HORIZON_HALF_LIVES = 6


class RiskContributionRow(Base):
    """One signal's contribution to its actor's and tenant's ledgers."""

    __tablename__ = "risk_contributions"

    finding_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    actor_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    tenant_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    ts: Mapped[datetime] = mapped_column(index=True)  # event time it was raised
    source: Mapped[str] = mapped_column(String(100))  # the kind of finding
    points: Mapped[float] = mapped_column(Float)
    what: Mapped[str] = mapped_column(Text)  # its title and first reason


@dataclass(frozen=True, slots=True)
class Contribution:
    """A contribution as it counts at a moment: its points then, after decay and caps."""

    finding_id: str
    actor_id: str | None
    tenant_id: str | None
    ts: datetime
    source: str
    points: float
    now_points: float
    what: str


@dataclass(frozen=True, slots=True)
class Ledger:
    """A ledger at a moment: its total (caps applied) and contributions, newest first."""

    subject: str  # "actor:<id>" or "tenant:<id>"
    at: datetime
    total: float
    threshold: float
    contributions: tuple[Contribution, ...]


@dataclass(frozen=True, slots=True)
class RiskPolicy:
    threshold: float = 100.0
    source_cap: float = 60.0
    half_life: timedelta = timedelta(hours=24)

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    def decayed(self, points: float, age: timedelta) -> float:
        return points * math.pow(0.5, max(age.total_seconds(), 0.0) / self.half_life.total_seconds())

    def ledger(self, session: Session, subject: str, at: datetime) -> Ledger:
        """``subject``'s ledger as it stood at ``at`` (event time)."""
        kind, _, key = subject.partition(":")
        column = RiskContributionRow.actor_id if kind == "actor" else RiskContributionRow.tenant_id
        rows = session.scalars(
            select(RiskContributionRow)
            .where(column == key)
            .where(RiskContributionRow.ts <= at)
            .where(RiskContributionRow.ts > at - self.half_life * HORIZON_HALF_LIVES)
            .order_by(RiskContributionRow.ts.desc(), RiskContributionRow.finding_id)
        ).all()
        items = tuple(
            Contribution(
                r.finding_id,
                r.actor_id,
                r.tenant_id,
                r.ts,
                r.source,
                r.points,
                self.decayed(r.points, at - r.ts),
                r.what,
            )
            for r in rows
        )
        if kind == "actor":
            total = _capped(items, self.source_cap)
        else:
            # A tenant's ledger: each actor's capped ledger, and each actor at most a threshold.
            by_actor: dict[str, list[Contribution]] = defaultdict(list)
            for c in items:
                by_actor[c.actor_id or ""].append(c)
            total = sum(min(self.threshold, _capped(cs, self.source_cap)) for cs in by_actor.values())
        threshold = self.threshold * (TENANT_FACTOR if kind == "tenant" else 1.0)
        return Ledger(subject, at, round(total, 1), threshold, items)


def current(session: Session, policy: RiskPolicy, subject: str, at: datetime | None = None) -> Ledger:
    """``subject``'s ledger at ``at``, by default as of its newest contribution (event time:
    the ledger has no wall clock), and the incidents its crossings opened or joined."""
    if at is None:
        kind, _, key = subject.partition(":")
        column = RiskContributionRow.actor_id if kind == "actor" else RiskContributionRow.tenant_id
        at = session.scalar(select(func.max(RiskContributionRow.ts)).where(column == key))
        if at is None:
            return Ledger(subject, datetime.min.replace(tzinfo=UTC), 0.0, policy.threshold, ())
        at = aggregate_time(at)
    return policy.ledger(session, subject, at)


def _capped(items: Sequence[Contribution], cap: float) -> float:
    """The points of ``items`` with each source's sum capped at ``cap``."""
    sums: dict[str, float] = defaultdict(float)
    for c in items:
        sums[c.source] += c.now_points
    return sum(min(cap, v) for v in sums.values())


def contribution_points(f: Finding) -> float:
    """What a signal adds: half its score (a signal at 60 of 100 adds 30 points)."""
    return round(f.score / 2.0, 1)


def add(session: Session, f: Finding, when: datetime, policy: RiskPolicy) -> list[Finding]:
    """Book a signal; return the ``accumulated_risk`` findings of the ledgers it took over the
    threshold (to be stored like any finding: they join an open incident of the actor)."""
    if session.get(RiskContributionRow, f.finding_id) is not None:
        return []  # a re-delivered batch
    tenant = f.tenant_ids[0] if f.tenant_ids else None
    session.add(
        RiskContributionRow(
            finding_id=f.finding_id,
            actor_id=f.actor_id,
            tenant_id=tenant,
            ts=when,
            source=f.kind,
            points=contribution_points(f),
            what=f"{f.title}: {f.reasons[0]}" if f.reasons else f.title,
        )
    )
    session.flush()
    out: list[Finding] = []
    subjects = [f"actor:{f.actor_id}"] if f.actor_id else []
    if tenant:
        subjects.append(f"tenant:{tenant}")
    for subject in subjects:
        ledger = policy.ledger(session, subject, when)
        if ledger.total >= ledger.threshold:
            out.append(_finding(ledger, f))
    return out


def _finding(ledger: Ledger, trigger: Finding) -> Finding:
    """The incident-worthy finding of a ledger over its threshold, listing every contribution."""
    kind, _, key = ledger.subject.partition(":")
    lines = [
        f"risk {ledger.total:.0f} of {ledger.threshold:.0f} from {len(ledger.contributions)} signals below the "
        f"incident threshold ({len({c.source for c in ledger.contributions})} kinds, each capped)"
    ]
    lines += [
        f"{c.ts:%Y-%m-%d %H:%M} UTC: {c.source.replace('_', ' ')}, {c.now_points:.0f} points "
        f"(of {c.points:.0f}){f' by {c.actor_id}' if kind == 'tenant' else ''}: {c.what}"
        for c in ledger.contributions
    ]
    # One finding per ledger and day: later signals of the same day re-report it, with more.
    day = f"{ledger.at:%Y-%m-%d}"
    return Finding(
        detector="ledger",
        kind=KIND,
        severity="high" if ledger.total >= 1.5 * ledger.threshold else "medium",
        score=round(min(100.0, 50.0 + 25.0 * ledger.total / ledger.threshold), 1),
        ts=min(c.ts for c in ledger.contributions),
        title=f"Accumulated risk: {key}",
        reasons=tuple(lines),
        playbook="Read the contributions in order: several weak signals of one actor or tenant, none an "
        "incident alone. Judge them together; mark a false positive if they are explained.",
        events=trigger.events,
        actor_id=trigger.actor_id if kind == "actor" else None,
        tenant_ids=(key,) if kind == "tenant" else trigger.tenant_ids,
        source_ips=trigger.source_ips if kind == "actor" else (),
        facts={
            "risk_ledger": {
                "subject": ledger.subject,
                "total": ledger.total,
                "threshold": ledger.threshold,
                "contributions": [
                    {
                        "finding_id": c.finding_id,
                        "actor_id": c.actor_id,
                        "at": c.ts.isoformat(),
                        "source": c.source,
                        "points": c.points,
                        "points_now": round(c.now_points, 1),
                        "what": c.what,
                    }
                    for c in ledger.contributions
                ],
            }
        },
        dedup_key=f"{ledger.subject}|{day}",
        detected_at=ledger.at,
    )
