"""Replaying a dump: in worker processes, the same incidents as in one process; the units
events are judged in, and their checkpoints."""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from breachwatch.core.events import EVENT_TOPICS, KEY_FIELD, Event, LogRecord
from breachwatch.core.findings import DetectionContext, Detector, Finding
from breachwatch.core.settings import Settings, load_settings
from breachwatch.devkit.simulate import simulate
from breachwatch.runtime import app
from breachwatch.runtime.checkpoints import Checkpoint
from breachwatch.runtime.pipeline import Pipeline, group_by_unit
from breachwatch.runtime.replay import ReplayReport, replay
from breachwatch.streams.dump import (
    DeadLetterFile,
    _decoded_lines,
    _plain_field,
    iter_events,
    load_reference_tables,
    scanned,
)
from breachwatch.streams.partitions import Partitioner, partition_for
from breachwatch.streams.units import unit_of

TORN = b'{"event_id": "torn-1", "ts": '


def _variant(line: bytes, **changes: Any) -> bytes:
    """An existing event line with fields changed (None removes one), written as compactly."""
    doc = json.loads(line)
    for k, v in changes.items():
        if v is None:
            doc.pop(k)
        else:
            doc[k] = v
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four days of four tenants with attacks; two lines that cannot be decoded (one torn,
    one off the contract though its time and key read plainly) and two valid ones whose time
    or key need the full decoder (an escape, a time with an offset)."""
    out = tmp_path_factory.mktemp("dump")
    simulate(out, seed=11, days=4, tenants=4, attack_days=2)
    access = out / "erp.access.jsonl"
    lines = access.read_bytes().splitlines(keepends=True)
    mid = len(lines) // 2
    lines[mid + 1 : mid + 1] = [
        _variant(lines[mid], event_id="off-contract-1", records=-5),
        _variant(lines[mid], event_id="escaped-1", actor_id="u-ren\u00e9e"),
        # The same instant as its neighbour, written with a +05:00 offset (Karachi).
        _variant(lines[mid], event_id="offset-1", ts=_shifted(json.loads(lines[mid])["ts"])),
    ]
    lines.insert(mid, TORN + b"\n")
    access.write_bytes(b"".join(lines))
    return out


def _shifted(ts: str) -> str:
    return datetime.fromisoformat(ts).astimezone(timezone(timedelta(hours=5))).isoformat()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(outbox_dir=tmp_path / "outbox")


def pipeline_for(settings: Settings, db: Path) -> Pipeline:
    return app.build_pipeline(settings, app.database(settings, f"sqlite:///{db}"), notify=False)


def replayed(settings: Settings, dump: Path, db: Path, **options: Any) -> tuple[list[str], ReplayReport]:
    pipeline = pipeline_for(settings, db)
    report = replay(dump, pipeline, partitions=4, max_bytes=settings.max_message_bytes, **options)
    return [i.to_json_line() for i in pipeline.store.incidents()], report


def test_worker_processes_give_the_incidents_of_one_process(settings: Settings, dump: Path, tmp_path: Path) -> None:
    # Small batches, so that many of them go back and forth between the processes.
    one, alone = replayed(settings, dump, tmp_path / "one.db", batch_size=700, jobs=1)
    two, split = replayed(settings, dump, tmp_path / "two.db", batch_size=700, jobs=2)
    assert len(one) >= 5, "the simulated attacks must produce incidents"
    assert two == one
    assert split.events == alone.events > 9000
    assert split.dead_letters == alone.dead_letters == 2
    assert split.stats == alone.stats
    assert split.stats["dead_lettered"] == {"erp.access": 2}


def test_worker_processes_dead_letter_what_one_process_does(settings: Settings, dump: Path, tmp_path: Path) -> None:
    """The line off the contract is found by a worker (this process reads only its time and
    key), and dead-lettered with the reason and position one process gives it."""
    letters = []
    for jobs in (1, 2):
        sink = DeadLetterFile(tmp_path / f"dlq-{jobs}.jsonl")
        replay(
            dump,
            pipeline_for(settings, tmp_path / f"{jobs}.db"),
            partitions=4,
            max_bytes=settings.max_message_bytes,
            sink=sink,
            jobs=jobs,
        )
        sink.close()
        letters.append(sorted(sink.path.read_text().splitlines()))
    assert letters[0] == letters[1] and len(letters[0]) == 2
    reasons = sorted(json.loads(line)["headers"]["bw.error"] for line in letters[0])
    assert any("records" in r for r in reasons), reasons


def test_times_and_keys_read_from_the_bytes_are_the_decoders(dump: Path) -> None:
    """Ordering and routing in worker mode use the time and key read from each line's bytes
    where they are plain: for every line of the dump, they equal the decoded event's."""
    for rank, topic in enumerate(EVENT_TOPICS):
        lines = list(scanned(dump, rank, lambda _: None, 1 << 20))
        decoded = {raw: e for e, raw in _decoded_lines(dump, topic, lambda _: None, 1 << 20)}
        assert len(decoded) > 1000
        # Every line that decodes, with the decoder's time and key, in file order; and the
        # one plain line off the contract, left for a worker to dead-letter.
        assert [(ts, key) for ts, _, _, raw, key in lines if raw in decoded] == [
            (e.ts, getattr(e, KEY_FIELD[topic])) for e in decoded.values()
        ]
        assert [json.loads(raw)["event_id"] for _, _, _, raw, _ in lines if raw not in decoded] == (
            ["off-contract-1"] if topic == "erp.access" else []
        )
    assert _plain_field(b'{"ts":"x","a":{"ts":"y"}}', b'"ts":"') is None  # twice: not plain
    assert _plain_field(b'{"actor_id":"u-\\u00e9"}', b'"actor_id":"') is None
    assert _plain_field(b'{"actor_id": "u-1"}', b'"actor_id":"') is None
    assert _plain_field(b'{"actor_id":"u-1","note":"say \\"ts\\":\\"now\\""}', b'"ts":"') is None


