"""The log detector on real labelled logs it was not built on, end to end as the product runs.

* BGL_2k (Loghub: 2,000 Blue Gene/L RAS lines with per-line alert labels): lines are read by
  ``breachwatch import-logs``'s parser (sessions: node), the first ``--train-share`` of the time
  span is the history ``breachwatch train`` would learn from, and the rest is judged by the
  detector started from it, learning online as the live service does. Session and line
  precision, recall and F1, against two baselines on the same sessions (any never-seen template;
  any ERROR/CRITICAL record).
* HDFS (DeepLog's parsed block sessions, a sample; labels per block): normal sessions split into
  history and a held-out part, judged together with anomalous ones. Session figures, the false
  positive rate, and precision at the full test set's class ratio (553,366 normal : 16,838
  anomalous blocks), beside published figures for the full set.
* Cost: microseconds per record of the log detector (mining, sessions, judging), and of the
  count model's batch scoring per closed session.

Data is read where it lies (never copied into the repository); a set that is absent is skipped
with a message. Prints tables, then one JSON line.

    python -m bench.logs_real [--bgl DIR] [--hdfs DIR] [--max-lines N] [--max-sessions N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from breachwatch.core.events import LogRecord
from breachwatch.core.findings import DetectionContext, Finding
from breachwatch.core.reference import ReferenceTables
from breachwatch.detectors.logs.detector import ERROR_LEVELS, LogDetector
from breachwatch.detectors.logs.history import learn_history
from breachwatch.detectors.logs.templates import TemplateMiner
from breachwatch.streams.logformats import BGL, Imported, parse_line

REPO = Path(__file__).resolve().parents[1]
# shared/ sits beside the checkout (CI) or at /work/shared (a developer's worktree).
_SHARED = next((p for p in (REPO.parent / "shared", Path("/work/shared")) if (p / "datasets").is_dir()), REPO.parent)
BGL_DIR = Path(os.environ.get("BREACHWATCH_BENCH_BGL_2K", _SHARED / "datasets" / "loghub-bgl-2k"))
HDFS_DIR = Path(os.environ.get("BREACHWATCH_BENCH_DEEPLOG_HDFS", "/work/scratch/datasets/deeplog-hdfs"))
CTX = DetectionContext(tables=ReferenceTables())
# HDFS full test set (DeepLog's split), for precision at its class ratio.
HDFS_NORMAL, HDFS_ABNORMAL = 553_366, 16_838
PUBLISHED_HDFS = {
    # ait-aecid/stide README, same DeepLog split (553,366 normal, 16,838 anomalous test blocks).
    "STIDE, window 2 (semi-supervised)": {"precision": 0.953, "recall": 0.950, "f1": 0.951},
    # Du et al., DeepLog, CCS 2017 (figures as commonly cited; not re-checked against the paper here).
    "PCA (Xu et al.), as cited by DeepLog": {"precision": 0.98, "recall": 0.67, "f1": 0.79},
    "Invariant Mining, as cited by DeepLog": {"precision": 0.88, "recall": 0.95, "f1": 0.91},
    "DeepLog": {"precision": 0.95, "recall": 0.96, "f1": 0.96},
}


@dataclass
class Sess:
    """A session as the detector cuts it, with the labels of its lines."""

    service: str
    key: str
    records: list[LogRecord] = field(default_factory=list)
    alert_lines: int = 0

    @property
    def alert(self) -> bool:
        return self.alert_lines > 0


def prf(tp: int, fp: int, fn: int) -> dict[str, Any]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 3), "recall": round(r, 3), "f1": round(f1, 3), "tp": tp, "fp": fp, "fn": fn}


def judge(det: LogDetector, records: Sequence[LogRecord], batch: int = 500) -> list[Finding]:
    findings: list[Finding] = []
    for i in range(0, len(records), batch):
        findings.extend(det.process(records[i : i + batch], CTX))
    findings.extend(det.close_open_sessions())
    return findings


def sessionise(records: Iterable[LogRecord], alerts: set[str], det: LogDetector) -> list[Sess]:
    """Sessions cut as the detector cuts them: per service and session id, closed after the idle
    gap (plus lateness) or the longest duration."""
    gap = det.close_after_s
    longest = det.max_duration_s
    open_: dict[tuple[str, str], tuple[Sess, float, float]] = {}
    out: list[Sess] = []
    for r in records:
        key = r.session_id or r.trace_id
        if not key:
            continue
        t = r.ts.timestamp()
        got = open_.get((r.service, key))
        if got is None or t - got[2] > gap or t - got[1] > longest:
            got = (Sess(r.service, key), t, t)
            out.append(got[0])
        sess = got[0]
        sess.records.append(r)
        sess.alert_lines += int(r.event_id in alerts)
        open_[(r.service, key)] = (sess, got[1], t)
    return out


def score(sessions: Sequence[Sess], flagged: set[str], alerts: set[str]) -> dict[str, Any]:
    """Session level (a session is flagged if a finding holds one of its records) and line level."""
    hit = [any(r.event_id in flagged for r in s.records) for s in sessions]
    tp = sum(1 for s, h in zip(sessions, hit, strict=True) if h and s.alert)
    fp = sum(1 for s, h in zip(sessions, hit, strict=True) if h and not s.alert)
    fn = sum(1 for s, h in zip(sessions, hit, strict=True) if not h and s.alert)
    lines = [r.event_id for s in sessions for r in s.records]
    ltp = sum(1 for e in lines if e in flagged and e in alerts)
    lfp = sum(1 for e in lines if e in flagged and e not in alerts)
    lfn = sum(1 for e in lines if e not in flagged and e in alerts)
    return {"session": prf(tp, fp, fn), "line": prf(ltp, lfp, lfn)}


# ------------------------------------------------------------------ BGL_2k


def bgl_records(path: Path, max_lines: int) -> tuple[list[LogRecord], set[str], int]:
    """The file's records in event-time order, the ids of alert lines, and rejected lines."""
    imported: list[Imported] = []
    rejected = 0
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if lineno > max_lines:
                break
            res = parse_line(line, BGL, lineno, path.name)
            if isinstance(res, Imported):
                imported.append(res)
            else:
                rejected += 1
    records = [LogRecord.model_validate(i.record) for i in imported]
    alerts = {i.record["event_id"] for i in imported if i.is_alert}
    records.sort(key=lambda r: r.ts)
    return records, alerts, rejected


