"""The log detector's verdicts on fixed inputs, pinned by digest, and what it carries in a checkpoint.

A change meant only to make the detector faster or tidier must leave every finding (ids,
scores, reasons, evidence, facts, times) and every checkpoint exactly as they were. The digests
below may change only in the same commit as a deliberate change of verdicts (a signal, a weight,
a mask, a default setting) or of the inputs (the simulator's output for this seed, the
``LogRecord`` contract, the BGL line parser); that commit says which, and why.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.logs_cost import clean_until, digest, judge, log_records
from bench.logs_real import BGL_DIR, HDFS_DIR, bgl_records, hdfs_records, hdfs_sessions
from breachwatch.core.events import LogRecord
from breachwatch.core.findings import Finding
from breachwatch.detectors.logs.detector import KIND_BURST, KIND_SESSION, LogDetector
from breachwatch.detectors.logs.history import learn_history
from breachwatch.devkit.simulate import simulate

# Distinct error messages of one service in two minutes, as probing with malformed input makes
# them: the simulator has no log-only attack, so the dump gets this burst added.
PROBING = (
    "sql syntax error near select in filter",
    "unterminated quoted identifier in sort",
    "path traversal attempt rejected for export",
    "null byte in filename of upload",
    "invalid utf8 sequence in header value",
    "template expression not allowed in note",
    "xml external entity blocked in import",
    "deserialization of type refused for payload",
    "ldap filter malformed in directory lookup",
    "redirect target not allowed after login",
    "command separator in report argument",
    "oversized cookie dropped by gateway",
)

# (findings, digest of the findings, digest of the detector's checkpoint at the end)
SIMULATED = {
    "trained": (4, "f979907ababccdfb", "456f243dca4e36aa"),
    "online": (6, "b326321e0b31f3d6", "46220f77777c2750"),
    "sensitive": (24, "1afbf05809c39acf", "3207ae3eef39a310"),
}
BGL_2K = {
    "default": (22, "3d9313d7821002ac", "af47c5e2a973ae8f"),
    "sensitive": (37, "0bf1ab7e29951a28", "e2962db494ff779e"),
}
HDFS = (202, "1098b3a6d09855ca", "635e27c6255ffdf0")


def state_digest(det: LogDetector) -> str:
    text = json.dumps(det.state(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pinned(name: str, det: LogDetector, findings: Sequence[Finding], expected: tuple[int, str, str]) -> None:
    got = (len(findings), digest(findings), state_digest(det))
    assert got == expected, f"{name}: {got} != pinned {expected}"


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[LogRecord], list[LogRecord]]:
    """A fixed simulated dump's log records, a probing burst added: (history, the rest)."""
    path = tmp_path_factory.mktemp("golden") / "dump"
    simulate(path, seed=7, days=3, tenants=30)
    records = log_records(path)
    until = clean_until(path)
    start = until + timedelta(hours=6)
    burst = [
        LogRecord(
            event_id=f"golden-probe-{i:02d}",
            ts=start + timedelta(seconds=10 * i),
            service="api",
            level="ERROR",
            message=msg,
            actor_id="u-golden.prober",
            tenant_id="t-golden",
            session_id="s-golden-probe",
        )
        for i, msg in enumerate(PROBING)
    ]
    records = sorted([*records, *burst], key=lambda r: r.ts)
    return [r for r in records if r.ts < until], [r for r in records if r.ts >= until]


def kinds(findings: Sequence[Finding]) -> set[str]:
    return {f.kind for f in findings}


def test_verdicts_on_a_simulated_dump_are_unchanged(dump: tuple[list[LogRecord], list[LogRecord]]) -> None:
    history, rest = dump
    state, _ = learn_history(history)
    trained = LogDetector(trained=state)
    found = judge(trained, rest, 500)
    assert kinds(found) == {KIND_SESSION, KIND_BURST}
    pinned("trained", trained, found, SIMULATED["trained"])

    online = LogDetector()
    found = judge(online, [*history, *rest], 500)
    pinned("online", online, found, SIMULATED["online"])

    # A looser alert budget and a one-signal floor flag many more sessions, through every
    # signal; an odd batch size cuts the stream at other places.
    sensitive = LogDetector(min_session_score=1.0, max_flag_rate=0.05)
    found = judge(sensitive, [*history, *rest], 173)
    assert any("count_excess" in f.facts for f in found)
    assert any("unseen_transitions" in f.facts for f in found)
    pinned("sensitive", sensitive, found, SIMULATED["sensitive"])


def test_verdicts_on_bgl_2k_are_unchanged() -> None:
    path: Path = BGL_DIR / "BGL_2k.log"
    if not path.is_file():
        pytest.skip(f"{path} not found (set BREACHWATCH_BGL_2K)")
    # As ``bench.logs_real`` judges it: the first 65 % of the time span is the history.
    records, _, _ = bgl_records(path, 10**9)
    first, last = records[0].ts, records[-1].ts
    cut = first + (last - first) * 0.65
    state, _ = learn_history([r for r in records if r.ts < cut])
    rest = [r for r in records if r.ts >= cut]
    det = LogDetector(trained=state)
    found = judge(det, rest, 500)
    pinned("bgl_2k", det, found, BGL_2K["default"])  # rare fatal records, mostly: see bench.logs_real
    det = LogDetector(trained=state, min_session_score=1.0, max_flag_rate=0.05)
    found = judge(det, rest, 500)
    assert kinds(found) == {KIND_SESSION}
    pinned("bgl_2k sensitive", det, found, BGL_2K["sensitive"])


def test_verdicts_on_hdfs_block_sessions_are_unchanged() -> None:
    if not (HDFS_DIR / "hdfs_train").is_file() or not (HDFS_DIR / "hdfs_test_abnormal").is_file():
        pytest.skip(f"no DeepLog HDFS sample in {HDFS_DIR} (set BREACHWATCH_DEEPLOG_HDFS)")
    # Long block sessions of a few dozen records: as ``bench.logs_real`` judges them.
    normal = hdfs_sessions(HDFS_DIR / "hdfs_train", 10**9)
    abnormal = hdfs_sessions(HDFS_DIR / "hdfs_test_abnormal", 10**9)
    n_train = int(len(normal) * 0.6)
    start = datetime(2008, 11, 9, tzinfo=UTC)
    state, _ = learn_history(hdfs_records(normal[:n_train], "train", start))
    test = hdfs_records([*abnormal, *normal[n_train:]], "test", start + timedelta(hours=n_train + 1))
    det = LogDetector(trained=state)
    found = judge(det, test, 500)
    assert kinds(found) == {KIND_SESSION}
    pinned("hdfs", det, found, HDFS)