def test_more_jobs_than_partitions_use_one_worker_per_partition(settings: Settings, dump: Path, tmp_path: Path) -> None:
    pipeline = pipeline_for(settings, tmp_path / "r.db")
    report = replay(dump, pipeline, partitions=2, max_bytes=settings.max_message_bytes, jobs=8)
    reference = pipeline_for(settings, tmp_path / "ref.db")
    replay(dump, reference, partitions=2, max_bytes=settings.max_message_bytes)
    assert report.events > 9000
    assert pipeline.store.incidents() == reference.store.incidents()


class _Vanishing(Detector):
    """A detector whose process dies on its first batch, as one killed by the OOM killer would."""

    name = "vanishing"

    def process(self, events: Sequence[Event], ctx: DetectionContext) -> list[Finding]:
        os._exit(3)


def test_a_worker_that_dies_fails_the_replay(settings: Settings, dump: Path, tmp_path: Path) -> None:
    pipeline = pipeline_for(settings, tmp_path / "r.db")
    pipeline.detector_factory = lambda: [_Vanishing()]
    with pytest.raises(RuntimeError, match="exited with code 3"):
        replay(dump, pipeline, partitions=4, max_bytes=settings.max_message_bytes, jobs=2)
    assert pipeline.store.incidents() == []


def test_replay_leaves_the_garbage_collector_as_it_found_it(settings: Settings, dump: Path, tmp_path: Path) -> None:
    before = gc.get_threshold()
    replay(dump, pipeline_for(settings, tmp_path / "r.db"), partitions=4, max_bytes=settings.max_message_bytes)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


class _StateProbe(Detector):
    """A detector that notes whether automatic collection was on while its state was taken."""

    name = "probe"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.collecting: list[bool] = []

    def process(self, events: Sequence[Event], ctx: DetectionContext) -> list[Finding]:
        return []

    def state(self) -> dict[str, Any]:
        self.collecting.append(gc.isenabled())
        if self.fail:
            raise RuntimeError("state failed")
        return {"n": 1}

    def load_state(self, state: dict[str, Any]) -> None:
        pass


@pytest.mark.parametrize("fail", [False, True])
def test_checkpoints_are_taken_without_cycle_collections(settings: Settings, tmp_path: Path, fail: bool) -> None:
    """A checkpoint's state is hundreds of thousands of short-lived objects: no collection may
    walk them while they exist (they made the live service's slowest batches), and collection
    is back on afterwards, also when taking the state fails."""
    probe = _StateProbe(fail)
    store = app.incident_store(settings, app.database(settings, f"sqlite:///{tmp_path / 'cp.db'}"), notify=False)
    pipeline = Pipeline(store, lambda: [probe])
    assert gc.isenabled()
    if fail:
        with pytest.raises(RuntimeError):
            pipeline.record([], {0: {"erp.access": 5}})
    else:
        pipeline.record([], {0: {"erp.access": 5}})
        assert pipeline.checkpoints.load(pipeline.group_id, 0) is not None
    assert probe.collecting == [False]
    assert gc.isenabled()
    pipeline.record([], None)  # an ordinary batch leaves collection alone
    assert probe.collecting == [False] and gc.isenabled()


