"""The reorder buffer releases exactly the events no busy stream can still precede, in time order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from breachwatch.runtime.pipeline import EventTimeBuffer

# A poll: (source, times of its next messages, busy sources when released afterwards).
POLLS = st.lists(
    st.tuples(
        st.sampled_from(["access", "auth"]),
        st.lists(st.integers(0, 20), max_size=6),
        st.sets(st.sampled_from(["access", "auth"])),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(polls=POLLS, ordered=st.booleans())
def test_released_events_are_those_every_busy_stream_has_passed(polls: list, ordered: bool) -> None:
    """Streams in time order (split by a binary search) or not (filtered): the same answer as
    holding everything and picking, at each poll, what lies at or before the slowest busy
    stream's latest time."""
    buffer = EventTimeBuffer()
    held: list[tuple[float, int, int, str, str]] = []
    latest: dict[str, float] = {}
    offsets = {"access": 0, "auth": 0}
    released: list[str] = []
    for source, times, busy in polls:
        rank = 0 if source == "access" else 1
        items = []
        for t in sorted(times) if ordered else times:
            items.append((float(t), rank, offsets[source], source, f"{source}@{offsets[source]}"))
            offsets[source] += 1
        buffer.extend(source, 0, items)
        held += items
        if items:
            latest[source] = max(latest.get(source, float("-inf")), max(t for t, *_ in items))
        watermark = min((latest.get(s, float("-inf")) for s in busy), default=float("inf"))
        due = sorted(it for it in held if it[0] <= watermark)
        held = [it for it in held if it[0] > watermark]
        got = buffer.release(0, busy)
        assert got == [it[4] for it in due]
        released += got
        # What stays keeps its offset order: the lowest held offset is what commits stop at.
        for s in offsets:
            stays = [it[2] for it in held if it[3] == s]
            assert buffer.lowest_offsets().get(s) == (stays[0] if stays else None)
    assert len(buffer) == len(held)
    assert len(released) == len(set(released))
