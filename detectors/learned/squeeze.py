"""zlib with a preset dictionary, for the small blobs the learned detector keeps in memory.

An idle actor's packed profile or carried events is a few hundred bytes, too little for zlib
to find much to repeat within it; most of what it holds (default values, empty buckets, the
layout of the fields, the contract's words) is the same in every blob. Seeded with a typical
blob, zlib refers back to it instead: about a third fewer bytes per packed young profile. The
dictionary is built in the process from synthetic values and the blobs never leave it.
"""

from __future__ import annotations

import zlib


class Squeezer:
    """Compress and restore blobs against ``typical``, a blob like those to be compressed."""

    __slots__ = ("typical",)

    def __init__(self, typical: bytes) -> None:
        self.typical = typical[-32768:]  # zlib reads at most its window of a dictionary

    def squeeze(self, raw: bytes) -> bytes:
        # Level 6, not 1: about 15% fewer bytes for a few microseconds more, paid once each
        # time an actor goes idle (setting up the dictionary costs more than either).
        c = zlib.compressobj(6, zdict=self.typical)
        return c.compress(raw) + c.flush()

    def unsqueeze(self, blob: bytes) -> bytes:
        d = zlib.decompressobj(zdict=self.typical)
        return d.decompress(blob) + d.flush()
