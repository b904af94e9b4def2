"""Actor and log units: their own detectors, their own checkpoints, and older checkpoints split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from breachwatch import app
from breachwatch.settings import Settings, load_settings
from incidents.store import Checkpoint
from streams.dump import iter_events, load_reference_tables, replay
from streams.models import LogRecord
from streams.pipeline import Partitioner, Pipeline, group_by_unit, partition_for
from streams.simulate import simulate
from streams.units import unit_of


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("units")
    simulate(out, seed=5, days=3, tenants=3, attack_days=1)
    return out


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(outbox_dir=tmp_path / "outbox")


def pipeline_for(settings: Settings, db: Path) -> Pipeline:
    return app.build_pipeline(settings, app.database(settings, f"sqlite:///{db}"), notify=False)


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
    load_reference_tables(pipeline, dump, lambda d: None, settings.max_message_bytes)
    offsets = {"erp.access": 120, "erp.auth": 40, "erp.logs": 300}
    pipeline.store.record([], checkpoints=[Checkpoint(pipeline.group_id, 0, offsets, {**actors, **logs})])

    order = [0, -1] if first == "actors" else [-1, 0]
    restored = {u: pipeline.restore(u) for u in order}
    assert restored[0] == Checkpoint(pipeline.group_id, 0, {"erp.access": 120, "erp.auth": 40}, actors)
    assert restored[-1] == Checkpoint(pipeline.group_id, -1, {"erp.logs": 300}, logs)
    # The workers took up their parts, and the store now holds the two checkpoints.
    assert pipeline.worker(0).state() == actors
    assert pipeline.worker(-1).state() == logs
    assert pipeline.store.load_checkpoint(pipeline.group_id, 0) == restored[0]
    assert pipeline.store.load_checkpoint(pipeline.group_id, -1) == restored[-1]


def test_a_log_checkpoint_written_since_is_not_overwritten(settings: Settings, tmp_path: Path) -> None:
    pipeline = pipeline_for(settings, tmp_path / "cp.db")
    group = pipeline.group_id
    newer = Checkpoint(group, -1, {"erp.logs": 900}, {"logs": {}})
    combined = Checkpoint(group, 0, {"erp.access": 5, "erp.auth": 3, "erp.logs": 300}, {"logs": {}})
    pipeline.store.record([], checkpoints=[newer, combined])
    assert pipeline.restore(0) == Checkpoint(group, 0, {"erp.access": 5, "erp.auth": 3}, {})
    assert pipeline.store.load_checkpoint(group, -1) == newer
    assert pipeline.restore(-1) == newer
