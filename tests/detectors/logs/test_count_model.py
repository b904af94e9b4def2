"""The count model: sessions of familiar templates judged by their counts, mix and order."""

from __future__ import annotations

import random

import numpy as np

from breachwatch.detectors.logs.count_model import SessionCountModel, steps_of, summarise

LOGIN, LIST, VIEW, LOGOUT, EXPORT = 1, 2, 3, 4, 5


def usual_sessions(n: int = 300, seed: int = 1) -> list[list[int]]:
    """Log in, list, view 2-6 items, log out; one session in fifty also exports."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        s = [LOGIN, LIST] + [VIEW] * rnd.randint(2, 6)
        if i % 50 == 0:
            s.append(EXPORT)
        out.append([*s, LOGOUT])
    return out


def fitted(**params: object) -> SessionCountModel:
    return SessionCountModel(**params).fit([summarise(s) for s in usual_sessions()])  # type: ignore[arg-type]


def score(model: SessionCountModel, seq: list[int]) -> float:
    return float(model.score_samples([summarise(seq)])[0])


def test_steps_collapse_runs_and_include_the_start() -> None:
    assert steps_of([LOGIN, VIEW, VIEW, LOGOUT]) == [(0, LOGIN), (LOGIN, VIEW), (VIEW, LOGOUT)]


def test_a_usual_session_is_within_the_limit() -> None:
    model = fitted()
    assert score(model, [LOGIN, LIST, VIEW, VIEW, VIEW, LOGOUT]) <= 1.0
    assert not model.predict([summarise([LOGIN, LIST, VIEW, VIEW, VIEW, VIEW, LOGOUT])])[0]


def test_a_rare_but_learned_pattern_is_not_anomalous() -> None:
    # The export path is one session in fifty: learned, so never flagged on its own.
    model = fitted()
    assert score(model, [LOGIN, LIST, VIEW, VIEW, EXPORT, LOGOUT]) == 0.0


def test_familiar_templates_in_far_larger_counts_are_anomalous_with_their_counts() -> None:
    model = fitted()
    scrape = summarise([LOGIN, LIST, *[VIEW] * 60, LOGOUT])
    assert score(model, [LOGIN, LIST, *[VIEW] * 60, LOGOUT]) > 1.0
    why = model.explain(scrape)
    top = why.deviations[0]
    assert (top.kind, top.key, top.seen, top.learned_max) == ("extra", VIEW, 60, 6)
    assert (
        why.reasons(lambda t: f"'t{t}'")[0] == "'t3' seen 60 times, more than in any learned session (max 6, median 4)"
    )


def test_a_missing_partner_is_anomalous_and_named_with_its_expected_count() -> None:
    model = fitted()
    truncated = [LOGIN, LIST]  # the session ends after the listing: no view, no logout
    assert score(model, truncated) > 1.0
    why = model.explain(summarise(truncated))
    missing = {d.key: d for d in why.deviations if d.kind == "missing"}
    assert VIEW in missing and missing[VIEW].seen == 0 and missing[VIEW].expected >= 2
    assert any("missing: seen 0, expected" in r for r in why.reasons())


def test_familiar_templates_in_a_new_order_are_anomalous() -> None:
    model = fitted()
    assert score(model, [LOGOUT, VIEW, VIEW, LIST, LOGIN]) > 1.0


def test_templates_never_seen_are_not_columns() -> None:
    # Novelty is the detector's explicit signal (it leaves new templates out of the steps it
    # gives the model); the model judges what it knows.
    model = fitted()
    counts, steps = summarise([LOGIN, LIST, VIEW, VIEW, LOGOUT])
    with_new = ({**counts, 99: 1}, steps)
    assert model.score_samples([with_new])[0] == model.score_samples([(counts, steps)])[0] == 0.0
    assert not model.knows_any(summarise([98, 99]))


def test_too_few_sessions_and_the_model_abstains() -> None:
    model = SessionCountModel(min_sessions=20).fit([summarise(s) for s in usual_sessions(10)])
    assert not model.ready_
    assert score(model, [LOGOUT, LOGOUT, LOGIN]) == 0.0


def test_a_uniform_service_gets_a_floor_not_a_zero_limit() -> None:
    # Every learned session alike: no spread at all. One record more is not anomalous; a
    # session missing half of it is.
    same = [summarise([LOGIN, VIEW, LOGOUT])] * 50
    model = SessionCountModel().fit(same)
    assert model.limit_ >= 1.0 and model.grain_ > 0
    assert score(model, [LOGIN, VIEW, VIEW, LOGOUT]) <= 1.0
    assert score(model, [LOGIN]) > 1.0


def test_fitting_twice_on_the_same_sessions_gives_the_same_scores() -> None:
    probes = [summarise(s) for s in usual_sessions(40, seed=9)] + [summarise([LOGIN, LIST])]
    a, b = fitted(), fitted()
    assert np.array_equal(a.score_samples(probes), b.score_samples(probes))


def test_a_session_repeated_in_a_call_scores_and_breaks_as_it_does_alone() -> None:
    # Repeats are scored once per call: each must still get exactly its own score and breaks.
    model = fitted()
    cut_short = [LOGIN, LIST, VIEW, VIEW]  # no logout: breaks login:logout
    probes = [summarise(s) for s in [cut_short, *usual_sessions(30, seed=5), cut_short, [LOGIN, *[VIEW] * 60]]]
    together = model.score_samples(probes)
    alone = np.array([model.score_samples([p])[0] for p in probes])
    assert np.array_equal(together, alone)
    assert together[0] == together[31] and together[-1] > 1.0
    breaks = model.broken(probes)
    assert breaks == [model.broken([p])[0] for p in probes]
    assert breaks[0] and breaks[31] and breaks[0] is not breaks[31]
