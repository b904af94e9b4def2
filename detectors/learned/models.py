"""Estimators that turn window feature rows into scores, and the alert-budget calibration.

Both estimators follow scikit-learn's conventions (``__init__`` stores parameters, ``fit``
returns ``self``, fitted attributes end in ``_``) with one deliberate difference: every
score they return is on the product's single scale, 0-100 where higher is worse.
scikit-learn's own outlier scores run the other way; they are converted here, at the
boundary, and nowhere else.

- ``PopulationModel``: an IsolationForest over the rows of all (opted-in) actors: "does this
  hour of this actor look like any hour anyone had?".
- ``PatternScorer``: per-kind statistical scores (account takeover, slow exfiltration, ...),
  each a weighted sum of the window features that the kind is made of, on scales learned
  from the training rows, gated by the signal the kind cannot exist without.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import IsolationForest
from sklearn.utils.validation import check_array, check_is_fitted

from breachwatch.detectors.forest import IsolationPaths
from breachwatch.detectors.learned.features import COL, FEATURE_NAMES, N_FEATURES

KINDS: tuple[str, ...] = (
    "account_takeover",
    "slow_exfiltration",
    "dormant_account",
    "service_key_misuse",
    "privilege_escalation",
)
ANOMALOUS = "anomalous_access"

# Features whose size (not just presence) matters; their scale is learned from training.
# A feature at its scale counts as "clearly unusual"; these defaults are the floors of the
# learned scales (in the feature's units, mostly doublings): training data with almost no
# spread must not make a trickle look enormous.
DEFAULT_SCALES: dict[str, float] = {
    "volume_1h_vs_own": 2.0,
    "volume_24h_vs_own": 1.5,
    "volume_24h_spread_vs_own": 1.5,
    "volume_3d_spread_vs_own": 1.0,
    "volume_cusum": 6.0,
    "volume_1h_vs_peers": 1.5,
    "sensitive_1h_vs_own": 2.0,
    "export_24h_vs_own": 2.0,
    "offhour": 3.0,
    "offhour_new_location": 3.0,
    "offhour_vs_peers": 3.0,
    "novel_location_sensitive": 3.0,
    "new_resource": 6.0,
    "reads_after_role_change": 4.0,
    "crown_jewels_after_role_change": 6.0,
    "dormancy": 2.5,
    "unseen_for": 2.5,
    "failed_logins_1h": 2.0,
}
SCALED: tuple[str, ...] = tuple(DEFAULT_SCALES)

# Graded features: the weight multiplier at level 1 and level 2. A new country for the actor
# counts fully, and more if none of its peers has used it either; a new /24 inside a known
# provider block is a weak hint (mobile and cloud addresses move that way), a new block is not.
LEVELS: dict[str, tuple[float, float]] = {
    "new_country": (1.0, 1.2),
    "new_network": (0.5, 1.0),
}

# Points (out of 100) a kind's ingredient adds when the ingredient is at its scale; each
# scaled ingredient is capped at twice its points.
WEIGHTS: dict[str, dict[str, float]] = {
    # A takeover: a new place (the gate), then who is at the keyboard: a new device, hours
    # kept neither at home nor at the place, failed logins, and the data it goes for.
    "account_takeover": {
        "new_country": 35.0,
        "new_agent": 18.0,
        "offhour_new_location": 12.0,
        "novel_location_sensitive": 8.0,
        "sensitive_1h_vs_own": 4.0,
        "export_24h_vs_own": 4.0,
        "failed_logins_1h": 6.0,
        "country_switch_1h": 4.0,
    },
    "slow_exfiltration": {
        "volume_cusum": 25.0,
        "volume_3d_spread_vs_own": 30.0,
        "elevated_days": 6.0,
        "volume_24h_spread_vs_own": 20.0,
        "sensitive_share_1h": 10.0,
        "volume_1h_vs_peers": 5.0,
    },
    # An idle or never-seen account waking: the idleness (the gate), then what is unlike the
    # account and its peers: hours, networks, failed logins, and the data it reads.
    "dormant_account": {
        "dormancy": 35.0,
        "unseen_for": 25.0,
        "offhour": 6.0,
        "offhour_vs_peers": 10.0,
        "new_network_for_peers": 10.0,
        "new_country": 8.0,
        "new_agent": 5.0,
        "failed_logins_1h": 10.0,  # an idle account that needs tries to get in
        "sensitive_share_1h": 8.0,
        "volume_1h_vs_peers": 6.0,
        "volume_1h_vs_own": 6.0,
        "sensitive_1h_vs_own": 6.0,
        "export_24h_vs_own": 6.0,
        "new_resource": 4.0,
    },
    "service_key_misuse": {
        "new_network": 35.0,
        "new_country": 15.0,
        "new_agent": 15.0,
        "offhour": 8.0,
        "new_resource": 12.0,
        "volume_1h_vs_own": 8.0,
        "sensitive_1h_vs_own": 8.0,
    },
    # A role change (the gate: followed by payment or credentials data new to the actor),
    # then how much of it was read, whether the actor granted the role itself, and when.
    "privilege_escalation": {
        "crown_jewels_after_role_change": 30.0,
        "reads_after_role_change": 10.0,
        "role_change_self": 20.0,
        "role_change_24h": 10.0,
        "sensitive_1h_vs_own": 6.0,
        "offhour": 6.0,
        "new_network": 6.0,
    },
}


# Where the sequential test of background volume alone opens the slow-exfiltration gate (in
# robust deviations of the actor's own days, summed over days, see ``features.volume_z``).
CUSUM_ALARM = 6.0


def _gates(X: np.ndarray) -> dict[str, np.ndarray]:
    """Rows where each kind can exist at all: the signals without which it is not that kind."""
    col = {name: X[:, i] for name, i in COL.items()}
    is_service = col["is_service"] > 0
    new_country = col["new_country"] >= 1
    new_block = col["new_network"] >= 2
    new_agent = col["new_agent"] > 0
    # A takeover is a new place *and* a sign that someone else is at the keyboard: a new
    # device, failed logins, or hours the user keeps neither at home nor where they are. A
    # traveller changes only the place (and may still have a big day at month end).
    failed = col["failed_logins_1h"] > 0
    behaviour = new_agent | failed | (col["offhour_new_location"] >= 2.0)
    # An account waking from idleness is suspect when it does not look like its owner coming
    # back to work: odd hours (for it or its colleagues), a new device or network, failures.
    stranger = (
        new_agent
        | failed
        | new_country
        | new_block
        | (col["new_network_for_peers"] > 0)
        | (col["offhour"] >= 2.0)
        | (col["offhour_vs_peers"] >= 2.0)
    )
    return {
        "account_takeover": ~is_service & (new_country | (new_block & new_agent)) & behaviour,
        # Days, not an hour: a one-day burst is a busy day (or a bulk export, for the rules).
        # Or the sequential test past its alarm: one day far above usual, or two well above.
        "slow_exfiltration": ((col["elevated_days"] >= 2) & (col["volume_3d_spread_vs_own"] >= 1.0))
        | ((col["volume_cusum"] >= CUSUM_ALARM) & ~is_service & (col["is_staff"] == 0)),
        # A never-seen integration key is a new integration, not a dormant one. Vendor staff work
        # tenants ticket by ticket, weeks apart: their idleness says nothing, and each of their
        # accesses is judged against its ticket and the staff directory by the staff-access rule.
        "dormant_account": ((col["dormancy"] >= 2.0) | ((col["unseen_for"] >= 2.0) & ~is_service))
        & stranger
        & (col["is_staff"] == 0),
        "service_key_misuse": is_service & (new_block | new_country | new_agent),
        "privilege_escalation": (col["role_change_24h"] > 0) & (col["crown_jewels_after_role_change"] > 0),
    }


class PatternScorer(BaseEstimator):
    """Per-kind statistical scores (0-100, higher is worse) from window feature rows.

    Parameters
    ----------
    scale_quantile : float, default=0.999
        Quantile of each scaled feature over the training rows taken as its "clearly
        unusual" size (never below ``DEFAULT_SCALES``), so a deployment where volumes swing
        widely needs bigger swings to alert.

    Attributes
    ----------
    scales_ : dict of str to float
        Learned scale of each scaled feature.
    n_features_in_ : int
        Number of features seen during fit.
    """

    def __init__(self, scale_quantile: float = 0.999) -> None:
        self.scale_quantile = scale_quantile

    def fit(self, X: np.ndarray, y: None = None) -> PatternScorer:
        """Learn feature scales from training rows; an empty matrix keeps the defaults."""
        X = np.asarray(X, dtype=float).reshape(-1, N_FEATURES)
        scales = dict(DEFAULT_SCALES)
        if len(X) >= 100:
            # Over all rows, zeros included: "as far out as one normal hour in a thousand".
            for name in SCALED:
                q = float(np.quantile(X[:, COL[name]], self.scale_quantile))
                scales[name] = max(scales[name], q)
        self.scales_ = scales
        self.n_features_in_ = N_FEATURES
        return self

    def _unit(self, X: np.ndarray, name: str) -> np.ndarray:
        """An ingredient's size per row before its weight: a level, a scaled value, or as is."""
        col = X[:, COL[name]]
        if name in LEVELS:
            lv = LEVELS[name]
            return np.where(col >= 2, lv[1], np.where(col >= 1, lv[0], 0.0))
        if name in self.scales_:
            return np.minimum(col / self.scales_[name], 2.0)
        return col

    def contributions(self, X: np.ndarray, kind: str) -> dict[str, np.ndarray]:
        """Points each ingredient of ``kind`` adds per row (for scores and explanations)."""
        check_is_fitted(self, "scales_")
        return {name: pts * self._unit(X, name) for name, pts in WEIGHTS[kind].items()}

    def score_kinds(self, X: np.ndarray, *, checked: bool = False) -> dict[str, np.ndarray]:
        """Score of every kind for every row: 0 where the kind's gate is closed.

        ``checked``: ``X`` is already a float matrix of feature rows (the detector builds it
        so); scikit-learn's input check then costs more than scoring a handful of rows."""
        check_is_fitted(self, "scales_")
        if not checked:
            X = check_array(X, dtype=float, ensure_min_samples=0)
        gates = _gates(X)
        # Each ingredient's size once, whichever kinds weigh it; the sums keep each kind's order.
        units = {name: self._unit(X, name) for name in {n for w in WEIGHTS.values() for n in w}}
        scores: dict[str, np.ndarray] = {}
        for kind in KINDS:
            total = sum(pts * units[name] for name, pts in WEIGHTS[kind].items())
            scores[kind] = np.where(gates[kind], np.clip(total, 0.0, 100.0), 0.0)
        return scores

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """The worst kind score of each row (0-100, higher is worse)."""
        kinds = self.score_kinds(X)
        return np.max(np.vstack([kinds[k] for k in KINDS]), axis=0) if len(X) else np.zeros(0)


