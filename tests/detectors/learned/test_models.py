"""The estimators: scikit-learn conventions, one score direction (0-100, higher is worse),
the kinds' gates, and the alert-budget calibration."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from breachwatch.detectors.learned.features import COL, N_FEATURES
from breachwatch.detectors.learned.models import (
    DEFAULT_SCALES,
    KINDS,
    LONE_RETURN_DAYS,
    PatternScorer,
    PopulationModel,
    calibrate_threshold,
    tail_threshold,
)


def row(**features: float) -> np.ndarray:
    x = np.zeros(N_FEATURES)
    x[COL["maturity"]] = 3.5
    for name, value in features.items():
        x[COL[name]] = value
    return x


def normal_rows(n: int = 2000, seed: int = 0) -> np.ndarray:
    """Ordinary hours: small volume wobbles, the odd off-hour, rarely a failed login."""
    rng = np.random.default_rng(seed)
    X = np.zeros((n, N_FEATURES))
    X[:, COL["volume_1h_vs_own"]] = np.clip(rng.normal(0, 0.4, n), 0, None)
    X[:, COL["volume_24h_vs_own"]] = np.clip(rng.normal(0, 0.3, n), 0, None)
    X[:, COL["sensitive_share_1h"]] = rng.uniform(0, 1, n)
    X[:, COL["offhour"]] = np.clip(rng.normal(0, 0.8, n), 0, None)
    X[:, COL["failed_logins_1h"]] = (rng.uniform(0, 1, n) < 0.02).astype(float)
    X[:, COL["distinct_resources_1h"]] = rng.integers(1, 4, n)
    X[:, COL["maturity"]] = rng.uniform(2, 4, n)
    return X


def test_estimators_follow_sklearn_conventions() -> None:
    for est in (PatternScorer(scale_quantile=0.99), PopulationModel(n_estimators=10, random_state=3)):
        params = est.get_params()
        assert clone(est).get_params() == params
        assert not any(k.endswith("_") for k in vars(est))  # __init__ only stores parameters
    with pytest.raises(NotFittedError):
        PopulationModel().score_samples(normal_rows(5))
    with pytest.raises(NotFittedError):
        PatternScorer().score_kinds(normal_rows(5))
    fitted = PopulationModel(n_estimators=10).fit(normal_rows(200))
    assert fitted.n_features_in_ == N_FEATURES
    assert hasattr(fitted, "forest_") and hasattr(fitted, "center_")


def test_population_model_scores_outliers_higher_on_a_0_100_scale() -> None:
    X = normal_rows()
    model = PopulationModel(random_state=0).fit(X)
    typical = model.score_samples(X[:200])
    odd_rows = np.vstack([row(volume_1h_vs_own=8, new_country=2, new_agent=1, offhour=9, failed_logins_1h=3)])
    odd = model.score_samples(odd_rows)
    assert typical.min() >= 0 and odd.max() <= 100
    assert np.median(typical) < 10
    assert odd[0] > np.quantile(typical, 0.99)
    assert model.decision_function(odd_rows, threshold=odd[0] - 1)[0] > 0
    assert model.decision_function(X[:1], threshold=99)[0] < 0
    # Same data, same seed: the same model (a model file must be reproducible).
    again = PopulationModel(random_state=0).fit(X)
    assert np.array_equal(again.score_samples(X[:50]), model.score_samples(X[:50]))


def test_population_scorer_gives_scikit_learns_scores() -> None:
    """The detector scores an hour's rows at a time with ``scorer()``; it must agree with
    ``score_samples`` to the bit, on ordinary rows and on outliers alike."""
    X = normal_rows()
    model = PopulationModel(random_state=3).fit(X)
    odd = np.vstack([X[:50], normal_rows(200, seed=9) * 4.0, row(volume_1h_vs_own=9.0, new_country=2.0)])
    fast = model.scorer()
    assert np.array_equal(fast(odd), model.score_samples(odd))
    assert np.array_equal(fast(odd[:1]), model.score_samples(odd[:1]))
    many = normal_rows(1500, seed=5) * 3.0
    assert np.array_equal(fast(many), model.score_samples(many))
    assert fast(np.zeros((0, N_FEATURES))).shape == (0,)


def test_pattern_scales_are_learned_but_never_below_the_floor() -> None:
    X = normal_rows()
    X[:5, COL["volume_1h_vs_own"]] = 9.0  # a noisy history pushes the volume scale up
    scorer = PatternScorer(scale_quantile=0.999).fit(X)
    assert scorer.scales_["volume_1h_vs_own"] > DEFAULT_SCALES["volume_1h_vs_own"]
    assert scorer.scales_["dormancy"] == DEFAULT_SCALES["dormancy"]
    assert PatternScorer().fit(np.zeros((0, N_FEATURES))).scales_ == DEFAULT_SCALES


def test_takeover_needs_a_new_place_and_a_stranger_at_the_keyboard() -> None:
    scorer = PatternScorer().fit(np.zeros((0, N_FEATURES)))
    rows = np.vstack(
        [
            # night login from a country no colleague uses, new device, data grab
            row(new_country=2, new_network=2, new_agent=1, offhour_new_location=6, novel_location_sensitive=6),
            # a business trip: new country, same laptop, the destination's office hours
            row(new_country=2, new_network=2, offhour_new_location=0.5, sensitive_1h_vs_own=0.5),
            # a new device at home is not a takeover either
            row(new_agent=1),
        ]
    )
    ato = scorer.score_kinds(rows)["account_takeover"]
    assert ato[0] >= 80
    assert ato[1] == 0 and ato[2] == 0


def test_each_kind_has_its_gate() -> None:
    scorer = PatternScorer().fit(np.zeros((0, N_FEATURES)))
    cases = {
        "slow_exfiltration": row(
            volume_3d_spread_vs_own=2.5, volume_24h_spread_vs_own=2, elevated_days=3, sensitive_share_1h=1
        ),
        "dormant_account": row(dormancy=4, offhour=3, sensitive_share_1h=1, volume_1h_vs_peers=2),
        "service_key_misuse": row(is_service=1, new_network=2, new_country=1, offhour=4),
        "privilege_escalation": row(
            role_change_24h=1, reads_after_role_change=8, crown_jewels_after_role_change=8, role_change_self=1
        ),
    }
    for kind, x in cases.items():
        scores = scorer.score_kinds(x.reshape(1, -1))
        assert scores[kind][0] >= 60, kind
        assert max(scores, key=lambda k: scores[k][0]) == kind
    # One busy day is not slow exfiltration; a user's new network is not service-key misuse;
    # a holiday return without anything strange is not a dormant account.
    quiet = np.vstack(
        [
            row(volume_3d_spread_vs_own=2.5, volume_24h_spread_vs_own=3, elevated_days=1),
            row(new_network=2, new_country=1),
            row(dormancy=3, sensitive_share_1h=1),
            # an administrator's grant followed by new, but not secret or payment, data
            row(role_change_24h=1, reads_after_role_change=7),
            # a never-seen integration key is a new integration
            row(is_service=1, unseen_for=3, new_network_for_peers=1, offhour_vs_peers=4),
            # a support engineer back at a tenant after weeks (the staff-access rule judges it)
            row(is_staff=1, dormancy=4, offhour=3, sensitive_share_1h=1, volume_1h_vs_peers=2),
        ]
    )
    s = scorer.score_kinds(quiet)
    assert s["slow_exfiltration"][0] == 0
    assert s["service_key_misuse"][1] == 0
    assert s["dormant_account"][2] == 0
    assert s["privilege_escalation"][3] == 0
    assert s["dormant_account"][4] == 0
    assert s["dormant_account"][5] == 0
    assert set(s) == set(KINDS)
    assert np.array_equal(scorer.score_samples(quiet), np.max(np.vstack([s[k] for k in KINDS]), axis=0))


def test_threshold_meets_the_alert_budget_and_keeps_the_floor() -> None:
    rng = np.random.default_rng(1)
    windows = rng.uniform(0, 90, 300)  # 10 days of candidate alert windows
    cal = calibrate_threshold(windows, days=10, max_alerts_per_day=2, floor=60)
    assert cal.threshold > 60
    assert np.sum(windows >= cal.threshold) <= 20
    assert cal.alerts_per_day_at_threshold <= 2
    assert np.sum(windows >= cal.threshold - 1e-3) >= 20  # not stricter than needed
    quiet = calibrate_threshold(np.array([10.0, 20.0, 61.0]), days=10, max_alerts_per_day=4, floor=60)
    assert quiet.threshold == 60  # a quiet history never pulls the threshold below the floor
    assert quiet.alerts_per_day_at_threshold == pytest.approx(0.1)
    assert set(quiet.to_dict()) >= {"threshold", "floor", "max_alerts_per_day", "days", "quantiles"}


def test_the_population_models_own_level_is_exceeded_about_once_a_quarter() -> None:
    # Actor-days whose scores have a known exponential tail: 300 a day, 20 + Exp(mean 5). The
    # level a normal day exceeds once in 90 days is 20 + 5 ln(300 * 90) = 71.0.
    rng = np.random.default_rng(3)
    train = 20.0 + rng.exponential(5.0, 300 * 10)
    cal = tail_threshold(train, days=10, floor=0.0)
    assert LONE_RETURN_DAYS == 90
    assert cal.threshold == pytest.approx(20.0 + 5.0 * np.log(300 * 90), abs=3.0)
    assert cal.threshold > train.max() and cal.training_max == pytest.approx(train.max(), abs=1e-5)
    # Must: on the next 360 days of such normal days, about 4 exceed it (one a quarter).
    later = 20.0 + rng.exponential(5.0, 300 * 360)
    assert 1 <= int(np.sum(later >= cal.threshold)) <= 10
    # Must not: a level below the floor, or one guessed from too few days for a tail.
    assert tail_threshold(train, days=10, floor=90.0).threshold == 90.0
    short = tail_threshold(np.array([10.0, 30.0, 55.0] * 5), days=10, floor=60.0)
    assert short.threshold == 90.0 and short.tail_size == 0
    assert set(cal.to_dict()) >= {"threshold", "return_days", "tail_size", "mean_excess", "training_max"}
