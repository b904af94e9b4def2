"""Verdicts feed back live: an incident marked false positive reaches the running learned
detector between batches (deterministically, and kept in its checkpoint), and a reopening
withdraws it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from breachwatch.core.events import AccessEvent
from breachwatch.core.findings import Finding
from breachwatch.core.settings import load_settings
from breachwatch.detectors.learned.detector import LearnedDetector
from breachwatch.incidents import lifecycle
from breachwatch.runtime import app
from breachwatch.runtime.pipeline import Pipeline, group_by_unit
from breachwatch.streams.partitions import Partitioner

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
ACTOR = "u-hans"


def read(n: int, minutes: float) -> AccessEvent:
    return AccessEvent(
        event_id=f"r-{n}",
        ts=T0 + timedelta(minutes=minutes),
        actor_id=ACTOR,
        actor_type="customer_user",
        actor_tenant="t-rhein",
        tenant_id="t-rhein",
        action="read",
        resource_type="customer",
        sensitivity="personal",
        records=300,
        ip="198.51.100.7",
        country="DE",
    )


def learned(pipeline: Pipeline, unit: int) -> LearnedDetector:
    return next(d for d in pipeline.worker(unit).detectors if isinstance(d, LearnedDetector))


def test_a_false_positive_reaches_the_running_detector_and_its_checkpoint(tmp_path: Path) -> None:
    settings = load_settings(outbox_dir=tmp_path / "outbox")
    engine = app.database(settings, f"sqlite:///{tmp_path}/bw.db")
    pipeline = app.build_pipeline(settings, engine, notify=False)
    pipeline.judgements_every_s = 0.0  # look every batch
    finding = Finding(
        detector="learned",
        kind="slow_exfiltration",
        severity="high",
        score=80.0,
        ts=T0,
        title="slow exfiltration",
        reasons=("read a lot",),
        playbook="ask",
        events=(read(0, 0),),
        actor_id=ACTOR,
        tenant_ids=("t-rhein",),
    )
    [incident_id] = pipeline.store.record([finding]).opened
    batch = group_by_unit([read(1, 5)], Partitioner(settings.partitions))
    [unit] = batch
    pipeline.process(batch)
    assert learned(pipeline, unit).judgement_seq() == 0  # nothing judged yet

    with Session(engine) as session, session.begin():
        lifecycle.transition(session, incident_id, "false_positive", "responder", "the quarterly audit")
    pipeline.process(group_by_unit([read(2, 10)], Partitioner(settings.partitions)), {unit: {"erp.access": 3}})
    det = learned(pipeline, unit)
    assert det.judgement_seq() is not None and det.judgement_seq() > 0
    assert det._muted(ACTOR, "slow_exfiltration", (T0 + timedelta(days=3)).timestamp(), 85.0)
    assert not det._muted(ACTOR, "slow_exfiltration", (T0 + timedelta(days=3)).timestamp(), 95.0)  # stronger
    assert not det._muted("u-other", "slow_exfiltration", (T0 + timedelta(days=3)).timestamp(), 80.0)

    # A consumer restoring the unit has the verdict from the checkpoint, without asking again.
    again = app.build_pipeline(settings, engine, notify=False)
    again.restore(unit)
    assert learned(again, unit).judgement_seq() == det.judgement_seq()
    assert learned(again, unit)._muted(ACTOR, "slow_exfiltration", (T0 + timedelta(days=3)).timestamp(), 80.0)

    # Reopening withdraws it at the next batch.
    with Session(engine) as session, session.begin():
        lifecycle.transition(session, incident_id, "reopen", "responder", "it was not the audit")
    pipeline.process(group_by_unit([read(3, 15)], Partitioner(settings.partitions)))
    assert not det._muted(ACTOR, "slow_exfiltration", (T0 + timedelta(days=3)).timestamp(), 80.0)
    engine.dispose()
