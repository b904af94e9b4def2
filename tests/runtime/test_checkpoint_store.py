"""Checkpoints: each unit's detector state with its offsets, itemised by actor, fenced by the
write they were built on, and stored in the same transaction as the batch's findings."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.incidents.store import IncidentStore
from breachwatch.incidents.tables import FindingRow
from breachwatch.runtime.checkpoints import Checkpoint, CheckpointStore, StaleCheckpoint, commit_batch
from tests.fixtures.incident_db import *  # noqa: F403


def test_checkpoint_round_trip(engine: Engine) -> None:
    store = CheckpointStore(engine)
    cp = Checkpoint("g", 3, {"erp.access": 120, "erp.auth": 7}, {"rules": {"hist": {"t-1": [1, 2, 3]}}})
    assert store.save([cp]) == {3: 1}
    assert store.load("g", 3) == replace(cp, seq=1)
    cp2 = Checkpoint("g", 3, {"erp.access": 200}, {"rules": {}})
    store.save([cp2])
    assert store.load("g", 3) == replace(cp2, seq=2)  # every write counts
    assert store.load("g", 4) is None


def test_itemised_checkpoints_write_what_changed_and_load_every_item(engine: Engine, ev: SimpleNamespace) -> None:
    store = CheckpointStore(engine)

    def load(partition: int = 3) -> dict[str, dict[str, object]]:
        cp = store.load("g", partition)
        assert cp is not None
        return cp.items

    profile = {"profile": {"n": 1}}
    first = Checkpoint(
        "g",
        3,
        {"erp.access": 10},
        {"learned": {"version": 1}, "rules": {}},
        items={"learned": {"u-1": profile, "u-2": profile, "u-3": profile}},
        complete=frozenset({"learned"}),
    )
    store.save([first])
    store.save(
        [Checkpoint("g", 4, {}, {"learned": {}}, items={"learned": {"u-1": profile}}, complete=frozenset({"learned"}))]
    )
    assert load() == {"learned": {"u-1": profile, "u-2": profile, "u-3": profile}}

    # Changed, new and dropped actors; the others stay as they were.
    changed = {"profile": {"n": 2}}
    store.save(
        [
            Checkpoint(
                "g",
                3,
                {"erp.access": 20},
                {"learned": {"version": 1}},
                items={"learned": {"u-2": changed, "u-4": changed}},
                dropped={"learned": ["u-3", "u-9"]},
                seq=1,  # built on the first write
            )
        ]
    )
    assert load() == {"learned": {"u-1": profile, "u-2": changed, "u-4": changed}}
    assert store.load("g", 3).offsets == {"erp.access": 20}  # type: ignore[union-attr]

    # Changes built on the first write again (a consumer the group gave up on, still
    # writing): refused, and nothing of its batch is stored, findings included.
    late = Checkpoint("g", 3, {"erp.access": 15}, {"learned": {}}, items={"learned": {"u-1": changed}}, seq=1)
    with pytest.raises(StaleCheckpoint) as info:
        commit_batch(IncidentStore(engine), store, [ev.finding([ev.access(1)])], [late])
    assert info.value.partitions == [3]
    assert load() == {"learned": {"u-1": profile, "u-2": changed, "u-4": changed}}
    assert store.load("g", 3).seq == 2  # type: ignore[union-attr]
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(FindingRow)) == 0

    # A complete set voids what was held before (of that unit only).
    store.save(
        [Checkpoint("g", 3, {}, {"learned": {}}, items={"learned": {"u-5": profile}}, complete=frozenset({"learned"}))]
    )
    assert load() == {"learned": {"u-5": profile}}
    assert load(4) == {"learned": {"u-1": profile}}
