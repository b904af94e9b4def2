"""Importing a plain log file into a dump folder (``breachwatch import-logs``), for replaying old
logs through ``replay``, ``train`` and ``backtest``.

The dump gets ``erp.logs.jsonl`` (the records, in event-time order), ``rejected.jsonl`` (every
line that could not become a record, whole, with its line number and the reason: nothing is
lost) and, for a file whose lines carry labels, ``labels.json`` in the simulator's format, so
that ``backtest`` scores the detectors against them.
"""

from __future__ import annotations

import base64
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from breachwatch.streams.logformats import Imported, LineFormat, Rejected, Result, excerpt, parse_line

LOGS_FILE = "erp.logs.jsonl"
REJECTED_FILE = "rejected.jsonl"
LABELS_FILE = "labels.json"


@dataclass
class ImportSummary:
    """What an import did, for the person running it (one JSON object)."""

    source: str
    format: str
    session: str
    lines: int = 0
    imported: int = 0
    rejected: int = 0
    alert_lines: int = 0
    scenarios: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    first_ts: str | None = None
    last_ts: str | None = None
    clean_until: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "reasons"}
        out["rejected_by_reason"] = dict(self.reasons.most_common())
        return out


def import_lines(raw: Iterable[bytes], fmt: LineFormat, source: str = "import") -> Iterator[tuple[Result, bytes]]:
    """Every raw line of a file as a record or a rejection, in file order, with its bytes.
    Bytes that are not UTF-8 are reported, not guessed at: a wrong guess changes templates."""
    for lineno, b in enumerate(raw, start=1):
        try:
            text = b.decode("utf-8")
        except UnicodeDecodeError as e:
            reason = f"not valid UTF-8 (byte 0x{b[e.start]:02x} at column {e.start + 1})"
            yield Rejected(lineno, "encoding", reason, None), b
            continue
        yield parse_line(text, fmt, lineno, source), b


def _rejected_line(r: Rejected, raw: bytes) -> str:
    entry: dict[str, Any] = {"line": r.lineno, "kind": r.kind, "reason": r.reason}
    if r.text is not None:
        entry["text"] = r.text.rstrip("\r\n")
    else:
        entry["bytes_base64"] = base64.b64encode(raw.rstrip(b"\r\n")).decode("ascii")
    return json.dumps(entry, ensure_ascii=False)


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def import_file(
    path: Path,
    out: Path,
    fmt: LineFormat,
    *,
    source: str | None = None,
    labels: bool = False,
    clean_until: datetime | None = None,
    scenario_gap: timedelta = timedelta(minutes=30),
    report: IO[str] | None = None,
) -> ImportSummary:
    """Import ``path`` into the dump folder ``out`` (made if missing); ``report`` gets a line per
    rejected line. Records are written in event-time order (a log file is mostly, not always, in
    order), so the file's records are held in memory while it is read."""
    name = source or path.name
    summary = ImportSummary(source=name, format=fmt.name, session=fmt.session)
    out.mkdir(parents=True, exist_ok=True)
    kept: list[tuple[str, int, Imported]] = []
    with path.open("rb") as fh, (out / REJECTED_FILE).open("w", encoding="utf-8") as rej:
        for result, raw in import_lines(fh, fmt, name):
            summary.lines += 1
            if isinstance(result, Rejected):
                summary.rejected += 1
                summary.reasons[result.kind] += 1
                rej.write(_rejected_line(result, raw) + "\n")
                if report is not None:
                    report.write(f"line {result.lineno}: {result.reason}: {excerpt(result.text)}\n")
                continue
            summary.imported += 1
            summary.alert_lines += int(result.is_alert)
            kept.append((result.record["ts"], result.lineno, result))
    kept.sort(key=lambda k: (_ts(k[0]), k[1]))
    tmp = out / (LOGS_FILE + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for _, _, imp in kept:
            fh.write(json.dumps(imp.record, ensure_ascii=False, separators=(",", ":")) + "\n")
    os.replace(tmp, out / LOGS_FILE)
    if kept:
        summary.first_ts, summary.last_ts = kept[0][0], kept[-1][0]
    if labels and kept:
        truth = labels_for([imp for _, _, imp in kept], name, clean_until, scenario_gap)
        summary.scenarios = len(truth["scenarios"])
        summary.clean_until = truth["clean_until"]
        (out / LABELS_FILE).write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    return summary


def labels_for(
    records: list[Imported], source: str, clean_until: datetime | None, gap: timedelta = timedelta(minutes=30)
) -> dict[str, Any]:
    """``labels.json`` for imported records in event-time order: one scenario per run of alert
    lines of one service and session (a new run after ``gap`` without one), named by the label
    of its first line; ``clean_until`` defaults to two thirds into the file's time span."""
    first, last = _ts(records[0].record["ts"]), _ts(records[-1].record["ts"])
    cut = clean_until or first + (last - first) * 2 / 3
    runs: dict[tuple[str, str], dict[str, Any]] = {}
    scenarios: list[dict[str, Any]] = []
    for imp in records:
        if not imp.is_alert:
            continue
        rec = imp.record
        key = (rec["service"], rec.get("session_id") or rec["event_id"])
        ts = _ts(rec["ts"])
        run = runs.get(key)
        if run is None or ts - _ts(run["end"]) > gap:
            run = runs[key] = {
                "scenario_id": f"log-{len(scenarios) + 1:05d}",
                "kind": f"log alert {imp.label}",
                "start": rec["ts"],
                "end": rec["ts"],
                "actor_ids": [],
                "tenant_ids": [],
                "source_ips": [],
                "event_ids": [],
                "service": rec["service"],
                "session": key[1],
            }
            scenarios.append(run)
        run["end"] = rec["ts"]
        run["event_ids"].append(rec["event_id"])
    return {
        "source": source,
        "tenants": 0,
        "start": records[0].record["ts"],
        "end": records[-1].record["ts"],
        "clean_until": cut.isoformat().replace("+00:00", "Z"),
        "scenarios": scenarios,
        "hard_negatives": [],
    }