class PopulationModel(BaseEstimator):
    """IsolationForest over window feature rows, scored 0-100 with higher worse.

    Parameters
    ----------
    n_estimators : int, default=100
        Trees in the forest.
    max_samples : int, default=512
        Rows drawn to build each tree.
    random_state : int, default=0
        Seed, so that training the same data twice gives the same model file.

    Attributes
    ----------
    forest_ : sklearn.ensemble.IsolationForest
        The fitted forest.
    center_ : float
        Median raw anomaly score of the training rows (maps to 0).
    n_features_in_ : int
        Number of features seen during fit.
    """

    def __init__(self, n_estimators: int = 100, max_samples: int = 512, random_state: int = 0) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: None = None) -> PopulationModel:
        """Fit the forest on training rows (at least two)."""
        X = check_array(X, dtype=float)
        forest = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, len(X)),
            random_state=self.random_state,
        )
        forest.fit(X)
        raw = -forest.score_samples(X)
        self.forest_ = forest
        self.center_ = float(np.median(raw))
        self.n_features_in_ = X.shape[1]
        return self

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """0 for a typical row up to 100 for one isolated at once (higher is worse)."""
        check_is_fitted(self, "forest_")
        X = check_array(X, dtype=float, ensure_min_samples=0)
        if len(X) == 0:
            return np.zeros(0)
        # The forest's anomaly score is in (0, 1] with 1 the most isolated; sklearn returns
        # it negated. The training median becomes 0 so that a normal hour scores ~0.
        raw = -self.forest_.score_samples(X)
        span = max(1.0 - self.center_, 1e-9)
        return np.clip((raw - self.center_) / span, 0.0, 1.0) * 100.0

    def decision_function(self, X: np.ndarray, threshold: float = 50.0) -> np.ndarray:
        """Score minus ``threshold``: positive means alert."""
        return self.score_samples(X) - threshold

    def scorer(self) -> Callable[[np.ndarray], np.ndarray]:
        """``score_samples`` for callers that score a few rows at a time: the same scores
        without scikit-learn's per-tree overhead (about 6 ms a call with 100 trees, whatever
        the number of rows; this takes well under a tenth of that)."""
        check_is_fitted(self, "forest_")
        paths = IsolationPaths(self.forest_)
        center = self.center_
        span = max(1.0 - center, 1e-9)

        def score(X: np.ndarray) -> np.ndarray:
            if len(X) == 0:
                return np.zeros(0)
            if len(X) > 1000:
                # Walking every tree for every row at once costs more than scikit-learn's
                # per-tree loop from about a thousand rows on.
                return self.score_samples(X)
            return np.clip((paths.score(X) - center) / span, 0.0, 1.0) * 100.0

        return score