def baselines(train: Sequence[LogRecord], sessions: Sequence[Sess], alerts: set[str]) -> dict[str, Any]:
    """Any never-seen template (a miner per service, fed the history first); any error record."""
    miners: dict[str, TemplateMiner] = {}
    for r in train:
        miners.setdefault(r.service, TemplateMiner()).add(r.message)
    novel: set[str] = set()
    for s in sessions:
        for r in s.records:
            _, created = miners.setdefault(r.service, TemplateMiner()).add(r.message)
            if created:
                novel.update(x.event_id for x in s.records)
    errors = {r.event_id for s in sessions if any(x.level in ERROR_LEVELS for x in s.records) for r in s.records}
    return {
        "any_never_seen_template": score(sessions, novel, alerts),
        "any_error_record": score(sessions, errors, alerts),
    }


def run_bgl(directory: Path, max_lines: int, train_share: float) -> dict[str, Any]:
    records, alerts, rejected = bgl_records(directory / "BGL_2k.log", max_lines)
    first, last = records[0].ts, records[-1].ts
    cut = first + (last - first) * train_share
    train = [r for r in records if r.ts < cut]
    test = [r for r in records if r.ts >= cut]
    state, report = learn_history(train)
    det = LogDetector(trained=state)
    findings = judge(det, test)
    flagged = {e for f in findings for e in f.event_ids}
    sessions = sessionise(test, alerts, det)
    result = {
        "detector": score(sessions, flagged, alerts),
        **baselines(train, sessions, alerts),
    }
    sizes = {
        "lines": len(records),
        "rejected_lines": rejected,
        "alert_lines": len(alerts),
        "train_lines": len(train),
        "test_lines": len(test),
        "test_sessions": len(sessions),
        "test_alert_sessions": sum(s.alert for s in sessions),
        "cut": cut.isoformat(),
        "history": report.line(),
        "findings": {k: sum(1 for f in findings if f.kind == k) for k in sorted({f.kind for f in findings})},
    }
    examples = [f.reasons[:3] for f in findings if any(e in alerts for e in f.event_ids)][:3]
    return {"results": result, "sizes": sizes, "examples": examples}


# ------------------------------------------------------------------ HDFS (DeepLog's block sessions)


def hdfs_sessions(path: Path, limit: int) -> list[list[int]]:
    with path.open(encoding="utf-8") as fh:
        return [[int(x) for x in line.split()] for line in fh if line.strip()][:limit]


def hdfs_records(sessions: Sequence[list[int]], prefix: str, start: datetime) -> list[LogRecord]:
    """One record per log key, a second apart, each session its own block id, an hour apart."""
    out: list[LogRecord] = []
    for i, keys in enumerate(sessions):
        t0 = start + timedelta(hours=i)
        for j, k in enumerate(keys):
            out.append(
                LogRecord(
                    event_id=f"{prefix}-{i}-{j}",
                    ts=t0 + timedelta(seconds=j),
                    service="hdfs",
                    level="INFO",
                    message=f"E{k}",
                    session_id=f"{prefix}-{i}",
                )
            )
    return out


