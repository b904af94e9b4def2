"""What the log detector costs per log record on the simulated ERP's logs, and what it concluded.

    python -m bench.logs_cost [--tenants 60] [--days 21] [--seed 7] [--batch 500] [--repeat 3] [--limit N]

The log records of a simulated dump (``bench.common.dump_for``, decoded as ``replay`` decodes
them) go through the log detector as the service runs it, batch by batch:

* ``mine``: template mining alone, one fresh miner per service;
* ``online``: a fresh detector over every record (warm-up, then judging and learning);
* ``history``: ``breachwatch train``'s learning of the log history (the clean days);
* ``trained``: a detector started from that history over the rest of the records;
* ``checkpoint``: one ``state()`` of the online detector at the end, as JSON.

Each is timed in CPU seconds of this process (``time.process_time``: on a shared machine other
processes' load barely moves it, unlike wall time), best of ``--repeat`` runs, with the cycle
collector as the service runs it (``runtime.pipeline.fewer_collections``). The verdicts of
``online`` and ``trained`` are printed as a digest (``digest``): a faster detector must print the
same. ``us_per_event`` spreads the ``online`` cost over every event of the dump, as
``bench.stages`` charges "log sessions" in ``bench.throughput``'s profile. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import count_events, dump_for, emit
from breachwatch.core.events import LogRecord
from breachwatch.core.findings import DetectionContext, Finding
from breachwatch.core.reference import ReferenceTables
from breachwatch.detectors.logs.detector import LogDetector
from breachwatch.detectors.logs.history import learn_history
from breachwatch.detectors.logs.templates import TemplateMiner
from breachwatch.runtime.pipeline import fewer_collections
from breachwatch.streams.dump import iter_events

CTX = DetectionContext(tables=ReferenceTables())
MAX_BYTES = 1 << 20


def log_records(dump: Path) -> list[LogRecord]:
    """The dump's log records in event-time order, decoded as ``replay`` decodes them."""
    return [e for e in iter_events(dump, lambda _d: None, MAX_BYTES) if isinstance(e, LogRecord)]


def clean_until(dump: Path) -> datetime:
    return datetime.fromisoformat(json.loads((dump / "labels.json").read_text())["clean_until"])


def judge(det: LogDetector, records: Sequence[LogRecord], batch: int) -> list[Finding]:
    """Records in batches of ``batch``, then every open session closed (the end of the stream)."""
    findings: list[Finding] = []
    for i in range(0, len(records), batch):
        findings.extend(det.process(records[i : i + batch], CTX))
    findings.extend(det.close_open_sessions())
    return findings


def verdict(f: Finding) -> dict[str, Any]:
    """Everything a finding tells the on-call, as plain JSON-able data."""
    return {
        "id": f.finding_id,
        "kind": f.kind,
        "severity": f.severity,
        "score": f.score,
        "ts": f.ts.isoformat(),
        "detected_at": f.detected_at.isoformat() if f.detected_at else None,
        "title": f.title,
        "reasons": list(f.reasons),
        "events": list(f.event_ids),
        "actor": f.actor_id,
        "tenants": list(f.tenant_ids),
        "facts": f.facts,
        "dedup_key": f.dedup_key,
    }


def digest(findings: Sequence[Finding]) -> str:
    """A short hash of the findings, in their order, and of everything in them."""
    text = json.dumps([verdict(f) for f in findings], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def mine(records: Sequence[LogRecord]) -> int:
    miners: dict[str, TemplateMiner] = {}
    for r in records:
        m = miners.get(r.service)
        if m is None:
            m = miners[r.service] = TemplateMiner()
        m.add(r.message)
    return sum(len(m) for m in miners.values())


def cpu_best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """The least CPU time of ``repeat`` calls of ``fn`` (each from a fresh start), and its result;
    with the cycle collector set as ``breachwatch run`` and ``replay`` set it."""
    best, out = float("inf"), None
    for _ in range(repeat):
        out = None
        with fewer_collections():
            t0 = time.process_time()
            out = fn()
            best = min(best, time.process_time() - t0)
    return best, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tenants", type=int, default=60)
    ap.add_argument("--days", type=int, default=21)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--batch", type=int, default=500, help="records per process() call")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each part; the least CPU time counts")
    ap.add_argument("--limit", type=int, default=0, help="only the first N log records (0: all)")
    args = ap.parse_args(argv)

    dump = dump_for(args.tenants, args.days, args.seed)
    records = log_records(dump)
    events = count_events(dump)
    if args.limit:
        records = records[: args.limit]
    until = clean_until(dump)
    history = [r for r in records if r.ts < until]
    rest = [r for r in records if r.ts >= until]
    n = len(records)
    print(f"dump {dump.name}: {events:,} events, {n:,} log records ({len(history):,} before {until:%Y-%m-%d})")

    per: dict[str, float] = {}
    t_mine, templates = cpu_best(lambda: mine(records), args.repeat)
    per["mine"] = t_mine / max(n, 1)

    def online_run() -> tuple[LogDetector, list[Finding]]:
        det = LogDetector()
        return det, judge(det, records, args.batch)

    t_online, (detector, online) = cpu_best(online_run, args.repeat)
    per["online"] = t_online / max(n, 1)
    t_hist, (state, _) = cpu_best(lambda: learn_history(history), args.repeat)
    per["history"] = t_hist / max(len(history), 1)
    t_trained, trained = cpu_best(lambda: judge(LogDetector(trained=state), rest, args.batch), args.repeat)
    per["trained"] = t_trained / max(len(rest), 1)
    t_cp, cp = cpu_best(lambda: json.dumps(detector.state()), args.repeat)

    us = {k: round(v * 1e6, 2) for k, v in per.items()}
    for k, v in us.items():
        print(f"  {k:8s} {v:8.2f} µs per log record (CPU, best of {args.repeat})")
    share = len(records) / max(events, 1) if not args.limit else 1.0
    print(f"  checkpoint: {t_cp * 1e3:.1f} ms CPU for {len(cp) / 1e6:.1f} MB of state")
    result = {
        "bench": "logs_cost",
        "dump": dump.name,
        "log_records": n,
        "events": events,
        "batch": args.batch,
        "us_per_record": us,
        "online_us_per_event": round(per["online"] * 1e6 * share, 2),
        "checkpoint_ms": round(t_cp * 1e3, 1),
        "checkpoint_mb": round(len(cp) / 1e6, 2),
        "templates": templates,
        "findings": {"online": len(online), "trained": len(trained)},
        "digest": {"online": digest(online), "trained": digest(trained)},
    }
    emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
