"""Log-stream detector: unusual log sessions and bursts of new error messages, per service.

Messages are mined online into templates (``templates``); records sharing a session id (or
trace id) form a session, which is judged once it has been idle for a while against what the
service's learned sessions were like. The signals, each with a weight and a reason:

* templates never seen before in the service's sessions, and template-to-template steps never
  seen between known templates (novelty);
* counts far above anything learned, and sessions longer than any learned;
* a count model (``count_model``: each session's tf-idf counts of templates and steps against
  its nearest learned session) that finds the session's mix, counts or order of familiar
  messages unlike every learned session: enough on its own to flag it far enough out;
* count invariants (``invariants``): a pair of templates whose counts keep one ratio in the
  learned sessions, broken (a partner missing, or two records off): enough on its own;
* ERROR and CRITICAL records, weighted by how rarely the service's learned sessions had any;
* a CRITICAL record, weighted by how rarely learned sessions had its message: enough on its own
  when in a hundredth or fewer of them (a one-record session has nothing else to show).

A session is flagged when its signals add up to more than one signal's worth: a single
never-seen template, or a single error, on an otherwise ordinary session is learned, not paged.
Separately, a burst of new ERROR/CRITICAL templates in a short window, judged against the
service's usual rate of new error templates, is flagged. The detector knows nothing about what
the services do: every signal is relative to what it has learned, from ``breachwatch train``'s
history (``history``) and then online.

Every closed session is learned, so a new template or step is reported once per service; a
flagged session's counts and length are not, so that one attack's volume never becomes the
yardstick for the next, until another source repeats its exact pattern after a cool-off (see
``familiar_after``): then it is how the service behaves. The count model is refitted on a
sample of learned sessions at most once per ``count_refit_interval`` of event time, and scores
the sessions a batch closed in one call at the end of the batch, each with the model as it
stood when the session closed.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from scipy.special import pdtrc

from breachwatch.core.batch import EventBatch
from breachwatch.core.events import LOG_TOPICS, Event, LogRecord
from breachwatch.core.findings import MAX_EVIDENCE, DetectionContext, Detector, Finding, Severity, StateDelta
from breachwatch.core.ids import unique
from breachwatch.detectors.logs.count_model import SessionCountModel
from breachwatch.detectors.logs.deltas import SessionDeltas, in_order
from breachwatch.detectors.logs.invariants import Broken
from breachwatch.detectors.logs.service import (
    ModelView,
    ServiceLimits,
    ServiceModel,
    source_of,
)
from breachwatch.detectors.logs.sessions import ERROR_LEVELS, START, Burst, Session, evidence, first_actor

KIND_SESSION = "anomalous_log_session"
KIND_BURST = "error_burst"
STATE_VERSION = 2  # 2: count model and error counts per service, template order per session
# The head of a checkpoint whose open sessions are items (``deltas``): a version of its own, so
# that code before it, which expects the sessions in the head, refuses it by name.
ITEMISED_VERSION = 3
_TEXT_CHARS = 160  # template text quoted in a reason is cut to this
_COUNT_TOLERANCE = 1e-6  # a session equal to a learned one is at its limit, not over it
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


def poisson_tail(n: int, lam: float) -> float:
    """P(X >= n) for X ~ Poisson(lam): how surprising ``n`` events are at rate ``lam``."""
    if n <= 0:
        return 1.0
    return float(pdtrc(n - 1, max(lam, 1e-12)))


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


class _Assessment:
    """A closed session's signals, computed when it closed, before it was learned."""

    __slots__ = (
        "closed_at",
        "facts",
        "flagged",
        "learned",
        "model",
        "pattern",
        "raw",
        "session",
        "terms",
        "threshold",
        "view",
    )

    def __init__(self, session: Session, learned: int, closed_at: float) -> None:
        self.session = session
        self.learned = learned
        self.closed_at = closed_at  # event time at which the session was judged
        self.raw = 0.0  # the sum of the explainable terms' weights
        self.threshold = 1.0
        self.flagged = False  # by the terms known at close (the count model's comes at batch end)
        self.terms: list[tuple[float, str]] = []
        self.facts: dict[str, Any] = {}
        self.model: SessionCountModel | None = None  # the count model as it stood at the close
        self.view: ModelView | None = None  # the session as that model sees it
        self.pattern: int | None = None  # ``service.pattern_of`` the whole session, once needed

    @property
    def label(self) -> str:
        """How the session's reasons name it."""
        return f"session {self.session.key}"


