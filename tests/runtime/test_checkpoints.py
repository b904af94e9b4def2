"""A unit checkpointed by two consumers (the group gave up on one that is still running):
a checkpoint of changes is written only over the checkpoint it was built on, so the stored
state is always one consumer's whole state, never a mixture of both."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from breachwatch.core.events import AccessEvent
from breachwatch.core.settings import load_settings
from breachwatch.runtime import app
from breachwatch.runtime.pipeline import Pipeline

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def reads(actor: str, *minutes: int) -> list[AccessEvent]:
    return [
        AccessEvent(
            event_id=f"{actor}-{m}",
            ts=T0 + timedelta(minutes=m),
            actor_id=actor,
            actor_type="customer_user",
            actor_tenant="t-rhein",
            tenant_id="t-rhein",
            action="read",
            resource_type="invoice",
            records=3 + m,
            ip="198.51.100.7",
            country="DE",
        )
        for m in minutes
    ]


def plain(state: dict[str, Any]) -> Any:
    return json.loads(json.dumps(state))


def test_a_consumer_given_up_on_never_mixes_its_changes_into_the_new_owners_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(outbox_dir=tmp_path / "outbox")
    engine = app.database(settings, f"sqlite:///{tmp_path}/bw.db")

    def consumer() -> Pipeline:
        pipeline = app.build_pipeline(settings, engine, notify=False)
        pipeline.restore(0)
        return pipeline

    def stored() -> Any:
        return plain(consumer().worker(0).state())

    old = consumer()
    old.process({0: reads("u-anna", 0, 1) + reads("u-ben", 2)}, {0: {"erp.access": 3}})
    old.process({0: reads("u-anna", 4)}, {0: {"erp.access": 4}})  # a checkpoint of changes
    assert stored() == plain(old.worker(0).state())

    new = consumer()  # the group hands the unit to another consumer
    new.process({0: reads("u-ben", 6, 7)}, {0: {"erp.access": 6}})
    assert stored() == plain(new.worker(0).state())

    # The old owner, given up on but still running, checkpoints its own changes: they were
    # built on a checkpoint that is no longer the stored one, so it writes its whole state.
    with caplog.at_level(logging.WARNING, logger="breachwatch.runtime.pipeline"):
        old.process({0: reads("u-anna", 9)}, {0: {"erp.access": 5}})
    assert "another consumer" in caplog.text
    assert stored() == plain(old.worker(0).state())

    # And the new owner's next checkpoint of changes, built on its own, does the same.
    new.process({0: reads("u-ben", 10)}, {0: {"erp.access": 7}})
    assert stored() == plain(new.worker(0).state())
    assert stored()["learned"]["profiles"]["u-ben"]["n"] == 4  # its own count, not a mixture
    # Each whole state was written once; the changes after it again as changes.
    new.process({0: reads("u-ben", 11)}, {0: {"erp.access": 8}})
    assert stored() == plain(new.worker(0).state())
