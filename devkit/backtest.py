"""Judge incidents against labelled scenarios: recall per kind, precision, false incidents per
day, time to detect. Used by ``breachwatch backtest`` and ``bench/quality.py`` so any rule or
model change is measured the same way before it ships.

An incident *detects* a scenario when it shares an evidence event with it, or names one of
its actors or attacking addresses while the scenario runs (from ten minutes before its first
event to a day after its last). Incidents
matching no scenario are false; those matching a labelled hard negative are counted apart,
since they say which benign pattern fooled the detectors.

Staff access is also judged access by access, from the tenants' transparency log: each staff
access of a staff scenario should be marked not justified, and every other one justified.
"""

from __future__ import annotations

import secrets
import statistics
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.core.settings import Settings
from breachwatch.devkit.approvals import load_access_requests
from breachwatch.devkit.simulate import STAFF_SCENARIO_KINDS
from breachwatch.incidents.model import IncidentOut
from breachwatch.privacy.transparency import StaffAccessRow
from breachwatch.runtime import app
from breachwatch.runtime.replay import replay
from breachwatch.runtime.training import train_from_dump

GRACE = timedelta(days=1)
# Evidence may start a little before the labelled first event (the attacker's own failed
# logins, events up to five minutes late in the stream): an incident opened this much earlier
# still names the attack.
LEAD = timedelta(minutes=10)
# Scenarios of staff access no ticket, purpose or approval covers; their staff accesses are the
# ones the transparency log must mark not justified.
STAFF_KINDS: tuple[str, ...] = ("staff_snooping", *STAFF_SCENARIO_KINDS)
STAFF_FINDING_KINDS = frozenset({"staff_without_ticket", "staff_ticket_mismatch", "staff_access_unapproved"})


def p95(values: list[float]) -> float:
    """The 95th percentile (linear between the two nearest values)."""
    ordered = sorted(values)
    pos = 0.95 * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(slots=True)
class Scenario:
    scenario_id: str
    kind: str
    start: datetime
    end: datetime
    actors: frozenset[str]
    ips: frozenset[str]
    events: frozenset[str]

    @classmethod
    def from_label(cls, d: dict[str, Any]) -> Scenario:
        return cls(
            d["scenario_id"],
            d["kind"],
            _ts(d["start"]),
            _ts(d["end"]),
            frozenset(d.get("actor_ids", ())),
            frozenset(d.get("source_ips", ())),
            frozenset(d.get("event_ids", ())),
        )

    def matches(self, inc: IncidentOut) -> bool:
        if self.events.intersection(inc.evidence_event_ids):
            return True
        # By name only while the attack runs (or a day after): an earlier incident about the
        # same actor was about something else, and must not count as catching this one early.
        if not (self.start - LEAD <= inc.opened_at <= self.end + GRACE):
            return False
        return bool(self.actors.intersection(inc.actor_ids) or self.ips.intersection(inc.source_ips))


