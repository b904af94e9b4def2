"""The learned detector: per-actor profiles, window features and trained models, streaming.

``LearnedDetector`` folds each batch into per-actor profiles (``detectors.profiles``) and
builds window feature rows for the actors worth judging: at each new kind of notable event
in an actor's notable stretch (new place, failed login, role change...), and once event time
passes the end of each two-minute slot the actor was active in (as it stood at its last
event there). Findings are settled an hour of event time at a time (``REPORT_PERIOD``): the
rows of the hour (or of its part in this batch) are scored at once (the pattern scorer and
one pass over the IsolationForest, vectorised), each row whose score crosses the calibrated
threshold is a finding with the evidence and numbers of its judged moment, and what a
finding reported leaves the actor's 24-hour sums when the hour ends. So the findings depend
on the events alone, not on how the stream was cut into batches: a restart, a rebalance or a
replay raises the same ones as one pass. Without a model it still runs: profiles are
learned online and the pattern scorer uses its default scales.

``train`` builds a ``TrainedModel`` from history: it replays events before ``until`` through
the same profile code, fits the estimators on the window rows, calibrates the alert
threshold to an alert budget, and keeps pseudonymised per-actor and peer baselines so a
fresh deployment does not start blind. Privacy policy 6.2: only tenants that have not opted
out of AI training contribute; actor ids, network prefixes, user agents and tenant ids in the
model are keyed hashes (HMAC-SHA256). Opted-out tenants are still scored: their profiles are
learned online by the running detector. ``save_model`` / ``load_model`` use skops, never
pickle, and refuse files holding anything but the types ``save_model`` writes.

Restart and rebalance: by checkpoint. ``state()`` returns the profiles, peer groups, open
episodes and the evidence carried between batches as plain JSON (bounded:
capped tables, 24 hourly buckets, idle actors evicted to a last-seen register), the pipeline
stores it with the offsets it reflects, and ``load_state()`` restores it exactly: the same
events then give the same findings as an uninterrupted run, wherever the checkpoint fell.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import io
import json
import logging
import math
import struct
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from breachwatch.core.batch import EventBatch
from breachwatch.core.events import ACTOR_TOPICS, AccessEvent, AuthEvent, Event
from breachwatch.core.findings import DetectionContext, Detector, Finding, Judgement, Severity, StateDelta
from breachwatch.core.ids import unique
from breachwatch.core.reference import ReferenceTables
from breachwatch.detectors.learned import carried, explain
from breachwatch.detectors.learned.features import (
    COL,
    DAY,
    FEATURE_NAMES,
    HOUR,
    local_hour,
    provider_prefix,
    window_row,
    zone_for_jurisdiction,
)
from breachwatch.detectors.learned.models import (
    ANOMALOUS,
    KINDS,
    PatternScorer,
    PopulationModel,
    calibrate_threshold,
    tail_threshold,
)
from breachwatch.detectors.learned.profiles import (
    NOVEL_FOR,
    SENSITIVE,
    T_COUNTRY,
    T_PROVIDER,
    T_RESOURCE,
    T_SENSITIVITY,
    ActorProfile,
    PeerProfile,
)
from breachwatch.detectors.learned.signing import ModelFileError, seal, unseal

log = logging.getLogger(__name__)

MODEL_FORMAT = "breachwatch.learned"
MODEL_VERSION = 2  # 2: signed (``signing``), no unkeyed digest inside

# The lowest score the product raises an incident for: roughly two clearly unusual signals at
# once (each ingredient adds ~30 points at its learned scale). Calibration may raise the
# threshold above this when the training history is noisy, never lower it.
ALERT_FLOOR = 60.0
# Points the population model can add on top of a kind's score (at anomaly score 100).
POPULATION_WEIGHT = 15.0
# Findings of one actor and kind less than this far apart belong to one episode (one finding):
# hours for most kinds, days for exfiltration that runs over days.
EPISODE_GAP = 6 * HOUR
EPISODE_GAPS: dict[str, float] = {"slow_exfiltration": 3 * DAY, "dormant_account": DAY}
# Idle actors are evicted from the profiles after this many days, remembered only by their
# last-seen time (so a dormant account waking up is still recognised) for REGISTER_DAYS.
IDLE_DAYS = 120
REGISTER_DAYS = 400
REGISTER_CAP = 200_000
# An actor is judged when the stream's event time passes the end of each slot it was active in
# (as it stood at its last event in the slot), besides right at each new kind of notable
# event: the judgement points depend on the events alone, never on how they were batched.
JUDGE_SLOT = 120.0
# Findings are settled hour by hour of event time: what a finding reported leaves its actor's
# 24-hour sums when the hour ends, and no row of the next hour is built before every row of
# this one is scored. Batches (a poll, a replay chunk) may end anywhere inside an hour; the
# findings depend on the events alone, not on where a batch happened to end.
REPORT_PERIOD = HOUR
TRAIN_BATCH = 2000
# An actor's last events of the last hour, kept from one batch to the next, and the most a
# finding shows (the incident gathers more from the episode's later findings).
CARRY_CAP = 50
# Names with failed logins but no profile, remembered for an hour (bounded).
FAILURES_CAP = 20_000
# Once a partition holds more than LIVE_MAX live profiles, those idle for PACK_AFTER (event
# time) are kept packed until the actor's next event: at any moment most of a large ERP's
# users are between sessions, and a packed profile costs a fifth of a live one or less.
# Packing and waking a mature profile costs about 100 us (as much as ten events), paid once per
# session of a returning actor, so a small deployment, whose profiles fit anyway, pays nothing.
PACK_AFTER = 30 * 60.0
LIVE_MAX = 10_000

# How long (event time after the judged incident's last activity) a false-positive verdict
# keeps the same actor's findings of the same kind from being raised, unless one scores
# clearly higher (ACCEPTED_MARGIN points) than the judged one: that is a new pattern.
FEEDBACK_DAYS = 14.0
ACCEPTED_MARGIN = 10.0
ACCEPTED_CAP = 50_000
# Rows scoring at least this share of the threshold (a kind's gate open) are signals for the
# risk ledger: not an incident alone, but risk that adds up with others.
SIGNAL_SHARE = 0.75

# Per-event evidence flags.
F_NOVEL = 1
F_NEW_RESOURCE = 2
F_SENSITIVE = 4
F_EXPORT = 8
F_FAILED = 16
F_ROLE = 32
F_LOGIN = 64


class _Keyed:
    """Keyed hashes (HMAC-SHA256) of identities and network attributes, with a small cache:
    the same few thousand addresses and agents recur millions of times in a stream."""

    def __init__(self, key: bytes | None) -> None:
        # Without a key the digests still make profiles compact and stable, but they are not
        # pseudonyms (anyone can recompute them), so no model is trained or matched with them.
        self.key = key or b"breachwatch:unkeyed"
        self.keyed = key is not None
        self._cache: dict[str, str] = {}

    def __call__(self, kind: str, value: str, length: int = 16) -> str:
        k = kind + ":" + value
        d = self._cache.get(k)
        if d is None:
            if len(self._cache) > 500_000:
                self._cache.clear()
            d = self._cache[k] = self._digest(k, length)
        return d

    def once(self, kind: str, value: str, length: int = 16) -> str:
        """The digest of a value looked up about once, such as an actor id (when its profile is
        made) or a name in failed logins: caching those would hold a string per actor."""
        return self._digest(kind + ":" + value, length)

    def _digest(self, k: str, length: int) -> str:
        return hmac.new(self.key, k.encode("utf-8"), hashlib.sha256).hexdigest()[:length]

    def check(self) -> str:
        """A fingerprint that tells whether two parties hold the same key, revealing nothing."""
        return hmac.new(self.key, b"breachwatch:key-check", hashlib.sha256).hexdigest()[:16]


@dataclass
class TrainReport:
    """What training used and left out, for the operator (and ``train``'s printout)."""

    window_start: str | None = None
    window_end: str | None = None
    events_seen: int = 0
    events_used: int = 0
    events_after_until: int = 0
    events_opted_out: int = 0
    events_feedback_excluded: int = 0
    logs_ignored: int = 0
    tenants_used: list[str] = field(default_factory=list)
    tenants_excluded: list[str] = field(default_factory=list)
    actors: int = 0
    rows: int = 0
    rows_fit: int = 0
    threshold: float = ALERT_FLOOR
    alerts_per_day_at_threshold: float = 0.0
    log_history: str = ""  # what the log detector learned from the same history, in one line

    def lines(self) -> list[str]:
        """Human-readable summary, one fact per line."""
        return [
            f"training window: {self.window_start} .. {self.window_end}",
            f"events: {self.events_seen:,} read, {self.events_used:,} used, "
            f"{self.events_opted_out:,} excluded (tenant opted out of AI training), "
            f"{self.events_feedback_excluded:,} excluded (marked false positive), "
            f"{self.events_after_until:,} at or after --until, {self.logs_ignored:,} log records ignored",
            f"tenants used ({len(self.tenants_used)}): {', '.join(self.tenants_used) or '-'}",
            f"tenants excluded, opted out ({len(self.tenants_excluded)}): {', '.join(self.tenants_excluded) or '-'}",
            f"actors profiled: {self.actors:,}; feature rows: {self.rows:,} ({self.rows_fit:,} after warm-up)",
            f"alert threshold: {self.threshold:.1f} "
            f"({self.alerts_per_day_at_threshold:.2f} alerts/day on the training history)",
            *([self.log_history] if self.log_history else []),
        ]


@dataclass
class TrainedModel:
    """Everything ``LearnedDetector`` needs from training; ``baselines`` hold no raw identities."""

    patterns: PatternScorer
    population: PopulationModel | None
    threshold: float
    anomaly_threshold: float
    metadata: dict[str, Any]
    baselines: dict[str, Any]
    report: TrainReport | None = None
    # The log detector's learned state (``detectors.logs.history``), if the history had logs.
    logs: dict[str, Any] | None = None

    @property
    def key_check(self) -> str:
        return str(self.metadata.get("key_check", ""))


# ---- the detector ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Batch:
    """One batch folded into the profiles: a row per actor at each of its hours that ended in
    the batch and at its last event, plus the batch indices of each actor's events."""

    actors: list[str]
    rows: list[list[float]]
    nows: list[float]
    indices: dict[str, list[int]]
    # Each row's hour counters as they stood when it was built: a finding marks them reported
    # (a batch folds on past the row before findings are made, and must not mark more).
    hours: list[list[float] | None]
    # The end (exclusive) of the batch's events each row saw: its evidence stops there.
    upto: list[int]
    # The time of the newest event of the unit's stream when each row was built (the event
    # that made the actor due): when a finding from it was raised, deterministically.
    seen: list[float]
    # Where the fold stopped: at the first event of a new report period, or the end.
    stop: int


class LearnedDetector(Detector):
    """Per-actor baselines plus trained models, scoring each batch in one vectorised pass.

    Parameters: ``model`` from ``train``/``load_model`` or None (profiles learned online,
    default scales, threshold at the floor); ``pseudonym_key`` to match the model's
    pseudonymised baselines (the same key ``train`` used).
    """

    name = "learned"
    topics = ACTOR_TOPICS

    def __init__(
        self,
        model: TrainedModel | None,
        pseudonym_key: bytes | None = None,
        *,
        idle_days: int = IDLE_DAYS,
        episode_gap: float = EPISODE_GAP,
        pack_after: float = PACK_AFTER,
        live_max: int = LIVE_MAX,
        feedback_days: float = FEEDBACK_DAYS,
    ) -> None:
        self.model = model
        self.feedback_days = feedback_days  # 0: verdicts change nothing here
        self.idle_days = idle_days
        self.episode_gap = episode_gap
        self.pack_after = pack_after  # 0: never pack
        self.live_max = live_max  # pack only while more profiles than this are live
        self._keyed = _Keyed(pseudonym_key)
        if model is not None:
            self._patterns = model.patterns
            # The same scores as ``population.score_samples``, at a fraction of the cost per call:
            # rows are scored an hour of event time at a time, often a handful at once.
            self._pop_score = model.population.scorer() if model.population is not None else None
            self.threshold = model.threshold
            self.anomaly_threshold = model.anomaly_threshold
            self._baselines = self._usable_baselines(model)
        else:
            self._patterns = PatternScorer().fit(np.zeros((0, len(FEATURE_NAMES))))
            self._pop_score = None
            self.threshold = ALERT_FLOOR
            self.anomaly_threshold = 101.0
            self._baselines = {"actors": {}, "peers": {}}
        # Live profiles, and the packed ones of idle actors (see ``_pack_idle``): an actor is
        # in exactly one of the two.
        self._profiles: dict[str, ActorProfile] = {}
        self._packed: dict[str, bytes] = {}
        # When to look for idle profiles next (each live profile's latest event time is its
        # ``_touched``: a dict by actor would cost more than the numbers it holds).
        self._next_pack = -1.0
        self._clock = -1.0  # the latest event time folded
        self._peers: dict[str, PeerProfile] = {}
        self._register: dict[str, float] = {}
        self._episodes: dict[str, list[float]] = {}
        self._failures: dict[str, list[float]] = {}
        # Each active actor's last hour of events, as one blob (``carried``): a validated model
        # costs several times its field values, and most carried events are never evidence.
        self._carry: dict[str, bytes] = {}
        # The carried events of packed actors, compressed with them (``carried.squeezed``).
        self._packed_carry: dict[str, bytes] = {}
        self._clock_day = -1
        # Actors waiting for their slot's judgement: actor -> [slot end, its last event time in
        # the slot], and a heap of (slot end, actor) over them.
        self._pending: dict[str, list[float]] = {}
        self._due: list[tuple[float, str]] = []
        # The report period being judged (see REPORT_PERIOD), and its findings' marks (actor,
        # judged moment, that hour's counters then) to apply when it ends.
        self._period = -1
        self._period_end = -math.inf
        self._marks: list[tuple[str, float, list[float] | None]] = []
        # What the next checkpoint writes of the actors (see ``state_delta``): those whose
        # profile or carried events changed since the last one saved, and those dropped since;
        # every actor until one of this detector's checkpoints has been saved.
        self._dirty: set[str] = set()
        self._dropped: set[str] = set()
        self._complete = True
        # Patterns people judged false positives: "actor\x1fkind" -> [until (event time), score
        # judged], and the last verdict taken in (``judged``).
        self._accepted: dict[str, list[float]] = {}
        self._judged_seq = 0
        self.muted = 0  # findings not raised because a person judged their pattern benign
        # (actor, kind) that gave a signal in this report period (see ``_report``).
        self._signalled: set[tuple[str, str]] = set()

    def _usable_baselines(self, model: TrainedModel) -> dict[str, Any]:
        empty: dict[str, Any] = {"actors": {}, "peers": {}}
        if not model.baselines.get("actors") and not model.baselines.get("peers"):
            return empty
        if not self._keyed.keyed:
            log.warning("model has pseudonymised baselines but no pseudonym key was given; learning online only")
            return empty
        if model.key_check and model.key_check != self._keyed.check():
            raise ValueError(
                "the pseudonym key differs from the one the model was trained with; "
                "use the same key or retrain the model"
            )
        return model.baselines

    # ---- profile bookkeeping ----------------------------------------------------------------

    def _zone(self, tenant_id: str | None, tables: ReferenceTables) -> str:
        t = tables.tenants.get(tenant_id) if tenant_id else None
        return zone_for_jurisdiction(t.jurisdiction) if t is not None else "UTC"

    def _known(self, actor_id: str) -> bool:
        """Whether an actor without a profile is still known: from the model's baselines or
        the register of evicted actors (its failed logins then belong to its profile)."""
        if actor_id in self._register:
            return True
        return bool(self._baselines["actors"]) and self._keyed.once("actor", actor_id, 24) in self._baselines["actors"]

    def _new_profile(self, actor_id: str, actor_type: str, home: str, ts: float, zone: str) -> ActorProfile:
        seeds = self._baselines["actors"]
        seed = seeds.get(self._keyed.once("actor", actor_id, 24)) if seeds else None
        if seed is not None and seed["last"] <= ts:
            prof = ActorProfile.from_dict(seed)
            prof.home = home
            prof.zone = zone
            return prof
        prof = ActorProfile(actor_type, home, zone, ts)
        last = self._register.pop(actor_id, None)
        if last is not None and last < ts:
            # Evicted for idleness: start afresh but remember how long it was away.
            prof.last_seen = last
            prof.n_events = 1
            prof.active_days = 1
        return prof

    def _note_failure(self, name: str, ts: float) -> None:
        entry = self._failures.get(name)
        if entry is not None:
            entry[0] += 1.0
            entry[1] = max(entry[1], ts)
            return
        if len(self._failures) >= FAILURES_CAP:
            # Oldest first: dicts keep insertion order, and stale names are worthless.
            for k in list(self._failures)[: FAILURES_CAP // 4]:
                del self._failures[k]
        self._failures[name] = [1.0, ts]

    def _peer(self, key: str) -> PeerProfile:
        peer = self._peers.get(key)
        if peer is None:
            home, _, kind = key.rpartition("|")
            seed = self._baselines["peers"].get(self._keyed("tenant", home) + "|" + kind) if self._baselines else None
            peer = PeerProfile.from_dict(seed) if seed is not None else PeerProfile()
            self._peers[key] = peer
        return peer

    def _peer_of(self, prof: ActorProfile) -> PeerProfile:
        """The peer group a profile teaches and is compared with: its home tenant and type."""
        return self._peer(prof.home + "|" + prof.actor_type)

    def _evict(self, now: float) -> None:
        """Move actors idle for ``idle_days`` to the last-seen register; trim the register."""
        day = int(now // DAY)
        if day <= self._clock_day:
            return
        self._clock_day = day
        horizon = now - self.idle_days * DAY
        gone = [a for a, p in self._profiles.items() if p.last_seen < horizon]
        for aid in gone:
            self._register[aid] = self._profiles.pop(aid).last_seen
        gone_packed = [a for a, b in self._packed.items() if _blob_time(b) < horizon]
        for aid in gone_packed:
            self._register[aid] = _blob_time(self._packed.pop(aid))
        for aid in gone + gone_packed:
            # Events of days ago are no one's evidence any more; they leave with the profile.
            self._carry.pop(aid, None)
            self._packed_carry.pop(aid, None)
            self._dirty.add(aid)  # what is kept of it now is when it was last seen
        old = now - REGISTER_DAYS * DAY
        if len(self._register) > REGISTER_CAP or any(v < old for v in self._register.values()):
            keep = sorted(((v, a) for a, v in self._register.items() if v >= old), reverse=True)[:REGISTER_CAP]
            kept = {a: v for v, a in keep}
            self._dropped.update(self._register.keys() - kept.keys())
            self._register = kept
        for k in [k for k, e in self._episodes.items() if now - e[1] > 4 * DAY]:
            del self._episodes[k]
        for k in [k for k, e in self._failures.items() if now - e[1] > HOUR]:
            del self._failures[k]
        for k in [k for k, e in self._accepted.items() if e[0] < now]:
            del self._accepted[k]

    def _pack_idle(self) -> None:
        """Pack the profiles of actors idle for ``pack_after`` of event time, when more than
        ``live_max`` are live.

        Runs between report periods and batches, never while a part of one is folded and
        judged (a finding reads its actor's live profile), and leaves actors whose slot
        judgement is pending alone. A packed profile unpacks with every persisted field as it
        was (``ActorProfile.pack``) and its caches rebuilt, as after a checkpoint restore, so
        packing changes no verdict.
        """
        now = self._clock
        if self.pack_after <= 0 or now < self._next_pack or len(self._profiles) <= self.live_max:
            return
        self._next_pack = now + self.pack_after / 4.0
        before = now - self.pack_after
        profiles, packed, pending = self._profiles, self._packed, self._pending
        idle = [a for a, p in profiles.items() if p._touched < before and a not in pending]
        for aid in idle:
            packed[aid] = _pack_profile(profiles.pop(aid))
            blob = self._carry.pop(aid, None)
            if blob is not None:
                self._packed_carry[aid] = carried.squeezed(blob)

    def _wake(self, aid: str) -> ActorProfile | None:
        """The live profile of a packed actor (it stays live until it is idle again)."""
        blob = self._packed.pop(aid, None)
        if blob is None:
            return None
        prof = _unpack_profile(blob)
        prof._peer = self._peer_of(prof)
        self._profiles[aid] = prof
        prof._touched = self._clock
        blob = self._packed_carry.pop(aid, None)
        if blob is not None:
            self._carry[aid] = carried.unsqueezed(blob)
        return prof

    def _profile_dicts(self) -> Iterable[tuple[str, dict[str, Any]]]:
        """Every profile, live or packed, in its plain JSON form."""
        for aid, prof in self._profiles.items():
            yield aid, prof.to_dict()
        for aid, blob in self._packed.items():
            yield aid, _unpack_profile(blob).to_dict()

    def _all_carried(self) -> Iterable[tuple[str, list[carried.Carried]]]:
        for aid, blob in self._carry.items():
            yield aid, carried.from_blob(blob)
        for aid, blob in self._packed_carry.items():
            yield aid, carried.from_blob(carried.unsqueezed(blob))

    @property
    def profile_counts(self) -> tuple[int, int]:
        """(live, packed) actor profiles: what this detector's memory follows."""
        return len(self._profiles), len(self._packed)

    @property
    def actor_count(self) -> int:
        return sum(self.profile_counts)

    # ---- verdicts ---------------------------------------------------------------------------

    def judgement_seq(self) -> int | None:
        return self._judged_seq if self.feedback_days > 0 else None

    def judged(self, judgements: Sequence[Judgement]) -> None:
        """Verdicts from people: a false positive mutes the actor's pattern (its kinds, up to
        the judged score plus a margin) for ``feedback_days`` of event time after the incident,
        and a volume test it tripped starts again from the day's level; a reopened incident
        withdraws that. The next ``train`` leaves the judged window out as well."""
        start = self._judged_seq
        for j in sorted(judgements, key=lambda j: j.seq):
            if j.seq <= start:
                continue  # taken in before (one verdict is one judgement per actor)
            self._judged_seq = max(self._judged_seq, j.seq)
            for kind in j.kinds:
                if kind not in KINDS and kind != ANOMALOUS:
                    continue
                key = f"{j.actor_id}\x1f{kind}"
                if not j.false_positive:
                    self._accepted.pop(key, None)
                    continue
                if len(self._accepted) >= ACCEPTED_CAP:
                    del self._accepted[next(iter(self._accepted))]
                self._accepted[key] = [j.end.timestamp() + self.feedback_days * DAY, j.score]
                if kind == "slow_exfiltration":
                    prof = self._profiles.get(j.actor_id) or self._wake(j.actor_id)
                    if prof is not None:
                        prof.cusum = 0.0
                        self._dirty.add(j.actor_id)

    def _muted(self, aid: str, kind: str, now: float, score: float) -> bool:
        """Whether a finding repeats a pattern judged a false positive (see ``judged``)."""
        acc = self._accepted.get(f"{aid}\x1f{kind}")
        return acc is not None and now <= acc[0] and score <= acc[1] + ACCEPTED_MARGIN

    # ---- the hot loop ---------------------------------------------------------------------

    def _fold(
        self, events: Sequence[Event], tables: ReferenceTables, every_row: bool = False, start: int = 0
    ) -> _Batch:
        """Fold ``events[start:]`` into the profiles, up to the end of the report period they
        start in, collecting the actors' feature rows (see ``_Batch``).

        Rows that cannot alert (``ActorProfile.worth_scoring``) are skipped unless
        ``every_row`` (training needs the ordinary rows: they define normal).
        """
        self._pack_idle()
        batch = EventBatch.of(events)
        events = batch.events
        times = batch.ts
        profiles = self._profiles
        keyed = self._keyed
        indices: dict[str, list[int]] = {}
        unprofiled: dict[str, list[int]] = {}
        pending = self._pending
        due = self._due
        actors: list[str] = []
        nows: list[float] = []
        rows: list[list[float]] = []
        hours: list[list[float] | None] = []
        upto: list[int] = []
        seen: list[float] = []
        max_ts = -1.0
        stop = len(events)
        for i in range(start, stop):
            ev = events[i]
            cls = ev.__class__
            if cls is AccessEvent:
                is_access = True
            elif cls is AuthEvent:
                is_access = False
            else:
                continue
            ts = times[i]
            if ts >= self._period_end:
                if actors or indices or unprofiled:
                    # This period's rows are scored, and its findings marked, before anything
                    # of the next is folded.
                    stop = i
                    break
                self._next_period(ts)
            if due and due[0][0] <= ts:
                self._judge_due(ts, i, actors, nows, rows, hours, upto, seen, every_row)
            aid = ev.actor_id
            prof = profiles.get(aid)
            if prof is None and self._packed:
                prof = self._wake(aid)
            if prof is None:
                if not is_access and ev.outcome != "success" and not self._known(aid):
                    # A name never seen: no profile for it (profiling every guessed name would
                    # let attackers grow the state); its recent failures are kept, bounded, in
                    # case the name logs in and turns out to be a real, long-idle account.
                    self._note_failure(aid, ts)
                    unprofiled.setdefault(aid, []).append(i)
                    continue
                home = ev.actor_tenant or (ev.tenant_id if is_access and ev.actor_type != "staff" else None)
                home = home or "vendor"
                prof = self._new_profile(aid, ev.actor_type, home, ts, self._zone(home, tables))
                prof._peer = self._peer_of(prof)
                profiles[aid] = prof
                failed = self._failures.pop(aid, None)
                if failed is not None and ts - failed[1] <= HOUR:
                    prof.add_failures(ts, failed[0])
                    # Its failures in this batch become evidence like its other events.
                    indices[aid] = unprofiled.pop(aid, [])
            h = int(ts // HOUR)
            if ts >= prof.notable_until:
                prof.notable_bits = 0
            noted = prof.notable_bits
            if is_access:
                prof.observe_access(
                    ts,
                    h,
                    ev.action,
                    ev.resource_type,
                    ev.sensitivity,
                    ev.records,
                    ev.ip,
                    ev.country,
                    ev.user_agent,
                    ev.session_id,
                    ev.outcome == "denied",
                    keyed,
                )
            else:
                success = ev.outcome == "success"
                prof.observe_auth(ts, h, ev.action, success, ev.ip, ev.country, ev.user_agent, ev.roles, keyed)
            idx = indices.get(aid)
            if idx is None:
                indices[aid] = [i]
            else:
                idx.append(i)
            if prof.notable_bits != noted:
                # A new kind of notable thing (new place, data grabbed from there, failed
                # login, role change, secrets read after it, odd hour, return from idleness):
                # judge the actor right there, not at the end of a batch that may span hours.
                prof.flush()
                actors.append(aid)
                nows.append(ts)
                rows.append(window_row(prof, prof._peer, ts))
                hours.append(prof.hour_so_far(ts))
                upto.append(i + 1)
                seen.append(ts)
            end = (ts // JUDGE_SLOT + 1.0) * JUDGE_SLOT
            slot = pending.get(aid)
            if slot is None or slot[0] != end:
                pending[aid] = [end, ts]
                heapq.heappush(due, (end, aid))
            elif ts > slot[1]:
                slot[1] = ts
            if ts > max_ts:
                max_ts = ts
        if max_ts > 0:
            for aid, idx in indices.items():
                profiles[aid]._touched = times[idx[-1]]
            if max_ts > self._clock:
                self._clock = max_ts
            self._evict(max_ts)
        self._dirty.update(indices)
        return _Batch(actors, rows, nows, indices, hours, upto, seen, stop)

    def _next_period(self, ts: float) -> None:
        """Event time reached ``ts`` in a later report period: what the findings of the one
        that ended reported leaves the sums of their actors from now on."""
        for aid, now, hour in self._marks:
            prof = self._profiles.get(aid) or self._wake(aid)
            if prof is not None:
                prof.mark_reported(now, hour)
                self._dirty.add(aid)
        self._marks = []
        self._signalled.clear()
        self._period = int(ts // REPORT_PERIOD)
        self._period_end = (self._period + 1) * REPORT_PERIOD

    def _judge_due(
        self,
        ts: float,
        i: int,
        actors: list[str],
        nows: list[float],
        rows: list[list[float]],
        hours: list[list[float] | None],
        upto: list[int],
        seen: list[float],
        every_row: bool,
    ) -> None:
        """Event time reached ``ts`` (at event ``i``): judge every actor whose slot ended by
        then, as it stood at its last event (so a slot's anomaly is judged even if the actor
        goes quiet after it)."""
        due = self._due
        pending = self._pending
        while due and due[0][0] <= ts:
            end, aid = heapq.heappop(due)
            slot = pending.get(aid)
            if slot is None or slot[0] != end:
                continue  # superseded by a later slot
            del pending[aid]
            # Restored from a checkpoint, a pending actor's profile may still be packed.
            prof = self._profiles.get(aid) or self._wake(aid)
            if prof is None:
                continue
            last = slot[1]
            prof.flush()
            if every_row or prof.worth_scoring(last):
                actors.append(aid)
                nows.append(last)
                rows.append(window_row(prof, prof._peer, last))
                hours.append(prof.hour_so_far(last))
                upto.append(i)
                seen.append(ts)

    # ---- scoring --------------------------------------------------------------------------

    def _score(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Best kind (index into KINDS, -1 for the population model alone), its score, and the
        population score of each row; plus each kind's scores."""
        kinds = self._patterns.score_kinds(X, checked=True)
        pop = self._pop_score(X) if self._pop_score is not None else np.zeros(len(X))
        bonus = POPULATION_WEIGHT * pop / 100.0
        stacked = np.vstack([np.where(kinds[k] > 0, np.minimum(kinds[k] + bonus, 100.0), 0.0) for k in KINDS])
        best = np.argmax(stacked, axis=0)
        best_score = stacked[best, np.arange(len(X))]
        # Vendor staff work tenants ticket by ticket, unlike any population; the staff-access
        # rule judges each of their accesses against its ticket instead.
        lone = (best_score < self.threshold) & (pop >= self.anomaly_threshold) & (X[:, COL["is_staff"]] == 0)
        best = np.where(lone, -1, best)
        best_score = np.where(lone, pop, best_score)
        return best, best_score, pop, kinds

    def process(self, events: Sequence[Event], ctx: DetectionContext) -> list[Finding]:
        events = EventBatch.of(events)
        findings: list[Finding] = []
        start = 0
        while start < len(events):
            # One report period (or the part of it in this batch) at a time.
            batch = self._fold(events, ctx.tables, start=start)
            if batch.rows:
                self._report(events, batch, findings)
            self._carry_over(events, batch)
            start = batch.stop
        self._pack_idle()
        return findings

    def _report(self, events: EventBatch, batch: _Batch, findings: list[Finding]) -> None:
        """Score the rows of one report period's part and add the findings they raise."""
        X = np.asarray(batch.rows, dtype=float)
        best, score, pop, _ = self._score(X)
        hits = np.nonzero((score >= self.threshold) | (best == -1))[0]
        # Every hit is a finding. A later one of the same actor in the same period counts what
        # an earlier one reported again (the mark applies when the period ends): it adds the
        # events since to the same episode (same kind) or to the actor's incident (another).
        for r in sorted(hits.tolist(), key=lambda i: batch.nows[i]):
            kind = ANOMALOUS if best[r] < 0 else KINDS[int(best[r])]
            if self._accepted and self._muted(batch.actors[r], kind, batch.nows[r], float(score[r])):
                self.muted += 1
                continue
            pop_r = float(pop[r]) if self._pop_score is not None else None
            f = self._finding(events, batch, r, kind, float(score[r]), pop_r, X)
            if f is not None:
                findings.append(f)
        # Rows a kind's gate let through but below the threshold: signals for the risk ledger,
        # one per actor, kind and report period (they leave the actor's sums as they are).
        weak = np.nonzero((best >= 0) & (score >= SIGNAL_SHARE * self.threshold) & (score < self.threshold))[0]
        for r in sorted(weak.tolist(), key=lambda i: batch.nows[i]):
            kind = KINDS[int(best[r])]
            key = (batch.actors[r], kind)
            if key in self._signalled or self._muted(batch.actors[r], kind, batch.nows[r], float(score[r])):
                continue
            self._signalled.add(key)
            pop_r = float(pop[r]) if self._pop_score is not None else None
            f = self._finding(events, batch, r, kind, float(score[r]), pop_r, X, signal=True)
            if f is not None:
                findings.append(f)

    def _carry_over(self, events: EventBatch, batch: _Batch) -> None:
        """Keep each active actor's last hour of events, so a finding raised in a later batch
        still shows how it started (the failed logins before a takeover) and starts at the
        same event however the stream was cut into batches. Bounded, and part of the state."""
        latest = -1.0
        times = events.ts
        for aid, idx in batch.indices.items():
            if aid not in self._profiles and aid not in self._packed:
                self._carry.pop(aid, None)
                continue
            last = times[idx[-1]]
            latest = max(latest, last)
            # Only the last CARRY_CAP are kept: older events of the batch are not packed at all.
            new = [i for i in idx if last - times[i] <= HOUR][-CARRY_CAP:]
            fresh = [carried.carried(events[i], times[i]) for i in new]
            self._carry[aid] = carried.appended(self._carry.get(aid), fresh, last, HOUR, CARRY_CAP)
            self._dirty.add(aid)
        if latest > 0:
            for aid in [a for a, b in self._carry.items() if latest - carried.last_time(b) > HOUR]:
                del self._carry[aid]
                self._dirty.add(aid)
            for aid in [a for a, b in self._packed_carry.items() if latest - carried.last_time(b) > HOUR]:
                del self._packed_carry[aid]
                self._dirty.add(aid)

    def _finding(
        self,
        events: EventBatch,
        batch: _Batch,
        r: int,
        kind: str,
        score: float,
        pop: float | None,
        X: np.ndarray,
        *,
        signal: bool = False,
    ) -> Finding | None:
        """The finding of row ``r`` (a ``signal`` below the threshold: no episode, no mark)."""
        aid = batch.actors[r]
        now = batch.nows[r]
        prof = self._profiles[aid]
        peer = prof._peer
        evidence = self._evidence(events, batch, r, kind)
        if not evidence:
            return None
        start = evidence[0].ts.timestamp()
        if signal:
            dedup = f"signal|{kind}|{self._period}"
        else:
            ekey = f"{aid}\x1f{kind}"
            ep = self._episodes.get(ekey)
            if ep is None or start - ep[1] > EPISODE_GAPS.get(kind, self.episode_gap):
                ep = [start, now]
                self._episodes[ekey] = ep
            else:
                ep[1] = max(ep[1], now)
            dedup = f"{kind}|{int(ep[0])}"
        if kind == ANOMALOUS:
            contrib: dict[str, float] = {}
        else:
            contrib = {k: float(v[0]) for k, v in self._patterns.contributions(X[r : r + 1], kind).items()}
        row = {n: float(X[r, i]) for i, n in enumerate(FEATURE_NAMES) if X[r, i]}
        # The windows as they stood at the judged moment, not after the rest of the batch.
        judged = batch.hours[r]
        w1 = prof.window_1h(now, judged)
        w24 = prof.window_24h(now, judged)
        reasons = explain.reasons(kind, contrib, prof, peer, now, pop, features=row, judged=judged)
        reasons += tuple(r for r in explain.insights(prof, peer, evidence) if r not in reasons)
        if not signal:
            self._marks.append((aid, now, judged))
        facts: dict[str, Any] = {
            "score": round(score, 1),
            "threshold": round(self.threshold, 1),
            "population_score": None if pop is None else round(pop, 1),
            "score_components": {k: round(v, 1) for k, v in contrib.items() if v > 0},
            "features": {n: round(v, 3) for n, v in row.items()},
            "records_last_hour": round(w1[1]),
            "records_last_24h": round(w24[1]),
            "baseline_hour_p95": round(prof.hour_p95),
            "baseline_day_p95": round(prof.day_p95),
            "new_countries": sorted(prof.new_countries(now)),
            "usual_countries": prof.usual_countries(now),
            "local_hour": local_hour(now, prof.zone),
            "time_zone": prof.zone,
            "history_days": round(prof.history_days(now), 1),
            # The event time at which the actor's window was judged.
            "judged_at": datetime.fromtimestamp(now, tz=UTC).isoformat(),
        }
        tenants = unique(e.tenant_id if isinstance(e, AccessEvent) else e.actor_tenant for e in evidence)
        return Finding(
            detector=self.name,
            kind=kind,
            severity="low" if signal else _severity(score),
            score=round(min(max(score, 0.0), 100.0), 1),
            ts=evidence[0].ts,
            title=f"{explain.TITLES.get(kind, kind)}: {aid}",
            reasons=reasons,
            playbook=explain.PLAYBOOKS.get(kind, explain.PLAYBOOKS[ANOMALOUS]),
            events=tuple(evidence),
            actor_id=aid,
            tenant_ids=tenants,
            source_ips=unique(getattr(e, "ip", None) for e in evidence),
            facts=facts,
            dedup_key=dedup,
            signal=signal,
            # Judged as the actor stood at ``now``, but only once the stream had moved on to
            # the event that made the actor due: that is when it was known.
            detected_at=datetime.fromtimestamp(batch.seen[r], tz=UTC),
        )

    def _flags(self, ev: Event, prof: ActorProfile) -> int:
        """Why an event may be evidence, worked out only for actors with a finding."""
        f = 0
        ts = ev.ts.timestamp()
        country = getattr(ev, "country", None)
        if country:
            first = prof.first_use(T_COUNTRY, country)
            if first is not None and ts - first < NOVEL_FOR:
                f |= F_NOVEL
        ip = getattr(ev, "ip", None)
        prov = provider_prefix(ip) if ip else None
        if prov:
            first = prof.first_use(T_PROVIDER, self._keyed("prov", prov))
            if first is not None and ts - first < NOVEL_FOR:
                f |= F_NOVEL
        if isinstance(ev, AccessEvent):
            for tag, key in ((T_RESOURCE, ev.resource_type), (T_SENSITIVITY, ev.sensitivity)):
                first = prof.first_use(tag, key)
                if first is not None and ts - first < NOVEL_FOR and prof.mature(first):
                    f |= F_NEW_RESOURCE
            if ev.sensitivity in SENSITIVE:
                f |= F_SENSITIVE
            if ev.action == "export":
                f |= F_EXPORT
        elif isinstance(ev, AuthEvent):
            if ev.outcome != "success":
                f |= F_FAILED
            elif ev.action == "role_change":
                f |= F_ROLE
            elif ev.action == "login":
                f |= F_LOGIN
        return f

    def _evidence(self, events: EventBatch, batch: _Batch, r: int, kind: str) -> list[Event]:
        """The actor's last events up to the judged moment, within an hour of it, that carry
        the anomaly: the flagged ones (new location, new data type, sensitive, export, failed
        login, role change) when there are any, else all of them."""
        aid, now, upto = batch.actors[r], batch.nows[r], batch.upto[r]
        prof = self._profiles[aid]
        # What was carried over from earlier batches, then this batch's events up to the
        # judged moment (an actor judged when its slot ended may have none here).
        pool = [carried.event(c) for c in carried.from_blob(self._carry.get(aid)) if now - c[0] <= HOUR]
        times = events.ts
        pool.extend(events[i] for i in batch.indices.get(aid, ()) if i < upto and now - times[i] <= HOUR)
        # The carried events are the actor's last CARRY_CAP, so the same cap here makes the pool
        # the same wherever the batches were cut.
        pool = pool[-CARRY_CAP:]
        if kind in ("account_takeover", "service_key_misuse"):
            want = F_NOVEL | F_FAILED | F_ROLE
        elif kind == "privilege_escalation":
            want = F_ROLE | F_NEW_RESOURCE | F_SENSITIVE
        else:
            want = F_SENSITIVE | F_EXPORT | F_NEW_RESOURCE | F_NOVEL | F_ROLE | F_FAILED
        chosen = [e for e in pool if self._flags(e, prof) & want] or pool
        return sorted(chosen, key=lambda e: e.ts)

    # ---- checkpoint -----------------------------------------------------------------------

    def _head(self) -> dict[str, Any]:
        """The state but what is kept per actor: profiles, carried events and the register of
        evicted actors (see ``state_delta``)."""
        return {
            "version": 1,
            "peers": {k: p.to_dict() for k, p in self._peers.items()},
            "episodes": {k: list(v) for k, v in self._episodes.items()},
            "failures": {k: list(v) for k, v in self._failures.items()},
            "clock_day": self._clock_day,
            "pending": {a: list(v) for a, v in self._pending.items()},
            "period": self._period,
            "marks": [[a, now, hour] for a, now, hour in self._marks],
            "accepted": {k: list(v) for k, v in self._accepted.items()},
            "judged_seq": self._judged_seq,
        }

    def state(self) -> dict[str, Any]:
        """Profiles, peers, episodes and the idle register, as plain JSON."""
        return {
            **self._head(),
            "register": dict(self._register),
            "profiles": dict(self._profile_dicts()),
            "carry": {a: [_event_json(carried.event(c)) for c in cs] for a, cs in self._all_carried()},
        }

    def _item(self, aid: str) -> dict[str, Any]:
        """One actor's part of the state: its profile and carried events if it has them, and
        when it was last seen if it was evicted (an actor seeded from the model's baselines
        may have both)."""
        item: dict[str, Any] = {}
        prof = self._profiles.get(aid)
        if prof is None and aid in self._packed:
            prof = _unpack_profile(self._packed[aid])
        if prof is not None:
            item["profile"] = prof.to_dict()
            blob = self._carry.get(aid)
            if blob is None and aid in self._packed_carry:
                blob = carried.unsqueezed(self._packed_carry[aid])
            if blob is not None:
                item["carry"] = [_event_json(carried.event(c)) for c in carried.from_blob(blob)]
        last = self._register.get(aid)
        if last is not None:
            item["register"] = last
        return item

    def state_delta(self) -> StateDelta:
        """Itemised by actor: a checkpoint writes the actors whose profile or carried events
        changed since the last one saved (an idle actor's cost nothing), not all of them."""
        held = self._profiles.keys() | self._packed.keys() | self._register.keys()
        if self._complete:
            changed, dropped = list(held), []
        else:
            changed = [a for a in self._dirty if a in held]
            dropped = [a for a in self._dropped if a not in held]
        items = {a: self._item(a) for a in changed}
        return StateDelta(self._head(), items, dropped, self._complete, itemised=True)

    def delta_saved(self) -> None:
        self._dirty.clear()
        self._dropped.clear()
        self._complete = False

    def delta_void(self) -> None:
        self._complete = True

    def load_state_items(self, head: dict[str, Any], items: dict[str, Any]) -> None:
        if not head or "profiles" in head:
            # A whole state (a checkpoint from before states were itemised): the next
            # checkpoint writes every actor.
            self.load_state(head)
            return
        self.load_state(
            {
                **head,
                "register": {a: it["register"] for a, it in items.items() if "register" in it},
                "profiles": {a: it["profile"] for a, it in items.items() if "profile" in it},
                "carry": {a: it["carry"] for a, it in items.items() if "carry" in it},
            }
        )
        # The store holds exactly what was loaded: the next checkpoint writes what changes.
        self._complete = False

    def load_state(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if state.get("version") != 1:
            raise ValueError(f"unsupported learned-detector state version: {state.get('version')!r}")
        self._peers = {k: PeerProfile.from_dict(d) for k, d in state["peers"].items()}
        self._profiles = {}
        # Restored packed: each comes back to life at its actor's next event (``_wake``).
        self._packed = {a: _pack_profile(ActorProfile.from_dict(d)) for a, d in state["profiles"].items()}
        self._next_pack = -1.0
        self._register = {a: float(v) for a, v in state["register"].items()}
        self._episodes = {k: [float(x) for x in v] for k, v in state["episodes"].items()}
        self._failures = {k: [float(x) for x in v] for k, v in state["failures"].items()}
        self._carry = {
            a: carried.to_blob([carried.carried(e, e.ts.timestamp()) for e in map(_event_from_json, es)])
            for a, es in state["carry"].items()
            if es
        }
        self._packed_carry = {}
        self._clock_day = int(state["clock_day"])
        self._clock = -1.0
        # Checkpoints written before slot judgements simply have none waiting.
        self._pending = {a: [float(v[0]), float(v[1])] for a, v in state.get("pending", {}).items()}
        self._due = [(v[0], a) for a, v in self._pending.items()]
        heapq.heapify(self._due)
        # Checkpoints written before report periods start a fresh one at the next event.
        self._period = int(state.get("period", -1))
        self._period_end = (self._period + 1) * REPORT_PERIOD if self._period >= 0 else -math.inf
        self._marks = [
            (str(a), float(now), None if hour is None else [float(x) for x in hour])
            for a, now, hour in state.get("marks", ())
        ]
        # Checkpoints written before verdicts fed back hold none.
        self._accepted = {k: [float(x) for x in v] for k, v in state.get("accepted", {}).items()}
        self._judged_seq = int(state.get("judged_seq", 0))
        self._dirty = set()
        self._dropped = set()
        self._complete = True


def _pack_profile(prof: ActorProfile) -> bytes:
    """``ActorProfile.pack`` behind the last-seen time (``_evict`` reads it without unpacking).
    A few hundred bytes for a new actor, about a kilobyte for a mature one; several KB live."""
    return struct.pack("<d", prof.last_seen) + prof.pack()


def _unpack_profile(blob: bytes) -> ActorProfile:
    return ActorProfile.unpack(blob[8:])


def _blob_time(blob: bytes) -> float:
    return float(struct.unpack_from("<d", blob)[0])


def _event_json(e: Event) -> list[str]:
    return ["auth" if isinstance(e, AuthEvent) else "access", e.model_dump_json(exclude_none=True)]


def _event_from_json(item: list[str]) -> Event:
    model = AuthEvent if item[0] == "auth" else AccessEvent
    return model.model_validate_json(item[1])


def _severity(score: float) -> Severity:
    if score >= 90:
        return "critical"
    if score >= 75:
        return "high"
    return "medium"


# ---- training ---------------------------------------------------------------------------------


def _event_tenants(ev: AccessEvent | AuthEvent) -> tuple[str | None, ...]:
    if isinstance(ev, AccessEvent):
        return (ev.tenant_id, ev.actor_tenant)
    return (ev.actor_tenant,)


def train(
    events: Iterable[Event],
    tables: ReferenceTables,
    *,
    until: datetime,
    pseudonym_key: bytes,
    max_alerts_per_day: float = 4.0,
    progress: Callable[[str], None] | None = None,
    exclude: Iterable[tuple[str, datetime, datetime]] = (),
    warmup_days: float | None = None,
    random_state: int = 0,
) -> TrainedModel:
    """Fit the learned detector on events before ``until`` from tenants that allow AI training.

    ``exclude`` lists (actor_id, start, end) windows an on-call marked false positive: their
    events are left out so a wrong pattern is not learned as normal. ``warmup_days`` (default:
    a quarter of the history, at least 4 days) is the history profiles need before their rows
    count for fitting and calibration.
    """
    if not pseudonym_key:
        raise ValueError("a pseudonym key is required to train: the model may only hold keyed pseudonyms")
    say = progress or (lambda _msg: None)
    report = TrainReport()
    cutoff = until.timestamp()
    excluded = [(a, s.timestamp(), e.timestamp()) for a, s, e in exclude]
    excl_by_actor: dict[str, list[tuple[float, float]]] = {}
    for a, s, e in excluded:
        excl_by_actor.setdefault(a, []).append((s, e))
    used: list[AccessEvent | AuthEvent] = []
    tenants_used: set[str] = set()
    tenants_out: set[str] = set()
    for ev in events:
        report.events_seen += 1
        if report.events_seen % 500_000 == 0:
            say(f"read {report.events_seen:,} events")
        if not isinstance(ev, AccessEvent | AuthEvent):
            report.logs_ignored += 1
            continue
        ts = ev.ts.timestamp()
        if ts >= cutoff:
            report.events_after_until += 1
            continue
        tenants = [t for t in _event_tenants(ev) if t]
        out = [t for t in tenants if tables.tenant_opted_out(t)]
        if out:
            report.events_opted_out += 1
            tenants_out.update(out)
            continue
        spans = excl_by_actor.get(ev.actor_id)
        if spans and any(s <= ts <= e for s, e in spans):
            report.events_feedback_excluded += 1
            continue
        tenants_used.update(tenants)
        used.append(ev)
    if not used:
        raise ValueError("no training events before --until from tenants that allow AI training")
    used.sort(key=lambda e: e.ts)
    report.events_used = len(used)
    report.tenants_used = sorted(tenants_used)
    report.tenants_excluded = sorted(tenants_out | {t for t, v in tables.tenants.items() if v.ai_training_opt_out})
    start = used[0].ts.timestamp()
    end = used[-1].ts.timestamp()
    report.window_start = used[0].ts.isoformat()
    report.window_end = until.isoformat()
    span_days = max((end - start) / DAY, 0.0)
    warm = warmup_days if warmup_days is not None else max(4.0, span_days / 4.0)
    fit_from = start + warm * DAY
    if fit_from >= end:
        raise ValueError(f"training history spans {span_days:.1f} days; at least {warm + 1:.0f} days are needed")

    say(f"profiling {len(used):,} events")
    collector = LearnedDetector(None, pseudonym_key)
    ctx = DetectionContext(tables=tables)
    rows: list[list[float]] = []
    row_actor: list[str] = []
    row_day: list[int] = []
    for b in range(0, len(used), TRAIN_BATCH):
        part = EventBatch(used[b : b + TRAIN_BATCH])
        start = 0
        while start < len(part):  # a report period at a time (see ``_fold``)
            batch = collector._fold(part, ctx.tables, every_row=True, start=start)
            for a, now, row in zip(batch.actors, batch.nows, batch.rows, strict=True):
                if now >= fit_from:
                    rows.append(row)
                    row_actor.append(a)
                    row_day.append(int(now // DAY))
            report.rows += len(batch.rows)
            start = batch.stop
    if len(rows) < 50:
        raise ValueError(f"only {len(rows)} feature rows after warm-up; more history is needed")
    X = np.asarray(rows, dtype=float)
    report.rows_fit = len(X)
    report.actors = collector.actor_count

    say(f"fitting models on {len(X):,} rows")
    patterns = PatternScorer().fit(X)
    population = PopulationModel(random_state=random_state).fit(X)
    scorer = LearnedDetector(None, pseudonym_key)
    scorer._patterns = patterns
    scorer._pop_score = population.score_samples  # every row at once: scikit-learn's own batching
    scorer.anomaly_threshold = 101.0
    _, _, pop, kinds = scorer._score(X)
    fit_days = (end - fit_from) / DAY
    # One candidate alert per actor, kind and day: the unit a real alert would dedup to.
    bonus = POPULATION_WEIGHT * pop / 100.0
    windows: dict[tuple[str, str, int], float] = {}
    for kind in KINDS:
        s = np.where(kinds[kind] > 0, np.minimum(kinds[kind] + bonus, 100.0), 0.0)
        for r in np.nonzero(s > 0)[0]:
            key = (row_actor[r], kind, row_day[r])
            windows[key] = max(windows.get(key, 0.0), float(s[r]))
    calibration = calibrate_threshold(
        np.fromiter(windows.values(), dtype=float, count=len(windows)), fit_days, max_alerts_per_day, ALERT_FLOOR
    )
    # The population model alone alerts only for a day rarer than the training history
    # predicts once a quarter, and beyond every hour of that history (``tail_threshold``); staff
    # rows are left out, as they are when judging (see ``_score``).
    lone: dict[tuple[str, int], float] = {}
    for r in np.nonzero(X[:, COL["is_staff"]] == 0)[0]:
        key2 = (row_actor[r], row_day[r])
        lone[key2] = max(lone.get(key2, 0.0), float(pop[r]))
    lone_cal = tail_threshold(np.fromiter(lone.values(), dtype=float, count=len(lone)), fit_days, ALERT_FLOOR)
    anomaly_threshold = lone_cal.threshold  # past every non-staff training day already
    report.threshold = calibration.threshold
    report.alerts_per_day_at_threshold = calibration.alerts_per_day_at_threshold

    keyed = collector._keyed
    baselines = _pseudonymised_baselines(collector, keyed, until.timestamp())
    metadata = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "features": list(FEATURE_NAMES),
        "kinds": list(KINDS),
        "training_window": {"start": report.window_start, "until": report.window_end, "warmup_days": warm},
        "counts": {
            "events_used": report.events_used,
            "events_opted_out": report.events_opted_out,
            "events_feedback_excluded": report.events_feedback_excluded,
            "tenants_used": len(report.tenants_used),
            "tenants_excluded": len(report.tenants_excluded),
            "actors": report.actors,
            "rows_fit": report.rows_fit,
        },
        "threshold": calibration.threshold,
        "calibration": calibration.to_dict(),
        "anomaly_threshold": anomaly_threshold,
        "anomaly_calibration": lone_cal.to_dict(),
        "scales": patterns.scales_,
        "population_weight": POPULATION_WEIGHT,
        "key_check": keyed.check(),
        "trained_at_event_time": until.astimezone(UTC).isoformat(),
    }
    say(f"threshold {calibration.threshold:.1f}: {calibration.alerts_per_day_at_threshold:.2f} alerts/day in training")
    return TrainedModel(
        patterns=patterns,
        population=population,
        threshold=calibration.threshold,
        anomaly_threshold=anomaly_threshold,
        metadata=metadata,
        baselines=baselines,
        report=report,
    )


def _pseudonymised_baselines(collector: LearnedDetector, keyed: _Keyed, until: float) -> dict[str, Any]:
    """Profiles keyed by HMAC of the actor id; tenant ids hashed; session ids dropped."""
    actors: dict[str, Any] = {}
    horizon = until - collector.idle_days * DAY
    for aid, d in collector._profile_dicts():
        if d["last"] < horizon:
            continue
        d["home"] = keyed("tenant", d["home"])
        d["session"] = ["", 0.0]
        actors[keyed("actor", aid, 24)] = d
    peers: dict[str, Any] = {}
    for key, peer in collector._peers.items():
        home, _, kind = key.rpartition("|")
        peers[keyed("tenant", home) + "|" + kind] = peer.to_dict()
    return {"actors": actors, "peers": peers}


# ---- model files ------------------------------------------------------------------------------


def logs_only_model(logs: dict[str, Any], pseudonym_key: bytes, until: datetime, report: TrainReport) -> TrainedModel:
    """A model file for a history with log records but no access or login events (imported log
    files): the learned detector starts as it would without a model, the log detector trained."""
    metadata = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "features": list(FEATURE_NAMES),
        "kinds": list(KINDS),
        "training_window": {"start": report.window_start, "until": until.isoformat()},
        "threshold": ALERT_FLOOR,
        "key_check": _Keyed(pseudonym_key).check(),
        "trained_at_event_time": until.astimezone(UTC).isoformat(),
        "logs_only": True,
    }
    return TrainedModel(
        patterns=PatternScorer().fit(np.zeros((0, len(FEATURE_NAMES)))),
        population=None,
        threshold=ALERT_FLOOR,
        anomaly_threshold=101.0,
        metadata=metadata,
        baselines={"actors": {}, "peers": {}},
        report=report,
        logs=logs,
    )


def save_model(model: TrainedModel, path: Path, signing_key: bytes) -> None:
    """Write the model with skops (no pickle): estimators, metadata and baselines, signed
    with ``signing_key`` (``signing.seal``)."""
    import skops.io as sio

    metadata_json = json.dumps(model.metadata, sort_keys=True, separators=(",", ":"))
    baselines_json = json.dumps(model.baselines, sort_keys=True, separators=(",", ":"))
    logs_json = json.dumps(model.logs, sort_keys=True, separators=(",", ":")) if model.logs is not None else None
    payload = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "patterns": model.patterns,
        "population": model.population,
        "threshold": float(model.threshold),
        "anomaly_threshold": float(model.anomaly_threshold),
        "metadata": metadata_json,
        "baselines": baselines_json,
    }
    if logs_json is not None:
        payload["logs"] = logs_json
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(seal(sio.dumps(payload), signing_key))
    tmp.replace(path)


# Exactly the types a model file written by ``save_model`` contains; anything else means the
# file was not written by this code, and is refused before it is loaded.
TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        "builtins.dict",
        "builtins.list",
        "builtins.str",
        "builtins.float",
        "builtins.int",
        "builtins.tuple",
        "builtins.NoneType",
        "breachwatch.detectors.learned.models.PatternScorer",
        "breachwatch.detectors.learned.models.PopulationModel",
        "sklearn.ensemble._iforest.IsolationForest",
        "sklearn.tree._classes.ExtraTreeRegressor",
        "sklearn.tree._tree.Tree",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.float64",
        "numpy.int64",
        "numpy.random.mtrand.RandomState",
        "numpy.random._mt19937.MT19937",
        "numpy.random.RandomState",
    }
)


def _types_in(archive: bytes) -> set[str]:
    """Every ``module.class`` named in a skops archive's schema."""
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        schema = json.loads(z.read("schema.json"))
    found: set[str] = set()
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__module__" in node and "__class__" in node:
                found.add(f"{node['__module__']}.{node['__class__']}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def load_model(path: Path, signing_key: bytes) -> TrainedModel:
    """Read a model written by ``save_model``: its signature and scikit-learn version are
    checked before anything in it is read, then unknown types are refused."""
    import skops.io as sio

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the model file: {exc.strerror}") from None
    archive = unseal(data, signing_key, str(path))
    try:
        present = _types_in(archive)
        untrusted = set(sio.get_untrusted_types(data=archive))
    except Exception as exc:  # zipfile, json and skops raise many kinds on foreign bytes
        raise ModelFileError(f"{path}: not a BreachWatch model file ({type(exc).__name__})") from exc
    # Every type in the file must be one this code writes, including those skops would
    # trust by default: a file holding anything else was not written by ``save_model``.
    unknown = sorted((present | untrusted) - TRUSTED_TYPES)
    if unknown:
        raise ModelFileError(
            f"{path}: refusing to load, the file contains types this version does not trust: {unknown}"
        )
    try:
        payload = sio.loads(archive, trusted=sorted(untrusted))
    except Exception as exc:  # skops raises many kinds on a damaged file; all mean "cannot trust it"
        raise ModelFileError(f"{path}: model file is damaged or not readable ({type(exc).__name__})") from exc
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path}: not a BreachWatch learned-detector model")
    if payload.get("version") != MODEL_VERSION:
        raise ModelFileError(
            f"{path}: model format version {payload.get('version')!r}; this version reads {MODEL_VERSION}"
        )
    metadata_json, baselines_json = payload.get("metadata"), payload.get("baselines")
    if not isinstance(metadata_json, str) or not isinstance(baselines_json, str):
        raise ModelFileError(f"{path}: model metadata missing")
    logs_json = payload.get("logs")
    if logs_json is not None and not isinstance(logs_json, str):
        raise ModelFileError(f"{path}: log model of the wrong type")
    patterns, population = payload.get("patterns"), payload.get("population")
    if not isinstance(patterns, PatternScorer) or not (population is None or isinstance(population, PopulationModel)):
        raise ModelFileError(f"{path}: model estimators missing or of the wrong type")
    metadata = json.loads(metadata_json)
    if metadata.get("features") != list(FEATURE_NAMES):
        raise ModelFileError(f"{path}: model was trained on different features; retrain it with this version")
    threshold = float(payload["threshold"])
    if not math.isfinite(threshold) or threshold != metadata.get("threshold"):
        raise ModelFileError(f"{path}: threshold does not match its calibration metadata")
    return TrainedModel(
        patterns=patterns,
        population=population,
        threshold=threshold,
        anomaly_threshold=float(payload["anomaly_threshold"]),
        metadata=metadata,
        baselines=json.loads(baselines_json),
        logs=json.loads(logs_json) if logs_json is not None else None,
    )


__all__ = [
    "ALERT_FLOOR",
    "LearnedDetector",
    "ModelFileError",
    "TrainReport",
    "TrainedModel",
    "load_model",
    "logs_only_model",
    "save_model",
    "train",
]
