"""``breachwatch import-logs``: a plain log file as a dump folder, then trained on and replayed."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from breachwatch.cli import main
from tests.streams.test_logimport import BGL_ALERT, BGL_LINE, SYSLOG_LINE


def bgl_file(tmp_path: Path) -> Path:
    src = tmp_path / "ras.log"
    src.write_text("\n".join([BGL_LINE, "not a bgl line", BGL_ALERT]) + "\n")
    return src


def test_import_logs_writes_a_dump_and_reports_bad_lines_with_their_reason(tmp_path: Path) -> None:
    out = tmp_path / "dump"
    result = CliRunner().invoke(
        main, ["import-logs", str(bgl_file(tmp_path)), "--format", "bgl", "--out", str(out), "--labels"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["imported"], summary["rejected"], summary["alert_lines"]) == (2, 1, 1)
    assert summary["rejected_by_reason"] == {"format": 1}
    assert "line 2: does not match the bgl line format" in result.stderr
    assert {p.name for p in out.iterdir()} == {"erp.logs.jsonl", "rejected.jsonl", "labels.json"}


def test_import_logs_refuses_what_it_cannot_do_with_a_clear_message(tmp_path: Path) -> None:
    src = tmp_path / "messages"
    src.write_text(SYSLOG_LINE + "\n")
    no_year = CliRunner().invoke(main, ["import-logs", str(src), "--format", "syslog", "--out", str(tmp_path / "d")])
    assert no_year.exit_code == 2 and "syslog lines carry no year: give one" in no_year.output
    no_labels = CliRunner().invoke(
        main,
        ["import-logs", str(src), "--format", "syslog", "--year", "2026", "--out", str(tmp_path / "d"), "--labels"],
    )
    assert no_labels.exit_code == 2 and "syslog lines carry no labels" in no_labels.output
    bad_zone = CliRunner().invoke(
        main,
        [
            "import-logs",
            str(src),
            "--format",
            "syslog",
            "--year",
            "2026",
            "--tz",
            "Mars/Olympus",
            "--out",
            str(tmp_path / "d"),
        ],
    )
    assert bad_zone.exit_code == 2 and "unknown time zone 'Mars/Olympus'" in bad_zone.output
    nothing = CliRunner().invoke(main, ["import-logs", str(src), "--format", "bgl", "--out", str(tmp_path / "e")])
    assert nothing.exit_code == 1 and "no line of" in nothing.output and "rejected.jsonl" in nothing.output