def run_hdfs(directory: Path, max_sessions: int, train_share: float) -> dict[str, Any]:
    normal = hdfs_sessions(directory / "hdfs_train", max_sessions)
    abnormal = hdfs_sessions(directory / "hdfs_test_abnormal", max_sessions)
    n_train = int(len(normal) * train_share)
    start = datetime(2008, 11, 9, tzinfo=UTC)
    train = hdfs_records(normal[:n_train], "train", start)
    # The held-out normal and the anomalous sessions, in a fixed random order.
    test_sessions = [("normal", s) for s in normal[n_train:]] + [("abnormal", s) for s in abnormal]
    random.Random(0).shuffle(test_sessions)
    test_start = start + timedelta(hours=n_train + 1)
    test = hdfs_records([s for _, s in test_sessions], "test", test_start)
    labels = {f"test-{i}": kind for i, (kind, _) in enumerate(test_sessions)}
    state, report = learn_history(train)
    det = LogDetector(trained=state)
    findings = judge(det, test)
    hit = {f.facts.get("session") for f in findings}
    tp = sum(1 for s, k in labels.items() if k == "abnormal" and s in hit)
    fp = sum(1 for s, k in labels.items() if k == "normal" and s in hit)
    fn = sum(1 for s, k in labels.items() if k == "abnormal" and s not in hit)
    n_norm = sum(1 for k in labels.values() if k == "normal")
    tpr = tp / (tp + fn) if tp + fn else 0.0
    fpr = fp / n_norm if n_norm else 0.0
    expected_tp, expected_fp = tpr * HDFS_ABNORMAL, fpr * HDFS_NORMAL
    full_p = expected_tp / (expected_tp + expected_fp) if expected_tp + expected_fp else 0.0
    # With no false positive among n normal sessions, the rate is below 3/n at 95% (rule of three).
    fpr_bound = 3.0 / n_norm if n_norm and fp == 0 else None
    seen = {k for s in normal[:n_train] for k in s}
    novel_hit = {f"test-{i}" for i, (_, s) in enumerate(test_sessions) if any(k not in seen for k in s)}
    novelty = prf(
        sum(1 for s in novel_hit if labels[s] == "abnormal"),
        sum(1 for s in novel_hit if labels[s] == "normal"),
        sum(1 for s, k in labels.items() if k == "abnormal" and s not in novel_hit),
    )
    return {
        "results": {"detector": {"session": prf(tp, fp, fn)}, "any_never_seen_key": {"session": novelty}},
        "rates": {
            "tpr": round(tpr, 3),
            "fpr": round(fpr, 4),
            "fpr_95_upper_if_zero": round(fpr_bound, 4) if fpr_bound else None,
            "precision_at_full_ratio": round(full_p, 3),
            "f1_at_full_ratio": round(2 * full_p * tpr / (full_p + tpr), 3) if full_p + tpr else 0.0,
        },
        "sizes": {
            "train_sessions": n_train,
            "test_normal": n_norm,
            "test_abnormal": len(abnormal),
            "history": report.line(),
        },
        "examples": [f.reasons[:3] for f in findings if labels.get(f.facts.get("session", "")) == "abnormal"][:2],
    }


# ------------------------------------------------------------------ cost


def _jittered(messages: Sequence[str], n: int, seed: int = 0) -> list[str]:
    """``n`` messages drawn from ``messages`` with the digits of every number re-drawn: the text
    changes as real values do, the shape and constant parts (``L3``, ``R02-M1``) do not."""
    rng = random.Random(seed)
    number = re.compile(r"(?<![A-Za-z])\d+(?![A-Za-z])")
    return [
        number.sub(lambda m: "".join(str(rng.randrange(10)) for _ in m.group()), rng.choice(messages)) for _ in range(n)
    ]


def run_cost(directory: Path, n: int) -> dict[str, Any]:
    """Per-record cost of the whole log detector on BGL-like records (nodes as sessions)."""
    records, _, _ = bgl_records(directory / "BGL_2k.log", 10**9)
    rng = random.Random(1)
    nodes = [r.host or "n" for r in records]
    messages = _jittered([r.message for r in records], n)
    start = datetime(2026, 1, 5, tzinfo=UTC)
    stream = [
        LogRecord(
            event_id=f"c-{i}",
            ts=start + timedelta(milliseconds=200 * i),
            service=records[i % len(records)].service,
            level=records[i % len(records)].level,
            message=m,
            session_id=rng.choice(nodes[:200]),
        )
        for i, m in enumerate(messages)
    ]
    det = LogDetector()
    warm = len(stream) // 5
    judge_batches(det, stream[:warm])
    t0 = time.perf_counter()
    judge_batches(det, stream[warm:])
    per_record = (time.perf_counter() - t0) / max(len(stream) - warm, 1) * 1e6
    scoring = _scoring_cost(det)
    return {"log_detector_us_per_record": round(per_record, 2), **scoring}


