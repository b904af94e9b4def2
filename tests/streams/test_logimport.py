"""Plain log lines as ``erp.logs`` records: each format's must and must-not lines, the reasons a
bad line is rejected with, and a whole file imported into a dump folder with its labels."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path

from breachwatch.core.events import LogRecord
from breachwatch.streams.decode import decode
from breachwatch.streams.logformats import (
    BGL,
    HDFS,
    ISO,
    SYSLOG,
    THUNDERBIRD,
    Imported,
    Rejected,
    parse_line,
    with_options,
)
from breachwatch.streams.logimport import import_file

# Fictional lines in each format's layout.
BGL_LINE = (
    "- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 "
    "RAS KERNEL INFO instruction cache parity error corrected"
)
BGL_ALERT = (
    "KERNDTLB 1118536327 2005.06.11 R30-M0-N9-C:J16-U01 2005-06-11-17.32.07.581048 R30-M0-N9-C:J16-U01 "
    "RAS KERNEL FATAL data TLB error interrupt"
)
TB_LINE = "- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond(pam_unix)[2915]: session closed for user root"
TB_KERNEL = "- 1131567043 2005.11.09 tbird-admin1 Nov 9 12:10:43 local@tbird-admin1 ACPI: Interpreter enabled"
TB_BARE = (
    "- 1131567043 2005.11.09 tbird-admin1 Nov 9 12:10:43 local@tbird-admin1 - User ID: CentOS-4 (Kernel Module GPG key)"
)
SYSLOG_LINE = "Mar  7 04:02:17 web-1 sshd[1204]: error: Bind to port 22 on 0.0.0.0 failed: Address already in use."
ISO_LINE = "2026-11-02T08:00:01.5Z billing-1 billing[311]: ERROR payment declined for order 8812"
HDFS_LINE = (
    "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38865049064139660 terminating"
)


def record(line: str, fmt=BGL) -> LogRecord:  # type: ignore[no-untyped-def]
    result = parse_line(line, fmt, 7, "logs.txt")
    assert isinstance(result, Imported), result
    # Through the product's own decoder: the record is exactly what the erp.logs contract accepts.
    return decode("erp.logs", json.dumps(result.record).encode(), 1 << 20)


def test_a_bgl_line_becomes_a_record_in_utc_with_its_node_as_session() -> None:
    r = record(BGL_LINE)
    assert r.ts.isoformat() == "2005-06-03T22:42:50.675872+00:00"  # US Pacific, daylight time
    assert (r.service, r.level, r.host, r.session_id) == (
        "kernel",
        "INFO",
        "R02-M1-N0-C:J12-U11",
        "R02-M1-N0-C:J12-U11",
    )
    assert r.message == "instruction cache parity error corrected"
    assert r.attrs == {"source_line": 7}
    assert r.event_id.startswith("logs.txt:7:")


def test_a_bgl_label_is_kept_beside_the_record_never_in_it() -> None:
    alert = parse_line(BGL_ALERT, BGL)
    normal = parse_line(BGL_LINE, BGL)
    assert isinstance(alert, Imported) and isinstance(normal, Imported)
    assert alert.is_alert and alert.label == "KERNDTLB" and not normal.is_alert
    assert "KERNDTLB" not in json.dumps(alert.record)
    assert alert.record["level"] == "CRITICAL"  # FATAL


def test_thunderbird_lines_with_and_without_a_program() -> None:
    r = record(TB_LINE, THUNDERBIRD)
    assert (r.service, r.host, r.level) == ("crond", "dn228", "INFO")
    assert r.message == "session closed for user root"
    k = record(TB_KERNEL, THUNDERBIRD)
    assert (k.service, k.message) == ("acpi", "Interpreter enabled")
    bare = record(TB_BARE, THUNDERBIRD)
    assert (bare.service, bare.message) == ("kernel", "- User ID: CentOS-4 (Kernel Module GPG key)")


def test_syslog_reads_the_level_word_and_needs_a_year() -> None:
    missing = parse_line(SYSLOG_LINE, SYSLOG)
    assert isinstance(missing, Rejected) and missing.kind == "timestamp"
    assert missing.reason == "syslog lines carry no year: give one (--year)"
    r = record(SYSLOG_LINE, with_options(SYSLOG, year=2026, tz="Europe/Berlin"))
    assert r.ts.isoformat() == "2026-03-07T03:02:17+00:00"
    assert (r.service, r.level, r.host) == ("sshd", "ERROR", "web-1")
    assert r.message.startswith("Bind to port 22")


def test_iso_lines_and_hdfs_block_sessions() -> None:
    r = record(ISO_LINE, ISO)
    assert (r.ts.isoformat(), r.service, r.level) == ("2026-11-02T08:00:01.500000+00:00", "billing", "ERROR")
    h = record(HDFS_LINE, HDFS)
    assert h.session_id == "blk_38865049064139660" and h.service == "dfs.datanode$packetresponder"


def test_window_sessions_are_aligned_on_the_epoch() -> None:
    fmt = with_options(BGL, session="node_window", window=timedelta(hours=6))
    assert record(BGL_LINE, fmt).session_id == "R02-M1-N0-C:J12-U11@w20050603T180000Z+21600s"


def test_bad_lines_are_rejected_with_their_reason_and_kept_whole() -> None:
    cases = {
        "": ("empty", "empty line"),
        "hello world": ("format", "does not match the bgl line format"),
        BGL_LINE.replace("2005-06-03-15.42.50", "2005-13-03-15.42.50"): ("timestamp", "does not match"),
        BGL_LINE.replace(" INFO ", " CHATTY "): ("level", "unknown level 'CHATTY' (known: ERROR, FAILURE"),
    }
    for line, (kind, reason) in cases.items():
        r = parse_line(line, BGL, 3)
        assert isinstance(r, Rejected), line
        assert r.kind == kind and reason in r.reason and r.text == line and r.lineno == 3


def test_a_file_is_imported_in_time_order_with_rejects_and_labels(tmp_path: Path) -> None:
    later = BGL_LINE.replace("2005-06-03-15.42.50", "2005-06-03-16.10.00")
    raw = "\n".join([later, "garbage line", BGL_ALERT, BGL_LINE]).encode() + b"\n\xff\xfe broken\n"
    src = tmp_path / "bgl.log"
    src.write_bytes(raw)
    out = tmp_path / "dump"
    summary = import_file(src, out, BGL, labels=True)
    assert (summary.lines, summary.imported, summary.rejected, summary.alert_lines) == (5, 3, 2, 1)
    assert summary.reasons == {"format": 1, "encoding": 1}
    lines = (out / "erp.logs.jsonl").read_text().splitlines()
    times = [json.loads(x)["ts"] for x in lines]
    assert times == sorted(times) and len(lines) == 3
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert [(r["line"], r["kind"]) for r in rejected] == [(2, "format"), (5, "encoding")]
    assert rejected[0]["text"] == "garbage line"
    assert base64.b64decode(rejected[1]["bytes_base64"]) == b"\xff\xfe broken"
    assert rejected[1]["reason"] == "not valid UTF-8 (byte 0xff at column 1)"
    labels = json.loads((out / "labels.json").read_text())
    [scenario] = labels["scenarios"]
    assert scenario["kind"] == "log alert KERNDTLB" and len(scenario["event_ids"]) == 1
    assert labels["start"] <= labels["clean_until"] <= labels["end"]
    # The same file imported again gives the same event ids (a replay counts each line once).
    again = import_file(src, tmp_path / "dump2", BGL)
    assert again.imported == 3
    assert (tmp_path / "dump2" / "erp.logs.jsonl").read_text() == (out / "erp.logs.jsonl").read_text()
