"""The log detector's checkpoints, itemised by open session, through the real checkpoint store:
a checkpoint writes the sessions that changed, and what is stored restores the whole state."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine

from breachwatch.core.findings import Finding
from breachwatch.core.reference import ReferenceTables
from breachwatch.detectors.logs.detector import KIND_BURST, KIND_SESSION, LogDetector
from breachwatch.runtime.checkpoints import Checkpoint, CheckpointStore
from breachwatch.runtime.pipeline import PartitionWorker, Stats
from tests.detectors.logs.test_log_detector import Stream, mixed_stream, small_detector, summary
from tests.fixtures.incident_db import *  # noqa: F403

UNIT = -1  # the log unit of partition 0 (``streams.units``)


def detector() -> LogDetector:
    return small_detector(count_min_sessions=40, min_session_score=1.0)


def worker(det: LogDetector) -> PartitionWorker:
    return PartitionWorker(UNIT, [det], ReferenceTables(), Stats())


def restored_from(store: CheckpointStore) -> LogDetector:
    cp = store.load("g", UNIT)
    assert cp is not None
    det = detector()
    det.load_state_items(cp.state["logs"], cp.items.get("logs", {}))
    return det


def plain(state: dict[str, Any]) -> Any:
    return json.loads(json.dumps(state))


def test_stored_deltas_restore_the_whole_state_and_the_same_findings(engine: Engine) -> None:
    """Checkpoints at random batches, some of whose writes fail (their changes go with the
    next): after every one saved, a detector loaded from the store has exactly the state of
    the running one, open sessions in the same order; one resumed from a checkpoint in the
    middle raises the same findings as one never stopped."""
    records, _ = mixed_stream(seed=11)
    steady = detector()
    expected: list[Finding] = []
    for b in range(0, len(records), 50):
        expected += steady.process(records[b : b + 50], worker(steady).ctx)
    assert {f.kind for f in expected} == {KIND_SESSION, KIND_BURST}

    store = CheckpointStore(engine)
    det = detector()
    w = worker(det)
    rng = random.Random(5)
    found: list[Finding] = []
    middle: tuple[int, int] | None = None
    partial_writes = 0
    for b in range(0, len(records), 50):
        found += w.detect(records[b : b + 50])
        cp = w.checkpoint("g", {"erp.logs": b + 50})
        if rng.random() < 0.25:
            continue  # the write failed: nothing saved
        partial_writes += cp.partial
        w.saved(store.save([cp])[UNIT])
        assert plain(restored_from(store).state()) == plain(det.state())
        if middle is None and b >= len(records) // 2:
            middle = (b + 50, len(found))
            resumed = restored_from(store)
    assert partial_writes > 10, partial_writes
    assert middle is not None
    at, n = middle
    rest: list[Finding] = []
    for b in range(at, len(records), 50):
        rest += resumed.process(records[b : b + 50], worker(resumed).ctx)
    assert summary(found[:n] + rest) == summary(expected)


def test_a_checkpoint_writes_the_sessions_that_changed_and_drops_the_closed(engine: Engine) -> None:
    stream = Stream(seed=3)
    det = detector()
    w = worker(det)
    # Twenty sessions left open (no idle gap long enough to close them).
    w.detect([stream.record(f"step one of job {i}", session=f"job-{i}") for i in range(20)])
    store = CheckpointStore(engine)
    first = w.checkpoint("g", {"erp.logs": 20})
    assert not first.partial and len(first.items["logs"]) == 20
    w.saved(store.save([first])[UNIT])

    # One more record for job-3: the next checkpoint writes job-3 alone.
    w.detect([stream.record("step two of job 3", session="job-3")])
    cp = w.checkpoint("g", {"erp.logs": 21})
    assert cp.partial and [it["session"]["key"] for it in cp.items["logs"].values()] == ["job-3"]
    assert cp.dropped == {}
    w.saved(store.save([cp])[UNIT])
    assert plain(restored_from(store).state()) == plain(det.state())

    # Long after, one record closes the idle ones: they are dropped from the store.
    late = stream.record("step one of job 99", session="job-99", step=timedelta(seconds=det.close_after_s + 60))
    w.detect([late])
    cp = w.checkpoint("g", {"erp.logs": 22})
    assert [it["session"]["key"] for it in cp.items["logs"].values()] == ["job-99"]
    assert len(cp.dropped["logs"]) == 20
    w.saved(store.save([cp])[UNIT])
    stored = store.load("g", UNIT)
    assert stored is not None and len(stored.items["logs"]) == 1
    assert plain(restored_from(store).state()) == plain(det.state())


def test_a_whole_state_checkpoint_of_the_previous_version_is_taken_up(engine: Engine) -> None:
    """Checkpoints written before sessions were itemised hold them in the head; the next
    checkpoint after taking one up writes every open session."""
    stream = Stream(seed=4)
    old = detector()
    worker(old).detect([stream.record(f"step one of job {i}", session=f"job-{i}") for i in range(5)])
    store = CheckpointStore(engine)
    store.save([Checkpoint("g", UNIT, {"erp.logs": 5}, {"logs": plain(old.state())})])
    det = restored_from(store)
    assert plain(det.state()) == plain(old.state())
    delta = det.state_delta()
    assert delta.complete and len(delta.items) == 5
