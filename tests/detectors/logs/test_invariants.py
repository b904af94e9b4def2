"""Count invariants: pairs of templates whose counts keep one ratio in learned sessions."""

from __future__ import annotations

import numpy as np

from breachwatch.detectors.logs.count_model import SessionCountModel, summarise
from breachwatch.detectors.logs.invariants import broken, fit_invariants

# Columns: block allocated, received (once per replica), closed (once per replica), verified.
ALLOC, RECV, CLOSE, VERIFY = 0, 1, 2, 3


def blocks(n: int = 300) -> np.ndarray:
    """Three replicas per block; one block in three is also verified, 1 to 4 times."""
    rows = [[1, 3, 3, (i % 4) + 1 if i % 3 == 0 else 0] for i in range(n)]
    return np.array(rows, dtype=float)


def test_a_ratio_kept_by_every_learned_session_is_learned_with_its_support() -> None:
    found = {(v.a, v.b): v for v in fit_invariants(blocks(), alpha=0.005)}
    assert (found[(ALLOC, RECV)].p, found[(ALLOC, RECV)].q) == (1, 3)
    assert (found[(RECV, CLOSE)].p, found[(RECV, CLOSE)].q) == (1, 1)
    assert found[(RECV, CLOSE)].support == found[(RECV, CLOSE)].held == 300
    # VERIFY comes in varying numbers: no ratio with it.
    assert not any(VERIFY in key for key in found)


def test_no_invariant_from_too_few_sessions_or_one_broken_too_often() -> None:
    assert fit_invariants(blocks(150), alpha=0.005) == []  # 150 sessions cannot show a 0.5 % rate
    often = blocks()
    often[:5, CLOSE] = 0  # 5 of 300 blocks never closed: more than 0.5 %
    assert not any({v.a, v.b} == {RECV, CLOSE} for v in fit_invariants(often, alpha=0.005))


def test_a_partner_missing_altogether_breaks_the_invariant_with_its_expected_count() -> None:
    invs = fit_invariants(blocks(), alpha=0.005)
    [got] = broken(np.array([[1.0, 2.0, 0.0, 0.0]]), invs)
    closes = [b for b in got if b.missing == CLOSE]
    # As often as the receives (2) and three per allocation (3): both are named.
    assert {(b.seen, b.expected) for b in closes} == {(0, 2.0), (0, 3.0)}
    assert not any(b.missing == VERIFY for b in got)


def test_must_not_one_record_off_or_the_same_task_twice_or_an_unrelated_template() -> None:
    invs = fit_invariants(blocks(), alpha=0.005)
    one_off = [1, 3, 2, 0]  # a replica's close lost: what a retry or a cut looks like
    twice = [2, 6, 6, 0]  # two blocks in one session: every ratio kept
    other = [0, 0, 0, 5]  # only templates outside every invariant
    assert broken(np.array([one_off, twice, other], dtype=float), invs) == [[], [], []]


def test_must_two_records_off_breaks() -> None:
    invs = fit_invariants(blocks(), alpha=0.005)
    [got] = broken(np.array([[1.0, 3.0, 1.0, 0.0]]), invs)
    assert any(b.missing == CLOSE and b.seen == 1 and b.expected == 3.0 for b in got)


def test_the_count_model_learns_invariants_of_template_ids_and_abstains_before_it_is_ready() -> None:
    usual = [summarise([10, *[11] * 3, *[12] * 3]) for _ in range(300)]
    model = SessionCountModel(invariant_alpha=0.005).fit(usual)
    cut = summarise([10, 11, 11])
    [got] = model.broken([cut])
    assert {model.column_keys_[b.missing] for b in got} == {12}
    assert model.broken([summarise([10, 11, 11, 11, 12, 12, 12])]) == [[]]
    assert SessionCountModel(invariant_alpha=0.0).fit(usual).broken([cut]) == [[]]
    assert SessionCountModel(min_sessions=500).fit(usual).broken([cut]) == [[]]