@dataclass(slots=True)
class Evaluation:
    recall: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind -> (detected, total)
    incidents: int = 0
    true_incidents: int = 0
    false_incidents: int = 0
    false_by_hard_negative: Counter[str] = field(default_factory=Counter)
    false_by_kind: Counter[str] = field(default_factory=Counter)
    time_to_detect_s: dict[str, list[float]] = field(default_factory=dict)
    days: float = 0.0
    tenants: int = 0
    missed: list[str] = field(default_factory=list)
    # Each false incident as "kind id actor: title", for the reader to look into.
    false_list: list[str] = field(default_factory=list)
    staff: dict[str, Any] = field(default_factory=dict)  # access-level figures (``staff_access_figures``)

    @property
    def precision(self) -> float:
        return self.true_incidents / self.incidents if self.incidents else 1.0

    @property
    def false_per_day_per_25_tenants(self) -> float:
        if self.days <= 0 or self.tenants <= 0:
            return 0.0
        return self.false_incidents / self.days * 25 / self.tenants

    def median_ttd_s(self) -> float | None:
        all_ttd = [t for v in self.time_to_detect_s.values() for t in v]
        return statistics.median(all_ttd) if all_ttd else None

    def p95_ttd_s(self) -> float | None:
        all_ttd = [t for v in self.time_to_detect_s.values() for t in v]
        return p95(all_ttd) if all_ttd else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "recall": {k: round(d / n, 3) if n else None for k, (d, n) in sorted(self.recall.items())},
            "scenarios": {k: f"{d}/{n}" for k, (d, n) in sorted(self.recall.items())},
            "precision": round(self.precision, 3),
            "incidents": self.incidents,
            "false_incidents": self.false_incidents,
            "false_per_day_per_25_tenants": round(self.false_per_day_per_25_tenants, 3),
            "false_by_kind": dict(self.false_by_kind),
            "false_by_hard_negative": dict(self.false_by_hard_negative),
            "median_time_to_detect_s": self.median_ttd_s(),
            "p95_time_to_detect_s": self.p95_ttd_s(),
            "median_time_to_detect_s_by_kind": {
                k: round(statistics.median(v), 1) for k, v in sorted(self.time_to_detect_s.items()) if v
            },
            "p95_time_to_detect_s_by_kind": {
                k: round(p95(v), 1) for k, v in sorted(self.time_to_detect_s.items()) if v
            },
            "missed": self.missed[:50],
            "false": self.false_list[:50],
            "staff_access": {
                **self.staff,
                "false_incidents": sum(n for k, n in self.false_by_kind.items() if k in STAFF_FINDING_KINDS),
            },
        }

    def table(self) -> str:
        lines = [f"{'scenario kind':26} {'recall':>8} {'detected':>9} {'median TTD':>11} {'p95 TTD':>11}"]
        for kind, (d, n) in sorted(self.recall.items()):
            ttd = self.time_to_detect_s.get(kind)
            med = _minutes(statistics.median(ttd)) if ttd else "-"
            high = _minutes(p95(ttd)) if ttd else "-"
            lines.append(f"{kind:26} {d / n if n else 0:8.2f} {f'{d}/{n}':>9} {med:>11} {high:>11}")
        lines.append(f"incident precision {self.precision:.3f} ({self.true_incidents}/{self.incidents})")
        lines.append(
            f"false incidents {self.false_incidents} over {self.days:.1f} days, {self.tenants} tenants"
            f" = {self.false_per_day_per_25_tenants:.2f} per day per 25 tenants"
        )
        med, high = self.median_ttd_s(), self.p95_ttd_s()
        lines.append(
            f"time to detect (from detected_at): median {_minutes(med)}, p95 {_minutes(high)}"
            if med is not None and high is not None
            else "time to detect: -"
        )
        if self.staff:
            st = self.staff
            false_staff = sum(n for k, n in self.false_by_kind.items() if k in STAFF_FINDING_KINDS)
            lines.append(
                f"staff accesses judged {st['judged']}: unjustified ones marked so"
                f" {st['caught']}/{st['unjustified']} (recall {st['recall']:.3f}); justified ones marked"
                f" unjustified {st['false']}/{st['justified']}; false staff incidents {false_staff}"
            )
        return "\n".join(lines)