def judge_batches(det: LogDetector, records: Sequence[LogRecord], batch: int = 2000) -> None:
    for i in range(0, len(records), batch):
        det.process(records[i : i + batch], CTX)


def _scoring_cost(det: LogDetector) -> dict[str, Any]:
    """The count model's batch scoring, per closed session, on its own fitted sample."""
    from breachwatch.detectors.logs.service import _summary

    best: dict[str, Any] = {}
    for svc in det._services.values():
        model = svc.count_model
        if model is None or not model.ready_:
            continue
        rows = [_summary(e) for e in svc.count_fitted] * 4
        t0 = time.perf_counter()
        model.score_samples(rows)
        us = (time.perf_counter() - t0) / len(rows) * 1e6
        if not best or len(rows) > best["sessions"]:
            best = {"service": svc.name, "sessions": len(rows), "count_model_us_per_session": round(us, 1)}
    return best


# ------------------------------------------------------------------ report


def table(name: str, results: dict[str, Any]) -> list[str]:
    out = [f"{name}: {'':22s} {'P':>6s} {'R':>6s} {'F1':>6s}   tp/fp/fn      line P/R/F1"]
    for variant, r in results.items():
        s = r["session"]
        line = r.get("line")
        lf = f"{line['precision']:.3f}/{line['recall']:.3f}/{line['f1']:.3f}" if line else "-"
        counts = f"{s['tp']}/{s['fp']}/{s['fn']}"
        out.append(f"  {variant:28s} {s['precision']:6.3f} {s['recall']:6.3f} {s['f1']:6.3f}   {counts:12s}  {lf}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bgl", type=Path, default=BGL_DIR, help="folder holding BGL_2k.log")
    ap.add_argument("--hdfs", type=Path, default=HDFS_DIR, help="folder holding hdfs_train and hdfs_test_abnormal")
    ap.add_argument("--max-lines", type=int, default=10**9, help="BGL lines read (a tiny run: a few hundred)")
    ap.add_argument("--max-sessions", type=int, default=10**9, help="HDFS sessions read per file")
    ap.add_argument("--train-share", type=float, default=0.65, help="share of the history (BGL: of the time span)")
    ap.add_argument("--cost-records", type=int, default=50_000, help="records timed for the cost (0: none)")
    args = ap.parse_args(argv)
    final: dict[str, Any] = {"bench": "logs_real"}
    if (args.bgl / "BGL_2k.log").is_file():
        bgl = run_bgl(args.bgl, args.max_lines, args.train_share)
        print("\n".join(table("BGL_2k", bgl["results"])))
        print("  sizes:", json.dumps(bgl["sizes"]))
        for ex in bgl["examples"]:
            print("  flagged alert session:", " | ".join(r[:160] for r in ex))
        print("  published: no detection figures exist for the 2,000-line sample (full BGL: see the README)")
        final["bgl_2k"] = {k: v["session"] | {"line_f1": v["line"]["f1"]} for k, v in bgl["results"].items()}
        final["bgl_2k_sizes"] = {k: bgl["sizes"][k] for k in ("lines", "test_sessions", "test_alert_sessions")}
        if args.cost_records > 0:
            final["cost"] = run_cost(args.bgl, args.cost_records)
            print("  cost:", json.dumps(final["cost"]))
    else:
        print(f"skipped BGL_2k: {args.bgl / 'BGL_2k.log'} not found (set BREACHWATCH_BENCH_BGL_2K or --bgl)")
        final["bgl_2k"] = {"skipped": True}
    if (args.hdfs / "hdfs_train").is_file() and (args.hdfs / "hdfs_test_abnormal").is_file():
        hdfs = run_hdfs(args.hdfs, args.max_sessions, 0.6)
        print("\n".join(table("HDFS (DeepLog sample)", hdfs["results"])))
        print("  rates:", json.dumps(hdfs["rates"]), " sizes:", json.dumps(hdfs["sizes"]))
        for ex in hdfs["examples"]:
            print("  flagged anomalous block:", " | ".join(r[:160] for r in ex))
        for name, fig in PUBLISHED_HDFS.items():
            p, r, f1 = fig["precision"], fig["recall"], fig["f1"]
            print(f"  published, full test set: {name:40s} P {p:.3f} R {r:.3f} F1 {f1:.3f}")
        final["hdfs"] = {k: v["session"] for k, v in hdfs["results"].items()} | {"rates": hdfs["rates"]}
    else:
        where = f"{args.hdfs} (BREACHWATCH_BENCH_DEEPLOG_HDFS, --hdfs)"
        print(f"skipped HDFS: no hdfs_train / hdfs_test_abnormal in {where}")
        final["hdfs"] = {"skipped": True}
    print(json.dumps(final, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