class LogDetector(Detector):
    """Unusual log sessions and bursts of new error templates, learned per service.

    Parameters
    ----------
    idle_gap : timedelta
        A session with no record for this long (event time) is closed and judged.
    lateness : timedelta
        Extra wait before closing, for records that arrive late.
    max_session_duration : timedelta
        A session older than this is closed and judged anyway; later records start a new one.
    warmup, warmup_sessions : timedelta, int
        A service's first stretch of event time, and its first sessions, are learned only.
    warmup_max : timedelta
        A service seen for this long in event time is judged once it has learned a tenth of
        ``warmup_sessions``: a service with a few sessions a day must not stay blind for months.
    max_flag_rate : float
        Alert budget: at most this share of a service's sessions is flagged, whatever the
        signals say (the threshold rises to the matching quantile of recent session scores);
        the count model's limits allow half of it on its learned sessions.
    novelty_min_elsewhere : int
        A template that appeared this often outside a session is not new to it.
    burst_window, burst_min_new, burst_p_value : timedelta, int, float
        A burst is at least ``burst_min_new`` new error templates within ``burst_window`` whose
        chance at the service's usual rate is at most ``burst_p_value``.
    rate_half_life : timedelta
        Memory of the usual rate of new error templates.
    max_services, max_open_sessions, max_templates, max_transitions, max_patterns : int
        Memory bounds; the least recently active service or session, the least recently
        matched template, the least seen transitions and the least recently flagged session
        pattern give way first.
    max_held_records : int
        Records held as evidence across all open sessions; past it, each session keeps only
        its first ``min_session_evidence`` records (its counts stay exact).
    similarity : float
        Template-mining similarity threshold.
    count_reservoir, count_min_sessions, count_refit_share : int, int, float
        Sessions the count model is fitted on (a uniform sample of the unflagged closed
        sessions), the fewest it needs, and the share of them that must have changed for a refit.
    count_refit_interval : timedelta
        Event time that must pass between refits of a service's count model.
    severity_weight : float
        The most ERROR/CRITICAL records add to a session's score (when the service's learned
        sessions had such records in a hundredth or less of them; less the more usual they are).
        Less than half a signal: an error is a record's attribute, not a pattern, so a session's
        errors add to other evidence (a never-seen template, odd counts) but never page alone,
        nor with one never-seen template (a new error message once is what a release looks like;
        many at once are an error burst).
    fatal_weight : float
        What a CRITICAL record (FATAL, FAILURE, PANIC: the software says a component failed)
        adds to its session's score when its template was in a hundredth or less of the
        service's learned sessions (flagged ones included; less the more usual it is). A
        signal's worth: a rare fatal record pages alone, also in a one-record session, which
        is all a per-node or per-request log gives; one seen every day does not.
    familiar_after, familiar_sources, familiar_span : int, int, timedelta
        A flagged session's pattern (its templates and steps, with their counts) is not
        learned, so that an attack never becomes the yardstick; but once flagged in at least
        ``familiar_after`` sessions, the first at least ``familiar_span`` ago (a cool-off for an
        analyst to act), and seen from at least ``familiar_sources`` distinct sources (actors,
        else tenants, else hosts), it is how the service behaves: later sessions with it are
        learned, not flagged, on everything but their records' levels, and the count model
        learns it. One actor's repeats, or sessions naming no source, never become familiar.
    familiarity : bool
        Whether flagged patterns can become familiar at all (above). A flag is noted when its
        batch is scored, so sessions closing a cool-off after a flagged one first have the
        batch's earlier sessions judged (``_score_cooled``): a consumer catching up reads days of
        a quiet service's log in one poll, and the answer must be the one a replay in small
        batches gives (without that, a live consumer restarted from checkpoints flagged a repeat
        its replay found familiar).
    min_session_score : float
        The raw score a session needs to be flagged.
    count_solo_factor : float
        How many times its limit (see ``count_model``) a session's counts must be for the count
        model alone to flag it; nothing at the limit, in between its weight grows with the
        logarithm of the ratio, so a lesser deviation adds to other evidence.
    invariant_break_rate : float
        Pairs of templates whose counts keep one ratio in learned sessions (login and logout,
        three replicas written and three closed; see ``invariants``) are learned where learned
        sessions broke the ratio at most at this rate; a session breaking one is flagged alone,
        whatever the alert budget (the rate is that invariant's own budget). 0 learns none.
    trained : mapping or None
        What ``history.learn_history`` learned from history (``breachwatch train``): the
        detector starts from it, and from it again after a reset.
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
        warmup_max: timedelta = timedelta(days=7),
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
        count_reservoir: int = 512,
        count_min_sessions: int = 128,
        count_refit_share: float = 0.25,
        count_refit_interval: timedelta = timedelta(hours=24),
        severity_weight: float = 0.4,
        fatal_weight: float = 1.5,
        familiar_after: int = 1,
        familiar_sources: int = 2,
        familiar_span: timedelta = timedelta(hours=12),
        familiarity: bool = True,
        max_patterns: int = 2000,
        min_session_score: float = 1.5,
        count_solo_factor: float = 3.0,
        invariant_break_rate: float = 0.005,
        trained: Mapping[str, Any] | None = None,
    ) -> None:
        self.idle_gap = idle_gap
        self.lateness = lateness
        self.max_session_duration = max_session_duration
        self.warmup = warmup
        self.warmup_sessions = warmup_sessions
        self.warmup_max = warmup_max
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
        self.count_reservoir = count_reservoir
        self.count_min_sessions = count_min_sessions
        self.count_refit_share = count_refit_share
        self.count_refit_interval = count_refit_interval
        self.severity_weight = severity_weight
        self.fatal_weight = fatal_weight
        self.familiar_after = familiar_after
        self.familiar_sources = familiar_sources
        self.familiar_span = familiar_span
        self.familiarity = familiarity
        self.max_patterns = max_patterns
        # More than one signal's worth: one never-seen template alone is what a new release or
        # a rare but harmless path (a user denied a page once) looks like, and paging on it is
        # noise; with it, another signal (an unseen order of steps, odd counts, errors) is needed.
        self.min_session_score = min_session_score
        self.count_solo_factor = count_solo_factor
        self.invariant_break_rate = invariant_break_rate
        self.trained = trained
        # Derived settings, in seconds, for the per-record path.
        self.close_after_s = (idle_gap + lateness).total_seconds()
        self.max_duration_s = max_session_duration.total_seconds()
        self.warmup_s = warmup.total_seconds()
        self.warmup_max_s = warmup_max.total_seconds()
        self.window_s = burst_window.total_seconds()
        self.lateness_s = lateness.total_seconds()
        self.familiar_span_s = familiar_span.total_seconds()
        self.limits = ServiceLimits(
            similarity=similarity,
            max_templates=max_templates,
            max_transitions=max_transitions,
            score_memory=1000,
            score_memory_min=200,
            max_flag_rate=max_flag_rate,
            min_session_score=min_session_score,
            count_reservoir=count_reservoir,
            count_min_sessions=count_min_sessions,
            count_refit_share=count_refit_share,
            count_refit_interval_s=count_refit_interval.total_seconds(),
            invariant_break_rate=invariant_break_rate,
            warmup_s=self.warmup_s,
            half_life_s=rate_half_life.total_seconds(),
            familiar_after=familiar_after,
            familiar_sources=familiar_sources,
            familiar_span_s=familiar_span.total_seconds(),
            max_patterns=max_patterns,
        )
        self.min_support_for_counts = 50
        self._reset()

    def _reset(self) -> None:
        self._services: OrderedDict[str, ServiceModel] = OrderedDict()
        # Open sessions, least recently active first: closing idle ones looks at the front only.
        self._sessions: OrderedDict[tuple[str, str], Session] = OrderedDict()
        self._watermark: float | None = None
        self._held = 0  # records held as evidence by open sessions
        self._bursting: dict[str, None] = {}  # services with an open burst
        self._last_service: ServiceModel | None = None  # the most recently active service
        self._deltas = SessionDeltas()  # what the next checkpoint writes of the open sessions
        self._forget_oldest()
        if self.trained:
            if self.trained.get("version") != STATE_VERSION:
                raise ValueError(f"unsupported trained log model version: {self.trained.get('version')!r}")
            for name, s in self.trained["services"]:
                self._services[str(name)] = ServiceModel.from_state(str(name), s, self.limits)

    # --------------------------------------------------------------- streaming

    def process(self, events: Sequence[Event], ctx: DetectionContext) -> list[Finding]:
        """Mine, sessionise and judge a batch of records; other event types are ignored."""
        findings: list[Finding] = []
        closed: list[_Assessment] = []
        batch = EventBatch.of(events)
        for ev, t in zip(batch.events, batch.ts, strict=True):
            if isinstance(ev, LogRecord):
                self._observe(ev, t, closed, findings)
        self._finish(closed, findings)
        return findings

    def close_open_sessions(self) -> list[Finding]:
        """Close and judge every open session now (the end of a history or a replay)."""
        findings: list[Finding] = []
        closed: list[_Assessment] = []
        while self._sessions:
            _, sess = self._sessions.popitem(last=False)
            self._close(sess, closed, findings)
        self._forget_oldest()
        self._finish(closed, findings)
        return findings

    def _forget_oldest(self) -> None:
        """The least recently active open session may have changed: ``_close_idle`` looks."""
        self._oldest: Session | None = None
        self._oldest_ts = -math.inf

    def _observe(self, rec: LogRecord, t: float, closed: list[_Assessment], findings: list[Finding]) -> None:
        """One record at event time ``t`` (epoch seconds)."""
        svc = self._last_service
        if svc is None or svc.name != rec.service:
            svc = self._service(rec.service, t, closed, findings)
        wm = self._watermark
        # Idle sessions and finished bursts are looked for when event time enters a new
        # second, not at every record: as exact for a decision counted in minutes, and the
        # same whatever the batching or a restart in between.
        tick = False
        if wm is None or t > wm:
            tick = wm is None or int(t) > int(wm)
            self._watermark = t
        if t - svc.clock >= 1.0:
            svc.advance(t)
        tid, created = svc.miner.add(rec.message)

        if created and rec.level in ERROR_LEVELS:
            self._new_error_template(svc, rec, tid, t, findings)
        elif svc.burst is not None and tid in svc.burst.tids:
            svc.burst.add(rec, tid, False, t)

        key = rec.session_id or rec.trace_id
        if key:
            self._add_to_session(rec, key, tid, t, closed, findings)
        # Nothing is idle while the least recently active session is not (``_oldest``).
        if tick and (self._bursting or self._watermark - self._oldest_ts > self.close_after_s):
            self._close_idle(closed, findings)

    def _service(self, name: str, t: float, closed: list[_Assessment], findings: list[Finding]) -> ServiceModel:
        """The service's model, made most recently active (created, evicting the least recently
        active one beyond ``max_services``, if new). Records of one service often come in runs:
        ``_observe`` asks only when the service changes, the last one being the most recent."""
        svc = self._services.get(name)
        if svc is None:
            svc = self._services[name] = ServiceModel(name, t, self.limits)
            if len(self._services) > self.max_services:
                self._evict_service(next(iter(self._services)), closed, findings)
        else:
            self._services.move_to_end(name)
        self._last_service = svc
        return svc

    def _add_to_session(
        self, rec: LogRecord, key: str, tid: int, t: float, closed: list[_Assessment], findings: list[Finding]
    ) -> None:
        skey = (rec.service, key)
        sessions = self._sessions
        sess = sessions.get(skey)
        if sess is not None and t - sess.first_ts > self.max_duration_s:
            del sessions[skey]
            self._forget_oldest()
            self._close(sess, closed, findings)
            sess = None
        if sess is None:
            sess = sessions[skey] = Session(rec.service, key, rec, t)
            if len(sessions) > self.max_open_sessions:
                self._forget_oldest()
                self._close(sessions.pop(next(iter(sessions))), closed, findings)
        else:
            if rec.event_id in sess.event_ids:
                return  # a re-delivered record must not count twice
            if sess is self._oldest:
                self._forget_oldest()
            sessions.move_to_end(skey)
        held = len(sess.events)
        if held < MAX_EVIDENCE and (held < self.min_session_evidence or self._held < self.max_held_records):
            sess.events.append(rec)
            sess.event_ids.add(rec.event_id)
            self._held += 1
        sess.add(rec, tid, t)
        self._deltas.touch(skey)

    def _close_idle(self, closed: list[_Assessment], findings: list[Finding]) -> None:
        wm = self._watermark
        assert wm is not None
        sessions = self._sessions
        self._forget_oldest()
        while sessions:
            skey, sess = next(iter(sessions.items()))
            if wm - sess.last_ts <= self.close_after_s:
                # Until it gets a record or goes, no session is idle before this one.
                self._oldest, self._oldest_ts = sess, sess.last_ts
                break
            del sessions[skey]
            self._close(sess, closed, findings)
        if self._bursting:
            for name in list(self._bursting):
                b = self._services[name].burst
                if b is not None and wm - b.last_ts > self.window_s + self.lateness_s:
                    self._end_burst(self._services[name], findings)

    def _evict_service(self, name: str, closed: list[_Assessment], findings: list[Finding]) -> None:
        svc = self._services[name]
        for skey in [k for k in self._sessions if k[0] == name]:
            self._close(self._sessions.pop(skey), closed, findings)
        self._forget_oldest()
        # Closed sessions are judged at the end of the batch, so judge this service's now,
        # while its model still exists.
        own = [a for a in closed if a.session.service == name]
        closed[:] = [a for a in closed if a.session.service != name]
        self._score(svc, own, findings)
        if svc.burst is not None:
            self._end_burst(svc, findings)
        del self._services[name]
        if self._last_service is svc:
            self._last_service = None

    # --------------------------------------------------------------- session scoring

    def _warm(self, svc: ServiceModel) -> bool:
        wm = self._watermark if self._watermark is not None else svc.first_ts
        age = wm - svc.first_ts
        if age >= self.warmup_max_s:
            return svc.learned >= self.warmup_sessions // 10
        return svc.learned >= self.warmup_sessions and age >= self.warmup_s

    def _close(self, sess: Session, closed: list[_Assessment], findings: list[Finding]) -> None:
        """Assess a closed session against what was learned before it, then learn it.

        Done here, session by session, so that what is learned, which count model judges the
        session and every signal but that model's do not depend on how the stream was cut into
        batches; the model's signal is computed for the whole batch at its end (``_score``)."""
        self._held -= len(sess.events)
        self._deltas.close(sess)
        svc = self._services[sess.service]
        if not self._warm(svc):
            svc.learn(sess, flagged=False)
            svc.sample_session(sess)
            return
        # The moment the session was judged: when event time showed it idle (or it was cut).
        wm = self._watermark
        a = _Assessment(sess, svc.learned, max(sess.last_ts, wm if wm is not None else sess.last_ts))
        familiar = False
        if self.familiarity:
            self._score_cooled(closed, findings, a.closed_at)
        if svc.recurring:
            a.pattern = svc.pattern(sess)
            familiar = svc.familiar(a.pattern, source_of(sess), a.closed_at)
        if familiar:
            novel: frozenset[int] = frozenset()
            self._assess_severity(svc, a)
        else:
            novel = self._assess(svc, a)
        a.raw = float(sum(w for w, _ in a.terms)) if a.terms else 0.0
        a.threshold = svc.threshold()
        if "fatal_record" in a.facts and a.facts["fatal_record"]["alone"]:
            # Like a broken invariant, a fatal record rare enough to page alone carries its own
            # budget: its template was in at most a hundredth of learned sessions.
            a.threshold = min(a.threshold, self.min_session_score)
        a.flagged = a.raw >= a.threshold
        svc.push_score(a.raw)
        model = svc.model_at(a.closed_at)
        view = None
        if model is not None and model.ready_ and not familiar:
            view = svc.view(model, sess, novel)
            if view.known:
                a.model, a.view = model, view
        svc.learn(sess, flagged=a.flagged)
        if not a.flagged:
            # The model's view of the session is the sample's too when it left nothing out.
            svc.sample_session(sess, view.summary if view is not None and not novel else None)
        if a.flagged or a.model is not None:
            closed.append(a)  # the rest can become no finding (see ``_score``)

    def _assess(self, svc: ServiceModel, a: _Assessment) -> frozenset[int]:
        """The signals known at close; returns the session's never-seen templates. Each
        signal's loop runs only where a set comparison (in C) says it may find something."""
        sess = a.session
        novel: frozenset[int] = frozenset()
        if not sess.counts.keys() <= svc.support.keys():
            novel = self._assess_novelty(svc, a)
        if not sess.steps.keys() <= svc.steps.keys():
            self._assess_steps(svc, a, novel)
        # A count above a learned maximum needs a template twice in the session.
        if sess.records > len(sess.counts):
            self._assess_counts(svc, a)
        if svc.max_records and sess.records > svc.max_records:
            self._assess_length(svc, a)
        if sess.errors or sess.fatal:
            self._assess_severity(svc, a)
        return novel

    def _assess_severity(self, svc: ServiceModel, a: _Assessment) -> None:
        """The signals of the session's records' levels (all a familiar pattern is judged on)."""
        if a.session.errors:
            self._assess_errors(svc, a)
        if a.session.fatal:
            self._assess_fatal(svc, a)

    def _assess_novelty(self, svc: ServiceModel, a: _Assessment) -> frozenset[int]:
        label = a.label
        sess = a.session
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
        return frozenset(novel)

    def _assess_steps(self, svc: ServiceModel, a: _Assessment, novel: frozenset[int]) -> None:
        label = a.label
        miner = svc.miner
        unseen = [st for st in a.session.steps if st[0] not in novel and st[1] not in novel and st not in svc.steps]
        if unseen:
            a0, b0 = unseen[0]
            first = "(session start)" if a0 == START else _quote(miner.template(a0))
            a.terms.append(
                (
                    min(2.0, 0.4 * len(unseen)),
                    f"{label} went from one message to the next in "
                    f"{_plural(len(unseen), 'way')} never seen in {svc.learned:,} learned sessions, "
                    f"e.g. {first} → {_quote(miner.template(b0))}",
                )
            )
            a.facts["unseen_transitions"] = len(unseen)

    def _assess_counts(self, svc: ServiceModel, a: _Assessment) -> None:
        label = a.label
        sess = a.session
        excess: list[tuple[float, int, int, list[int]]] = []
        for tid, c in sess.counts.items():
            s = svc.support.get(tid)
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
                    f"{_quote(svc.miner.template(tid))} appeared {c:,} times in {label}; at most "
                    f"{s[1]:,} in any of the {s[2]:,} learned sessions with it{more}",
                )
            )
            a.facts["count_excess"] = {"count": c, "learned_max": s[1], "learned_sessions_with_it": s[2]}

    def _assess_length(self, svc: ServiceModel, a: _Assessment) -> None:
        label = a.label
        n_learned = svc.learned
        sess = a.session
        if n_learned >= self.min_support_for_counts and svc.max_records and sess.records > svc.max_records:
            ratio = sess.records / svc.max_records
            a.terms.append(
                (
                    min(1.0, 0.5 * math.log2(ratio)),
                    f"{label} has {sess.records:,} records; the longest of {n_learned:,} learned "
                    f"sessions had {svc.max_records:,}",
                )
            )

    def _assess_errors(self, svc: ServiceModel, a: _Assessment) -> None:
        """ERROR/CRITICAL records weigh by how rare a session with any is in this service: a
        signal with a weight, never a gate (an error alone, or a usual one, pages nothing)."""
        label = a.label
        surprise = svc.error_surprise()
        weight = self.severity_weight * min(1.0, surprise / 2.0)
        if weight < 0.05:
            return
        share = 100.0 * svc.error_sessions / svc.learned if svc.learned else 0.0
        a.terms.append(
            (
                weight,
                f"{label} has {_plural(a.session.errors, 'ERROR/CRITICAL record')}; "
                f"{svc.error_sessions:,} of {svc.learned:,} learned sessions ({share:.1f}%) had any",
            )
        )
        a.facts["error_records"] = a.session.errors
        a.facts["learned_sessions_with_errors"] = svc.error_sessions

    def _assess_fatal(self, svc: ServiceModel, a: _Assessment) -> None:
        """A CRITICAL record weighs by how rare its template is among learned sessions: a rare
        fatal record is evidence on its own, where a session has little else to show (one
        record per node or request); a fatal message seen every day is the service's normal."""
        label = a.label
        tid = max(a.session.fatal, key=svc.rarity)
        rarity = svc.rarity(tid)
        weight = self.fatal_weight * min(1.0, rarity / 2.0)
        if weight < 0.05:
            return
        s = svc.support.get(tid)
        seen = s[0] if s is not None else 0
        a.terms.append(
            (
                weight,
                f"{label} has a CRITICAL record {_quote(svc.miner.template(tid))}; "
                f"{seen:,} of {svc.learned:,} learned sessions had that message",
            )
        )
        a.facts["fatal_record"] = {
            "template": svc.miner.template(tid),
            "learned_sessions_with_it": seen,
            "alone": weight >= self.min_session_score,
        }

    def _score_cooled(self, closed: list[_Assessment], findings: list[Finding], now: float) -> None:
        """Judge the batch's closed sessions that closed a cool-off before ``now``, ahead of the
        rest of the batch. Their flags count towards familiarity from then on, and a session
        closing at ``now`` must find them noted however the stream was cut: a consumer catching
        up reads days of a quiet service's log in one poll, where a replay reads them in several
        (a live consumer once flagged a repeat that its replay found familiar)."""
        horizon = now - self.familiar_span_s
        if not closed or closed[0].closed_at > horizon:
            return  # the earliest is not due, nor is any later one
        # ``closed`` is in closing order, which is event-time order (the watermark only rises).
        cut = bisect_right(closed, horizon, key=lambda a: a.closed_at)
        if cut:
            due = closed[:cut]
            del closed[:cut]
            self._finish(due, findings)

    def _finish(self, closed: list[_Assessment], findings: list[Finding]) -> None:
        """Turn the batch's closed sessions that reached their threshold into findings."""
        by_service: dict[str, list[_Assessment]] = {}
        for a in closed:
            by_service.setdefault(a.session.service, []).append(a)
        for name, items in by_service.items():
            self._score(self._services[name], items, findings)

    def _score(self, svc: ServiceModel, items: list[_Assessment], findings: list[Finding]) -> None:
        """Add the count model's signal (one call per model for the batch), then decide."""
        groups: dict[int, tuple[SessionCountModel, list[_Assessment]]] = {}
        for a in items:
            if a.model is not None:
                groups.setdefault(id(a.model), (a.model, []))[1].append(a)
        for model, group in groups.values():
            views = [a.view for a in group if a.view is not None]
            _score_views(model, views)
            for a, v in zip(group, views, strict=True):
                if v.breaks:
                    self._invariant_term(svc, model, a, v.breaks)
                s = v.score
                assert s is not None
                # Its weight grows with how far past the limit the session is: nothing at it (so
                # no session is flagged for landing a rounding error beyond it), enough to flag
                # alone at ``count_solo_factor`` times.
                weight = self.min_session_score * min(1.5, math.log(s, self.count_solo_factor)) if s > 1.0 else 0.0
                if weight >= 0.05:
                    self._count_term(svc, model, a, s, weight)
        for a in items:
            raw = float(sum(w for w, _ in a.terms))
            if "count_invariants" in a.facts:
                # A broken invariant carries its own budget: learned sessions broke it at most at
                # the alert budget's rate, so a service whose sessions vary (which raises the bar
                # for the other signals) does not hide a flow that stopped short.
                a.threshold = min(a.threshold, self.min_session_score)
            if raw >= a.threshold:
                findings.append(self._session_finding(svc, a, raw, a.threshold))
                self._note_flagged(svc, a)

    def _note_flagged(self, svc: ServiceModel, a: _Assessment) -> None:
        """Count a flagged session's pattern, so that a benign one repeated widely becomes
        familiar (see ``familiar_after``) instead of paging on every repeat."""
        if not self.familiarity:
            return  # nothing counted: no pattern ever becomes familiar
        if a.pattern is None:
            a.pattern = svc.pattern(a.session)
        svc.note_flagged(a.pattern, source_of(a.session), a.closed_at)

    def _invariant_term(
        self, svc: ServiceModel, model: SessionCountModel, a: _Assessment, breaks: list[Broken]
    ) -> None:
        """A broken count invariant flags a session alone: learned sessions broke it at most at
        the alert budget's rate (see ``invariants``)."""
        name = svc.miner.template
        keys = model.column_keys_
        b = breaks[0]
        inv = b.invariant
        a.terms.append(
            (
                self.min_session_score,
                f"session {a.session.key} broke {_plural(len(breaks), 'count ratio')} that learned sessions keep: "
                f"{_quote(name(keys[b.missing]))} seen {b.seen:,} times, expected {b.expected:g} "
                f"({inv.p}:{inv.q} with {_quote(name(keys[inv.b if b.missing == inv.a else inv.a]))} "
                f"in {inv.held:,} of the {inv.support:,} learned sessions with either)",
            )
        )
        a.facts["count_invariants"] = [
            {
                "template": keys[x.missing],
                "seen": x.seen,
                "expected": round(x.expected, 2),
                "ratio": [x.invariant.p, x.invariant.q],
                "partner": keys[x.invariant.b if x.missing == x.invariant.a else x.invariant.a],
                "held_in": x.invariant.held,
                "learned_sessions_with_either": x.invariant.support,
            }
            for x in breaks[:10]
        ]

    def _count_term(
        self, svc: ServiceModel, model: SessionCountModel, a: _Assessment, score: float, weight: float
    ) -> None:
        assert a.view is not None
        why = model.explain(a.view.summary)
        name = svc.miner.template
        a.terms.append(
            (
                weight,
                f"session {a.session.key}'s counts, mix and order of familiar messages are "
                f"{score:.1f} times as far from the nearest of the {model.n_training_sessions_:,} learned "
                "sessions as learned sessions are from theirs",
            )
        )
        # Each template or step behind the score, with its expected and seen counts.
        a.terms.extend((0.0, r) for r in why.reasons(lambda t: _quote(name(t))))
        a.facts["count_model"] = {
            "score": round(score, 3),
            "distance": round(why.distance, 4),
            "neighbour_spread": round(why.spread, 4),
            "limit": round(why.limit, 4),
            "deviations": [d.as_dict() for d in why.deviations],
        }

    def _session_finding(self, svc: ServiceModel, a: _Assessment, raw: float, threshold: float) -> Finding:
        sess = a.session
        ev = evidence(sess.events)
        score = round(100.0 * (1.0 - 3.0 ** (-raw)), 1)
        # By weight, the count model's explanations (weight 0) last, each group in its order.
        order = sorted(range(len(a.terms)), key=lambda i: (-a.terms[i][0], i))
        reasons = tuple(a.terms[i][1] for i in order)
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
            ts=ev[0].ts,
            title=f"Unusual log session {sess.key} on service {svc.name}",
            reasons=reasons,
            playbook=_SESSION_PLAYBOOK,
            events=ev,
            actor_id=sess.actor_id,
            tenant_ids=unique(r.tenant_id for r in sess.events),
            facts=facts,
            dedup_key="\x1f".join((svc.name, KIND_SESSION, sess.key, sess.first_event_id)),
            detected_at=datetime.fromtimestamp(a.closed_at, tz=UTC),
        )

    # --------------------------------------------------------------- error bursts

    def _new_error_template(
        self, svc: ServiceModel, rec: LogRecord, tid: int, t: float, findings: list[Finding]
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
        burst = Burst("\x1f".join((svc.name, KIND_BURST, first[1].event_id)), first[0])
        for wt, wrec, wtid in window:
            burst.add(wrec, wtid, True, wt)
        burst.stats = {"rate_per_h": rate, "expected": lam, "p_value": p}
        window.clear()
        svc.burst = burst
        self._bursting[svc.name] = None
        findings.append(self._burst_finding(svc, burst))

    def _end_burst(self, svc: ServiceModel, findings: list[Finding]) -> None:
        burst = svc.burst
        svc.burst = None
        self._bursting.pop(svc.name, None)
        if burst is not None and len(burst.events) > burst.reported:
            # The same finding id, with the evidence gathered since it was first reported.
            burst.stats["p_value"] = poisson_tail(len(burst.tids), burst.stats["expected"])
            findings.append(self._burst_finding(svc, burst))

    def _burst_finding(self, svc: ServiceModel, burst: Burst) -> Finding:
        burst.reported = len(burst.events)
        shown = evidence(burst.events)
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
            ts=shown[0].ts,
            title=f"Burst of {n:,} new error messages on service {svc.name}",
            reasons=tuple(reasons),
            playbook=_BURST_PLAYBOOK,
            events=shown,
            actor_id=first_actor(shown),
            tenant_ids=unique(r.tenant_id for r in shown),
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
        return {**self._head(), "sessions": [s.state() for s in self._sessions.values()]}

    def _head(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "watermark": self._watermark,
            "services": [[name, svc.state()] for name, svc in self._services.items()],
        }

    def state_delta(self) -> StateDelta:
        """Itemised by open session (see ``deltas``): the services whole, and the sessions that
        got a record since the last checkpoint saved, not every open one with its evidence."""
        items, dropped, next_order = self._deltas.build(self._sessions)
        head = {**self._head(), "version": ITEMISED_VERSION, "next_order": next_order}
        return StateDelta(head, items, dropped, self._deltas.complete, itemised=True)

    def delta_saved(self) -> None:
        self._deltas.saved()

    def delta_void(self) -> None:
        self._deltas.void()

    def load_state_items(self, head: dict[str, Any], items: dict[str, Any]) -> None:
        if head.get("version") != ITEMISED_VERSION:
            # A whole state (a checkpoint from before sessions were itemised): the next
            # checkpoint writes every open session.
            self.load_state(head)
            return
        self.load_state({**head, "version": STATE_VERSION, "sessions": in_order(items)})
        self._deltas.restored(int(head["next_order"]))

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what ``state()`` returned; an empty dict resets the detector (to what it was
        trained on, if anything). A version-1 state is taken up too (see ``_load_version_1``)."""
        self._reset()
        if not state:
            return
        version = state.get("version")
        if version not in (1, STATE_VERSION):
            raise ValueError(f"unsupported log detector state version: {version!r}")
        wm = state["watermark"]
        self._watermark = float(wm) if wm is not None else None
        if version == 1:
            self._load_version_1(state)
        else:
            self._services.clear()
            for name, s in state["services"]:
                self._services[str(name)] = ServiceModel.from_state(str(name), s, self.limits)
        for name, svc in self._services.items():
            if svc.burst is not None:
                self._bursting[name] = None
        for s in state["sessions"]:
            sess = Session.from_state(s)
            if sess.service in self._services:
                self._sessions[(sess.service, sess.key)] = sess
                self._held += len(sess.events)

    def _load_version_1(self, state: dict[str, Any]) -> None:
        """A checkpoint of the version before the count model and the extra masks. With a trained
        model, what that learned stands (it was fitted with this version's masks); without one,
        each service keeps its templates and steps and warms up again from the checkpoint's
        event time, its counts and session sample started afresh. Open sessions carry on."""
        now = self._watermark if self._watermark is not None else 0.0
        for name, s in state["services"]:
            if str(name) not in self._services:
                self._services[str(name)] = ServiceModel.from_version_1(str(name), s, self.limits, now)

    def learned_state(self, min_template_count: int = 3) -> dict[str, Any]:
        """What this detector learned, for a model file: no open session, no record, no burst,
        and no template matched fewer than ``min_template_count`` times (so that a literal the
        masks missed in one or two lines, a name say, is not carried)."""
        now = self._watermark if self._watermark is not None else 0.0
        services = []
        for name, svc in self._services.items():
            if len(svc.sample) >= self.count_min_sessions:
                svc.refit(now, full=True)
            services.append([name, _without_rare_templates(svc.state(), min_template_count)])
        return {"version": STATE_VERSION, "services": services}


def _score_views(model: SessionCountModel, views: list[ModelView]) -> None:
    """Score the views not scored yet, in one call (a view scored once keeps its score: the
    same session pattern, the same model)."""
    todo = list({id(v): v for v in views if v.score is None}.values())
    if not todo:
        return
    summaries = [v.summary for v in todo]
    for v, breaks, s in zip(todo, model.broken(summaries), model.score_samples(summaries), strict=True):
        v.breaks, v.score = breaks, float(s)


def _without_rare_templates(s: dict[str, Any], min_count: int) -> dict[str, Any]:
    """A service's state with its rare templates, and everything naming them, left out."""
    miner = s["miner"]
    kept: set[int] = set()
    leaves = []
    for key, templates in miner["leaves"]:
        rows = [t for t in templates if int(t[2]) >= min_count]
        kept.update(int(t[0]) for t in rows)
        if rows:
            leaves.append([key, rows])

    def known(t: int) -> bool:
        return t == START or t in kept

    def sampled(e: list[Any]) -> list[Any]:
        h, counts, steps = e
        return [h, [c for c in counts if known(c[0])], [x for x in steps if known(x[0]) and known(x[1])]]

    out = dict(s)
    out["miner"] = {"next_id": miner["next_id"], "leaves": leaves, "lru": [t for t in miner["lru"] if t in kept]}
    out["support"] = [row for row in s["support"] if row[0] in kept]
    out["steps"] = [row for row in s["steps"] if known(row[0]) and known(row[1])]
    out["sample"] = [sampled(e) for e in s["sample"]]
    out["count_fitted"] = [sampled(e) for e in s["count_fitted"]]
    out["new_errors"] = []
    out["burst"] = None
    return out
