"""Kafka's default partitioner, so a replay puts every event where the producer would have."""

from __future__ import annotations

from kafka.partitioner.default import murmur2


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partition for a keyed message (murmur2, as the Java client does)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class Partitioner:
    """``partition_for`` with a cache: replays see the same few thousand keys millions of times."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._cache: dict[str | bytes, int] = {}

    def __call__(self, key: str | bytes) -> int:
        """The partition of a key: text (as decoded from an event), or the message key's bytes."""
        p = self._cache.get(key)
        if p is None:
            if len(self._cache) > 1_000_000:
                self._cache.clear()
            raw = key.encode("utf-8") if isinstance(key, str) else key
            p = self._cache[key] = partition_for(raw, self.partitions)
        return p