@dataclass(frozen=True)
class Calibration:
    """How an alert threshold was chosen from training data, kept in the model metadata."""

    threshold: float
    floor: float
    max_alerts_per_day: float
    days: float
    candidate_windows: int
    alerts_per_day_at_threshold: float
    quantiles: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibrate_threshold(window_scores: np.ndarray, days: float, max_alerts_per_day: float, floor: float) -> Calibration:
    """Lowest threshold >= ``floor`` at which the training windows (one max score per actor,
    kind and day) would have raised at most ``max_alerts_per_day`` alerts a day.

    Training data is history the operator accepts as normal, so every window over the
    threshold there is a false alarm; the budget bounds how many of those a day are tolerable.
    The floor keeps a very quiet history from pulling the threshold down to noise.
    """
    scores = np.sort(np.asarray(window_scores, dtype=float))[::-1]
    days = max(days, 1e-9)
    allowed = int(np.floor(max_alerts_per_day * days))
    threshold = floor
    if len(scores) > allowed and scores[allowed] >= floor:
        # Everything strictly above the (allowed+1)-th highest score is within budget.
        threshold = float(np.nextafter(scores[allowed], np.inf))
    over = int(np.sum(scores >= threshold))
    qs = {}
    if len(scores):
        for q in (0.5, 0.9, 0.99, 0.999):
            qs[f"q{q}"] = float(np.quantile(scores, q))
        qs["max"] = float(scores[0])
    return Calibration(
        threshold=round(threshold, 6),
        floor=floor,
        max_alerts_per_day=max_alerts_per_day,
        days=round(days, 4),
        candidate_windows=len(scores),
        alerts_per_day_at_threshold=round(over / days, 4),
        quantiles=qs,
    )


