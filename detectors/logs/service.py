"""What the log detector has learned about one service: its templates, the templates and steps
of its learned sessions, a sample of those sessions and the count model fitted on it, its
recent session scores (the alert budget) and its rate of new error templates."""

from __future__ import annotations

import bisect
import hashlib
import heapq
import math
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from breachwatch.core.events import LogRecord
from breachwatch.core.findings import MAX_EVIDENCE
from breachwatch.detectors.logs.caches import remember
from breachwatch.detectors.logs.count_model import Session as Summary
from breachwatch.detectors.logs.count_model import SessionCountModel, Step
from breachwatch.detectors.logs.invariants import Broken
from breachwatch.detectors.logs.sessions import START, Burst, Session, record_load, record_state
from breachwatch.detectors.logs.templates import TemplateMiner

# A sampled session as stored: its hash, its template counts and its step counts.
Sampled = tuple[int, tuple[tuple[int, int], ...], tuple[tuple[int, int, int], ...]]
# Distinct sessions whose count-model view and pattern are remembered (``ServiceModel.view``),
# and the most records such a session has: long sessions seldom repeat exactly, and would
# make the memory a few repeats save many times what short ones take.
_MAX_VIEWS = 4096
_VIEWED_RECORDS = 64
_LN2 = math.log(2)


@dataclass(frozen=True, slots=True)
class ServiceLimits:
    """The detector's settings a service model needs (in seconds where they are durations)."""

    similarity: float
    max_templates: int
    max_transitions: int
    score_memory: int
    score_memory_min: int
    max_flag_rate: float
    min_session_score: float
    count_reservoir: int
    count_min_sessions: int
    count_refit_share: float
    count_refit_interval_s: float
    invariant_break_rate: float
    warmup_s: float
    half_life_s: float
    familiar_after: int
    familiar_sources: int
    familiar_span_s: float
    max_patterns: int


def summary_of(counts: Mapping[int, int], seq: Iterable[int], leave_out: frozenset[int] = frozenset()) -> Summary:
    """A session as the count model sees it; templates in ``leave_out`` (never seen before) are
    taken out first, so that a new template is novelty only, not also a broken step. Steps as
    ``count_model.steps_of`` makes them, counted in one pass."""
    if leave_out:
        seq = [t for t in seq if t not in leave_out]
        kept = {t: c for t, c in counts.items() if t not in leave_out}
    else:
        kept = dict(counts)
    steps: dict[Step, int] = {}
    prev = START
    for key in seq:
        if key != prev:
            st = (prev, key)
            steps[st] = steps.get(st, 0) + 1
            prev = key
    return kept, steps


class ModelView:
    """What a count model makes of a closed session: the session as it sees it (``summary_of``),
    whether it knows any of its templates, and once scored, its score and broken invariants."""

    __slots__ = ("breaks", "known", "score", "summary")

    def __init__(self, summary: Summary, known: bool) -> None:
        self.summary = summary
        self.known = known
        self.score: float | None = None  # ``SessionCountModel.score_samples``, once scored
        self.breaks: list[Broken] = []


def _sequence_key(sess: Session) -> tuple[int, ...] | None:
    """A short session's template ids in order, which decide its summary when they are all its
    records (``sessions.MAX_SEQUENCE``); None for a longer one."""
    if sess.records > _VIEWED_RECORDS or len(sess.seq) != sess.records:
        return None
    return tuple(sess.seq)


def _sampled(h: int, summary: Summary) -> Sampled:
    counts, steps = summary
    return h, tuple(sorted(counts.items())), tuple(sorted((a, b, c) for (a, b), c in steps.items()))


def _summary(entry: Sampled) -> Summary:
    _, counts, steps = entry
    return dict(counts), {(a, b): c for a, b, c in steps}


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def pattern_of(summary: Summary) -> int:
    """A session's exact pattern (every template and step with its count) as one number, the
    same for every session that repeats it, also after a restart."""
    _, counts, steps = _sampled(0, summary)
    return _digest(repr((counts, steps)))


def _entry_pattern(entry: Sampled) -> int:
    _, counts, steps = entry
    return _digest(repr((counts, steps)))


def source_of(sess: Session) -> int | None:
    """Who or what a session came from (its actor, else its tenant, else its host), hashed; None
    when its records name none: a session key is no source, every session having its own, so
    that "many sources repeat it" cannot be told from "one source repeats it"."""
    first = sess.events[0] if sess.events else None
    who = sess.actor_id or (first.tenant_id or first.host if first is not None else None)
    return _digest(who) & 0xFFFFFFFF if who else None


