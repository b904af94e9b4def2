"""Count invariants: pairs of templates whose counts keep one small ratio in learned sessions.

A system's code fixes many of its log counts: every block written is also received and closed
(three of each for three replicas), every login has its logout, every sync batch its commit. In
learned sessions that have either template of such a pair, the two counts keep one ratio p:q
(small integers); a session that has one of the pair and breaks the ratio stopped short of, or
went past, what the code does -- a failure the templates alone never show, since all of them are
familiar. This is the idea of invariant mining (Lou et al., USENIX ATC 2010), kept to pairs so
that each broken invariant reads as a plain reason: "'E9' missing: seen 0, expected 2 (as often
as 'E5')".

What counts as broken is bounded so that an ordinary session never is:

* the partner is missing altogether while the other template is there, or both are there and the
  counts are off the ratio by at least ``min_off`` records (one record more or fewer is what a
  retry or a cut looks like);
* the same task done twice keeps every ratio (a month-end close is not a broken invariant);
* a pair is kept only where learned sessions with either template broke it at most at the
  ``alpha`` rate, counted with one break granted for the sessions not seen ((breaks + 1) /
  (sessions + 2)), so it needs a few hundred supporting sessions at the default alert budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_TERM = 3  # ratios up to 3:1 (three replicas); larger ones are coincidences of few sessions


@dataclass(frozen=True, slots=True)
class Invariant:
    """Template columns ``a`` and ``b`` come ``p`` : ``q`` in ``held`` of ``support`` learned
    sessions that had either."""

    a: int
    b: int
    p: int
    q: int
    support: int
    held: int


@dataclass(frozen=True, slots=True)
class Broken:
    """A session's break of ``invariant``: the ``missing`` column (the one short of the ratio)
    ``seen`` times where its partner's count implies ``expected``."""

    invariant: Invariant
    missing: int
    seen: int
    expected: float


def _off(ca: np.ndarray, cb: np.ndarray, p: int, q: int, min_off: int) -> np.ndarray:
    """Where a pair's counts break ``p`` : ``q`` (see the module's note on what counts)."""
    either = (ca > 0) | (cb > 0)
    missing = either & ((ca == 0) | (cb == 0))
    # Records off the ratio, measured on the side that is short.
    gap = np.minimum(np.abs(ca * q / p - cb), np.abs(cb * p / q - ca))
    return missing | (either & (gap >= min_off - 1e-9))


def fit_invariants(counts: np.ndarray, alpha: float, min_off: int = 2) -> list[Invariant]:
    """The pairs of columns of ``counts`` (sessions x templates) that keep one ratio (see the
    module's note). Only columns present in enough sessions to pass ``alpha`` are paired."""
    n = len(counts)
    present = counts > 0
    df = present.sum(axis=0)
    # (0 + 1) / (support + 2) <= alpha needs this many sessions with either template.
    need = max(1, int(np.ceil(1.0 / alpha - 2.0)))
    cols = np.flatnonzero(df >= min(need, n + 1)) if n else np.zeros(0, dtype=int)
    # A session with one of a pair but not the other is a break: pairs with too many of those
    # are dropped from one matrix product, before any pair is looked at row by row.
    p = present[:, cols].astype(float)
    both = p.T @ p
    either = df[cols][:, None] + df[cols][None, :] - both
    candidates = np.argwhere(np.triu((either - both + 1) <= alpha * (either + 2), k=1))
    out: list[Invariant] = []
    for i, j in candidates:
        a, b = int(cols[i]), int(cols[j])
        inv = _pair(counts[:, a], counts[:, b], a, b, alpha, min_off)
        if inv is not None:
            out.append(inv)
    return out


def _pair(ca: np.ndarray, cb: np.ndarray, a: int, b: int, alpha: float, min_off: int) -> Invariant | None:
    both = (ca > 0) & (cb > 0)
    if not both.any():
        return None
    x, y = ca[both].astype(np.int64), cb[both].astype(np.int64)
    g = np.gcd(x, y)
    # The most common reduced ratio; ties to the smallest, so a refit is the same.
    num, den = x // g, y // g
    codes, freq = np.unique(num * (int(den.max()) + 1) + den, return_counts=True)
    code = int(codes[int(freq.argmax())])
    p, q = divmod(code, int(den.max()) + 1)
    if p > MAX_TERM or q > MAX_TERM:
        return None
    either = (ca > 0) | (cb > 0)
    support = int(either.sum())
    breaks = int(_off(ca, cb, p, q, min_off).sum())
    if (breaks + 1) / (support + 2) > alpha:
        return None
    return Invariant(a, b, p, q, support, support - breaks)


def broken(counts: np.ndarray, invariants: list[Invariant], min_off: int = 2) -> list[list[Broken]]:
    """Per session (a row of ``counts``), the invariants it breaks, the best supported first."""
    out: list[list[Broken]] = [[] for _ in range(len(counts))]
    for inv in sorted(invariants, key=lambda v: (-v.held, v.a, v.b)):
        ca, cb = counts[:, inv.a], counts[:, inv.b]
        for r in np.flatnonzero(_off(ca, cb, inv.p, inv.q, min_off)):
            x, y = float(ca[r]), float(cb[r])
            # The short side is the one below what its partner implies.
            if y < x * inv.q / inv.p:
                out[int(r)].append(Broken(inv, inv.b, int(y), x * inv.q / inv.p))
            else:
                out[int(r)].append(Broken(inv, inv.a, int(x), y * inv.p / inv.q))
    return out
