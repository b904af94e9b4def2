"""A session model on template counts and transitions that can flag a session on its own.

A session (one service's records sharing a session id) becomes a vector of tf-idf weighted
counts of its templates and of its template-to-template steps (sublinear tf: ten times the
records is not ten times the evidence; idf: a template in every session weighs least). A session
is judged by its nearest learned session, relative to how spread out the learned sessions are
around that neighbour (the idea of the local outlier factor, Breunig et al., SIGMOD 2000):

    score = distance to the nearest learned session / (that session's distance to its own
            nearest other learned session + the distance of one extra record of a typical template)

so a configuration that was learned, however rare, scores 0, and a new one scores by how far it
is from its neighbourhood: missing templates, extra ones, the right ones in the wrong amounts or
a new order of familiar ones. Its limit is the ``quantile`` of the same score over the learned
sessions (each left out in turn), and ``score_samples`` divides by it: above 1.0 is anomalous.

Only templates and steps seen in training are columns: what was never seen is novelty, which
the detector weighs explicitly, so one never-seen record never lands on either side of a limit by
the accident of an idf value. ``explain`` names the templates behind a score, against the nearest
learned session: missing, extra or out of proportion, with expected and seen counts.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from breachwatch.detectors.logs.invariants import Broken, broken, fit_invariants

START = 0  # the pseudo template before a session's first record (template ids start at 1)
Step = tuple[int, int]
# A session as the model sees it: how often each template and each step occurred.
Session = tuple[Mapping[int, int], Mapping[Step, int]]
Kind = Literal["missing", "extra", "out_of_proportion", "unusual_count"]
# A limit must clear a session identical to a training one: their statistics agree only up to
# rounding, and an equal one must not flag.
_TOLERANCE = 1e-6


def steps_of(session: Iterable[int]) -> list[Step]:
    """Template-to-template steps, the start included; a run of one template is one step, its
    length being in the counts already."""
    out: list[Step] = []
    prev = START
    for key in session:
        if key != prev:
            out.append((prev, key))
            prev = key
    return out


def summarise(sequence: Iterable[int]) -> Session:
    """A session given as template ids in time order, as the model sees it."""
    seq = list(sequence)
    return dict(Counter(seq)), dict(Counter(steps_of(seq)))


@dataclass(frozen=True, slots=True)
class Deviation:
    """One template (or step) that pushed a session's score up, with the counts behind it."""

    kind: Kind
    key: int | Step
    seen: int
    expected: float  # its count in the nearest learned session
    learned_median: float  # median count in learned sessions that had it
    learned_max: int
    share: float  # this key's part of the session's score, 0..1

    @property
    def step(self) -> bool:
        return isinstance(self.key, tuple)

    def text(self, name: Any = str) -> str:
        """One reason; ``name`` turns a template id into its text (quoted)."""
        if isinstance(self.key, tuple):
            a, b = self.key
            first = "(session start)" if a == START else name(a)
            label = f"step {first} → {name(b)}"
        else:
            label = name(self.key)
        if self.kind == "missing":
            return f"{label} missing: seen 0, expected {self.expected:g} as in the nearest learned session"
        if self.kind == "extra":
            return (
                f"{label} seen {self.seen:,} times, more than in any learned session "
                f"(max {self.learned_max:,}, median {self.learned_median:g})"
            )
        if self.kind == "out_of_proportion":
            return f"{label} out of proportion: seen {self.seen:,}, {self.expected:g} in the nearest learned session"
        return (
            f"{label} seen {self.seen:,} times; learned sessions with it had median "
            f"{self.learned_median:g}, max {self.learned_max:,}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": list(self.key) if isinstance(self.key, tuple) else self.key,
            "seen": self.seen,
            "expected": round(self.expected, 2),
            "learned_median": self.learned_median,
            "learned_max": self.learned_max,
            "share": round(self.share, 3),
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a session scored what it scored: how far it is from its nearest learned session, how
    spread out the learned sessions are there, and the templates that make the difference."""

    score: float
    distance: float
    spread: float
    limit: float
    deviations: tuple[Deviation, ...]

    def reasons(self, name: Any = str) -> list[str]:
        return [d.text(name) for d in self.deviations]


class SessionCountModel(BaseEstimator):
    """Count vectors of sessions' known templates and steps, each judged against its nearest
    learned session; a score above 1.0 (over the limit set on the learned sessions) is anomalous.

    Parameters
    ----------
    quantile : float
        The limit is this quantile of the score over the learned sessions, each left out in
        turn (at least 1.0: a session must be farther from its neighbour than that neighbour's
        own spread plus one extra record). Learned sessions whose score is above it are the rare
        ones with no close neighbour; a session equal to one of them scores 0 all the same.
    transitions : bool
        Add template-to-template steps as columns.
    max_transitions : int
        Most frequent training steps kept as columns.
    min_sessions : int
        Fewer training sessions than this and the model abstains (scores 0): no limit estimated
        from a handful of sessions is worth paging on.
    top_reasons : int
        Deviations ``explain`` returns.
    invariant_alpha : float
        Pairs of templates whose counts keep one ratio in learned sessions (``invariants``) are
        kept where learned sessions broke them at most at this rate; 0 learns none.
    """

    def __init__(
        self,
        *,
        quantile: float = 0.995,
        transitions: bool = True,
        max_transitions: int = 1000,
        min_sessions: int = 20,
        top_reasons: int = 4,
        invariant_alpha: float = 0.005,
    ) -> None:
        self.quantile = quantile
        self.transitions = transitions
        self.max_transitions = max_transitions
        self.min_sessions = min_sessions
        self.top_reasons = top_reasons
        self.invariant_alpha = invariant_alpha

    # --------------------------------------------------------------- fitting

    def fit(self, X: Iterable[Session], y: Any = None) -> SessionCountModel:
        """Learn the columns, the weights, the learned sessions' neighbourhoods and the limit."""
        sessions = list(X)
        n = len(sessions)
        self._fit_columns(sessions)
        counts = self._counts(sessions)
        df = (counts > 0).sum(axis=0)
        # Smooth idf, as scikit-learn's: a template in every session still weighs 1.
        self.idf_ = np.log((1.0 + n) / (1.0 + df)) + 1.0
        self._fit_count_stats(counts)
        # Learned sessions as distinct vectors, with how often each occurred.
        uniq, first, multiplicity = np.unique(counts, axis=0, return_index=True, return_counts=True)
        self.counts_ = uniq
        self.points_ = self._weigh(uniq)
        self.multiplicity_ = multiplicity
        # One extra record of a typical template (tf 1 -> 1 + ln 2): the smallest distance that
        # means anything, so a tight neighbourhood does not make rounding noise anomalous.
        typical = float(np.median(self.idf_[: len(self.vocabulary_)])) if self.vocabulary_ else 1.0
        self.grain_ = math.log(2.0) * typical
        self.spread_ = self._spread()
        self.n_training_sessions_ = n
        self.ready_ = n >= self.min_sessions and self.n_features_ > 0 and len(uniq) > 0
        self.limit_ = self._fit_limit(first, n)
        templates = counts[:, : len(self.vocabulary_)]
        self.invariants_ = fit_invariants(templates, self.invariant_alpha) if self.invariant_alpha > 0 else []
        return self

    def _spread(self) -> np.ndarray:
        """Each learned point's distance to its nearest other learned session (0 if it occurred
        more than once)."""
        u = len(self.points_)
        if u < 2:
            return np.zeros(u)
        d = _distances(self.points_, self.points_)
        np.fill_diagonal(d, np.inf)
        spread = d.min(axis=1)
        spread[self.multiplicity_ > 1] = 0.0
        return spread

    def _fit_limit(self, first: np.ndarray, n: int) -> float:
        """The quantile of the learned sessions' own scores, each judged without itself."""
        u = len(self.points_)
        if u < 2 or n < 2:
            return 1.0
        d = _distances(self.points_, self.points_)
        np.fill_diagonal(d, np.inf)
        nearest = d.argmin(axis=1)
        loo = np.where(self.multiplicity_ > 1, 0.0, d.min(axis=1) / (self.spread_[nearest] + self.grain_))
        per_session = np.repeat(loo, self.multiplicity_)
        return max(1.0, float(np.quantile(per_session, self.quantile)))

    def _fit_columns(self, sessions: list[Session]) -> None:
        templates: dict[int, int] = {}
        steps: Counter[Step] = Counter()
        for counts, session_steps in sessions:
            for key in counts:
                templates.setdefault(key, len(templates))
            if self.transitions:
                steps.update(session_steps)
        self.vocabulary_ = templates
        # Most frequent first; ties in first-seen order, so a refit on the same sessions is the same.
        kept = [st for st, _ in steps.most_common(self.max_transitions)]
        self.step_columns_ = {st: len(templates) + i for i, st in enumerate(kept)}
        self.column_keys_: list[int | Step] = [*templates, *kept]
        self.n_features_ = len(self.column_keys_)

    def _fit_count_stats(self, counts: np.ndarray) -> None:
        """Per column: median and largest count over the training sessions that have it."""
        d = counts.shape[1]
        self.learned_median_ = np.zeros(d)
        self.learned_max_ = np.zeros(d, dtype=int)
        for j in range(d):
            present = counts[:, j][counts[:, j] > 0]
            if present.size:
                self.learned_median_[j] = float(np.median(present))
                self.learned_max_[j] = int(present.max())

    # --------------------------------------------------------------- vectors

    def _counts(self, sessions: list[Session]) -> np.ndarray:
        vocab, step_cols = self.vocabulary_, self.step_columns_
        rows: list[int] = []
        cols: list[int] = []
        values: list[float] = []
        for i, (counts, steps) in enumerate(sessions):
            for key, c in counts.items():
                j = vocab.get(key)
                if j is not None:
                    rows.append(i)
                    cols.append(j)
                    values.append(c)
            if self.transitions:
                for st, c in steps.items():
                    j = step_cols.get(st)
                    if j is not None:
                        rows.append(i)
                        cols.append(j)
                        values.append(c)
        out = np.zeros((len(sessions), self.n_features_))
        if rows:
            out[np.asarray(rows), np.asarray(cols)] = values
        return out

    def _weigh(self, counts: np.ndarray) -> np.ndarray:
        tf = np.zeros_like(counts)
        pos = counts > 0
        tf[pos] = 1.0 + np.log(counts[pos])
        return tf * self.idf_

    def transform(self, X: Iterable[Session]) -> np.ndarray:
        """Weighted count vectors of sessions (columns: ``column_keys_``)."""
        check_is_fitted(self, "points_")
        return self._weigh(self._counts(list(X)))

    def knows_any(self, session: Session) -> bool:
        """Whether any of the session's templates is a column (else the model has nothing to say)."""
        return not self.vocabulary_.keys().isdisjoint(session[0])

    # --------------------------------------------------------------- scoring

    def _nearest(self, weighted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = _judged_distances(weighted, self.points_)
        j = d.argmin(axis=1)
        return j, d[np.arange(len(weighted)), j]

    def score_samples(self, X: Iterable[Session]) -> np.ndarray:
        """How far over the limit each session is: above 1.0 is anomalous; higher is odder."""
        check_is_fitted(self, "points_")
        sessions = list(X)
        if not self.ready_ or not sessions:
            return np.zeros(len(sessions))
        distinct, twin = _distinct(sessions)
        j, dist = self._nearest(self._weigh(self._counts(distinct)))
        return (dist / (self.spread_[j] + self.grain_) / self.limit_)[twin]

    def broken(self, X: Iterable[Session]) -> list[list[Broken]]:
        """Per session, the learned count invariants it breaks (none while not ready)."""
        check_is_fitted(self, "points_")
        sessions = list(X)
        if not self.ready_ or not self.invariants_ or not sessions:
            return [[] for _ in sessions]
        distinct, twin = _distinct(sessions)
        found = broken(self._counts(distinct)[:, : len(self.vocabulary_)], self.invariants_)
        return [list(found[i]) for i in twin]

    def predict(self, X: Iterable[Session]) -> np.ndarray:
        """True for anomalous sessions (not scikit-learn's -1/+1 outlier convention)."""
        return self.score_samples(X) > 1.0 + _TOLERANCE

    # --------------------------------------------------------------- reasons

    def explain(self, session: Session) -> Explanation:
        """The score of one session and the templates or steps that made it, biggest first,
        against its nearest learned session."""
        check_is_fitted(self, "points_")
        counts = self._counts([session])[0]
        w = self._weigh(counts[None, :])
        j_arr, d_arr = self._nearest(w)
        j, dist = int(j_arr[0]), float(d_arr[0])
        spread = float(self.spread_[j])
        score = dist / (spread + self.grain_) / self.limit_ if self.ready_ else 0.0
        parts = _judged_parts(w[0], self.points_[j])
        total = float(parts.sum()) or 1.0
        order = [int(c) for c in np.argsort(-parts, kind="stable") if parts[c] > 0][: 4 * self.top_reasons]
        expected = self.counts_[j]
        devs = tuple(self._deviation(c, counts, expected, float(parts[c] / total)) for c in order)
        return Explanation(score, dist, spread, self.limit_, devs[: self.top_reasons])

    def _deviation(self, j: int, counts: np.ndarray, expected: np.ndarray, share: float) -> Deviation:
        seen, exp = int(counts[j]), float(expected[j])
        med, mx = float(self.learned_median_[j]), int(self.learned_max_[j])
        kind: Kind
        if seen == 0:
            kind = "missing"
        elif seen > mx:
            kind = "extra"
        elif exp < seen / 1.5 or exp > seen * 1.5:
            kind = "out_of_proportion"
        else:
            kind = "unusual_count"
        return Deviation(kind, self.column_keys_[j], seen, exp, med, mx, share)


def _distinct(sessions: list[Session]) -> tuple[list[Session], np.ndarray]:
    """Each distinct session once, and per session the index of its twin there. Most sessions a
    service closes repeat one of a few patterns (a batch's few hundred, a few dozen), and a
    session's row, score and broken invariants depend on that session alone."""
    index: dict[tuple[tuple[Any, ...], tuple[Any, ...]], int] = {}
    distinct: list[Session] = []
    twin = np.empty(len(sessions), dtype=np.intp)
    for i, session in enumerate(sessions):
        # Items in insertion order: equal keys are equal sessions (equal sessions seen in
        # another order are merely computed twice).
        key = (tuple(session[0].items()), tuple(session[1].items()))
        k = index.get(key)
        if k is None:
            k = index[key] = len(distinct)
            distinct.append(session)
        twin[i] = k
    return distinct, twin


# A session that does more than its nearest learned session (the same task twice, as a month-end
# close runs it) is less telling than one that stops short of it (a flow cut off by a failure):
# what a session has beyond its neighbour counts this much. Steps never seen at all are novelty,
# which the detector weighs on its own.
MORE_WEIGHT = 0.5
_BLOCK_CELLS = 1 << 20


def _judged_parts(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per column, the squared difference of a judged session ``x`` from a learned one ``p``,
    what ``x`` has more of weighed by ``MORE_WEIGHT``."""
    diff = x - p
    return np.where(diff > 0, (MORE_WEIGHT * diff) ** 2, diff**2)


def _judged_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances from judged sessions (rows of ``a``) to learned ones (rows of ``b``), as
    ``_judged_parts`` weighs them."""
    out = np.empty((len(a), len(b)))
    # Judged sessions a block at a time (one array operation each), a block at most
    # ``_BLOCK_CELLS`` differences big.
    step = max(1, _BLOCK_CELLS // max(b.size, 1))
    for i in range(0, len(a), step):
        out[i : i + step] = np.sqrt(_judged_parts(a[i : i + step, None, :], b[None, :, :]).sum(axis=2))
    return out


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` and of ``b``."""
    sq = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(sq, 0.0))