class ServiceModel:
    """One service's learned state and its error-burst tracker."""

    def __init__(self, name: str, first_ts: float, limits: ServiceLimits) -> None:
        self.name = name
        self.first_ts = first_ts
        self.limits = limits
        self.miner = TemplateMiner(similarity=limits.similarity, max_templates=limits.max_templates)
        self.learned = 0
        self.error_sessions = 0  # learned sessions with an ERROR or CRITICAL record
        self.max_records = 0
        # template id -> [learned sessions containing it, its largest count in an unflagged
        # one, unflagged sessions containing it]
        self.support: dict[int, list[int]] = {}
        self.steps: dict[tuple[int, int], int] = {}
        self.recent_scores: deque[float] = deque(maxlen=limits.score_memory)
        self.sorted_scores: list[float] = []  # the same scores in order: the budget's quantile
        self._threshold: float | None = None  # ``threshold()`` while the scores are unchanged
        # A uniform sample of all sessions ever closed unflagged (those whose hash is among the
        # smallest): deterministic, bounded, needs no random-generator state and holds no ids.
        self.sample: list[tuple[int, Sampled]] = []  # a heap on -hash
        self.count_changes = 0  # sample entries replaced since the count model was fitted
        self.count_fitted: list[Sampled] = []  # the sessions the current model was fitted on
        self.count_fitted_at: float | None = None  # event time of that fit
        self.count_model: SessionCountModel | None = None
        # Error bursts: creations of new error templates in the window, the decayed count of
        # such creations since warm-up and the decayed hours of exposure they happened in.
        self.new_errors: deque[tuple[float, LogRecord, int]] = deque(maxlen=MAX_EVIDENCE)
        self.new_error_count = 0.0
        self.exposure_h = 0.0
        self.clock = first_ts
        self.burst: Burst | None = None
        # Patterns of flagged sessions: pattern -> [flagged sessions with it, event time of the
        # first, the last, then up to ``familiar_sources`` distinct sources, each followed by the
        # event time it was noted at], least recent first.
        self.recurring: OrderedDict[int, list[int | float]] = OrderedDict()
        # The views of closed sessions by the count model in ``_viewed_by`` (see ``view``).
        self._views: dict[tuple[tuple[int, ...], frozenset[int]], ModelView] = {}
        self._viewed_by: SessionCountModel | None = None
        self._patterns: dict[tuple[int, ...], int] = {}  # ``pattern_of`` by template sequence

    # --------------------------------------------------------------- state

    def state(self) -> dict[str, Any]:
        return {
            "first_ts": self.first_ts,
            "learned": self.learned,
            "error_sessions": self.error_sessions,
            "max_records": self.max_records,
            "support": [[t, *s] for t, s in self.support.items()],
            "steps": [[a, b, d] for (a, b), d in self.steps.items()],
            "recent_scores": list(self.recent_scores),
            "sample": [_entry_state(e) for _, e in self.sample],
            "count_changes": self.count_changes,
            "count_fitted": [_entry_state(e) for e in self.count_fitted],
            "count_fitted_at": self.count_fitted_at,
            "miner": self.miner.state(),
            "new_errors": [[t, record_state(r), tid] for t, r, tid in self.new_errors],
            "new_error_count": self.new_error_count,
            "exposure_h": self.exposure_h,
            "clock": self.clock,
            "burst": self.burst.state() if self.burst is not None else None,
            "recurring": [[p, *row] for p, row in self.recurring.items()],
        }

    @classmethod
    def from_state(cls, name: str, s: Mapping[str, Any], limits: ServiceLimits) -> ServiceModel:
        m = cls(name, float(s["first_ts"]), limits)
        m.learned = int(s["learned"])
        m.error_sessions = int(s["error_sessions"])
        m.max_records = int(s["max_records"])
        m.support = {int(row[0]): [int(v) for v in row[1:]] for row in s["support"]}
        m.steps = {(int(a), int(b)): int(d) for a, b, d in s["steps"]}
        for v in s["recent_scores"]:
            m.push_score(float(v))
        # Stored in heap order, which is a valid heap as it stands.
        m.sample = [(-e[0], e) for e in (_entry_load(x) for x in s["sample"])]
        m.count_changes = int(s["count_changes"])
        m.count_fitted = [_entry_load(x) for x in s["count_fitted"]]
        fitted_at = s["count_fitted_at"]
        m.count_fitted_at = float(fitted_at) if fitted_at is not None else None
        m.miner.load_state(s["miner"])
        m.new_errors.extend((float(t), record_load(r), int(tid)) for t, r, tid in s["new_errors"])
        m.new_error_count = float(s["new_error_count"])
        m.exposure_h = float(s["exposure_h"])
        m.clock = float(s["clock"])
        m.burst = Burst.from_state(s["burst"]) if s["burst"] is not None else None
        # Absent from states saved before flagged patterns were counted.
        for row in s.get("recurring", ()):
            head = [int(row[1]), float(row[2]), float(row[3])]
            rest = row[4:]
            if len(rest) % 2:  # sources without the time each was noted: as of the first flag
                rest = [x for src in rest for x in (src, row[2])]
            m.recurring[int(row[0])] = [*head, *(int(x) if i % 2 == 0 else float(x) for i, x in enumerate(rest))]
        if m.count_fitted:
            # Refit on exactly the sessions the saved model was fitted on: the fit is
            # deterministic, so the restored model is the same model.
            m.count_model = m._fit([_summary(e) for e in m.count_fitted])
        return m

    @classmethod
    def from_version_1(cls, name: str, s: Mapping[str, Any], limits: ServiceLimits, now: float) -> ServiceModel:
        """A service from a version-1 checkpoint: what it learned about templates and steps is
        kept; its templates were mined with fewer masks, so it warms up again from ``now``
        (sessions are learned, not flagged, until then) with counts and samples started afresh."""
        m = cls(name, now, limits)
        m.support = {int(row[0]): [int(v) for v in row[1:]] for row in s["support"]}
        m.steps = {(int(a), int(b)): int(d) for a, b, d in s["steps"]}
        m.miner.load_state(s["miner"])
        m.clock = now
        return m

    # --------------------------------------------------------------- learning

    def learn(self, sess: Session, flagged: bool) -> None:
        """Learn a closed session's templates and steps, so that a new pattern is reported
        once; but not a flagged session's counts and length, so that an attack's volume
        never becomes the yardstick for the next one."""
        self.learned += 1
        if sess.errors:
            self.error_sessions += 1
        support = self.support
        if flagged:
            for tid in sess.counts:
                s = support.get(tid)
                if s is None:
                    support[tid] = [1, 0, 0]
                else:
                    s[0] += 1
        else:
            self.max_records = max(self.max_records, sess.records)
            for tid, c in sess.counts.items():
                s = support.get(tid)
                if s is None:
                    support[tid] = [1, c, 1]
                else:
                    s[0] += 1
                    s[2] += 1
                    if c > s[1]:
                        s[1] = c
        steps = self.steps
        for step in sess.steps:
            steps[step] = steps.get(step, 0) + 1
        if len(support) > 2 * self.limits.max_templates:
            self.support = {t: s for t, s in support.items() if t in self.miner}
        if len(steps) > self.limits.max_transitions:
            self._trim_steps(self.limits.max_transitions)

    def _trim_steps(self, cap: int) -> None:
        miner = self.miner
        kept = {st: d for st, d in self.steps.items() if (st[0] == START or st[0] in miner) and st[1] in miner}
        if len(kept) > cap:
            # Drop the least-seen tenth; a stable sort keeps older entries first among equals,
            # so the choice is the same on every replay.
            ranked = sorted(kept.items(), key=lambda kv: kv[1])
            drop = {st for st, _ in ranked[: len(kept) - int(cap * 0.9)]}
            kept = {st: d for st, d in kept.items() if st not in drop}
        self.steps = kept

    def note_flagged(self, pattern: int, source: int | None, t: float) -> None:
        """Count a flagged session of ``pattern`` from ``source`` closed at event time ``t``;
        one with no source counts nothing. A row is [flags, first, last, source, noted at, ...]."""
        if source is None:
            return
        row = self.recurring.get(pattern)
        if row is None:
            self.recurring[pattern] = [1, t, t, source, t]
            if len(self.recurring) > self.limits.max_patterns:
                self.recurring.popitem(last=False)
            return
        row[0] = int(row[0]) + 1
        row[1], row[2] = min(row[1], t), max(row[2], t)
        self._add_source(pattern, row, source, t)

    def _add_source(self, pattern: int, row: list[int | float], source: int, t: float) -> None:
        """Keep the ``familiar_sources`` distinct sources noted first, each at its first note:
        the same sources whatever order a batch's flags were noted in."""
        self.recurring.move_to_end(pattern)
        noted = {int(row[i]): float(row[i + 1]) for i in range(3, len(row) - 1, 2)}
        if noted.get(source, math.inf) <= t:
            return
        noted[source] = t
        kept = sorted(noted.items(), key=lambda st: (st[1], st[0]))[: self.limits.familiar_sources]
        del row[3:]
        for src, at in kept:
            row.extend((src, at))

    def _sources_before(self, row: list[int | float], now: float) -> set[int | float]:
        """The sources noted at least ``familiar_span`` before ``now``. Flags are noted when
        their batch is scored, after later sessions of that batch closed; counting only those
        a cool-off old, which the detector scores before judging a session closing after them
        (``LogDetector._score_cooled``), makes familiarity the same however the stream was cut."""
        span = self.limits.familiar_span_s
        return {row[i] for i in range(3, len(row) - 1, 2) if now - row[i + 1] >= span}

    def familiar(self, pattern: int, source: int | None, now: float) -> bool:
        """Whether ``pattern``, seen now from ``source``, is how this service behaves: flagged
        before in at least ``familiar_after`` sessions, the first at least ``familiar_span``
        ago (a cool-off in which an analyst can act on it), and, with ``source``, from at
        least ``familiar_sources`` distinct sources noted that long ago. One actor's repeats
        never become familiar. A familiar sighting adds its source (see ``settled``)."""
        row = self.recurring.get(pattern)
        if row is None or source is None or not self._cooled(row, now):
            return False
        if len(self._sources_before(row, now) | {source}) < self.limits.familiar_sources:
            return False
        self._add_source(pattern, row, source, now)
        return True

    def _cooled(self, row: list[int | float], now: float) -> bool:
        lim = self.limits
        return row[0] >= lim.familiar_after and now - row[1] >= lim.familiar_span_s

    def settled(self, pattern: int, now: float) -> bool:
        """Whether ``pattern`` has been found familiar: the count model keeps it when refitted."""
        row = self.recurring.get(pattern)
        return (
            row is not None
            and self._cooled(row, now)
            and len(self._sources_before(row, now)) >= self.limits.familiar_sources
        )

    def sample_session(self, sess: Session, summary: Summary | None = None) -> None:
        """Offer a closed, unflagged session to the count model's sample (``summary``: the
        session as ``summary_of`` sees it, if the caller has it already)."""
        h = int.from_bytes(hashlib.blake2b(sess.identity().encode("utf-8"), digest_size=8).digest(), "big")
        heap = self.sample
        if len(heap) < self.limits.count_reservoir:
            heapq.heappush(heap, (-h, _sampled(h, summary or summary_of(sess.counts, sess.seq))))
            self.count_changes += 1
        elif h < -heap[0][0]:
            heapq.heapreplace(heap, (-h, _sampled(h, summary or summary_of(sess.counts, sess.seq))))
            self.count_changes += 1

    def pattern(self, sess: Session) -> int:
        """``pattern_of`` closed session ``sess``, remembered by its sequence like ``view``'s."""
        key = _sequence_key(sess)
        p = self._patterns.get(key) if key is not None else None
        if p is None:
            p = pattern_of(summary_of(sess.counts, sess.seq))
            if key is not None:
                remember(self._patterns, key, p, _MAX_VIEWS)
        return p

    def view(self, model: SessionCountModel, sess: Session, leave_out: frozenset[int]) -> ModelView:
        """``model``'s view of closed session ``sess`` without the templates in ``leave_out``,
        shared by the sessions that repeat its templates in the same order while that model is
        in force: most sessions repeat one of a few patterns, each summarised and scored once."""
        if self._viewed_by is not model:
            self._views, self._viewed_by = {}, model
        seq = _sequence_key(sess)
        key = (seq, leave_out) if seq is not None else None
        v = self._views.get(key) if key is not None else None
        if v is None:
            summary = summary_of(sess.counts, sess.seq, leave_out)
            v = ModelView(summary, model.knows_any(summary))
            if key is not None:
                remember(self._views, key, v, _MAX_VIEWS)
        return v

    def model_at(self, now: float) -> SessionCountModel | None:
        """The count model, refitted first if a good part of its sample has changed and it is
        at least ``count_refit_interval`` old in event time (``now``). Fitted when a session
        closes, so that which model judged a session is fixed by event time alone."""
        lim = self.limits
        n = len(self.sample)
        if n < lim.count_min_sessions:
            return self.count_model
        if self.count_model is not None:
            if self.count_changes < lim.count_refit_share * n:
                return self.count_model
            # The sample changes fastest while a service is new; a day's worth of sessions is
            # what a refit must reflect, not the last few hours'.
            if self.count_fitted_at is not None and now - self.count_fitted_at < lim.count_refit_interval_s:
                return self.count_model
        return self.refit(now)

    def refit(self, now: float, *, full: bool = False) -> SessionCountModel:
        """Fit the count model on the sample now (event time ``now``). Sampled sessions the
        model in force finds anomalous (over its limit, or breaking a count invariant) are left
        out (unless ``full``, or their pattern has become familiar), so that a pattern first
        flagged by its counts never becomes part of the yardstick until it has recurred widely;
        what the first fit (or a history given to ``train``, fitted in full) learned stays normal."""
        lim = self.limits
        entries = [e for _, e in sorted(self.sample, key=lambda x: x[0])]
        summaries = [_summary(e) for e in entries]
        previous = self.count_model
        if not full and previous is not None and previous.ready_:
            scores = previous.score_samples(summaries)
            breaks = previous.broken(summaries)
            kept = [
                i
                for i, (e, s, b) in enumerate(zip(entries, scores, breaks, strict=True))
                if (s <= 1.0 + 1e-6 and not b) or (self.recurring and self.settled(_entry_pattern(e), now))
            ]
            if len(kept) >= lim.count_min_sessions:
                entries = [entries[i] for i in kept]
                summaries = [summaries[i] for i in kept]
        self.count_fitted = entries
        self.count_fitted_at = now
        self.count_model = self._fit(summaries)
        self.count_changes = 0
        return self.count_model

    def _fit(self, sessions: list[Summary]) -> SessionCountModel:
        lim = self.limits
        # The limit lets the alert budget's share of learned sessions be over it.
        return SessionCountModel(
            quantile=1.0 - lim.max_flag_rate,
            min_sessions=lim.count_min_sessions,
            invariant_alpha=lim.invariant_break_rate,
        ).fit(sessions)

    # --------------------------------------------------------------- the alert budget

    def push_score(self, raw: float) -> None:
        scores, ordered = self.recent_scores, self.sorted_scores
        if scores.maxlen is not None and len(scores) == scores.maxlen:
            if scores[0] == raw:
                # The score that leaves equals the one that comes (most sessions score 0):
                # the order, and so the threshold, stay as they are.
                scores.append(raw)
                return
            del ordered[bisect.bisect_left(ordered, scores[0])]
        scores.append(raw)
        bisect.insort(ordered, raw)
        self._threshold = None

    def threshold(self) -> float:
        """The raw score a session needs: ``min_session_score`` at least, more if this
        service's recent sessions are so varied that the alert budget would be overspent."""
        if self._threshold is None:
            lim = self.limits
            ranked = self.sorted_scores
            if len(ranked) < lim.score_memory_min:
                self._threshold = lim.min_session_score
            else:
                idx = min(len(ranked) - 1, math.ceil((1.0 - lim.max_flag_rate) * len(ranked)) - 1)
                self._threshold = max(lim.min_session_score, ranked[max(idx, 0)] + 1e-9)
        return self._threshold

    def error_surprise(self) -> float:
        """How unusual a session with an ERROR or CRITICAL record is here: -log10 of the share
        of learned sessions that had one (Laplace-smoothed, so a short history cannot make it
        infinite)."""
        return -math.log10((self.error_sessions + 1) / (self.learned + 2))

    def rarity(self, tid: int) -> float:
        """How rare template ``tid`` is in this service's learned sessions, flagged ones included:
        -log10 of the share that had it (Laplace-smoothed like ``error_surprise``)."""
        s = self.support.get(tid)
        return -math.log10(((s[0] if s is not None else 0) + 1) / (self.learned + 2))

    # --------------------------------------------------------------- rates

    def advance(self, t: float) -> None:
        """Decay the new-error-template rate to event time ``t`` (only after warm-up); called
        once a second of event time at most, which gives the same sums for less work."""
        lim = self.limits
        since = self.first_ts + lim.warmup_s
        start = since if since > self.clock else self.clock
        if t > start:
            hl = lim.half_life_s
            f = 0.5 ** ((t - start) / hl)
            self.new_error_count *= f
            self.exposure_h = self.exposure_h * f + (1.0 - f) * hl / 3600.0 / _LN2
        self.clock = t


def _entry_state(e: Sampled) -> list[Any]:
    h, counts, steps = e
    return [h, [list(c) for c in counts], [list(s) for s in steps]]


def _entry_load(x: list[Any]) -> Sampled:
    h, counts, steps = x
    return (
        int(h),
        tuple((int(t), int(c)) for t, c in counts),
        tuple((int(a), int(b), int(c)) for a, b, c in steps),
    )