# --- actor and log units: their own detectors, their own checkpoints, older checkpoints split


def test_events_go_to_the_unit_of_their_topic_and_key(settings: Settings, dump: Path, tmp_path: Path) -> None:
    pipeline = pipeline_for(settings, tmp_path / "u.db")
    assert [d.name for d in pipeline.worker(2).detectors] == ["rules", "learned"]
    assert [d.name for d in pipeline.worker(unit_of("erp.logs", 2)).detectors] == ["logs"]
    events = list(iter_events(dump, lambda d: None, settings.max_message_bytes))
    units = group_by_unit(events, Partitioner(4))
    assert set(units) <= {0, 1, 2, 3, -1, -2, -3, -4}
    assert any(u >= 0 for u in units) and any(u < 0 for u in units)
    for u, batch in units.items():
        for e in batch:
            if isinstance(e, LogRecord):
                assert u == -1 - partition_for(e.service.encode(), 4)
            else:
                assert u == partition_for(e.actor_id.encode(), 4)


def _unit_states(settings: Settings, dump: Path, db: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The state of actor unit 0 and log unit 0 after a replay of the dump."""
    pipeline = pipeline_for(settings, db)
    replay(dump, pipeline, partitions=4, max_bytes=settings.max_message_bytes)
    return pipeline.worker(0).state(), pipeline.worker(-1).state()


@pytest.mark.parametrize("first", ["actors", "logs"])
def test_a_checkpoint_of_both_kinds_is_split_whichever_unit_restores_first(
    settings: Settings, dump: Path, tmp_path: Path, first: str
) -> None:
    """Before the split one checkpoint per partition number held every detector's state and
    offset: after an upgrade each unit resumes from its part of it, and nothing is lost."""
    actors, logs = _unit_states(settings, dump, tmp_path / "replay.db")
    assert actors.keys() == {"rules", "learned"} and logs.keys() == {"logs"}
    pipeline = pipeline_for(settings, tmp_path / "upgrade.db")
    load_reference_tables(pipeline.apply_reference, dump, lambda d: None, settings.max_message_bytes)
    offsets = {"erp.access": 120, "erp.auth": 40, "erp.logs": 300}
    pipeline.checkpoints.save([Checkpoint(pipeline.group_id, 0, offsets, {**actors, **logs})])

    order = [0, -1] if first == "actors" else [-1, 0]
    restored = {u: pipeline.restore(u) for u in order}
    # The actor unit's part is the second write of its key, the log unit's the first of its own.
    assert restored[0] == Checkpoint(pipeline.group_id, 0, {"erp.access": 120, "erp.auth": 40}, actors, seq=2)
    assert restored[-1] == Checkpoint(pipeline.group_id, -1, {"erp.logs": 300}, logs, seq=1)
    # The workers took up their parts, and the store now holds the two checkpoints.
    assert pipeline.worker(0).state() == actors
    assert pipeline.worker(-1).state() == logs
    assert pipeline.checkpoints.load(pipeline.group_id, 0) == restored[0]
    assert pipeline.checkpoints.load(pipeline.group_id, -1) == restored[-1]


def test_a_log_checkpoint_written_since_is_not_overwritten(settings: Settings, tmp_path: Path) -> None:
    pipeline = pipeline_for(settings, tmp_path / "cp.db")
    group = pipeline.group_id
    newer = Checkpoint(group, -1, {"erp.logs": 900}, {"logs": {}})
    combined = Checkpoint(group, 0, {"erp.access": 5, "erp.auth": 3, "erp.logs": 300}, {"logs": {}})
    pipeline.checkpoints.save([newer, combined])
    assert pipeline.restore(0) == Checkpoint(group, 0, {"erp.access": 5, "erp.auth": 3}, {}, seq=2)
    assert pipeline.checkpoints.load(group, -1) == replace(newer, seq=1)
    assert pipeline.restore(-1) == replace(newer, seq=1)