def evaluate(incidents: list[IncidentOut], labels: dict[str, Any], *, since: datetime | None = None) -> Evaluation:
    """Score ``incidents`` against ``labels.json`` content, counting only what happens after ``since``.

    Time to detect runs from a scenario's first event to the ``detected_at`` of the first
    incident that caught it (an incident without one, stored by an older version, counts at
    its last activity)."""
    since = since or _ts(labels.get("clean_until") or labels["start"])
    end = _ts(labels["end"])
    scenarios = [Scenario.from_label(s) for s in labels.get("scenarios", ()) if _ts(s["end"]) >= since]
    negatives = [Scenario.from_label(s) for s in labels.get("hard_negatives", ()) if _ts(s["end"]) >= since]
    # False incidents are counted over the judged window only (the days the rate is per);
    # an incident matching a scenario counts whenever it opened (it may precede its start).
    judged = [i for i in incidents if i.opened_at >= since or any(s.matches(i) for s in scenarios)]
    ev = Evaluation(days=max((end - since).total_seconds() / 86400, 0.0), tenants=int(labels.get("tenants", 0)))
    per_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s in scenarios:
        per_kind[s.kind][1] += 1
        hits = [i for i in judged if s.matches(i)]
        if hits:
            per_kind[s.kind][0] += 1
            when = min(i.detected_at or i.updated_at for i in hits)
            ev.time_to_detect_s.setdefault(s.kind, []).append(max((when - s.start).total_seconds(), 0.0))
        else:
            ev.missed.append(f"{s.kind} {s.scenario_id} ({', '.join(sorted(s.actors)[:3])})")
    ev.recall = {k: (v[0], v[1]) for k, v in per_kind.items()}
    for inc in judged:
        ev.incidents += 1
        if any(s.matches(inc) for s in scenarios):
            ev.true_incidents += 1
            continue
        ev.false_incidents += 1
        ev.false_by_kind[inc.kind] += 1
        ev.false_list.append(f"{inc.kind} {inc.incident_id} ({', '.join(inc.actor_ids[:3])}): {inc.title}")
        fooled = next((n.kind for n in negatives if n.matches(inc)), None)
        if fooled:
            ev.false_by_hard_negative[fooled] += 1
    return ev


def staff_access_figures(engine: Engine, truth: dict[str, Any], since: datetime) -> dict[str, Any]:
    """The transparency log against the labels, for staff accesses from ``since`` on: how many of
    the staff scenarios' accesses it marks not justified, and how many others it marks so."""
    labelled = {e for s in truth.get("scenarios", ()) if s["kind"] in STAFF_KINDS for e in s.get("event_ids", ())}
    caught = unjustified = false = justified = 0
    with Session(engine) as session:
        for event_id, ok in session.execute(
            select(StaffAccessRow.event_id, StaffAccessRow.justified).where(StaffAccessRow.ts >= since)
        ):
            if event_id in labelled:
                unjustified += 1
                caught += not ok
            else:
                justified += 1
                false += not ok
    return {
        "judged": unjustified + justified,
        "unjustified": unjustified,
        "caught": caught,
        "recall": round(caught / unjustified, 3) if unjustified else 1.0,
        "justified": justified,
        "false": false,
    }


def backtest_dump(settings: Settings, dump: Path, truth: dict[str, Any], when: datetime, *, jobs: int = 1) -> Any:
    """Train on ``dump`` before ``when``, replay all of it (with the dump's access approvals in
    the database first), and score the incidents and the transparency log against ``truth``
    (labels.json content): the figures of ``backtest`` and ``bench.quality``."""
    if not settings.secret("pseudonym_key"):
        # A backtest's model is thrown away; a random key keeps it pseudonymised all the same, and
        # the pipeline must judge with the key the model was trained with.
        settings = settings.model_copy(update={"pseudonym_key": SecretStr(secrets.token_hex(16))})
    key = (settings.secret("pseudonym_key") or "").encode()
    trained = train_from_dump(settings, dump, when, key)
    with tempfile.TemporaryDirectory() as tmp:
        engine = app.database(settings, f"sqlite:///{tmp}/backtest.db")
        load_access_requests(engine, dump, settings, until=_ts(truth["end"]))
        pipeline = app.build_pipeline(settings, engine, trained, notify=False)
        replay(dump, pipeline, partitions=settings.partitions, max_bytes=settings.max_message_bytes, jobs=jobs)
        result = evaluate(pipeline.store.incidents(), truth, since=when)
        result.staff = staff_access_figures(engine, truth, when)
        engine.dispose()
    return result
