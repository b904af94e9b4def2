"""Where the time of ``run`` goes, by stage, from a sampling profile.

``bench.throughput --profile`` runs the service a second time on the same topics under
pyinstrument and hands the session here. Each sample's time is charged to the stage of the
innermost frame on its stack that belongs to a known part: kafka-python's fetching and record
parsing, decoding (pydantic), each detector, the incident store, and the consumer loop itself.
A sqlite3 or scikit-learn leaf is charged to whichever of those called it. The stages are
reported in microseconds per event, scaled to the unprofiled run's own cost per event, so they
add up to what ``run`` spends on an event and can be set beside the bare consumer's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# (path fragment, stage), tried in order on each frame's file path; the first fragment found
# names the frame's stage. Library paths come after the project's own, so that a scikit-learn
# call from the learned detector is the learned detector's time.
RULES: tuple[tuple[str, str], ...] = (
    ("/detectors/rules/", "detect: rules"),
    ("/detectors/logs/", "detect: log sessions"),
    ("/detectors/logs.py", "detect: log sessions"),
    ("/detectors/templates_miner.py", "detect: log sessions"),
    ("/detectors/", "detect: learned (profiles, features, forest)"),
    ("/streams/decode.py", "decode (pydantic)"),
    ("/streams/models.py", "decode (pydantic)"),
    ("/core/events.py", "decode (pydantic)"),  # the event-time validator pydantic calls back
    ("/incidents/", "store (incidents, checkpoints, outbox)"),
    ("/notifier/", "store (incidents, checkpoints, outbox)"),
    ("/privacy/", "store (incidents, checkpoints, outbox)"),  # staff accesses, approvals read
    ("/runtime/checkpoints.py", "store (incidents, checkpoints, outbox)"),
    ("/streams/", "consumer loop (reorder, batching, offsets)"),
    ("/runtime/service.py", "consumer loop (reorder, batching, offsets)"),
    ("/runtime/pipeline.py", "consumer loop (reorder, batching, offsets)"),
    ("/core/batch.py", "consumer loop (reorder, batching, offsets)"),
    ("/kafka/", "kafka-python (fetch, parse records)"),
)
OTHER = "other"
# A leaf in these, or one of these built-ins, is the main thread waiting (for the broker, or
# for kafka-python's network thread to hand it fetched data), whoever called it.
WAITING = ("/selectors.py", "/socket.py", "/ssl.py", "/threading.py")
WAITING_CALLS = ("sleep", "lock.acquire", "select")
IDLE = "waiting (broker, network thread)"


def stage_of(path: str) -> str | None:
    for fragment, stage in RULES:
        if fragment in path:
            return stage
    return None


def _leaves(frame: Any, stage: str, path: str, function: str) -> Iterator[tuple[str, float]]:
    """(stage, seconds) of every leaf under ``frame``; ``stage`` is the nearest known one above,
    ``path`` and ``function`` the nearest real frame's (pyinstrument's self-time leaves are
    synthetic: they have neither)."""
    if not frame.is_synthetic:
        path, function = frame.file_path or path, frame.function
    own = stage_of(path) or stage
    if not frame.children:
        idle = function in WAITING_CALLS or any(w in path for w in WAITING)
        yield (IDLE if idle else own), frame.time
        return
    for child in frame.children:
        yield from _leaves(child, own, path, function)


def stage_seconds(root: Any) -> dict[str, float]:
    """Seconds per stage over a pyinstrument frame tree (``Session.root_frame()``)."""
    out: dict[str, float] = {}
    for stage, seconds in _leaves(root, OTHER, "", ""):
        out[stage] = out.get(stage, 0.0) + seconds
    return out


def per_event_us(seconds: dict[str, float], us_per_event: float) -> dict[str, float]:
    """Each stage's share of the samples, as microseconds of ``us_per_event`` (largest first)."""
    total = sum(seconds.values()) or 1.0
    ranked = sorted(seconds.items(), key=lambda kv: -kv[1])
    return {stage: round(us_per_event * s / total, 1) for stage, s in ranked}
