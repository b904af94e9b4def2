"""Training the learned detectors from a dump or from the topics, leaving out what people judged
false positives (``breachwatch train``, the backtest): the actor models on access and login events,
the log detector on the log records of the same history, in one pass over it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.core.events import Event, LogRecord
from breachwatch.core.reference import ReferenceTables
from breachwatch.core.settings import Settings
from breachwatch.detectors.learned.detector import TrainReport, logs_only_model, train
from breachwatch.detectors.logs.history import HistoryLearner
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


class _LogTap:
    """Passes every event on to the actor models' training and feeds the log records before
    ``until`` to the log detector's, leaving out tenants that opted out of AI training and the
    windows people marked false positive (by the record's actor), as the actor models do."""

    def __init__(self, until: datetime, tables: ReferenceTables, exclude: list[tuple[str, datetime, datetime]]) -> None:
        self.until = until
        self.tables = tables
        self.exclude: dict[str, list[tuple[float, float]]] = {}
        for actor, start, end in exclude:
            self.exclude.setdefault(actor, []).append((start.timestamp(), end.timestamp()))
        self.learner = HistoryLearner()
        self.actor_events = 0

    def __call__(self, events: Iterable[Event]) -> Iterator[Event]:
        for ev in events:
            if isinstance(ev, LogRecord):
                if self._usable(ev):
                    self.learner.add(ev)
            elif ev.ts < self.until:
                self.actor_events += 1
            yield ev

    def _usable(self, rec: LogRecord) -> bool:
        if rec.ts >= self.until:
            return False
        if rec.tenant_id and self.tables.tenant_opted_out(rec.tenant_id):
            return False
        spans = self.exclude.get(rec.actor_id) if rec.actor_id else None
        t = rec.ts.timestamp()
        return not (spans and any(s <= t <= e for s, e in spans))


def _train_both(
    events: Iterable[Event],
    tables: ReferenceTables,
    until: datetime,
    pseudonym_key: bytes,
    settings: Settings,
    exclude: list[tuple[str, datetime, datetime]],
    progress: Callable[[str], None] | None,
) -> Any:
    tap = _LogTap(until, tables, exclude)
    try:
        trained = train(
            tap(events),
            tables,
            until=until,
            pseudonym_key=pseudonym_key,
            max_alerts_per_day=settings.max_alerts_per_day,
            progress=progress,
            exclude=exclude,
        )
    except ValueError:
        # A history of log records alone (imported log files) still trains the log detector.
        logs = tap.learner.finish() if not tap.actor_events else None
        if logs is None:
            raise
        summary = TrainReport(window_end=until.isoformat(), log_history=tap.learner.report.line())
        return logs_only_model(logs, pseudonym_key, until, summary)
    trained.logs = tap.learner.finish()
    if trained.report is not None:
        trained.report.log_history = tap.learner.report.line()
    return trained


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
    exclude = false_positive_windows(db_url)
    return _train_both(events, pipeline.tables, until, pseudonym_key, settings, exclude, progress)


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
    exclude = false_positive_windows(db_url)
    return _train_both(history.events(settings, bootstrap), tables, until, pseudonym_key, settings, exclude, progress)