# The population model alone (``anomalous_access``) pages for an actor's day the training
# history predicts fewer than once in this many days across the whole deployment: a catch-all
# for what no kind describes must be rarer than any kind's alerts. (At 30 days, one ordinary
# user-day in a simulated week of 25 tenants crossed it.)
LONE_RETURN_DAYS = 90.0
# The share of the highest actor-days whose excesses the tail is fitted on, and the fewest of
# them: fewer would make the fitted spread a guess.
LONE_TAIL_SHARE = 0.02
LONE_MIN_TAIL = 10


@dataclass(frozen=True)
class TailCalibration:
    """How the population model's own alert level was extrapolated from training data."""

    threshold: float
    return_days: float
    days: float
    candidate_windows: int
    tail_size: int
    tail_start: float
    mean_excess: float
    training_max: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tail_threshold(window_scores: np.ndarray, days: float, floor: float) -> TailCalibration:
    """The score a normal actor-day exceeds about once in ``LONE_RETURN_DAYS`` days of the
    deployment, from the peaks of the training windows (one max score per actor and day), and
    never below ``floor`` or the highest training window.

    The training history rarely holds a day that unusual, so the level is extrapolated: the
    excesses of the top ``LONE_TAIL_SHARE`` over the next score are taken as exponential (peaks
    over threshold; a shape fitted on a few dozen points would be noise), whose rate of
    exceeding u + x per day is k / days * exp(-x / mean excess). With too few windows for a
    tail, the level is the old fixed one: 90 and beyond every training window.
    """
    scores = np.sort(np.asarray(window_scores, dtype=float))[::-1]
    days = max(days, 1e-9)
    top = float(scores[0]) if len(scores) else 0.0
    k = max(LONE_MIN_TAIL, int(np.ceil(LONE_TAIL_SHARE * len(scores))))
    if len(scores) <= 2 * k:
        level, start, excess, k = max(90.0, floor), top, 0.0, 0
    else:
        start = float(scores[k])
        excess = float(np.mean(scores[:k] - start))
        level = start + excess * float(np.log(k * LONE_RETURN_DAYS / days))
    threshold = max(level, floor, float(np.nextafter(top, np.inf)))
    return TailCalibration(
        threshold=round(threshold, 6),
        return_days=LONE_RETURN_DAYS,
        days=round(days, 4),
        candidate_windows=len(scores),
        tail_size=k,
        tail_start=round(start, 6),
        mean_excess=round(excess, 6),
        training_max=round(top, 6),
    )


__all__ = [
    "ANOMALOUS",
    "FEATURE_NAMES",
    "KINDS",
    "Calibration",
    "PatternScorer",
    "PopulationModel",
    "TailCalibration",
    "calibrate_threshold",
    "tail_threshold",
]
