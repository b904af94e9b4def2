"""``RulesDetector``: runs the rule catalogue over a partition's events and emits findings.

Each rule picks the events it may act on with one vectorised test over the batch's columns
(``core.batch``); only those events are walked, each checked against the ids that matched
before (a re-delivered copy) and handed to the rules that want it, in catalogue order. Rules
keep their own bounded memory. Hits of one batch are grouped per episode and become at most one finding each, worded
from the episode's running totals. An episode that was already reported is reported again only
when it has new evidence to add (up to the evidence cap), when its severity rises, or when its
event count has doubled, so a long-running condition updates its finding (same ``finding_id``)
a handful of times instead of once per event.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import numpy as np

from breachwatch.core.batch import KINDS, EventBatch
from breachwatch.core.events import ACTOR_TOPICS, Event
from breachwatch.core.findings import MAX_EVIDENCE, SEVERITY_RANK, DetectionContext, Detector, Finding
from breachwatch.core.ids import stable_id
from breachwatch.core.justification import StaffAccess
from breachwatch.detectors.rules.access import cross_tenant_access
from breachwatch.detectors.rules.core import Hit, MatchFn, Rule, RuleMemory
from breachwatch.detectors.rules.exports import bulk_export
from breachwatch.detectors.rules.logins import brute_force, credential_stuffing
from breachwatch.detectors.rules.roles import self_granted_role
from breachwatch.detectors.rules.staff import staff_access

log = logging.getLogger(__name__)

RULES: tuple[Rule, ...] = (
    cross_tenant_access,
    staff_access,
    credential_stuffing,
    brute_force,
    bulk_export,
    self_granted_role,
)

STATE_VERSION = 1
SWEEP_EVERY = 60.0  # seconds of event time between sweeps of the rules' memories
DUPLICATE_HORIZON = 3600.0  # how long a matched event's id is remembered to drop re-deliveries
MAX_MATCHED_IDS = 200_000
MAX_REPORTED = 200_000
LOGGED_ERRORS = 10  # per rule, then one line per 10,000 errors

_by_ts = attrgetter("ts")


class RulesDetector(Detector):
    """The rule catalogue as one detector: ``RulesDetector().process(events, ctx)``."""

    name = "rules"
    topics = ACTOR_TOPICS

    def __init__(self, rules: Sequence[Rule] | None = None) -> None:
        self.rules: tuple[Rule, ...] = tuple(RULES if rules is None else rules)
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ValueError("rule names must be unique")
        if len(names) > 63:
            # ``process`` keeps which rules want an event as one bit per rule in an int64.
            raise ValueError(f"at most 63 rules, not {len(names)}")
        self.errors: dict[str, int] = {}
        self._reset()

    def _reset(self) -> None:
        """Fresh memories for every rule."""
        self._memories: dict[str, RuleMemory | None] = {}
        rules: list[tuple[Rule, MatchFn, Any]] = []
        inputs: list[np.ndarray] = []
        for r in self.rules:
            mem = self._memories[r.name] = r.memory() if r.memory else None
            rules.append((r, r.match, mem))
            kinds = np.zeros(len(KINDS), dtype=bool)
            kinds[[KINDS[cls] for cls in r.inputs]] = True
            inputs.append(kinds)
        # In catalogue order, which is the order an event meets the rules in.
        self._rules: tuple[tuple[Rule, MatchFn, Any], ...] = tuple(rules)
        # Per rule, a lookup table over the topic codes (``EventBatch.column("kinds")``).
        self._inputs = inputs
        self._watermark = float("-inf")
        self._next_sweep = float("-inf")
        # event_id -> time of its batch, for events that matched a rule.
        self._matched: dict[str, float] = {}
        # finding_id -> [until, evidence sent, severity rank, events seen, events seen when last sent]
        self._reported: dict[str, list[float]] = {}

    # --- the stream ------------------------------------------------------------------------------

    def process(self, events: Sequence[Event], ctx: DetectionContext) -> list[Finding]:
        if not events:
            return []
        batch = EventBatch.of(events)
        events = batch.events
        matched = self._matched
        # Batches come in event-time order: the ends bound the batch's times.
        ts = batch.ts
        batch_t = max(ts[0], ts[-1])
        # Which rules want which events, as one bit per rule (in catalogue order) per event:
        # the few events any rule acts on are walked, each with the rules that want it.
        kinds = batch.column("kinds")
        wants = np.zeros(len(events), dtype=np.int64)
        for bit, (r, _, _) in enumerate(self._rules):
            wants |= self._wanted(r, self._inputs[bit][kinds], batch).astype(np.int64) << bit
        picked = np.flatnonzero(wants)
        # (rule name, actor, key) -> [rule, latest hit, evidence events, event that fired first]
        pending: dict[tuple[str, str | None, str], list[Any]] = {}
        for i, bits in zip(picked.tolist(), wants[picked].tolist(), strict=True):
            ev = events[i]
            if ev.event_id in matched:
                continue
            hit_any = False
            for bit, (r, match, mem) in enumerate(self._rules):
                if not bits >> bit & 1:
                    continue
                try:
                    res = match(ev, mem, ctx)
                except Exception as exc:
                    self._failed(r, ev, exc)
                    continue
                if not res:
                    continue
                hit_any = True
                for h in (res,) if isinstance(res, Hit) else res:
                    slot = pending.get((r.name, h.actor_id, h.key))
                    if slot is None:
                        pending[(r.name, h.actor_id, h.key)] = [r, h, list(h.events), ev]
                    else:
                        slot[1] = h
                        slot[2].extend(h.events)
            if hit_any:
                # Remembered so a re-delivered copy cannot count twice in an episode.
                if len(matched) >= MAX_MATCHED_IDS:
                    del matched[next(iter(matched))]
                matched[ev.event_id] = batch_t
        if batch_t > self._watermark:
            self._watermark = batch_t
        findings = [f for slot in pending.values() if (f := self._report(*slot)) is not None]
        if self._watermark >= self._next_sweep:
            self._sweep(self._watermark)
        return findings

    @staticmethod
    def _wanted(r: Rule, inputs: np.ndarray, batch: EventBatch) -> np.ndarray:
        """The events of ``batch`` rule ``r`` is called on: of its ``inputs``, those it wants."""
        if r.wants is None:
            return inputs
        try:
            return inputs & r.wants(batch)
        except Exception as exc:
            # A filter that fails must not hide events from its rule: it sees all its inputs.
            log.error("rule %s failed to filter a batch (%s); it reads every event", r.name, type(exc).__name__)
            return inputs

    def take_staff_accesses(self) -> list[StaffAccess]:
        """The staff accesses the rules judged since the last call (see ``staff``)."""
        out: list[StaffAccess] = []
        for mem in self._memories.values():
            take = getattr(mem, "take_judged", None)
            if take is not None:
                out.extend(take())
        return out

    def _failed(self, r: Rule, ev: Event, exc: Exception) -> None:
        n = self.errors[r.name] = self.errors.get(r.name, 0) + 1
        if n <= LOGGED_ERRORS or n % 10_000 == 0:
            # Name the rule, the event and where it broke; never the message, which may quote
            # the event's contents.
            frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f"{os.path.basename(frame.filename)}:{frame.lineno}" if frame else "?"
            log.error(
                "rule %s raised %s at %s on event %s (%d errors in this rule so far); counted as no match",
                r.name,
                type(exc).__name__,
                where,
                ev.event_id,
                n,
            )

    def _report(self, r: Rule, hit: Hit, evidence: list[Event], fired: Event) -> Finding | None:
        """The finding for one episode's hits in this batch, or None if it adds nothing new."""
        actor = hit.actor_id
        fid = stable_id(r.detector, actor or "", hit.key)
        verdict = hit.episode.verdict()
        rank = SEVERITY_RANK[verdict.severity]
        # Distinct evidence, in event-time order (the sort is stable, so ties keep arrival order).
        seen: dict[str, Event] = {}
        for e in evidence:
            seen.setdefault(e.event_id, e)
        fresh = sorted(seen.values(), key=_by_ts)
        rec = self._reported.get(fid)
        if rec is None:
            if len(self._reported) >= MAX_REPORTED:
                del self._reported[next(iter(self._reported))]
            rec = self._reported[fid] = [hit.until, 0.0, -1.0, 0.0, 0.0]
            due = True
        else:
            rec[0] = max(rec[0], hit.until)
            due = rank > rec[2] or rec[1] < MAX_EVIDENCE or rec[3] + len(fresh) >= 2 * rec[4]
        rec[3] += len(fresh)
        if not due:
            return None
        room = MAX_EVIDENCE - int(rec[1])
        # Past the cap, an update still carries its latest event, so it has a time and an anchor.
        chosen = fresh[:room] if room > 0 else fresh[-1:]
        rec[1] = min(float(MAX_EVIDENCE), rec[1] + len(chosen))
        rec[2] = max(rec[2], float(rank))
        rec[4] = rec[3]
        return Finding(
            detector=r.detector,
            kind=verdict.kind or r.kind,
            severity=verdict.severity,
            score=round(verdict.score, 1),
            ts=chosen[0].ts,
            title=verdict.title,
            reasons=verdict.reasons,
            playbook=r.playbook,
            events=tuple(chosen),
            actor_id=actor,
            tenant_ids=tuple(dict.fromkeys(x for x in verdict.tenant_ids if x)),
            source_ips=tuple(dict.fromkeys(x for x in verdict.source_ips if x)),
            facts=dict(verdict.facts),
            dedup_key=hit.key,
            detected_at=fired.ts,
        )

    def _sweep(self, watermark: float) -> None:
        for name, mem in self._memories.items():
            if mem is None:
                continue
            try:
                mem.sweep(watermark)
            except Exception as exc:
                self.errors[name] = self.errors.get(name, 0) + 1
                log.error("rule %s failed to sweep its memory: %s", name, type(exc).__name__)
        horizon = watermark - DUPLICATE_HORIZON
        self._matched = {k: t for k, t in self._matched.items() if t >= horizon}
        self._reported = {k: v for k, v in self._reported.items() if v[0] >= watermark}
        self._next_sweep = watermark + SWEEP_EVERY

    # --- checkpoint --------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        rules: dict[str, Any] = {}
        for name, mem in self._memories.items():
            if mem is not None:
                rules[name] = mem.to_state()
        return {
            "version": STATE_VERSION,
            "watermark": _finite(self._watermark),
            "next_sweep": _finite(self._next_sweep),
            "matched": [[k, t] for k, t in self._matched.items()],
            "reported": [[k, *v] for k, v in self._reported.items()],
            "rules": rules,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self._reset()
        if not state:
            return
        if state.get("version") != STATE_VERSION:
            log.warning("rules state has version %r, not %d: starting afresh", state.get("version"), STATE_VERSION)
            return
        self._watermark = _infinite(state["watermark"])
        self._next_sweep = _infinite(state["next_sweep"])
        self._matched = {k: t for k, t in state["matched"]}
        self._reported = {row[0]: [float(x) for x in row[1:]] for row in state["reported"]}
        for name, sub in state["rules"].items():
            mem = self._memories.get(name)
            if mem is None:
                continue
            try:
                mem.load_state(sub)
            except Exception as exc:
                # One rule's unreadable memory must not keep the partition from starting.
                log.warning("rule %s could not restore its state (%s): starting it afresh", name, type(exc).__name__)
                mem.load_state({})


def _finite(x: float) -> float | None:
    """JSON has no infinity; ``None`` stands for "nothing seen yet"."""
    return None if x == float("-inf") else x


def _infinite(x: float | None) -> float:
    return float("-inf") if x is None else float(x)
