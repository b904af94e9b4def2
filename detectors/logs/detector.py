"""Log-stream detector: unusual log sessions and bursts of new error messages, per service.

Messages are mined online into templates (``templates_miner``); records sharing a session id
(or trace id) form a session, which is scored once it has been idle for a while: templates
or template-to-template steps never seen in the sessions learned so far, counts far above
anything learned, and a mix of templates that an isolation forest finds more unusual than
every learned session. A session is flagged when those signals add up to more than one's
worth: a single never-seen template on an otherwise ordinary session is learned, not paged.
Separately, a burst of new ERROR/CRITICAL templates in a short window,
judged against the service's usual rate of new error templates, is flagged. The detector
knows nothing about what the services do: every signal is relative to what it has learned.

Every closed session is learned, so a new template or step is reported once per service;
a flagged session's counts and length are not, so that one attack's volume never becomes
the yardstick for the next.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from scipy.special import pdtrc
from sklearn.base import BaseEstimator
from sklearn.ensemble import IsolationForest
from sklearn.utils.validation import check_is_fitted

from breachwatch.core.events import LOG_TOPICS, Event, LogRecord
from breachwatch.core.findings import MAX_EVIDENCE, DetectionContext, Detector, Finding, Severity
from breachwatch.core.ids import unique
from breachwatch.detectors.forest import IsolationPaths
from breachwatch.detectors.logs.templates import TemplateMiner

KIND_SESSION = "anomalous_log_session"
KIND_BURST = "error_burst"
ERROR_LEVELS = frozenset({"ERROR", "CRITICAL"})
STATE_VERSION = 1
_START = 0  # pseudo template id before a session's first record (template ids start at 1)
_MIX_DIMS = 32  # hashed template-count dimensions of a session's feature vector
_MIX_WEIGHT = 0.5  # what "more unusual than every learned session" adds to a raw score
_TEXT_CHARS = 160  # template text quoted in a reason is cut to this
_SESSION_PLAYBOOK = (
    "Read the session's records in the evidence. Check whether a release or a new feature "
    "explains the unfamiliar messages; if not, look up the same actor's access and login events "
    "for that time, and suspend the account or revoke the key if the actions were not theirs."
)
_BURST_PLAYBOOK = (
    "Check whether a deployment or an outage of the service explains the new error messages. "
    "If not, treat it as probing (injection, path traversal, enumeration): find the actors, "
    "sessions and addresses behind the evidence records and block them."
)


# ------------------------------------------------------------------ features and model


def session_features(
    counts: Mapping[int, int], records: int, errors: int, duration_s: float, dims: int = _MIX_DIMS
) -> list[float]:
    """A fixed-length vector of one session: log counts of its templates hashed into ``dims``
    buckets, then log records, log distinct templates, error share and log duration."""
    vec = [0.0] * (dims + 4)
    for tid, c in counts.items():
        vec[tid % dims] += c
    for i in range(dims):
        vec[i] = math.log1p(vec[i])
    vec[dims] = math.log1p(records)
    vec[dims + 1] = math.log1p(len(counts))
    vec[dims + 2] = errors / records if records else 0.0
    vec[dims + 3] = math.log1p(max(duration_s, 0.0))
    # Millesimal precision is plenty, and keeps checkpoints of the training sample small.
    return [round(v, 3) for v in vec]


def _features(sess: _Session) -> list[float]:
    return session_features(sess.counts, sess.records, sess.errors, sess.last_ts - sess.first_ts)


def _identity(sess: _Session) -> str:
    """What tells one session from every other, also after a restart."""
    return "\x1f".join((sess.service, sess.key, sess.first_event_id))


class SessionMixModel(BaseEstimator):
    """Isolation forest over session feature vectors; scores are higher for odder sessions.

    Parameters
    ----------
    n_estimators : int
        Trees in the forest.
    max_samples : int
        Sessions drawn to grow each tree (capped at the training size).
    random_state : int
        Seed, fixed so that refitting on the same sessions gives the same model.
    """

    def __init__(self, n_estimators: int = 100, max_samples: int = 256, random_state: int = 0) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> SessionMixModel:
        """Fit on learned sessions and remember the most unusual training score."""
        data = np.asarray(X, dtype=float)
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, len(data)),
            random_state=self.random_state,
        ).fit(data)
        self.paths_ = IsolationPaths(self.forest_)
        self.n_training_sessions_ = len(data)
        self.worst_training_score_ = float(self.score_samples(data).max())
        return self

    def score_samples(self, X: Any) -> np.ndarray:
        """Anomaly score in (0, 1], higher is more unusual (the sign flip of scikit-learn's)."""
        check_is_fitted(self, "paths_")
        data = np.asarray(X, dtype=float)
        if data.ndim != 2 or data.shape[1] != self.forest_.n_features_in_ or not np.isfinite(data).all():
            # Shapes and values the fast path was not made for get scikit-learn's own checks.
            return -self.forest_.score_samples(data)
        return self.paths_.score(data)

    def decision_function(self, X: Any) -> np.ndarray:
        """Positive where a session is more unusual than every training session."""
        return self.score_samples(X) - self.worst_training_score_


def poisson_tail(n: int, lam: float) -> float:
    """P(X >= n) for X ~ Poisson(lam): how surprising ``n`` events are at rate ``lam``."""
    if n <= 0:
        return 1.0
    return float(pdtrc(n - 1, max(lam, 1e-12)))


# ------------------------------------------------------------------ records and wording


def _record_state(rec: LogRecord) -> dict[str, Any]:
    return rec.model_dump(mode="json", exclude_none=True)


def _record_load(data: Mapping[str, Any]) -> LogRecord:
    # Through JSON so the record is validated exactly as when it was first decoded.
    return LogRecord.model_validate_json(json.dumps(data))


def _quote(text: str | None) -> str:
    if text is None:
        return "(a template no longer kept)"
    if len(text) > _TEXT_CHARS:
        text = text[: _TEXT_CHARS - 1] + "…"
    return f"'{text}'"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _rate(per_hour: float) -> str:
    return f"{per_hour:.1f}/h" if per_hour >= 0.1 else f"{per_hour:.2f}/h"


def _severity(score: float) -> Severity:
    if score >= 90:
        return "high"
    if score >= 70:
        return "medium"
    return "low"


def _first_actor(records: Iterable[LogRecord]) -> str | None:
    for r in records:
        if r.actor_id:
            return r.actor_id
    return None


def _evidence(records: Iterable[LogRecord]) -> tuple[LogRecord, ...]:
    # Records may arrive a little out of order; evidence is shown in event-time order.
    return tuple(sorted(records, key=lambda r: r.ts)[:MAX_EVIDENCE])


# ------------------------------------------------------------------ sessions


class _Session:
    """An open session: template counts, template-to-template steps and its records."""

    __slots__ = (
        "actor_id",
        "counts",
        "errors",
        "event_ids",
        "events",
        "first_event_id",
        "first_ts",
        "key",
        "last_tid",
        "last_ts",
        "records",
        "service",
        "steps",
    )

    def __init__(self, service: str, key: str, first: LogRecord, t: float) -> None:
        self.service = service
        self.key = key
        self.first_event_id = first.event_id
        self.first_ts = t
        self.last_ts = t
        self.records = 0
        self.errors = 0
        self.counts: dict[int, int] = {}
        self.steps: dict[tuple[int, int], None] = {}  # an ordered set
        self.last_tid = _START
        self.events: list[LogRecord] = []
        self.event_ids: set[str] = set()
        self.actor_id: str | None = None

    def state(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "key": self.key,
            "first_event_id": self.first_event_id,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "records": self.records,
            "errors": self.errors,
            "counts": [[t, c] for t, c in self.counts.items()],
            "steps": [list(s) for s in self.steps],
            "last_tid": self.last_tid,
            "actor_id": self.actor_id,
            "events": [_record_state(r) for r in self.events],
        }

    @classmethod
    def from_state(cls, s: Mapping[str, Any]) -> _Session:
        events = [_record_load(r) for r in s["events"]]
        sess = cls.__new__(cls)
        sess.service = s["service"]
        sess.key = s["key"]
        sess.first_event_id = s["first_event_id"]
        sess.first_ts = float(s["first_ts"])
        sess.last_ts = float(s["last_ts"])
        sess.records = int(s["records"])
        sess.errors = int(s["errors"])
        sess.counts = {int(t): int(c) for t, c in s["counts"]}
        sess.steps = {(int(a), int(b)): None for a, b in s["steps"]}
        sess.last_tid = int(s["last_tid"])
        sess.events = events
        sess.event_ids = {r.event_id for r in events}
        sess.actor_id = s["actor_id"]
        return sess


@dataclass(slots=True)
class _Assessment:
    """A closed session's signals, computed before the session is learned."""

    session: _Session
    warm: bool
    learned: int
    raw: float = 0.0  # the sum of the explainable terms' weights
    threshold: float = 1.0
    flagged: bool = False
    closed_at: float = 0.0  # event time at which the session was judged
    terms: list[tuple[float, str]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ bursts of new errors


class _Burst:
    """An open burst of new error templates, kept until the window passes without more."""

    __slots__ = ("dedup_key", "event_ids", "events", "first_ts", "last_ts", "levels", "reported", "stats", "tids")

    def __init__(self, dedup_key: str, first_ts: float) -> None:
        self.dedup_key = dedup_key
        self.first_ts = first_ts
        self.last_ts = first_ts
        self.tids: dict[int, None] = {}
        self.events: list[LogRecord] = []
        self.event_ids: set[str] = set()
        self.levels: dict[str, None] = {}
        self.stats: dict[str, float] = {}
        self.reported = 0  # evidence size when the finding was last emitted

    def add(self, rec: LogRecord, tid: int, new: bool, t: float) -> None:
        if new:
            self.tids[tid] = None
            self.levels[rec.level] = None
            self.last_ts = max(self.last_ts, t)
        if len(self.events) < MAX_EVIDENCE and rec.event_id not in self.event_ids:
            self.events.append(rec)
            self.event_ids.add(rec.event_id)

    def state(self) -> dict[str, Any]:
        return {
            "dedup_key": self.dedup_key,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "tids": list(self.tids),
            "events": [_record_state(r) for r in self.events],
            "levels": list(self.levels),
            "stats": dict(self.stats),
            "reported": self.reported,
        }

    @classmethod
    def from_state(cls, s: Mapping[str, Any]) -> _Burst:
        b = cls(s["dedup_key"], float(s["first_ts"]))
        b.last_ts = float(s["last_ts"])
        b.tids = {int(t): None for t in s["tids"]}
        b.events = [_record_load(r) for r in s["events"]]
        b.event_ids = {r.event_id for r in b.events}
        b.levels = {str(v): None for v in s["levels"]}
        b.stats = {str(k): float(v) for k, v in s["stats"].items()}
        b.reported = int(s["reported"])
        return b


# ------------------------------------------------------------------ one service's model


class _ServiceModel:
    """What the detector has learned about one service, and its error-burst tracker."""

    def __init__(self, name: str, first_ts: float, det: LogDetector) -> None:
        self.name = name
        self.first_ts = first_ts
        self.miner = TemplateMiner(similarity=det.similarity, max_templates=det.max_templates)
        self.learned = 0
        self.max_records = 0
        # template id -> [learned sessions containing it, its largest count in an unflagged
        # one, unflagged sessions containing it]
        self.support: dict[int, list[int]] = {}
        self.steps: dict[tuple[int, int], int] = {}
        self.recent_scores: deque[float] = deque(maxlen=det.score_memory)
        # A uniform sample of all sessions ever closed (the ones whose hash is among the
        # smallest): deterministic, bounded, and needs no random-generator state.
        self.mix_sample: list[tuple[int, str, list[float]]] = []  # a heap on -hash
        self.mix_changes = 0  # sample entries replaced since the forest was fitted
        self.mix_fitted: list[list[float]] = []  # the rows the current forest was fitted on
        self.mix_fitted_at: float | None = None  # event time of that fit
        self.mix: SessionMixModel | None = None
        # Error bursts: creations of new error templates in the window, the decayed count of
        # such creations since warm-up and the decayed hours of exposure they happened in.
        self.new_errors: deque[tuple[float, LogRecord, int]] = deque(maxlen=MAX_EVIDENCE)
        self.new_error_count = 0.0
        self.exposure_h = 0.0
        self.clock = first_ts
        self.burst: _Burst | None = None

    # --------------------------------------------------------------- state

    def state(self) -> dict[str, Any]:
        return {
            "first_ts": self.first_ts,
            "learned": self.learned,
            "max_records": self.max_records,
            "support": [[t, *s] for t, s in self.support.items()],
            "steps": [[a, b, d] for (a, b), d in self.steps.items()],
            "recent_scores": list(self.recent_scores),
            "mix_sample": [[-neg, key, row] for neg, key, row in self.mix_sample],
            "mix_changes": self.mix_changes,
            "mix_fitted": self.mix_fitted,
            "mix_fitted_at": self.mix_fitted_at,
            "miner": self.miner.state(),
            "new_errors": [[t, _record_state(r), tid] for t, r, tid in self.new_errors],
            "new_error_count": self.new_error_count,
            "exposure_h": self.exposure_h,
            "clock": self.clock,
            "burst": self.burst.state() if self.burst is not None else None,
        }

    @classmethod
    def from_state(cls, name: str, s: Mapping[str, Any], det: LogDetector) -> _ServiceModel:
        m = cls(name, float(s["first_ts"]), det)
        m.learned = int(s["learned"])
        m.max_records = int(s["max_records"])
        m.support = {int(row[0]): [int(v) for v in row[1:]] for row in s["support"]}
        m.steps = {(int(a), int(b)): int(d) for a, b, d in s["steps"]}
        m.recent_scores.extend(float(v) for v in s["recent_scores"])
        # Stored in heap order, which is a valid heap as it stands.
        m.mix_sample = [(-int(h), str(key), [float(x) for x in row]) for h, key, row in s["mix_sample"]]
        m.mix_changes = int(s["mix_changes"])
        m.mix_fitted = [[float(x) for x in row] for row in s["mix_fitted"]]
        # Checkpoints written before refits were scheduled in event time do not hold it: such a
        # forest may be refitted as soon as enough of its sample has changed.
        fitted_at = s.get("mix_fitted_at")
        m.mix_fitted_at = float(fitted_at) if fitted_at is not None else None
        m.miner.load_state(s["miner"])
        m.new_errors.extend((float(t), _record_load(r), int(tid)) for t, r, tid in s["new_errors"])
        m.new_error_count = float(s["new_error_count"])
        m.exposure_h = float(s["exposure_h"])
        m.clock = float(s["clock"])
        m.burst = _Burst.from_state(s["burst"]) if s["burst"] is not None else None
        if m.mix_fitted:
            # Refit on exactly the sessions the saved model was fitted on: the seed is fixed,
            # so the restored model is the same model.
            m.mix = SessionMixModel(random_state=det.random_state).fit(m.mix_fitted)
        return m

    # --------------------------------------------------------------- learning

    def learn(self, sess: _Session, det: LogDetector, flagged: bool) -> None:
        """Learn a closed session's templates and steps, so that a new pattern is reported
        once; but not a flagged session's counts and length, so that an attack's volume
        never becomes the yardstick for the next one."""
        self.learned += 1
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
        if len(support) > 2 * det.max_templates:
            self._forget_evicted_templates()
        if len(steps) > det.max_transitions:
            self._trim_steps(det.max_transitions)

    def _forget_evicted_templates(self) -> None:
        miner = self.miner
        self.support = {t: s for t, s in self.support.items() if t in miner}

    def _trim_steps(self, cap: int) -> None:
        miner = self.miner
        kept = {st: d for st, d in self.steps.items() if (st[0] == _START or st[0] in miner) and st[1] in miner}
        if len(kept) > cap:
            # Drop the least-seen tenth; a stable sort keeps older entries first among equals,
            # so the choice is the same on every replay.
            ranked = sorted(kept.items(), key=lambda kv: kv[1])
            drop = {st for st, _ in ranked[: len(kept) - int(cap * 0.9)]}
            kept = {st: d for st, d in kept.items() if st not in drop}
        self.steps = kept

    def sample_session(self, sess: _Session, det: LogDetector) -> None:
        """Offer a closed, unflagged session to the forest's training sample (features are
        computed only for the few that get in)."""
        ident = _identity(sess)
        h = int.from_bytes(hashlib.blake2b(ident.encode("utf-8"), digest_size=8).digest(), "big")
        heap = self.mix_sample
        if len(heap) < det.mix_reservoir:
            heapq.heappush(heap, (-h, ident, _features(sess)))
            self.mix_changes += 1
        elif h < -heap[0][0]:
            heapq.heapreplace(heap, (-h, ident, _features(sess)))
            self.mix_changes += 1

    def mix_model(self, det: LogDetector, exclude: set[str], now: float) -> SessionMixModel | None:
        """The isolation forest, refitted first if a good part of its sample has changed and
        it is at least ``mix_refit_interval`` old in event time (``now``).

        Fitted lazily, when a session needs it: sessions that need it are rare, and a fit
        costs a tenth of a second or more. Sessions in ``exclude`` (those about to be scored)
        are left out of a refit, so that no session is compared with a forest grown on itself."""
        n = len(self.mix_sample)
        if n < det.mix_min_sessions:
            return self.mix
        if self.mix is not None:
            if self.mix_changes < det.mix_refit_share * n:
                return self.mix
            # The sample changes fastest while a service is new; a day's worth of sessions is
            # what a refit must reflect, not the last few hours'.
            if self.mix_fitted_at is not None and now - self.mix_fitted_at < det.mix_refit_interval_s:
                return self.mix
        ordered = sorted(self.mix_sample, key=lambda e: e[0])
        rows = [row for _, ident, row in ordered if ident not in exclude]
        if len(rows) >= det.mix_min_sessions:
            self.mix_fitted = rows
            self.mix_fitted_at = now
            self.mix = SessionMixModel(random_state=det.random_state).fit(rows)
            self.mix_changes = 0
        return self.mix

    def threshold(self, det: LogDetector) -> float:
        """The raw score a session needs: ``min_session_score`` at least, more if this
        service's recent sessions are so varied that the alert budget would be overspent."""
        floor = det.min_session_score
        scores = self.recent_scores
        if len(scores) < det.score_memory_min:
            return floor
        ranked = sorted(scores)
        idx = min(len(ranked) - 1, math.ceil((1.0 - det.max_flag_rate) * len(ranked)) - 1)
        return max(floor, ranked[max(idx, 0)] + 1e-9)

    # --------------------------------------------------------------- rates

    def advance(self, t: float, det: LogDetector) -> None:
        """Decay the new-error-template rate to event time ``t`` (only after warm-up); called
        once a second of event time at most, which gives the same sums for less work."""
        since = self.first_ts + det.warmup_s
        start = max(self.clock, since)
        if t > start:
            f = 0.5 ** ((t - start) / det.half_life_s)
            self.new_error_count *= f
            self.exposure_h = self.exposure_h * f + (1.0 - f) * det.half_life_s / 3600.0 / math.log(2)
        self.clock = t


# ------------------------------------------------------------------ the detector


class LogDetector(Detector):
    """Unusual log sessions and bursts of new error templates, learned per service.

    Parameters
    ----------
    idle_gap : timedelta
        A session with no record for this long (event time) is closed and scored.
    lateness : timedelta
        Extra wait before closing, for records that arrive late.
    max_session_duration : timedelta
        A session older than this is closed and scored anyway; later records start a new one.
    warmup, warmup_sessions : timedelta, int
        A service's first stretch of event time, and its first sessions, are learned only.
    max_flag_rate : float
        Alert budget: at most this share of a service's sessions is flagged, whatever the
        signals say (the threshold rises to the matching quantile of recent session scores).
    novelty_min_elsewhere : int
        A template that appeared this often outside a session is not new to it.
    burst_window, burst_min_new, burst_p_value : timedelta, int, float
        A burst is at least ``burst_min_new`` new error templates within ``burst_window`` whose
        chance at the service's usual rate is at most ``burst_p_value``.
    rate_half_life : timedelta
        Memory of the usual rate of new error templates.
    max_services, max_open_sessions, max_templates, max_transitions : int
        Memory bounds; the least recently active service or session, the least recently
        matched template and the least seen transitions give way first.
    max_held_records : int
        Records held as evidence across all open sessions; past it, each session keeps only
        its first ``min_session_evidence`` records (its counts stay exact).
    similarity : float
        Template-mining similarity threshold.
    mix_reservoir, mix_min_sessions, mix_refit_share : int, int, float
        Sessions the isolation forest is fitted on (a uniform sample of all closed sessions),
        the fewest it needs, and the share of them that must have changed for a refit.
    mix_refit_interval : timedelta
        Event time that must pass between refits of a service's isolation forest.
    random_state : int
        Seed of the isolation forest.
    """

    name = "logs"
    topics = LOG_TOPICS

    def __init__(
        self,
        *,
        idle_gap: timedelta = timedelta(minutes=30),
        lateness: timedelta = timedelta(minutes=5),
        max_session_duration: timedelta = timedelta(hours=8),
        warmup: timedelta = timedelta(hours=1),
        warmup_sessions: int = 300,
        max_flag_rate: float = 0.005,
        novelty_min_elsewhere: int = 3,
        burst_window: timedelta = timedelta(minutes=5),
        burst_min_new: int = 5,
        burst_p_value: float = 1e-6,
        rate_half_life: timedelta = timedelta(hours=24),
        max_services: int = 256,
        max_open_sessions: int = 10_000,
        max_held_records: int = 200_000,
        min_session_evidence: int = 50,
        max_templates: int = 2000,
        max_transitions: int = 20_000,
        similarity: float = 0.5,
        mix_reservoir: int = 512,
        mix_min_sessions: int = 128,
        mix_refit_share: float = 0.25,
        mix_refit_interval: timedelta = timedelta(hours=24),
        min_session_score: float = 1.5,
        random_state: int = 0,
    ) -> None:
        self.idle_gap = idle_gap
        self.lateness = lateness
        self.max_session_duration = max_session_duration
        self.warmup = warmup
        self.warmup_sessions = warmup_sessions
        self.max_flag_rate = max_flag_rate
        self.novelty_min_elsewhere = novelty_min_elsewhere
        self.burst_window = burst_window
        self.burst_min_new = burst_min_new
        self.burst_p_value = burst_p_value
        self.rate_half_life = rate_half_life
        self.max_services = max_services
        self.max_open_sessions = max_open_sessions
        self.max_held_records = max_held_records
        self.min_session_evidence = min_session_evidence
        self.max_templates = max_templates
        self.max_transitions = max_transitions
        self.similarity = similarity
        self.mix_reservoir = mix_reservoir
        self.mix_min_sessions = mix_min_sessions
        self.mix_refit_share = mix_refit_share
        self.mix_refit_interval = mix_refit_interval
        # More than one signal's worth: one never-seen template alone is what a new release or
        # a rare but harmless path (a user denied a page once) looks like, and paging on it is
        # noise; with it, another signal (an unseen order of steps, odd counts) is needed.
        self.min_session_score = min_session_score
        self.random_state = random_state
        # Derived settings, in seconds, for the per-record path.
        self.close_after_s = (idle_gap + lateness).total_seconds()
        self.max_duration_s = max_session_duration.total_seconds()
        self.warmup_s = warmup.total_seconds()
        self.window_s = burst_window.total_seconds()
        self.half_life_s = rate_half_life.total_seconds()
        self.mix_refit_interval_s = mix_refit_interval.total_seconds()
        self.score_memory = 1000
        self.score_memory_min = 200
        self.min_support_for_counts = 50
        self._reset()

    def _reset(self) -> None:
        self._services: OrderedDict[str, _ServiceModel] = OrderedDict()
        # Open sessions, least recently active first: closing idle ones looks at the front only.
        self._sessions: OrderedDict[tuple[str, str], _Session] = OrderedDict()
        self._watermark: float | None = None
        self._held = 0  # records held as evidence by open sessions
        self._bursting: dict[str, None] = {}  # services with an open burst

    # --------------------------------------------------------------- streaming

    def process(self, events: Sequence[Event], ctx: DetectionContext) -> list[Finding]:
        """Mine, sessionise and score a batch of records; other event types are ignored."""
        findings: list[Finding] = []
        closed: list[_Assessment] = []
        for ev in events:
            if isinstance(ev, LogRecord):
                self._observe(ev, closed, findings)
        self._finish(closed, findings)
        return findings

    def _observe(self, rec: LogRecord, closed: list[_Assessment], findings: list[Finding]) -> None:
        t = rec.ts.timestamp()
        svc = self._services.get(rec.service)
        if svc is None:
            svc = self._services[rec.service] = _ServiceModel(rec.service, t, self)
            if len(self._services) > self.max_services:
                self._evict_service(next(iter(self._services)), closed, findings)
        else:
            self._services.move_to_end(rec.service)
        wm = self._watermark
        # Idle sessions and finished bursts are looked for when event time enters a new
        # second, not at every record: as exact for a decision counted in minutes, and the
        # same whatever the batching or a restart in between.
        tick = wm is None or int(t) > int(wm)
        if wm is None or t > wm:
            self._watermark = t
        if t - svc.clock >= 1.0:
            svc.advance(t, self)
        tid, created = svc.miner.add(rec.message)

        burst = svc.burst
        if created and rec.level in ERROR_LEVELS:
            self._new_error_template(svc, rec, tid, t, findings)
        elif burst is not None and tid in burst.tids:
            burst.add(rec, tid, False, t)

        key = rec.session_id or rec.trace_id
        if key:
            self._add_to_session(svc, rec, key, tid, t, closed)
        if tick:
            self._close_idle(closed, findings)

    def _add_to_session(
        self, svc: _ServiceModel, rec: LogRecord, key: str, tid: int, t: float, closed: list[_Assessment]
    ) -> None:
        skey = (rec.service, key)
        sess = self._sessions.get(skey)
        if sess is not None and t - sess.first_ts > self.max_duration_s:
            del self._sessions[skey]
            self._close(sess, closed)
            sess = None
        if sess is None:
            sess = self._sessions[skey] = _Session(rec.service, key, rec, t)
            if len(self._sessions) > self.max_open_sessions:
                oldest = next(iter(self._sessions))
                self._close(self._sessions.pop(oldest), closed)
        else:
            if rec.event_id in sess.event_ids:
                return  # a re-delivered record must not count twice
            self._sessions.move_to_end(skey)
        held = len(sess.events)
        if held < MAX_EVIDENCE and (held < self.min_session_evidence or self._held < self.max_held_records):
            sess.events.append(rec)
            sess.event_ids.add(rec.event_id)
            self._held += 1
        if sess.actor_id is None and rec.actor_id:
            sess.actor_id = rec.actor_id
        sess.records += 1
        if rec.level in ERROR_LEVELS:
            sess.errors += 1
        sess.counts[tid] = sess.counts.get(tid, 0) + 1
        if tid != sess.last_tid:
            # Runs of one template collapse to one step, so "read x100" is one transition.
            if len(sess.steps) < MAX_EVIDENCE:
                sess.steps[(sess.last_tid, tid)] = None
            sess.last_tid = tid
        if t > sess.last_ts:
            sess.last_ts = t
        elif t < sess.first_ts:
            sess.first_ts = t

    def _close_idle(self, closed: list[_Assessment], findings: list[Finding]) -> None:
        wm = self._watermark
        assert wm is not None
        sessions = self._sessions
        while sessions:
            skey, sess = next(iter(sessions.items()))
            if wm - sess.last_ts <= self.close_after_s:
                break
            del sessions[skey]
            self._close(sess, closed)
        if self._bursting:
            for name in list(self._bursting):
                b = self._services[name].burst
                if b is not None and wm - b.last_ts > self.window_s + self.lateness.total_seconds():
                    self._end_burst(self._services[name], findings)

    def _evict_service(self, name: str, closed: list[_Assessment], findings: list[Finding]) -> None:
        svc = self._services[name]
        for skey in [k for k in self._sessions if k[0] == name]:
            self._close(self._sessions.pop(skey), closed)
        # Closed sessions are scored at the end of the batch, so score this service's now,
        # while its model still exists.
        own = [a for a in closed if a.session.service == name]
        closed[:] = [a for a in closed if a.session.service != name]
        self._score(svc, own, findings)
        if svc.burst is not None:
            self._end_burst(svc, findings)
        del self._services[name]

    # --------------------------------------------------------------- session scoring

    def _warm(self, svc: _ServiceModel) -> bool:
        wm = self._watermark if self._watermark is not None else svc.first_ts
        return svc.learned >= self.warmup_sessions and wm - svc.first_ts >= self.warmup_s

    def _close(self, sess: _Session, closed: list[_Assessment]) -> None:
        """Assess a closed session against what was learned before it, decide, then learn.

        Done here, session by session, so that neither what is learned nor the forest's
        opinion (asked with the forest as it stands at this session's close) depends on how
        the stream was cut into batches."""
        self._held -= len(sess.events)
        svc = self._services[sess.service]
        a = _Assessment(sess, self._warm(svc), svc.learned)
        # The moment the session was judged: when event time showed it idle (or it was cut).
        a.closed_at = max(sess.last_ts, self._watermark if self._watermark is not None else sess.last_ts)
        if a.warm:
            self._assess(svc, a)
            a.raw = float(sum(w for w, _ in a.terms))
            # Below the floor nothing is flagged, so the quantile (a sort of the recent
            # scores) is only needed above it.
            floor = self.min_session_score
            a.threshold = svc.threshold(self) if a.raw >= floor - _MIX_WEIGHT else floor
            a.flagged = a.raw >= a.threshold
            svc.recent_scores.append(a.raw)
            if a.raw >= a.threshold - _MIX_WEIGHT:
                self._consult_forest(svc, a)
        svc.learn(sess, self, flagged=a.flagged)
        if not a.flagged:
            svc.sample_session(sess, self)
        if a.warm and a.raw >= a.threshold - _MIX_WEIGHT:
            closed.append(a)  # the rest can become no finding (see ``_score``)

    def _assess(self, svc: _ServiceModel, a: _Assessment) -> None:
        sess = a.session
        label = f"session {sess.key}"
        n_learned = svc.learned
        miner = svc.miner
        support = svc.support

        novel = [
            tid
            for tid, c in sess.counts.items()
            if tid not in support and miner.size(tid) - c < self.novelty_min_elsewhere
        ]
        if novel:
            texts = [_quote(miner.template(t)) for t in novel]
            more = f" and {len(novel) - 3:,} more" if len(novel) > 3 else ""
            word = "template" if len(novel) == 1 else "templates"
            a.terms.append(
                (
                    float(len(novel)),
                    f"{label} produced {len(novel):,} {word} never seen before: {', '.join(texts[:3])}{more}",
                )
            )
            a.facts["new_templates"] = [miner.template(t) for t in novel[:20]]

        novel_set = set(novel)
        unseen = [st for st in sess.steps if st[0] not in novel_set and st[1] not in novel_set and st not in svc.steps]
        if unseen:
            a0, b0 = unseen[0]
            first = "(session start)" if a0 == _START else _quote(miner.template(a0))
            a.terms.append(
                (
                    min(2.0, 0.4 * len(unseen)),
                    f"{label} went from one message to the next in "
                    f"{_plural(len(unseen), 'way')} never seen in {n_learned:,} learned sessions, "
                    f"e.g. {first} → {_quote(miner.template(b0))}",
                )
            )
            a.facts["unseen_transitions"] = len(unseen)

        excess: list[tuple[float, int, int, list[int]]] = []
        for tid, c in sess.counts.items():
            s = support.get(tid)
            if s is not None and s[2] >= self.min_support_for_counts and 0 < s[1] < c:
                excess.append((c / s[1], tid, c, s))
        if excess:
            excess.sort(key=lambda e: -e[0])
            weight = min(1.5, sum(min(1.0, 0.5 * math.log2(r)) for r, *_ in excess))
            _, tid, c, s = excess[0]
            others = len(excess) - 1
            more = f" ({others:,} other templates also above their learned maximum)" if others else ""
            a.terms.append(
                (
                    weight,
                    f"{_quote(miner.template(tid))} appeared {c:,} times in {label}; at most "
                    f"{s[1]:,} in any of the {s[2]:,} learned sessions with it{more}",
                )
            )
            a.facts["count_excess"] = {"count": c, "learned_max": s[1], "learned_sessions_with_it": s[2]}

        if n_learned >= self.min_support_for_counts and svc.max_records and sess.records > svc.max_records:
            ratio = sess.records / svc.max_records
            a.terms.append(
                (
                    min(1.0, 0.5 * math.log2(ratio)),
                    f"{label} has {sess.records:,} records; the longest of {n_learned:,} learned "
                    f"sessions had {svc.max_records:,}",
                )
            )

    def _finish(self, closed: list[_Assessment], findings: list[Finding]) -> None:
        """Turn the batch's closed sessions that reached their threshold into findings."""
        by_service: dict[str, list[_Assessment]] = {}
        for a in closed:
            by_service.setdefault(a.session.service, []).append(a)
        for name, items in by_service.items():
            self._score(self._services[name], items, findings)

    def _consult_forest(self, svc: _ServiceModel, a: _Assessment) -> None:
        """Add the forest's term to a session it can tip over or whose score it adds to.

        Such sessions are rare, so one call per session costs little, and it keeps the verdict
        independent of which other sessions happened to close in the same batch."""
        now = self._watermark if self._watermark is not None else a.session.last_ts
        model = svc.mix_model(self, {_identity(a.session)}, now)
        if model is None:
            return
        s = float(model.score_samples([_features(a.session)])[0])
        worst = model.worst_training_score_
        if s > worst:
            a.terms.append(
                (
                    _MIX_WEIGHT,
                    f"session {a.session.key}'s mix of messages is more unusual than any of "
                    f"the {model.n_training_sessions_:,} learned sessions it was compared with "
                    f"(isolation score {s:.2f}; learned worst {worst:.2f})",
                )
            )
            a.facts["isolation_score"] = round(s, 4)

    def _score(self, svc: _ServiceModel, items: list[_Assessment], findings: list[Finding]) -> None:
        for a in items:
            if not a.warm or a.raw < a.threshold - _MIX_WEIGHT:
                continue
            raw = float(sum(w for w, _ in a.terms))
            if a.flagged or raw >= a.threshold:
                findings.append(self._session_finding(svc, a, raw, a.threshold))

    def _session_finding(self, svc: _ServiceModel, a: _Assessment, raw: float, threshold: float) -> Finding:
        sess = a.session
        evidence = _evidence(sess.events)
        score = round(100.0 * (1.0 - 3.0 ** (-raw)), 1)
        reasons = tuple(r for _, r in sorted(a.terms, key=lambda wr: -wr[0]))
        facts = {
            "service": svc.name,
            "session": sess.key,
            "records": sess.records,
            "error_records": sess.errors,
            "learned_sessions": a.learned,
            "raw_score": round(raw, 4),
            "threshold": round(threshold, 4),
            **a.facts,
        }
        return Finding(
            detector=self.name,
            kind=KIND_SESSION,
            severity=_severity(score),
            score=score,
            ts=evidence[0].ts,
            title=f"Unusual log session {sess.key} on service {svc.name}",
            reasons=reasons,
            playbook=_SESSION_PLAYBOOK,
            events=evidence,
            actor_id=sess.actor_id,
            tenant_ids=unique(r.tenant_id for r in sess.events),
            facts=facts,
            dedup_key="\x1f".join((svc.name, KIND_SESSION, sess.key, sess.first_event_id)),
            detected_at=datetime.fromtimestamp(a.closed_at, tz=UTC),
        )

    # --------------------------------------------------------------- error bursts

    def _new_error_template(
        self, svc: _ServiceModel, rec: LogRecord, tid: int, t: float, findings: list[Finding]
    ) -> None:
        burst_warm = (self._watermark or t) - svc.first_ts >= self.warmup_s
        if burst_warm:
            svc.new_error_count += 1.0
        if svc.burst is not None:
            svc.burst.add(rec, tid, True, t)
            return
        window = svc.new_errors
        window.append((t, rec, tid))
        while window and window[0][0] < t - self.window_s:
            window.popleft()
        n = len(window)
        if not burst_warm or n < self.burst_min_new:
            return
        # The usual rate leaves out the window under test, and starts from a prior of one new
        # error template per hour so that a short history cannot make it near zero.
        base = max(svc.new_error_count - n, 0.0)
        rate = (base + 1.0) / (svc.exposure_h + 1.0)
        lam = rate * self.window_s / 3600.0
        p = poisson_tail(n, lam)
        if p > self.burst_p_value:
            return
        first = min(window, key=lambda w: (w[0], w[1].event_id))
        burst = _Burst("\x1f".join((svc.name, KIND_BURST, first[1].event_id)), first[0])
        for wt, wrec, wtid in window:
            burst.add(wrec, wtid, True, wt)
        burst.stats = {"rate_per_h": rate, "expected": lam, "p_value": p}
        window.clear()
        svc.burst = burst
        self._bursting[svc.name] = None
        findings.append(self._burst_finding(svc, burst))

    def _end_burst(self, svc: _ServiceModel, findings: list[Finding]) -> None:
        burst = svc.burst
        svc.burst = None
        self._bursting.pop(svc.name, None)
        if burst is not None and len(burst.events) > burst.reported:
            # The same finding id, with the evidence gathered since it was first reported.
            burst.stats["p_value"] = poisson_tail(len(burst.tids), burst.stats["expected"])
            findings.append(self._burst_finding(svc, burst))

    def _burst_finding(self, svc: _ServiceModel, burst: _Burst) -> Finding:
        burst.reported = len(burst.events)
        evidence = _evidence(burst.events)
        n = len(burst.tids)
        rate, lam, p = burst.stats["rate_per_h"], burst.stats["expected"], burst.stats["p_value"]
        levels = "/".join(lv for lv in ("ERROR", "CRITICAL") if lv in burst.levels)
        minutes = self.window_s / 60.0
        span_min = max((burst.last_ts - burst.first_ts) / 60.0, minutes)
        examples = [_quote(svc.miner.template(t)) for t in list(burst.tids)[:3]]
        reasons = [
            f"{n:,} new {levels} templates in {span_min:.0f} min; usual new-error rate {_rate(rate)}",
            f"at the usual rate about {lam:.2g} would be expected in {minutes:g} min; "
            f"the chance of {n:,} or more is {p:.1e}",
            f"examples: {', '.join(examples)}",
        ]
        score = min(100.0, 40.0 + 4.0 * -math.log10(max(p, 1e-300)))
        if "CRITICAL" in burst.levels:
            score = min(100.0, score + 10.0)
        score = round(score, 1)
        return Finding(
            detector=self.name,
            kind=KIND_BURST,
            severity="high" if score >= 85 else "medium",
            score=score,
            ts=evidence[0].ts,
            title=f"Burst of {n:,} new error messages on service {svc.name}",
            reasons=tuple(reasons),
            playbook=_BURST_PLAYBOOK,
            events=evidence,
            actor_id=_first_actor(evidence),
            tenant_ids=unique(r.tenant_id for r in evidence),
            facts={
                "service": svc.name,
                "new_error_templates": n,
                "templates": [svc.miner.template(t) for t in list(burst.tids)[:20]],
                "window_minutes": minutes,
                "span_minutes": round(span_min, 2),
                "usual_rate_per_hour": round(rate, 4),
                "expected_in_window": round(lam, 6),
                "p_value": p,
            },
            dedup_key=burst.dedup_key,
        )

    # --------------------------------------------------------------- checkpoints

    def state(self) -> dict[str, Any]:
        """Everything learned and every open session, as plain JSON-able data."""
        return {
            "version": STATE_VERSION,
            "watermark": self._watermark,
            "services": [[name, svc.state()] for name, svc in self._services.items()],
            "sessions": [s.state() for s in self._sessions.values()],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what ``state()`` returned; an empty dict resets the detector."""
        self._reset()
        if not state:
            return
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported log detector state version: {state.get('version')!r}")
        wm = state["watermark"]
        self._watermark = float(wm) if wm is not None else None
        for name, s in state["services"]:
            svc = self._services[str(name)] = _ServiceModel.from_state(str(name), s, self)
            if svc.burst is not None:
                self._bursting[svc.name] = None
        for s in state["sessions"]:
            sess = _Session.from_state(s)
            self._sessions[(sess.service, sess.key)] = sess
            self._held += len(sess.events)
