"""Bounded per-key memory for the rules: an address's login window, an account's failures, a
day's tally per actor and tenant. Each book holds at most ``cap`` entries (the oldest goes first
when full; dicts keep insertion order), forgets entries once ``sweep`` finds them past their
time, and round-trips through a checkpoint as ``{state_key: [[key, row], ...]}``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Protocol, Self, TypeVar


class Entry(Protocol):
    """What a book keeps per key: it can be written to and read from a checkpoint row."""

    def dump(self) -> Any: ...

    @classmethod
    def restore(cls, row: Any) -> Self: ...


E = TypeVar("E", bound=Entry)


class Book(Generic[E]):
    """Entries by key, bounded in number; subclasses say when an entry has expired."""

    state_key = "items"

    def __init__(self, entry: type[E], cap: int) -> None:
        self.entry = entry
        self.cap = cap
        self.items: dict[str, E] = {}

    def get(self, key: str) -> E | None:
        return self.items.get(key)

    def get_or_add(self, key: str, make: Callable[[], E]) -> E:
        """The key's entry, made by ``make`` if it has none (the oldest entry goes if full)."""
        entry = self.items.get(key)
        if entry is None:
            if len(self.items) >= self.cap:
                del self.items[next(iter(self.items))]
            entry = self.items[key] = make()
        return entry

    def expired(self, entry: E, watermark: float) -> bool:
        """Whether nothing after ``watermark`` (event time) can still need this entry."""
        raise NotImplementedError

    def sweep(self, watermark: float) -> None:
        stale = [k for k, v in self.items.items() if self.expired(v, watermark)]
        for k in stale:
            del self.items[k]

    def to_state(self) -> dict[str, Any]:
        return {self.state_key: [[k, v.dump()] for k, v in self.items.items()]}

    def load_state(self, state: dict[str, Any]) -> None:
        self.items = {k: self.entry.restore(row) for k, row in state.get(self.state_key, [])}
