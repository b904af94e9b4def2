"""Training the learned detectors from a dump or from the topics, leaving out what people judged
false positives (``breachwatch train``, the backtest)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.core.settings import Settings
from breachwatch.detectors.learned.detector import train
from breachwatch.incidents.tables import IncidentRow
from breachwatch.runtime import app
from breachwatch.storage.db import make_engine
from breachwatch.streams import history
from breachwatch.streams.dump import iter_events, load_reference_tables


def false_positive_windows(db_url: str | None) -> list[tuple[str, datetime, datetime]]:
    """(actor, start, end) of incidents marked false positive: left out of training."""
    if not db_url:
        return []
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            rows = session.scalars(select(IncidentRow).where(IncidentRow.status == "false_positive")).all()
            return [(a, r.opened_at, r.updated_at) for r in rows for a in r.actor_ids]
    finally:
        engine.dispose()


def train_from_dump(
    settings: Settings,
    dump: Path,
    until: datetime,
    pseudonym_key: bytes,
    *,
    db_url: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Any:
    """Fit on the dump's events before ``until`` (its reference tables decide opt-outs)."""
    pipeline = app.build_pipeline(settings, app.database(settings, "sqlite://"), notify=False)
    load_reference_tables(pipeline.apply_reference, dump, lambda _d: None, settings.max_message_bytes)
    events = iter_events(dump, lambda _d: None, settings.max_message_bytes)
    return train(
        events,
        pipeline.tables,
        until=until,
        pseudonym_key=pseudonym_key,
        max_alerts_per_day=settings.max_alerts_per_day,
        progress=progress,
        exclude=false_positive_windows(db_url),
    )


def train_from_topics(
    settings: Settings,
    bootstrap: str,
    until: datetime,
    pseudonym_key: bytes,
    *,
    db_url: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Any:
    """Fit on the topics' events before ``until``, read from the start."""
    tables = history.reference_tables(settings, bootstrap)  # opt-outs are known before any event
    return train(
        history.events(settings, bootstrap),
        tables,
        until=until,
        pseudonym_key=pseudonym_key,
        max_alerts_per_day=settings.max_alerts_per_day,
        progress=progress,
        exclude=false_positive_windows(db_url),
    )
