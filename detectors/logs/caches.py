"""The log detector's bounded look-up caches (templates by text, session views and patterns)."""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(cache: dict[K, V], key: K, value: V, limit: int) -> V:
    """Keep ``value`` under ``key``, emptying ``cache`` first once it holds ``limit`` entries.

    What these caches hold can always be computed again, so starting afresh is as good as
    evicting, and a hit costs no bookkeeping (an LRU's reordering would, on every record)."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value
