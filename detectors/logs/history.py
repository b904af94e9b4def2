"""Learning the log detector from history (``breachwatch train``), so that a deployment does not
start blind: the records are replayed through a fresh detector exactly as the live service would
see them, and what it learned (templates, steps, counts, the count model's sample) becomes part
of the model file; the live detector starts from it and keeps learning online."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from breachwatch.core.events import LogRecord
from breachwatch.core.findings import DetectionContext
from breachwatch.core.reference import ReferenceTables
from breachwatch.detectors.logs.detector import LogDetector

_BATCH = 5000


@dataclass
class LogHistoryReport:
    """What learning from the log history used, for the operator."""

    records: int = 0
    services: dict[str, int] = field(default_factory=dict)  # service -> sessions learned
    templates: int = 0

    def line(self) -> str:
        if not self.records:
            return "log records: none before --until; the log detector will learn online only"
        per = ", ".join(f"{name} {n:,}" for name, n in sorted(self.services.items()))
        return (
            f"log records: {self.records:,} learned, {self.templates:,} templates kept; "
            f"sessions learned per service: {per or '-'}"
        )


class HistoryLearner:
    """Feed it history's records in event-time order (``add``), then take what it learned
    (``finish``). Records go through a fresh ``LogDetector(**params)`` a batch at a time, so the
    history is never held in memory."""

    def __init__(self, *, min_template_count: int = 3, **params: Any) -> None:
        self.detector = LogDetector(**params)
        self.min_template_count = min_template_count
        self.report = LogHistoryReport()
        self._ctx = DetectionContext(tables=ReferenceTables())
        self._batch: list[LogRecord] = []

    def add(self, rec: LogRecord) -> None:
        self._batch.append(rec)
        if len(self._batch) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        self.detector.process(self._batch, self._ctx)
        self.report.records += len(self._batch)
        self._batch = []

    def finish(self) -> dict[str, Any] | None:
        """Close what is still open and return the learned state (None without records)."""
        self._flush()
        if not self.report.records:
            return None
        self.detector.close_open_sessions()
        state = self.detector.learned_state(self.min_template_count)
        for name, s in state["services"]:
            self.report.services[name] = int(s["learned"])
            self.report.templates += len(s["miner"]["lru"])
        return state


def learn_history(
    records: Iterable[LogRecord], *, min_template_count: int = 3, **params: Any
) -> tuple[dict[str, Any] | None, LogHistoryReport]:
    """Replay ``records`` (in event-time order) through a fresh ``LogDetector(**params)``, close
    what is still open, and return its learned state (None without records) and a report."""
    learner = HistoryLearner(min_template_count=min_template_count, **params)
    for rec in records:
        learner.add(rec)
    return learner.finish(), learner.report
